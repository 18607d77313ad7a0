# SPDX-License-Identifier: LGPL-2.1-or-later
"""Creating what the same user already serves with the same settings."""

from typing import Any

import pytest

from sbharness import Client, ServerInfo, TcpClient, conn_status, free_port, server_status


@pytest.mark.parametrize(
    ("use_udp", "options"),
    [
        (False, None),
        (True, None),
        (False, {"flush-timeout-ms": 250, "max-connections": 7, "delimiter-bytes": b"\x03"}),
    ],
    ids=["tcp", "udp", "tcp-with-options"],
)
async def test_idempotent_create(sb: Client, use_udp: bool, options: dict[str, Any] | None) -> None:
    wanted = free_port(use_udp)
    start = sb.rec.mark()
    port = await sb.create_server(wanted, "\n", use_udp, "idem", options)
    assert port == wanted
    await sb.wait_online(port, start=start)
    before = await sb.list_servers()

    for _ in range(3):
        assert await sb.create_server(wanted, "\n", use_udp, "idem", options) == wanted

    # Every signal the daemon emitted for those calls has arrived after this.
    await sb.barrier()
    assert len(sb.rec.find(server_status(port, "ONLINE"), start)) == 1
    assert not sb.rec.find(server_status(port, "OFFLINE"), start)
    servers = await sb.list_servers()
    assert servers == before
    assert len([s for s in servers if s.port == port]) == 1
    delimiter = options["delimiter-bytes"] if options else b"\n"
    assert servers == [ServerInfo(port, use_udp, "idem", delimiter, 0)]


async def test_idempotent_create_keeps_connections(sb: Client) -> None:
    start = sb.rec.mark()
    port = await sb.create_server(0, "\n", False, "idem-conn")
    await sb.wait_online(port, start=start)
    mark = sb.rec.mark()
    client = await TcpClient.connect("127.0.0.1", port)
    handle = await sb.new_handle(port, mark)

    assert await sb.create_server(port, "\n", False, "idem-conn") == port
    await sb.barrier()
    assert not sb.rec.find(conn_status(handle=handle, status="OFFLINE"), mark)
    await sb.send(handle, b"still\n")
    assert await client.read_exactly(6) == b"still\n"
    assert [s.connections for s in await sb.list_servers()] == [1]
    await client.close()
