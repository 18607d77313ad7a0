# SPDX-License-Identifier: LGPL-2.1-or-later
"""The shipped bus policy, on a dbus-daemon set up like the system bus.

dbus/io.github.Sockbridge1.conf.in is rendered as meson renders it, with the
service user "root", and with one change: its group "sockbridge" becomes
"nogroup", because this test machine has no group sockbridge. nobody
(uid 65534) has nogroup (gid 65534) as its primary group, so it stands for a
member of the sockbridge group; daemon (uid 1, gid 1) is in no such group and
stands for any other user. The bus, and sockbridged on it, run as root.

The other users' clients are gdbus processes (the venv's Python lives under
/root, which other users may not enter): `gdbus call` for methods, whose
output names the D-Bus error, and `gdbus monitor` to see which signals reach
whom.
"""

import asyncio
from collections.abc import AsyncIterator
import contextlib
from dataclasses import dataclass
import grp
import os
from pathlib import Path
import pwd
import re
import subprocess

import pytest

from sbharness import (
    BUS_NAME,
    EVENT_TIMEOUT,
    INTERFACE,
    OBJECT_PATH,
    REPO_ROOT,
    WRAPPER,
    Client,
    CmdResult,
    DaemonFactory,
    TcpClient,
    bound,
    data_in,
    free_port,
    run_as,
    running_bus,
)

NOBODY = 65534  # uid and primary gid: in nogroup, the stand-in for "sockbridge"
DAEMON_USER = 1  # uid and gid of "daemon": in no sockbridge group

ERR_ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="needs root: runs the bus and sockbridged as root, and clients as two other users",
)

POLICY_TEMPLATE = REPO_ROOT / "dbus" / "io.github.Sockbridge1.conf.in"

# The parts of /usr/share/dbus-1/system.conf that decide who may do what:
# default deny for owning names and for method calls, signals and replies
# allowed, everyone may connect and talk to the bus itself; service policies
# come from system.d. No fork, no user switch, no activation, no syslog.
SYSTEM_LIKE_CONF = """<!DOCTYPE busconfig PUBLIC
 "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:tmpdir=/tmp</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus"
          send_interface="org.freedesktop.DBus"
          send_member="UpdateActivationEnvironment"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
  <includedir>system.d</includedir>
</busconfig>
"""


def rendered_policy() -> str:
    text = POLICY_TEMPLATE.read_text()
    assert '<policy group="sockbridge">' in text, "the policy no longer names the group"
    text = text.replace("@service_user@", "root")
    # No group sockbridge on the test machine: nogroup stands in for it.
    text = text.replace('<policy group="sockbridge">', '<policy group="nogroup">')
    assert "@" not in text, f"an unrendered placeholder is left: {text}"
    return text


def check_users() -> None:
    """What the stand-ins stand for must hold on this machine, or the test proves nothing."""
    nogroup = grp.getgrnam("nogroup")
    assert nogroup.gr_gid == NOBODY
    assert pwd.getpwuid(NOBODY).pw_gid == NOBODY
    daemon_user = pwd.getpwuid(DAEMON_USER)
    assert daemon_user.pw_gid != NOBODY
    assert daemon_user.pw_name not in nogroup.gr_mem
    assert NOBODY not in os.getgrouplist(daemon_user.pw_name, daemon_user.pw_gid)


@pytest.fixture
async def system_like_bus(tmp_path: Path) -> AsyncIterator[str]:
    """A root dbus-daemon with the system bus's defaults and the rendered policy."""
    conf_dir = tmp_path / "bus"
    (conf_dir / "system.d").mkdir(parents=True)
    (conf_dir / "system.conf").write_text(SYSTEM_LIKE_CONF)
    (conf_dir / "system.d" / "io.github.Sockbridge1.conf").write_text(rendered_policy())
    async with running_bus(conf_dir / "system.conf", tmp_path / "system-like-dbus.log") as (
        _,
        address,
    ):
        yield address


@dataclass
class Monitor:
    """`gdbus monitor` of io.github.Sockbridge1's signals, run as another user."""

    proc: asyncio.subprocess.Process
    log: Path

    @classmethod
    async def start(cls, uid: int, address: str, log: Path) -> "Monitor":
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                "gdbus",
                "monitor",
                "--address",
                address,
                "--dest",
                BUS_NAME,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                user=uid,
                group=uid,
                extra_groups=[],
                cwd="/",
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/", "LC_ALL": "C"},
            )
        return cls(proc, log)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    async def wait_for(self, pattern: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + bound(EVENT_TIMEOUT)
        while not re.search(pattern, await asyncio.to_thread(self.text)):
            if loop.time() > deadline:
                raise AssertionError(f"gdbus monitor never showed {pattern!r}:\n{self.text()}")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.terminate()
        await self.proc.wait()


class Caller:
    """`gdbus call` to sockbridged as one user."""

    def __init__(self, uid: int, address: str) -> None:
        self.uid = uid
        self.address = address

    async def call(self, method: str, *args: str, dest: str = BUS_NAME) -> CmdResult:
        path = "/org/freedesktop/DBus" if dest == "org.freedesktop.DBus" else OBJECT_PATH
        if "." not in method:
            method = f"{INTERFACE}.{method}"
        argv = ["gdbus", "call", "--address", self.address, "--dest", dest]
        argv += ["--object-path", path, "--method", method, "--", *args]
        return await run_as(self.uid, self.uid, argv)

    async def ok(self, method: str, *args: str, dest: str = BUS_NAME) -> str:
        r = await self.call(method, *args, dest=dest)
        assert r.returncode == 0, f"{method}{args} as uid {self.uid} failed: {r.stderr}"
        return r.stdout

    async def denied(self, method: str, *args: str, dest: str = BUS_NAME) -> None:
        r = await self.call(method, *args, dest=dest)
        assert r.returncode != 0, f"{method}{args} as uid {self.uid} succeeded: {r.stdout}"
        assert r.error_name == ERR_ACCESS_DENIED, f"{method}{args} as uid {self.uid}: {r.stderr}"


async def test_bus_policy_lets_only_root_and_the_group_in(
    system_like_bus: str, daemons: DaemonFactory, tmp_path: Path
) -> None:
    check_users()
    address = system_like_bus
    root = await Client.connect(address)
    monitors: list[Monitor] = []
    try:
        d = await daemons.start("--no-state", address=address, wait=False)
        await d.wait_ready(root)
        member = Caller(NOBODY, address)
        other = Caller(DAEMON_USER, address)
        member_monitor = await Monitor.start(NOBODY, address, tmp_path / "member-monitor.log")
        monitors.append(member_monitor)
        other_monitor = await Monitor.start(DAEMON_USER, address, tmp_path / "other-monitor.log")
        monitors.append(other_monitor)
        # Each subscribes to the signals before it asks who owns the name.
        await member_monitor.wait_for("is owned by")
        await other_monitor.wait_for("is owned by")

        # A member of the group may call, and create a server of its own.
        assert "@a(qbsayu) []" in await member.ok("ListServers")
        port = free_port()
        mark = root.rec.mark()
        assert f"(uint16 {port},)" in await member.ok(
            "CreateServer", str(port), "", "false", "member-srv"
        )
        await root.wait_online(port, "member-srv", start=mark)
        assert f"{port}" in await member.ok("ListServers")
        await member.ok("GetStatistics")
        tcp = await TcpClient.connect("127.0.0.1", port)
        handle = await root.new_handle(port, mark)
        await tcp.send(b"data for members\n")
        await root.rec.wait_for(data_in(handle=handle), start=mark)
        await member.ok("ServerSend", str(handle), "[104, 105]")
        assert await tcp.read_exactly(2) == b"hi"

        # Anyone else may not call a method, or change a property...
        servers = await root.list_servers()
        connections = await root.list_connections()
        await other.denied("ListServers")
        await other.denied("ListConnections")
        await other.denied("GetStatistics")
        await other.denied("PortInUse", str(port), "false")
        await other.denied("CreateServer", str(free_port()), "", "false", "intruder")
        await other.denied(
            "CreateServerWithOptions", str(free_port()), "", "true", "intruder", "{}"
        )
        await other.denied("DestroyServer", str(port))
        await other.denied("DestroyServer", "0")
        await other.denied("ServerSend", str(handle), "[120]")
        await other.denied("ServerCloseClient", str(handle))
        await other.denied("org.freedesktop.DBus.Properties.Set", INTERFACE, "Version", "<'6.6.6'>")
        assert await root.list_servers() == servers
        assert await root.list_connections() == connections
        # ...but may introspect, read the properties and ping.
        xml = await other.ok("org.freedesktop.DBus.Introspectable.Introspect")
        assert f'<interface name="{INTERFACE}">' in xml, xml
        version = await root.version()
        assert version in await other.ok(
            "org.freedesktop.DBus.Properties.Get", INTERFACE, "Version"
        )
        assert version in await other.ok("org.freedesktop.DBus.Properties.GetAll", INTERFACE)
        await other.ok("org.freedesktop.DBus.Peer.Ping")

        # Neither the other user nor the member may own the name, even with
        # a take-over the running daemon allows.
        for caller in (other, member):
            await caller.denied(
                "org.freedesktop.DBus.RequestName", BUS_NAME, "2", dest="org.freedesktop.DBus"
            )
        binary = str(d.binary)
        if (await run_as(DAEMON_USER, DAEMON_USER, ["test", "-x", binary])).returncode == 0:
            r = await run_as(
                DAEMON_USER,
                DAEMON_USER,
                [*WRAPPER, binary, f"--address={address}", "--no-state", "--replace"],
            )
            assert r.returncode != 0
            assert "cannot own the name" in r.stderr, r.stderr
        assert await root.pid_of(str(await root.name_owner())) == d.pid

        # Signals: stopping the daemon closes the connection (OFFLINE), the
        # server (OFFLINE), then releases the name. Once a monitor heard the
        # name go, it had been sent every signal it was going to get.
        await tcp.close()
        assert await d.stop() == 0
        for m in monitors:
            await m.wait_for("does not have an owner")
        seen = member_monitor.text()
        assert f"ServerStatusChanged (uint16 {port}, 'ONLINE', 'member-srv')" in seen, seen
        assert f"ServerStatusChanged (uint16 {port}, 'OFFLINE', 'member-srv')" in seen, seen
        assert f"ServerConnectionStatusChanged (uint32 {handle}, uint16 {port}, 'ONLINE'" in seen
        assert f"ServerDataIn (uint32 {handle}," in seen, seen
        unseen = other_monitor.text()
        for member_name in ("ServerStatusChanged", "ServerConnectionStatusChanged", "ServerDataIn"):
            assert member_name not in unseen, f"uid {DAEMON_USER} received {member_name}:\n{unseen}"
    finally:
        for m in monitors:
            await m.stop()
        root.disconnect()
