# SPDX-License-Identifier: LGPL-2.1-or-later
"""Fixtures: a private dbus-daemon, a clean sockbridged per test, a D-Bus client.

Environment:
  SOCKBRIDGED             the daemon binary (default <repo>/build/src/sockbridged)
  SB_TEST_WRAPPER         a command line to run the daemon under (e.g. valgrind)
  SB_TEST_TIMEOUT_FACTOR  multiplies every bound (default 10 under a wrapper, else 1)
  SB_TEST_VERBOSE=1       starts the daemon with --verbose (its log is shown on failure)
"""

from collections.abc import AsyncIterator, Generator, Iterator
import os
from pathlib import Path
import select
import subprocess

import pytest

from sbharness import TIMEOUT_FACTOR, Client, Daemon, DaemonFactory, daemon_binary

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Scale pytest-timeout's per-test limit with the other bounds."""
    if TIMEOUT_FACTOR == 1:
        return
    base = float(config.getini("timeout") or 90)
    for item in items:
        if HERE in Path(str(item.path)).parents and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(base * TIMEOUT_FACTOR))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item: tear-down shows logs after a failure."""
    report = yield
    setattr(item, f"sb_report_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def sockbridged_binary() -> Path:
    binary = daemon_binary()
    if not os.access(binary, os.X_OK):
        pytest.fail(
            f"no sockbridged binary at {binary}: build it (ninja -C build) or set SOCKBRIDGED"
        )
    return binary


@pytest.fixture(scope="session")
def bus_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private dbus-daemon for the whole session, stopped at the end."""
    log = tmp_path_factory.mktemp("dbus") / "dbus-daemon.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [
                "dbus-daemon",
                f"--config-file={HERE / 'bus.conf'}",
                "--nofork",
                "--print-address=1",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
        )
    assert proc.stdout is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 20.0)
        line = proc.stdout.readline().decode().strip() if ready else ""
        if not line:
            pytest.fail(f"dbus-daemon printed no address; its log:\n{log.read_text()}")
        yield line
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


@pytest.fixture
async def client(bus_address: str) -> AsyncIterator[Client]:
    """A dbus-fast connection recording every sockbridge signal from the start."""
    c = await Client.connect(bus_address)
    try:
        yield c
    finally:
        c.disconnect()


@pytest.fixture
async def daemons(
    request: pytest.FixtureRequest,
    sockbridged_binary: Path,
    bus_address: str,
    client: Client,
    tmp_path: Path,
) -> AsyncIterator[DaemonFactory]:
    factory = DaemonFactory(sockbridged_binary, bus_address, tmp_path, client)
    try:
        yield factory
    finally:
        problems = await factory.finish()
        call_report = getattr(request.node, "sb_report_call", None)
        if call_report is not None and call_report.failed:
            for d in factory.daemons:
                print(f"----- output of {d.name} -----\n{d.output()}")
        if problems:
            pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
async def daemon(daemons: DaemonFactory) -> Daemon:
    """A clean sockbridged (--no-state) owning the name on the private bus."""
    return await daemons.start("--no-state")


@pytest.fixture
async def sb(client: Client, daemon: Daemon) -> Client:
    """The client, once the test's daemon is ready."""
    return client
