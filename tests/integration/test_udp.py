# SPDX-License-Identifier: LGPL-2.1-or-later
"""UDP servers: peers, handles, datagram framing, replies, peer timeout."""

import asyncio
from typing import Any

from dbus_fast.errors import DBusError
import pytest

from sbharness import (
    ERR_INVALID_ARGUMENT,
    ERR_LIMIT_EXCEEDED,
    HAVE_IPV6,
    NO_IPV6_REASON,
    Client,
    UdpPeer,
    conn_status,
    data_in,
    data_of,
    of_handle,
)


async def start_udp(
    sb: Client, delimiter: str, identifier: str, options: dict[str, Any] | None = None
) -> int:
    return await sb.start_server(delimiter, True, identifier, options)


async def send_and_get_handle(sb: Client, peer: UdpPeer, port: int, data: bytes) -> int:
    """Send one datagram from a new peer and return its new handle."""
    mark = sb.rec.mark()
    peer.send(data, peer.host, port)
    return await sb.new_handle(port, mark)


async def test_udp_peers_handles_and_replies(sb: Client) -> None:
    port = await start_udp(sb, "", "udp")

    a = await UdpPeer.open("127.0.0.1")
    b = await UdpPeer.open("127.0.0.1")

    mark = sb.rec.mark()
    a.send(b"hello", "127.0.0.1", port)
    online = await sb.rec.wait_for(conn_status(port=port, status="ONLINE"), start=mark)
    ha = online.body[0]
    assert ha != 0
    assert online.body == [ha, port, "ONLINE", "127.0.0.1", "udp"]
    first = await sb.rec.wait_for(data_in(handle=ha), start=mark)
    assert first.body == [ha, b"hello", "127.0.0.1", a.local_port, "udp"]
    assert online.index < first.index

    # Same source: same handle, no new ONLINE.
    a.send(b"again\x00\xff", "127.0.0.1", port)
    sigs = await sb.rec.wait_count(data_in(handle=ha), 2, start=mark)
    assert sigs[1].body == [ha, b"again\x00\xff", "127.0.0.1", a.local_port, "udp"]

    # Another source port: another handle.
    hb = await send_and_get_handle(sb, b, port, b"from b")
    assert hb not in (0, ha)
    sig = await sb.rec.wait_for(data_in(handle=hb), start=mark)
    assert sig.body == [hb, b"from b", "127.0.0.1", b.local_port, "udp"]
    assert len(sb.rec.find(conn_status(handle=ha, status="ONLINE"))) == 1

    # ServerSend: one datagram, from the server's own port.
    await sb.send(ha, b"reply\x00\x01")
    data, addr = await a.recv()
    assert data == b"reply\x00\x01"
    assert addr[1] == port
    await sb.send(hb, b"to b")
    data, addr = await b.recv()
    assert (data, addr[1]) == (b"to b", port)
    await sb.send(ha, b"one")
    await sb.send(ha, b"two")
    assert (await a.recv())[0] == b"one"
    assert (await a.recv())[0] == b"two"

    assert sorted(c.handle for c in await sb.list_connections()) == sorted([ha, hb])
    a.close()
    b.close()


async def test_udp_close_client_forgets_peer(sb: Client) -> None:
    port = await start_udp(sb, "", "udp-close")
    peer = await UdpPeer.open("127.0.0.1")
    h1 = await send_and_get_handle(sb, peer, port, b"one")
    await sb.rec.wait_for(data_in(handle=h1))

    await sb.close_client(h1)
    off = await sb.wait_conn_offline(h1)
    assert off.body == [h1, port, "OFFLINE", "127.0.0.1", "udp-close"]
    assert await sb.list_connections() == []

    # Its next datagram makes it a new peer with a new handle.
    h2 = await send_and_get_handle(sb, peer, port, b"two")
    assert h2 not in (0, h1)
    sig = await sb.rec.wait_for(data_in(handle=h2))
    assert sig.body == [h2, b"two", "127.0.0.1", peer.local_port, "udp-close"]
    events = sb.rec.find(of_handle(h1))
    assert events[-1] == off
    peer.close()


async def test_udp_datagram_split_at_delimiter(sb: Client) -> None:
    port = await start_udp(sb, "\n", "udp-delim")
    peer = await UdpPeer.open("127.0.0.1")
    h = await send_and_get_handle(sb, peer, port, b"a\nb\nc")
    sigs = await sb.rec.wait_count(data_in(handle=h), 3)
    assert data_of(sigs) == [b"a\n", b"b\n", b"c"]
    # The rest of a datagram is not joined with the next one.
    peer.send(b"d\n", "127.0.0.1", port)
    peer.send(b"e", "127.0.0.1", port)
    sigs = await sb.rec.wait_count(data_in(handle=h), 5)
    assert data_of(sigs) == [b"a\n", b"b\n", b"c", b"d\n", b"e"]
    for s in sigs:
        assert s.body[2:] == ["127.0.0.1", peer.local_port, "udp-delim"]
    peer.close()


async def test_udp_peer_timeout(sb: Client) -> None:
    port = await start_udp(sb, "", "udp-timeout", {"udp-peer-timeout-ms": 300})
    peer = await UdpPeer.open("127.0.0.1")
    loop = asyncio.get_running_loop()
    sent_at = loop.time()
    h1 = await send_and_get_handle(sb, peer, port, b"ping")
    await sb.rec.wait_for(data_in(handle=h1))
    off = await sb.wait_conn_offline(h1)
    assert off.body == [h1, port, "OFFLINE", "127.0.0.1", "udp-timeout"]
    assert off.time - sent_at >= 0.25

    h2 = await send_and_get_handle(sb, peer, port, b"pong")
    assert h2 not in (0, h1)
    sig = await sb.rec.wait_for(data_in(handle=h2))
    assert sig.body == [h2, b"pong", "127.0.0.1", peer.local_port, "udp-timeout"]
    peer.close()


async def test_udp_peer_timeout_restarts_with_each_datagram(sb: Client) -> None:
    port = await start_udp(sb, "", "udp-keepalive", {"udp-peer-timeout-ms": 2000})
    peer = await UdpPeer.open("127.0.0.1")
    loop = asyncio.get_running_loop()
    h = await send_and_get_handle(sb, peer, port, b"0")
    for i in range(1, 4):
        await asyncio.sleep(0.5)
        peer.send(str(i).encode(), "127.0.0.1", port)
    last_sent = loop.time()
    await sb.rec.wait_count(data_in(handle=h), 4)
    off = await sb.wait_conn_offline(h)
    # Silence is counted from the last datagram, not the first.
    assert off.time - last_sent >= 1.75
    peer.close()


@pytest.mark.ipv6
@pytest.mark.skipif(not HAVE_IPV6, reason=NO_IPV6_REASON)
async def test_udp_ipv6_peer(sb: Client) -> None:
    port = await start_udp(sb, "", "udp6")
    peer = await UdpPeer.open("::1")
    mark = sb.rec.mark()
    peer.send(b"six", "::1", port)
    online = await sb.rec.wait_for(conn_status(port=port, status="ONLINE"), start=mark)
    h = online.body[0]
    assert online.body == [h, port, "ONLINE", "::1", "udp6"]
    sig = await sb.rec.wait_for(data_in(handle=h), start=mark)
    assert sig.body == [h, b"six", "::1", peer.local_port, "udp6"]
    await sb.send(h, b"back")
    data, addr = await peer.recv()
    assert (data, addr[1]) == (b"back", port)
    peer.close()


async def test_udp_server_destroy_takes_peers_offline(sb: Client) -> None:
    port = await start_udp(sb, "", "udp-destroy")
    peers = [await UdpPeer.open("127.0.0.1") for _ in range(2)]
    handles = [await send_and_get_handle(sb, p, port, b"x") for p in peers]
    mark = sb.rec.mark()
    await sb.destroy_server(port)
    srv_off = await sb.wait_offline(port, start=mark)
    for h in handles:
        off = sb.rec.find(conn_status(handle=h, status="OFFLINE"), mark)
        assert len(off) == 1, f"handle {h} went OFFLINE {len(off)} times"
        assert off[0].index < srv_off.index
    for p in peers:
        p.close()


async def test_udp_send_largest_datagram_and_one_more(sb: Client) -> None:
    port = await start_udp(sb, "", "udp-big")
    peer = await UdpPeer.open("127.0.0.1")
    h = await send_and_get_handle(sb, peer, port, b"hi")

    biggest = bytes(range(256)) * (65507 // 256) + b"\x00" * (65507 % 256)
    assert len(biggest) == 65507
    await sb.send(h, biggest)
    data, addr = await peer.recv()
    assert (data, addr[1]) == (biggest, port)

    with pytest.raises(DBusError) as exc:
        await sb.send(h, biggest + b"!")
    assert exc.value.type in (ERR_INVALID_ARGUMENT, ERR_LIMIT_EXCEEDED)
    assert "65507" in exc.value.text, exc.value.text

    # The peer still works, and nothing of the refused datagram was sent.
    await sb.send(h, b"small")
    data, _ = await peer.recv()
    assert data == b"small"
    peer.close()
