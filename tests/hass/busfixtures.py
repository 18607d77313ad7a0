"""Fixtures without Home Assistant: a private dbus-daemon, a clean sockbridged per test.

Environment:
  SOCKBRIDGED             the daemon binary (default <repo>/build/src/sockbridged)
  SB_TEST_WRAPPER         a command line to run the daemon under (e.g. valgrind)
  SB_TEST_TIMEOUT_FACTOR  multiplies every bound (default 10 under a wrapper, else 1)
  SB_TEST_DBUS_FAST       the dbus-fast version the run must import
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator
import importlib.metadata
import os
from pathlib import Path
import subprocess

import pytest

from .bus import TIMEOUT_FACTOR, Daemon, daemon_binary, private_bus


def pytest_configure(config: pytest.Config) -> None:
    """With $SB_TEST_DBUS_FAST, the suite runs with exactly that dbus-fast."""
    if wanted := os.environ.get("SB_TEST_DBUS_FAST"):
        found = importlib.metadata.version("dbus-fast")
        assert found == wanted, f"dbus-fast {found} imported, {wanted} wanted"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Scale pytest-timeout's per-test limit with the other bounds."""
    if TIMEOUT_FACTOR == 1:
        return
    base = float(config.getini("timeout") or 120)
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(base * TIMEOUT_FACTOR))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep the call phase's report: tear-down shows the daemon's log after a failure."""
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


_CALL_FAILED = pytest.StashKey[bool]()


@pytest.fixture(scope="session")
def sockbridged_binary() -> Path:
    """The daemon under test; fails (never skips) when it is missing."""
    binary = daemon_binary()
    if not os.access(binary, os.X_OK):
        pytest.fail(f"no sockbridged at {binary}: build it (ninja -C build) or set SOCKBRIDGED")
    return binary


@pytest.fixture(scope="session")
def bus_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private dbus-daemon for the whole session."""
    with private_bus(tmp_path_factory.mktemp("dbus") / "dbus-daemon.log") as (address, _):
        yield address


@pytest.fixture
def second_bus(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Another private dbus-daemon, for a test that stops it."""
    with private_bus(tmp_path / "second-bus.log") as bus:
        yield bus


@pytest.fixture
async def daemon(
    request: pytest.FixtureRequest, sockbridged_binary: Path, bus_address: str, tmp_path: Path
) -> AsyncIterator[Daemon]:
    """A clean sockbridged on the private bus; stopped at the end, exit 0 asserted."""
    sbd = Daemon(sockbridged_binary, bus_address, tmp_path / "sockbridged.log")
    await sbd.start()
    try:
        yield sbd
    finally:
        if sbd.running:
            await sbd.stop()
        if request.node.stash.get(_CALL_FAILED, False):
            print(f"----- sockbridged log -----\n{sbd.output()}")
    bad = [code for code in sbd.exit_codes if code != 0]
    assert not bad, f"sockbridged exited with {bad}; its log:\n{sbd.output()}"
