# SPDX-License-Identifier: LGPL-2.1-or-later
"""DestroyServer: ordering of signals, freed ports, port 0, TCP+UDP."""

from dbus_fast.errors import DBusError
import pytest

from sbharness import (
    ERR_NOT_FOUND,
    Client,
    TcpClient,
    UdpPeer,
    conn_status,
    data_in,
    free_port,
    of_handle,
    port_is_free,
    server_status,
)


async def test_destroy_with_connected_clients(sb: Client) -> None:
    start = sb.rec.mark()
    port = await sb.create_server(0, "\n", False, "destroy")
    await sb.wait_online(port, start=start)

    clients: list[TcpClient] = []
    for i in range(3):
        mark = sb.rec.mark()
        c = await TcpClient.connect("127.0.0.1", port)
        c.handle = await sb.new_handle(port, mark)
        # A whole frame, then a partial one, in one write: once the whole
        # frame arrived the daemon holds the partial one.
        await c.send(f"whole {i}\npartial {i}".encode())
        await sb.rec.wait_for(data_in(handle=c.handle), start=mark)
        clients.append(c)

    mark = sb.rec.mark()
    await sb.destroy_server(port)
    srv_off = await sb.wait_offline(port, start=mark)
    assert srv_off.body == [port, "OFFLINE", "destroy"]

    for i, c in enumerate(clients):
        offs = sb.rec.find(conn_status(handle=c.handle, status="OFFLINE"), mark)
        assert len(offs) == 1
        assert offs[0].body == [c.handle, port, "OFFLINE", "127.0.0.1", "destroy"]
        assert offs[0].index < srv_off.index, "a connection went OFFLINE after its server"
        events = sb.rec.find(of_handle(c.handle))
        assert events[-1] == offs[0]
        assert [bytes(e.body[1]) for e in events if e.member == "ServerDataIn"] == [
            f"whole {i}\n".encode(),
            f"partial {i}".encode(),
        ]
    # Nothing of this server after its OFFLINE.
    assert not [
        s
        for s in sb.rec.sb(start=srv_off.index + 1)
        if (s.member == "ServerStatusChanged" and s.body[0] == port)
        or (s.member == "ServerConnectionStatusChanged" and s.body[1] == port)
    ]

    for c in clients:
        assert await c.read_to_eof() == b""
        await c.close()

    assert port_is_free(port, use_udp=False)
    assert await sb.list_servers() == []
    assert await sb.list_connections() == []
    with pytest.raises(ConnectionRefusedError):
        await TcpClient.connect("127.0.0.1", port)


async def test_destroy_zero_stops_every_server_of_the_caller(sb: Client) -> None:
    start = sb.rec.mark()
    ports = [
        await sb.create_server(0, "", False, "all-1"),
        await sb.create_server(0, "\n", False, "all-2"),
        await sb.create_server(0, "", True, "all-3"),
    ]
    for p in ports:
        await sb.wait_online(p, start=start)
    peer = await UdpPeer.open()
    mark = sb.rec.mark()
    peer.send(b"x", "127.0.0.1", ports[2])
    h = await sb.new_handle(ports[2], mark)

    mark = sb.rec.mark()
    await sb.destroy_server(0)
    for p in ports:
        await sb.wait_offline(p, start=mark)
    off = await sb.wait_conn_offline(h, start=mark)
    assert off.index < sb.rec.find(server_status(ports[2], "OFFLINE"), mark)[0].index
    assert await sb.list_servers() == []
    assert port_is_free(ports[0], use_udp=False)
    assert port_is_free(ports[2], use_udp=True)

    # Nothing left to stop: still a success.
    await sb.destroy_server(0)
    peer.close()


async def test_destroy_unserved_port_is_not_found(sb: Client) -> None:
    port = free_port()
    with pytest.raises(DBusError) as exc:
        await sb.destroy_server(port)
    assert exc.value.type == ERR_NOT_FOUND
    assert str(port) in exc.value.text


async def test_destroy_stops_tcp_and_udp_on_the_same_port(sb: Client) -> None:
    start = sb.rec.mark()
    port = await sb.create_server(0, "", False, "both-tcp")
    assert await sb.create_server(port, "", True, "both-udp") == port
    await sb.wait_online(port, "both-tcp", start=start)
    await sb.wait_online(port, "both-udp", start=start)
    assert [(s.port, s.use_udp) for s in await sb.list_servers()] == [
        (port, False),
        (port, True),
    ]

    mark = sb.rec.mark()
    await sb.destroy_server(port)
    await sb.rec.wait_for(server_status(port, "OFFLINE", "both-tcp"), start=mark)
    await sb.rec.wait_for(server_status(port, "OFFLINE", "both-udp"), start=mark)
    assert await sb.list_servers() == []
    assert not await sb.port_in_use(port, False)
    assert not await sb.port_in_use(port, True)
    assert port_is_free(port, use_udp=False)
    assert port_is_free(port, use_udp=True)
