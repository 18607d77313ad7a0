# SPDX-License-Identifier: LGPL-2.1-or-later
"""The add-on test (the meson test `addon`): TAP, one line per check.

First the add-on's files (no Docker): the staged daemon source, config.yaml,
build.yaml, repository.yaml, translations, icons. Then, under a private
dockerd (harness.PrivateDocker): the base image from the bookworm root, the
add-on image, and the add-on run as the Supervisor runs it (a new container
per start; host network; /share, /data, /ssl from temporary folders; a
stand-in Supervisor on a loopback address as http://supervisor):

  run 1  (debug) the socket, discovery, the log level, the root-only bus,
         CreateServer, a TCP line as ServerDataIn, the health check, a
         crash of sockbridged and of the bus, docker stop;
  run 2  (info) the server persists; a second add-on on the same share
         folder refuses to start; SIGKILL leaves a stale socket;
  run 3  (no Supervisor token) the stale socket is replaced; sockbridged
         crashing over and over ends the container with status 1;
  run 4  no /share; run 5  a read-only /data: each exits 1 with one line.

Needs root for dockerd (it runs itself through sudo otherwise) and the
project's .venv (dbus-fast, PyYAML). Times are printed as TAP comments.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import contextlib
import os
from pathlib import Path
import re
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any

from dbus_fast import Message, MessageType
from dbus_fast.aio.message_bus import MessageBus
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
from harness import (
    ADDON_DIR,
    BUS_NAME,
    INTERFACE,
    OBJECT_PATH,
    REPO,
    Container,
    Folders,
    PrivateDocker,
    StandInSupervisor,
    bus_ready,
    run_addon,
)

TOKEN = "sb-test-token-0123456789"
ADDRESS_IN_CONTAINER = "unix:path=/share/sockbridge/bus"
DISCOVERY_BODY = {"service": "sockbridge", "config": {"address": ADDRESS_IN_CONTAINER}}


class Tap:
    """TAP output: one `ok`/`not ok` line per check, the plan at the end."""

    def __init__(self) -> None:
        self.count = 0
        self.failed = 0
        self.times: list[tuple[str, float]] = []

    def check(self, passed: bool, description: str, diagnostic: str = "") -> bool:
        self.count += 1
        print(f"{'ok' if passed else 'not ok'} {self.count} - {description}", flush=True)
        if not passed:
            self.failed += 1
            for line in diagnostic.rstrip().splitlines()[-60:]:
                print(f"#   {line}", flush=True)
        return passed

    def timed(self, what: str, seconds: float) -> None:
        self.times.append((what, seconds))
        print(f"# time: {what}: {seconds:.1f} s", flush=True)

    def finish(self) -> int:
        print(f"1..{self.count}", flush=True)
        return 1 if self.failed else 0


# --------------------------------------------------------------------------
# D-Bus


class Bus:
    """A dbus-fast connection to the add-on's bus, recording ServerDataIn."""

    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus
        self.data_in: list[list[Any]] = []
        self._changed = asyncio.Event()

    @classmethod
    async def connect(cls, address: str) -> Bus:
        self = cls(await MessageBus(bus_address=address).connect())
        self.bus.add_message_handler(self._handle)
        await self.call_bus(
            "AddMatch", "s", [f"type='signal',sender='{BUS_NAME}',member='ServerDataIn'"]
        )
        return self

    def _handle(self, msg: Message) -> None:
        if msg.message_type == MessageType.SIGNAL and msg.member == "ServerDataIn":
            self.data_in.append(list(msg.body))
            self._changed.set()

    async def _call(self, msg: Message) -> list[Any]:
        reply = await asyncio.wait_for(self.bus.call(msg), 30)
        assert reply is not None
        if reply.message_type == MessageType.ERROR:
            raise RuntimeError(f"{reply.error_name}: {reply.body}")
        return list(reply.body)

    async def call_bus(self, member: str, signature: str, body: list[Any]) -> list[Any]:
        return await self._call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member=member,
                signature=signature,
                body=body,
            )
        )

    async def call(self, member: str, signature: str = "", body: list[Any] | None = None) -> Any:
        result = await self._call(
            Message(
                destination=BUS_NAME,
                path=OBJECT_PATH,
                interface=INTERFACE,
                member=member,
                signature=signature,
                body=body or [],
            )
        )
        return result[0] if len(result) == 1 else result

    async def wait_data(self, predicate: Callable[[list[Any]], bool], timeout: float) -> bool:
        deadline = asyncio.get_running_loop().time() + timeout
        while not any(predicate(s) for s in self.data_in):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return True

    def close(self) -> None:
        self.bus.disconnect()


async def send_line(port: int, line: bytes) -> None:
    """A TCP client on 127.0.0.1 sends line and goes."""
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(line)
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()
    await writer.wait_closed()


async def line_arrives(address: str, port: int, identifier: str, line: bytes) -> tuple[bool, str]:
    """Sends line to the server on port; true once its ServerDataIn came."""
    bus = await Bus.connect(address)
    try:
        await send_line(port, line)
        arrived = await bus.wait_data(lambda s: bytes(s[1]) == line and s[4] == identifier, 10)
        return arrived, f"ServerDataIn seen: {bus.data_in!r}"
    finally:
        bus.close()


async def list_ports(address: str) -> list[int]:
    bus = await Bus.connect(address)
    try:
        return [int(server[0]) for server in await bus.call("ListServers")]
    finally:
        bus.close()


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def new_pid(container: Container, program: str, old: list[int], timeout: float) -> list[int]:
    """The PIDs of program once they differ from old (and are there)."""
    found: list[int] = []

    def changed() -> bool:
        found[:] = container.pids(program)
        return bool(found) and found != old

    wait_until(changed, timeout, 0.2)
    return found


def as_nobody_can_call(address: str) -> subprocess.CompletedProcess[str]:
    """dbus-send as nobody (uid and gid 65534, no groups) to the bus."""
    return subprocess.run(
        [
            "dbus-send",
            f"--bus={address}",
            "--print-reply",
            "--reply-timeout=3000",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.GetId",
        ],
        user=65534,
        group=65534,
        extra_groups=[],
        capture_output=True,
        text=True,
        check=False,
    )


def error_lines(logs: str) -> list[str]:
    return [line for line in logs.splitlines() if "ERROR:" in line]


# --------------------------------------------------------------------------
# The add-on's files


def png_size(path: Path) -> tuple[int, int] | None:
    data = path.read_bytes()[:24]
    if not data.startswith(b"\x89PNG\r\n\x1a\n") or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def supervisor_configs() -> list[Path]:
    """What the Supervisor takes for add-ons: config.{json,yaml,yml} anywhere,
    except below a dot folder or a rootfs folder (as its store does)."""
    found = []
    for path in REPO.rglob("config.*"):
        rel = path.relative_to(REPO)
        if rel.suffix not in (".json", ".yaml", ".yml"):
            continue
        if any(part.startswith(".") or part == "rootfs" for part in rel.parts):
            continue
        if rel.parts[0].startswith("build") or rel.parts[0] == "subprojects":
            continue  # build directories, not in git
        found.append(rel)
    return sorted(found)


def check_files(tap: Tap) -> None:
    staged = subprocess.run(
        [str(REPO / "scripts" / "stage-addon"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    tap.check(
        staged.returncode == 0,
        "sockbridge/daemon is the daemon's source as staged by scripts/stage-addon",
        staged.stdout + staged.stderr,
    )

    repository = yaml.safe_load((REPO / "repository.yaml").read_text())
    tap.check(
        isinstance(repository, dict)
        and bool(repository.get("name"))
        and bool(repository.get("maintainer")),
        "repository.yaml names the repository and its maintainer",
        repr(repository),
    )

    configs = supervisor_configs()
    tap.check(
        configs == [Path("sockbridge/config.yaml")],
        "the Supervisor finds one add-on in the repository: sockbridge/config.yaml",
        repr(configs),
    )

    config = yaml.safe_load((ADDON_DIR / "config.yaml").read_text())
    maps = {m.get("type"): m for m in config.get("map", [])}
    problems = []
    for key in ("name", "version", "slug", "description", "arch"):
        if not config.get(key):
            problems.append(f"no {key}")
    if not re.fullmatch(r"\d+\.\d+\.\d+", str(config.get("version"))):
        problems.append("version is not X.Y.Z")
    if config.get("slug") != "sockbridge":
        problems.append("slug")
    if sorted(config.get("arch", [])) != ["aarch64", "amd64"]:
        problems.append("arch")
    if config.get("host_network") is not True or config.get("init") is not False:
        problems.append("host_network/init")
    if maps.get("share", {}).get("read_only") is not False:
        problems.append("share must be mapped read-write")
    if maps.get("ssl", {}).get("read_only", True) is not True:
        problems.append("ssl must be mapped read-only")
    if "data" not in maps:
        problems.append("data is not listed")
    if config.get("discovery") != ["sockbridge"]:
        problems.append("discovery")
    if config.get("hassio_api"):
        problems.append("hassio_api is not needed for discovery")
    if config.get("options") != {"log_level": "info"}:
        problems.append("options")
    schema = str(config.get("schema", {}).get("log_level", ""))
    match = re.fullmatch(r"list\((.*)\)", schema)
    if not match or "info" not in match.group(1).split("|"):
        problems.append("schema of log_level")
    tap.check(not problems, "config.yaml: the add-on's keys", "; ".join(problems))

    build = yaml.safe_load((ADDON_DIR / "build.yaml").read_text())
    dockerfile = (ADDON_DIR / "Dockerfile").read_text()
    expected = {
        arch: f"ghcr.io/home-assistant/{arch}-base-debian:bookworm" for arch in ("amd64", "aarch64")
    }
    tap.check(
        build.get("build_from") == expected
        and "ARG BUILD_FROM=ghcr.io/home-assistant/base-debian:bookworm" in dockerfile,
        "build.yaml and the Dockerfile name Home Assistant's Debian bookworm base images",
        repr(build),
    )

    translations = yaml.safe_load((ADDON_DIR / "translations" / "en.yaml").read_text())
    named = set(translations.get("configuration", {}))
    tap.check(
        named == set(config.get("schema", {})),
        "translations/en.yaml names every option",
        repr(named),
    )

    tap.check(
        png_size(ADDON_DIR / "icon.png") == (128, 128)
        and png_size(ADDON_DIR / "logo.png") is not None,
        "icon.png (128x128) and logo.png are PNG images",
    )

    changelog = (ADDON_DIR / "CHANGELOG.md").read_text()
    tap.check(
        f"## {config.get('version')}" in changelog and (ADDON_DIR / "DOCS.md").is_file(),
        "CHANGELOG.md has the version's section; DOCS.md is there",
    )


# --------------------------------------------------------------------------
# Docker


def check_image(tap: Tap, docker: PrivateDocker, image: str) -> None:
    script = (
        "/usr/libexec/sockbridged --version; "
        "for p in gcc cc cpp meson ninja pkg-config; do command -v $p; done; "
        "dpkg-query -W -f '${Package}\\n' | grep -E '^(gcc|cpp|meson|.*-dev)$'; true"
    )
    result = docker.run("run", "--rm", "--entrypoint", "/bin/sh", image, "-c", script, check=False)
    lines = result.stdout.split()
    tap.check(
        result.returncode == 0 and lines[:2] == ["sockbridged", "0.1.0"] and len(lines) == 2,
        "the image runs sockbridged and holds no compiler or development package",
        result.stdout + result.stderr,
    )


def run1(tap: Tap, docker: PrivateDocker, folders: Folders, supervisor: StandInSupervisor) -> int:
    """Debug level: discovery, policy, calls, data, health, crashes, stop. The port."""
    folders.write_options({"log_level": "debug"})
    start = time.monotonic()
    container = run_addon(docker, folders, supervisor=supervisor, token=TOKEN)
    try:
        ready = bus_ready(folders.address, 30)
        tap.check(
            ready and stat.S_ISSOCK(folders.socket.stat().st_mode),
            "the socket appears in /share/sockbridge and sockbridged owns its name",
            container.logs(),
        )
        tap.timed("start to ready", time.monotonic() - start)
        if not ready:
            return 0

        request = supervisor.wait_for("/discovery", 20)
        tap.check(
            request is not None
            and request.method == "POST"
            and request.headers.get("Authorization") == f"Bearer {TOKEN}"
            and request.headers.get("Content-Type") == "application/json"
            and request.json() == DISCOVERY_BODY,
            "the discovery message is POSTed to http://supervisor/discovery with the token",
            f"{request!r}\n{container.logs()}",
        )

        pids = container.pids("sockbridged")
        args = container.cmdline(pids[0]) if pids else []
        logs = container.logs()
        tap.check(
            "--verbose" in args and "sockbridge-DEBUG" in logs,
            "log_level debug runs sockbridged with --verbose",
            f"{args!r}\n{logs}",
        )

        mode = stat.S_IMODE(folders.socket.stat().st_mode)
        nobody = as_nobody_can_call(folders.address)
        tap.check(
            mode & 0o006 == 0o006 and nobody.returncode != 0,
            "the bus refuses a user other than root (whom the socket's mode lets in)",
            f"socket mode {mode:o}; dbus-send as nobody: {nobody.returncode} "
            f"{nobody.stdout}{nobody.stderr}",
        )

        port = 0

        async def create() -> int:
            bus = await Bus.connect(folders.address)
            try:
                return int(await bus.call("CreateServer", "qsbs", [0, "\r\n", False, "addon-test"]))
            finally:
                bus.close()

        try:
            port = asyncio.run(create())
            error = ""
        except Exception as err:  # noqa: BLE001
            error = repr(err)
        tap.check(port > 0, "CreateServer over the socket answers a port", error)
        if not port:
            return 0

        arrived, seen = asyncio.run(
            line_arrives(folders.address, port, "addon-test", b"hello addon\r\n")
        )
        tap.check(arrived, "a TCP client's line arrives as ServerDataIn", seen)

        health = container.exec("/usr/libexec/sockbridge-addon/healthcheck")
        tap.check(
            health.returncode == 0 and "0.1.0" in health.stdout,
            "the health check passes",
            health.stdout + health.stderr,
        )

        old = container.kill_program("sockbridged")
        began = time.monotonic()
        new = new_pid(container, "sockbridged", old, 15)
        back = bool(old) and bool(new) and new != old and bus_ready(folders.address, 15)
        tap.timed("sockbridged crash to back", time.monotonic() - began)
        ports = asyncio.run(list_ports(folders.address)) if back else []
        tap.check(
            back and port in ports and container.running(),
            "a crashed sockbridged is started again, with its servers",
            f"{old} -> {new}; ports {ports}\n{container.logs()}",
        )

        old = container.kill_program("dbus-daemon")
        began = time.monotonic()
        new = new_pid(container, "dbus-daemon", old, 15)
        back = bool(old) and bool(new) and new != old and bus_ready(folders.address, 15)
        tap.timed("bus crash to back", time.monotonic() - began)
        ports = asyncio.run(list_ports(folders.address)) if back else []
        tap.check(
            back and port in ports and container.running(),
            "a crashed bus is started again, then sockbridged, with its servers",
            f"{old} -> {new}; ports {ports}\n{container.logs()}",
        )

        took = container.stop()
        tap.timed("docker stop", took)
        status = container.state()["ExitCode"]
        logs = container.logs()
        tap.check(
            status == 0 and took < 5 and not folders.socket.exists() and "INFO: stopped" in logs,
            "docker stop (SIGTERM) ends sockbridged and the bus: exit 0, quickly, socket gone",
            f"exit {status} after {took:.1f} s\n{logs}",
        )
        return port
    finally:
        container.remove()


def run2(tap: Tap, docker: PrivateDocker, folders: Folders, port: int) -> None:
    """Info level: the server came back; SIGKILL leaves the socket behind."""
    folders.write_options({"log_level": "info"})
    container = run_addon(docker, folders)
    try:
        ready = bus_ready(folders.address, 30)
        ports = asyncio.run(list_ports(folders.address)) if ready else []
        arrived, seen = (
            asyncio.run(line_arrives(folders.address, port, "addon-test", b"again\r\n"))
            if port in ports
            else (False, "")
        )
        tap.check(
            arrived,
            "the server persists across a restart of the add-on (a new container)",
            f"ports {ports}; {seen}\n{container.logs()}",
        )

        pids = container.pids("sockbridged")
        args = container.cmdline(pids[0]) if pids else []
        logs = container.logs()
        tap.check(
            bool(args) and "--verbose" not in args and "DEBUG" not in logs,
            "log_level info: no --verbose, no debug lines",
            f"{args!r}\n{logs}",
        )

        second = run_addon(docker, folders)
        try:
            status = second.wait_exit(20)
            logs = second.logs()
            errors = error_lines(logs)
            tap.check(
                status == 1
                and len(errors) == 1
                and "already listens" in errors[0]
                and bus_ready(folders.address, 5),
                "a second add-on on the same share folder stops with one line; the first runs on",
                f"exit {status}\n{logs}",
            )
        finally:
            second.remove()

        docker.run("kill", "--signal", "KILL", container.name)
        container.wait_exit(10)
        tap.check(
            folders.socket.is_socket(),
            "a killed add-on leaves its socket behind (a stale socket)",
        )
    finally:
        container.remove()


def run3(tap: Tap, docker: PrivateDocker, folders: Folders, port: int) -> None:
    """No token; the stale socket; a crash loop ends the container."""
    container = run_addon(docker, folders)
    try:
        ready = bus_ready(folders.address, 30)
        ports = asyncio.run(list_ports(folders.address)) if ready else []
        logs = container.logs()
        tap.check(
            ready and port in ports and "replacing the stale socket" in logs,
            "a stale socket is replaced at start",
            f"ports {ports}\n{logs}",
        )
        logs = container.wait_log("no SUPERVISOR_TOKEN", 10)
        tap.check(
            "no SUPERVISOR_TOKEN" in logs and "ERROR" not in logs,
            "without the Supervisor's token it runs and says that nothing was announced",
            logs,
        )

        began = time.monotonic()
        old: list[int] = []
        for _ in range(10):
            new = new_pid(container, "sockbridged", old, 10)
            if not new or not container.running():
                break
            container.kill_program("sockbridged")
            old = new
        status = container.wait_exit(30)
        tap.timed("crash loop to exit", time.monotonic() - began)
        logs = container.logs()
        tap.check(
            status == 1 and "more than 5 times" in logs and not folders.socket.exists(),
            "sockbridged crashing over and over stops the add-on with status 1, bus included",
            f"exit {status}\n{logs}",
        )
    finally:
        container.remove()


def run_broken(tap: Tap, docker: PrivateDocker, folders: Folders) -> None:
    """No /share, then a read-only /data: one clear line each, status 1."""
    for mount_share, data_read_only, expected, description in (
        (
            False,
            False,
            "/share is not mapped",
            "a missing /share stops the add-on with one line saying what to fix",
        ),
        (
            True,
            True,
            "cannot write to /data",
            "an unwritable /data stops the add-on with one line saying what to fix",
        ),
    ):
        container = run_addon(
            docker, folders, mount_share=mount_share, data_read_only=data_read_only
        )
        try:
            status = container.wait_exit(20)
            logs = container.logs()
            errors = error_lines(logs)
            tap.check(
                status == 1 and len(errors) == 1 and expected in errors[0],
                description,
                f"exit {status}\n{logs}",
            )
        finally:
            container.remove()


def main() -> int:
    # TAP is the only output; --tap is accepted, as the unit tests take it.
    if sys.argv[1:] not in ([], ["--tap"]):
        print(f"usage: {sys.argv[0]} [--tap]", file=sys.stderr)
        return 2
    harness.as_root([__file__, *sys.argv[1:]])
    harness.exit_on_sigterm()
    tap = Tap()
    began = time.monotonic()
    try:
        check_files(tap)
    except Exception:  # noqa: BLE001
        tap.check(False, "the add-on's files can be read", traceback.format_exc())
    workdir = Path(tempfile.mkdtemp(prefix="sb-addon-test."))
    workdir.chmod(0o755)  # the bus policy test runs a client as nobody
    try:
        start = time.monotonic()
        with PrivateDocker(workdir / "dockerd.log") as docker:
            tap.check(True, "a private dockerd starts (host network only)")
            tap.timed("dockerd start", time.monotonic() - start)

            start = time.monotonic()
            base = harness.base_image(docker)
            tap.check(True, f"the base image from the bookworm root: {base}")
            tap.timed("base image", time.monotonic() - start)

            start = time.monotonic()
            image = harness.addon_image(docker, base, workdir / "build.log")
            tap.check(True, "the add-on image builds from its folder's build context")
            tap.timed("add-on image build", time.monotonic() - start)
            check_image(tap, docker, image)

            folders = Folders(workdir / "folders")
            start = time.monotonic()
            with StandInSupervisor() as supervisor:
                port = run1(tap, docker, folders, supervisor)
            if port:
                run2(tap, docker, folders, port)
                run3(tap, docker, folders, port)
            run_broken(tap, docker, folders)
            tap.timed("add-on runs", time.monotonic() - start)
    except Exception:  # noqa: BLE001
        print("Bail out! " + traceback.format_exc().strip().replace("\n", "\n# "), flush=True)
        return 1
    finally:
        if os.environ.get("SB_ADDON_KEEP_WORKDIR"):
            print(f"# work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    tap.timed("all", time.monotonic() - began)
    return tap.finish()


if __name__ == "__main__":
    sys.exit(main())
