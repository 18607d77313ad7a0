# SPDX-License-Identifier: LGPL-2.1-or-later
"""CreateServer, the Version property, ListServers and ListConnections."""

import asyncio
from pathlib import Path
import re
import socket

import pytest

from sbharness import (
    HAVE_IPV6,
    NO_IPV6_REASON,
    REPO_ROOT,
    Client,
    ConnInfo,
    ServerInfo,
    TcpClient,
    UdpPeer,
    bound,
    conn_status,
    free_port,
    server_status,
)


async def test_create_port_zero_binds_ephemeral_port(sb: Client) -> None:
    start = sb.rec.mark()
    port = await sb.create_server(0, "", False, "ephemeral")
    assert 0 < port <= 65535

    online = await sb.wait_online(port, start=start)
    assert online.body == [port, "ONLINE", "ephemeral"]
    assert len(sb.rec.find(server_status(port, "ONLINE"), start)) == 1

    client = await TcpClient.connect("127.0.0.1", port)
    await client.close()
    if HAVE_IPV6:
        # Default: all interfaces, IPv4 and IPv6.
        client6 = await TcpClient.connect("::1", port)
        await client6.close()


async def test_create_requested_port(sb: Client) -> None:
    wanted = free_port()
    start = sb.rec.mark()
    port = await sb.create_server(wanted, "\n", False, "fixed")
    assert port == wanted
    assert (await sb.wait_online(port, start=start)).body == [wanted, "ONLINE", "fixed"]
    client = await TcpClient.connect("127.0.0.1", wanted)
    await client.close()


async def test_create_udp_port_zero(sb: Client) -> None:
    start = sb.rec.mark()
    port = await sb.create_server(0, "", True, "udp-ephemeral")
    assert 0 < port <= 65535
    assert (await sb.wait_online(port, start=start)).body == [port, "ONLINE", "udp-ephemeral"]
    # The port is taken for UDP.
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s,
        pytest.raises(OSError, match="in use"),
    ):
        s.bind(("127.0.0.1", port))


async def test_version_property_matches_command_line(sb: Client, sockbridged_binary: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        str(sockbridged_binary),
        "--version",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), bound(10))
    assert proc.returncode == 0, err
    m = re.fullmatch(r"sockbridged (\d+\.\d+\.\d+\S*)\n?", out.decode())
    assert m, f"--version printed {out!r}"
    assert await sb.version() == m.group(1)
    # ...which is the project's version.
    meson_build = await asyncio.to_thread((REPO_ROOT / "meson.build").read_text)
    project = re.search(r"project\([^)]*?version:\s*'([^']+)'", meson_build, re.DOTALL)
    assert project, "no version in meson.build"
    assert m.group(1) == project.group(1)


async def test_list_servers_content_and_connection_count(sb: Client) -> None:
    assert await sb.list_servers() == []

    start = sb.rec.mark()
    tcp = await sb.create_server(0, "\r\n", False, "list-tcp")
    udp = await sb.create_server(
        0, "ignored", True, "list-udp", {"delimiter-bytes": b"\x00\xff\x03"}
    )
    plain = await sb.create_server(0, "", False, "list-plain")
    for p in (tcp, udp, plain):
        await sb.wait_online(p, start=start)

    assert await sb.list_servers() == sorted(
        [
            ServerInfo(tcp, False, "list-tcp", b"\r\n", 0),
            ServerInfo(udp, True, "list-udp", b"\x00\xff\x03", 0),
            ServerInfo(plain, False, "list-plain", b"", 0),
        ]
    )

    mark = sb.rec.mark()
    client = await TcpClient.connect("127.0.0.1", tcp)
    handle = await sb.new_handle(tcp, mark)
    servers = {s.port: s for s in await sb.list_servers()}
    assert servers[tcp].connections == 1
    assert servers[udp].connections == 0

    await client.close()
    await sb.wait_conn_offline(handle, start=mark)
    servers = {s.port: s for s in await sb.list_servers()}
    assert servers[tcp].connections == 0


async def test_list_connections_content(sb: Client) -> None:
    assert await sb.list_connections() == []

    start = sb.rec.mark()
    tcp = await sb.create_server(0, "\n", False, "conns-tcp")
    udp = await sb.create_server(0, "", True, "conns-udp")
    await sb.wait_online(tcp, start=start)
    await sb.wait_online(udp, start=start)

    expected: list[ConnInfo] = []

    mark = sb.rec.mark()
    c4 = await TcpClient.connect("127.0.0.1", tcp)
    h4 = await sb.new_handle(tcp, mark)
    expected.append(ConnInfo(h4, tcp, False, "conns-tcp", "127.0.0.1", c4.local_port))

    clients = [c4]
    if HAVE_IPV6:
        mark = sb.rec.mark()
        c6 = await TcpClient.connect("::1", tcp)
        h6 = await sb.new_handle(tcp, mark)
        expected.append(ConnInfo(h6, tcp, False, "conns-tcp", "::1", c6.local_port))
        clients.append(c6)

    mark = sb.rec.mark()
    peer = await UdpPeer.open("127.0.0.1")
    peer.send(b"hi", "127.0.0.1", udp)
    hu = await sb.new_handle(udp, mark)
    expected.append(ConnInfo(hu, udp, True, "conns-udp", "127.0.0.1", peer.local_port))

    handles = [e.handle for e in expected]
    assert all(h != 0 for h in handles)
    assert len(set(handles)) == len(handles)
    assert await sb.list_connections() == sorted(expected)

    mark = sb.rec.mark()
    await c4.close()
    await sb.wait_conn_offline(h4, start=mark)
    assert h4 not in [c.handle for c in await sb.list_connections()]

    for c in clients[1:]:
        await c.close()
    peer.close()


async def test_connection_online_signal_arguments(sb: Client) -> None:
    start = sb.rec.mark()
    port = await sb.create_server(0, "", False, "sig-args")
    await sb.wait_online(port, start=start)

    mark = sb.rec.mark()
    client = await TcpClient.connect("127.0.0.1", port)
    sig = await sb.rec.wait_for(conn_status(port=port, status="ONLINE"), start=mark)
    handle, sport, status, address, ident = sig.body
    assert handle != 0
    assert (sport, status, address, ident) == (port, "ONLINE", "127.0.0.1", "sig-args")
    # ServerStatusChanged ONLINE came before any connection signal.
    online = sb.rec.find(server_status(port, "ONLINE"), start)[0]
    assert online.index < sig.index
    await client.close()
    off = await sb.wait_conn_offline(handle, start=mark)
    assert off.body == [handle, port, "OFFLINE", "127.0.0.1", "sig-args"]


@pytest.mark.ipv6
@pytest.mark.skipif(not HAVE_IPV6, reason=NO_IPV6_REASON)
async def test_ipv6_client_address(sb: Client) -> None:
    start = sb.rec.mark()
    port = await sb.create_server(0, "", False, "v6")
    await sb.wait_online(port, start=start)
    mark = sb.rec.mark()
    client = await TcpClient.connect("::1", port)
    sig = await sb.rec.wait_for(conn_status(port=port, status="ONLINE"), start=mark)
    assert sig.body[1:] == [port, "ONLINE", "::1", "v6"]
    await client.send(b"x")
    data = await sb.rec.wait_for(
        lambda s: s.member == "ServerDataIn" and s.body[0] == sig.body[0], start=mark
    )
    assert data.body == [sig.body[0], b"x", "::1", client.local_port, "v6"]
    await client.close()
