# SPDX-License-Identifier: LGPL-2.1-or-later
"""Ownership and privilege, with a second Unix user (nobody, uid 65534).

The second user's D-Bus client is gdbus (error names) and busctl --json
(lists), run as uid/gid 65534: the test process runs as root for these.
"""

import json
import os
from pathlib import Path
import shutil
from typing import Any

from dbus_fast.errors import DBusError
import pytest

from sbharness import (
    BUS_NAME,
    ERR_ADDRESS_IN_USE,
    ERR_PERMISSION_DENIED,
    INTERFACE,
    OBJECT_PATH,
    Client,
    CmdResult,
    DaemonFactory,
    ServerInfo,
    TcpClient,
    free_port,
    run_as,
    server_status,
)

NOBODY = 65534

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        os.geteuid() != 0,
        reason="needs root: runs a second D-Bus client as another Unix user (nobody, uid 65534)",
    ),
    pytest.mark.skipif(
        shutil.which("gdbus") is None or shutil.which("busctl") is None,
        reason="needs gdbus and busctl to act as the second user",
    ),
]


class Nobody:
    """Calls io.github.Sockbridge1 as uid 65534."""

    def __init__(self, address: str) -> None:
        self.address = address

    async def gdbus(self, method: str, *args: str) -> CmdResult:
        return await run_as(
            NOBODY,
            NOBODY,
            [
                "gdbus",
                "call",
                "--address",
                self.address,
                "--dest",
                BUS_NAME,
                "--object-path",
                OBJECT_PATH,
                "--method",
                f"{INTERFACE}.{method}",
                "--",
                *args,
            ],
        )

    async def expect_error(self, error: str, method: str, *args: str) -> CmdResult:
        result = await self.gdbus(method, *args)
        assert result.returncode != 0, f"{method}{args} as nobody succeeded: {result.stdout}"
        assert result.error_name == error, f"{method}{args} as nobody: {result.stderr}"
        return result

    async def expect_ok(self, method: str, *args: str) -> CmdResult:
        result = await self.gdbus(method, *args)
        assert result.returncode == 0, f"{method}{args} as nobody failed: {result.stderr}"
        return result

    async def busctl_json(self, method: str) -> Any:
        result = await run_as(
            NOBODY,
            NOBODY,
            [
                "busctl",
                f"--address={self.address}",
                "--json=short",
                "call",
                BUS_NAME,
                OBJECT_PATH,
                INTERFACE,
                method,
            ],
        )
        assert result.returncode == 0, f"busctl {method} as nobody failed: {result.stderr}"
        return json.loads(result.stdout)["data"][0]

    async def list_servers(self) -> list[ServerInfo]:
        rows = await self.busctl_json("ListServers")
        return sorted(ServerInfo(r[0], r[1], r[2], bytes(r[3]), r[4]) for r in rows)

    async def list_connections(self) -> list[list[Any]]:
        return list(await self.busctl_json("ListConnections"))


@pytest.fixture
def nobody(bus_address: str) -> Nobody:
    return Nobody(bus_address)


async def root_server_with_client(sb: Client) -> tuple[int, TcpClient]:
    start = sb.rec.mark()
    port = await sb.create_server(0, "\n", False, "root-owned")
    await sb.wait_online(port, start=start)
    mark = sb.rec.mark()
    client = await TcpClient.connect("127.0.0.1", port)
    client.handle = await sb.new_handle(port, mark)
    return port, client


async def test_other_user_cannot_touch_roots_server(sb: Client, nobody: Nobody) -> None:
    port, client = await root_server_with_client(sb)
    before = await sb.list_servers()
    h = str(client.handle)

    r = await nobody.expect_error(ERR_PERMISSION_DENIED, "DestroyServer", str(port))
    assert str(port) in r.stderr
    await nobody.expect_error(ERR_PERMISSION_DENIED, "ServerSend", h, "[120, 0]")
    await nobody.expect_error(ERR_PERMISSION_DENIED, "ServerCloseClient", h)
    # DestroyServer(0) only stops the caller's own servers: none.
    await nobody.expect_ok("DestroyServer", "0")

    await sb.barrier()
    assert await sb.list_servers() == before
    assert not sb.rec.find(server_status(port, "OFFLINE"))
    # Nothing was sent to or closed on root's client.
    await sb.send(client.handle, b"root\n")
    assert await client.read_exactly(5) == b"root\n"
    assert [c.handle for c in await sb.list_connections()] == [client.handle]

    assert await nobody.list_servers() == []
    assert await nobody.list_connections() == []
    await client.close()


async def test_other_user_cannot_use_privileged_port(sb: Client, nobody: Nobody) -> None:
    before = await sb.list_servers()
    await nobody.expect_error(ERR_PERMISSION_DENIED, "CreateServer", "80", "", "false", "www")
    await nobody.expect_error(ERR_PERMISSION_DENIED, "CreateServer", "1023", "", "true", "priv")
    assert await sb.list_servers() == before


async def test_other_user_creates_and_destroys_its_own(sb: Client, nobody: Nobody) -> None:
    root_port, client = await root_server_with_client(sb)
    wanted = free_port()
    start = sb.rec.mark()
    r = await nobody.expect_ok("CreateServer", str(wanted), "", "false", "nobody-srv")
    assert str(wanted) in r.stdout
    await sb.wait_online(wanted, "nobody-srv", start=start)

    # Root sees everything; nobody sees only its own.
    assert [s.port for s in await sb.list_servers()] == sorted([root_port, wanted])
    assert await nobody.list_servers() == [ServerInfo(wanted, False, "nobody-srv", b"", 0)]

    # The same port, same settings, another user: AddressInUse.
    with pytest.raises(DBusError) as exc:
        await sb.create_server(wanted, "", False, "nobody-srv")
    assert exc.value.type == ERR_ADDRESS_IN_USE

    # Its own connections are visible to it, and it may send to them.
    mark = sb.rec.mark()
    theirs = await TcpClient.connect("127.0.0.1", wanted)
    handle = await sb.new_handle(wanted, mark)
    conns = await nobody.list_connections()
    assert conns == [[handle, wanted, False, "nobody-srv", "127.0.0.1", theirs.local_port]]
    await nobody.expect_ok("ServerSend", str(handle), "[104, 105]")
    assert await theirs.read_exactly(2) == b"hi"

    mark = sb.rec.mark()
    await nobody.expect_ok("DestroyServer", str(wanted))
    await sb.wait_offline(wanted, start=mark)
    assert await theirs.read_to_eof() == b""
    assert [s.port for s in await sb.list_servers()] == [root_port]
    await theirs.close()
    await client.close()


async def test_root_may_act_on_other_users_servers(sb: Client, nobody: Nobody) -> None:
    wanted = free_port()
    start = sb.rec.mark()
    await nobody.expect_ok("CreateServer", str(wanted), "", "false", "nobody-srv")
    await sb.wait_online(wanted, start=start)
    mark = sb.rec.mark()
    theirs = await TcpClient.connect("127.0.0.1", wanted)
    handle = await sb.new_handle(wanted, mark)

    await sb.send(handle, b"from root")
    assert await theirs.read_exactly(9) == b"from root"
    assert [c.handle for c in await sb.list_connections()] == [handle]

    mark = sb.rec.mark()
    await sb.destroy_server(wanted)
    await sb.wait_offline(wanted, start=mark)
    assert await sb.list_servers() == []
    await theirs.close()


async def test_other_users_destroy_zero_spares_root(sb: Client, nobody: Nobody) -> None:
    start = sb.rec.mark()
    root_port = await sb.create_server(0, "", False, "root-keep")
    mine = free_port()
    await nobody.expect_ok("CreateServer", str(mine), "", "true", "nobody-udp")
    await sb.wait_online(root_port, start=start)
    await sb.wait_online(mine, start=start)

    mark = sb.rec.mark()
    await nobody.expect_ok("DestroyServer", "0")
    await sb.wait_offline(mine, start=mark)
    await sb.barrier()
    assert not sb.rec.find(server_status(root_port, "OFFLINE"))
    assert [s.port for s in await sb.list_servers()] == [root_port]


async def test_owner_survives_a_restart(
    daemons: DaemonFactory, client: Client, nobody: Nobody, tmp_path: Path
) -> None:
    """The state file keeps who created a server."""
    state = tmp_path / "state.json"
    d1 = await daemons.start(f"--state-file={state}")
    theirs = free_port()
    start = client.rec.mark()
    await nobody.expect_ok("CreateServer", str(theirs), "", "false", "nobody-persist")
    mine = await client.create_server(0, "", False, "root-persist")
    await client.wait_online(theirs, start=start)
    await client.wait_online(mine, start=start)
    assert await d1.stop() == 0

    mark = client.rec.mark()
    await daemons.start(f"--state-file={state}")
    await client.wait_online(theirs, start=mark)
    await client.wait_online(mine, start=mark)
    assert await nobody.list_servers() == [ServerInfo(theirs, False, "nobody-persist", b"", 0)]
    await nobody.expect_error(ERR_PERMISSION_DENIED, "DestroyServer", str(mine))
    await nobody.expect_ok("DestroyServer", str(theirs))
    await client.wait_offline(theirs, start=mark)
    assert [s.port for s in await client.list_servers()] == [mine]


async def test_roots_destroy_zero_stops_only_roots_servers(sb: Client, nobody: Nobody) -> None:
    """DestroyServer(0) names no port: for root too, it stops only root's own servers."""
    theirs = free_port()
    start = sb.rec.mark()
    await nobody.expect_ok("CreateServer", str(theirs), "", "false", "nobody-all")
    mine = await sb.create_server(0, "", True, "root-all")
    await sb.wait_online(theirs, start=start)
    await sb.wait_online(mine, start=start)

    mark = sb.rec.mark()
    await sb.destroy_server(0)
    await sb.wait_offline(mine, start=mark)
    await sb.barrier()
    assert not sb.rec.find(server_status(theirs, "OFFLINE"), mark)
    assert [s.port for s in await sb.list_servers()] == [theirs]
    assert await nobody.list_servers() == [ServerInfo(theirs, False, "nobody-all", b"", 0)]
