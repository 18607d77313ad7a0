# SPDX-License-Identifier: LGPL-2.1-or-later
"""The allow-from option: peers it does not name are turned away unseen."""

import asyncio
import contextlib
import re
from typing import Any

from dbus_fast.errors import DBusError
import pytest

from sbharness import (
    ERR_INVALID_ARGUMENT,
    HAVE_IPV6,
    NO_IPV6_REASON,
    Client,
    Daemon,
    TcpClient,
    UdpPeer,
    bound,
    conn_status,
    data_in,
)

# The daemon's line for a peer turned away.
LOG_LINE = re.compile(r"port (\d+)/(tcp|udp): (closed a connection|dropped a datagram) from ")


async def statistics(sb: Client) -> dict[str, int]:
    body = await sb.call("GetStatistics")
    return {str(k): int(v) for k, v in body[0].items()}


async def connect_from(source: str, port: int) -> TcpClient:
    """A TCP client bound to source (any loopback address) before it connects."""
    host = "::1" if ":" in source else "127.0.0.1"
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, local_addr=(source, 0)), bound(10)
    )
    return TcpClient(reader, writer, int(writer.get_extra_info("sockname")[1]))


async def turned_away(client: TcpClient) -> None:
    """The daemon closes the connection without a word."""
    with contextlib.suppress(ConnectionResetError):
        assert await client.read_to_eof() == b""
    await client.close()


async def admitted(sb: Client, source: str, port: int) -> TcpClient:
    """A client from source that becomes a connection and is served."""
    mark = sb.rec.mark()
    client = await connect_from(source, port)
    client.handle = await sb.new_handle(port, mark)
    await client.send(b"ping\n")
    sig = await sb.rec.wait_for(data_in(handle=client.handle), start=mark)
    assert sig.body[1:3] == [b"ping\n", source]
    return client


def no_connection_signals(sb: Client, port: int, start: int) -> None:
    assert not sb.rec.find(conn_status(port=port), start), sb.rec.dump()


async def test_tcp_from_elsewhere_is_closed_unseen(sb: Client) -> None:
    port = await sb.start_server("\n", False, "allow-tcp", {"allow-from": ["127.0.0.1"]})
    before = await statistics(sb)
    mark = sb.rec.mark()
    for _ in range(3):
        await turned_away(await connect_from("127.0.0.2", port))
    await sb.barrier()
    no_connection_signals(sb, port, mark)
    assert await sb.list_connections() == []

    good = await admitted(sb, "127.0.0.1", port)
    after = await statistics(sb)
    assert after["connections-denied"] == before["connections-denied"] + 3
    assert after["connections-accepted"] == before["connections-accepted"] + 1
    assert after["connections-refused"] == before["connections-refused"]
    assert after["udp-datagrams-denied"] == before["udp-datagrams-denied"]
    await good.close()


async def test_udp_from_elsewhere_is_dropped_unseen(sb: Client) -> None:
    port = await sb.start_server("", True, "allow-udp", {"allow-from": ["127.0.0.0/31"]})
    stranger = await UdpPeer.open("127.0.0.2")
    friend = await UdpPeer.open("127.0.0.1")
    before = await statistics(sb)
    mark = sb.rec.mark()
    for i in range(5):
        stranger.send(b"let me in %d" % i, "127.0.0.1", port)
    # The friend's datagram is read after the stranger's (one socket, in
    # order): once it arrived, every one of the stranger's was handled.
    friend.send(b"hello", "127.0.0.1", port)
    handle = await sb.new_handle(port, mark)
    sig = await sb.rec.wait_for(data_in(handle=handle), start=mark)
    assert sig.body[1:3] == [b"hello", "127.0.0.1"]
    assert [c.address for c in await sb.list_connections()] == ["127.0.0.1"]
    assert len(sb.rec.find(conn_status(port=port), mark)) == 1

    after = await statistics(sb)
    assert after["udp-datagrams-denied"] == before["udp-datagrams-denied"] + 5
    assert after["connections-denied"] == before["connections-denied"]
    assert after["udp-peers-evicted"] == before["udp-peers-evicted"]
    # Nothing goes back to a stranger either: it has no handle.
    with pytest.raises(TimeoutError):
        await stranger.recv(timeout=0.2)
    stranger.close()
    friend.close()


@pytest.mark.ipv6
@pytest.mark.skipif(not HAVE_IPV6, reason=NO_IPV6_REASON)
@pytest.mark.parametrize(
    ("allow_from", "admitted_sources", "turned_away_sources"),
    [
        (["::1"], ["::1"], ["127.0.0.1", "127.0.0.2"]),
        (["127.0.0.1"], ["127.0.0.1"], ["::1", "127.0.0.2"]),
        # ::/0 is every IPv6 peer; an IPv4 peer of a dual-stack socket
        # arrives mapped (::ffff:127.0.0.1) but is IPv4.
        (["::/0"], ["::1"], ["127.0.0.1"]),
        (["0.0.0.0/0"], ["127.0.0.1", "127.0.0.2"], ["::1"]),
        # An entry in IPv4-mapped form is the IPv4 entry it stands for.
        (["::ffff:127.0.0.2"], ["127.0.0.2"], ["127.0.0.1", "::1"]),
        (["127.0.0.0/8", "::1/128"], ["127.0.0.1", "127.0.0.2", "::1"], []),
    ],
    ids=["v6-host", "v4-host", "all-v6", "all-v4", "mapped-entry", "both"],
)
async def test_families_on_a_dual_stack_server(
    sb: Client, allow_from: list[str], admitted_sources: list[str], turned_away_sources: list[str]
) -> None:
    port = await sb.start_server("\n", False, "dual", {"allow-from": allow_from})
    udp = await sb.create_server(port, "", True, "dual-udp", {"allow-from": allow_from})
    await sb.wait_online(udp, "dual-udp")
    before = await statistics(sb)
    for source in turned_away_sources:
        await turned_away(await connect_from(source, port))
    for source in admitted_sources:
        await (await admitted(sb, source, port)).close()

    # UDP alike: the strangers first, then each admitted source in turn.
    mark = sb.rec.mark()
    peers = []
    for source in turned_away_sources:
        peer = await UdpPeer.open(source)
        peer.send(b"stranger", "::1" if ":" in source else "127.0.0.1", udp)
        peers.append(peer)
    for source in admitted_sources:
        peer = await UdpPeer.open(source)
        peer.send(b"friend", "::1" if ":" in source else "127.0.0.1", udp)
        peers.append(peer)
    online = await sb.rec.wait_count(
        conn_status(port=udp, status="ONLINE"), len(admitted_sources), start=mark
    )
    assert sorted(s.body[3] for s in online) == sorted(admitted_sources)
    after = await statistics(sb)
    assert after["connections-denied"] - before["connections-denied"] == len(turned_away_sources)
    assert after["udp-datagrams-denied"] - before["udp-datagrams-denied"] == len(
        turned_away_sources
    )
    for peer in peers:
        peer.close()


async def test_ipv4_server_and_prefixes(sb: Client) -> None:
    """A server bound to an IPv4 address sees plain IPv4 peers: the same rules."""
    port = await sb.start_server(
        "\n",
        False,
        "v4-only",
        {"bind-address": "0.0.0.0", "allow-from": ["10.0.0.0/8", "127.0.0.2/32"]},
    )
    await turned_away(await connect_from("127.0.0.1", port))
    await turned_away(await connect_from("127.0.0.3", port))
    await (await admitted(sb, "127.0.0.2", port)).close()


async def test_empty_list_admits_everyone(sb: Client) -> None:
    port = await sb.start_server("\n", False, "empty", {"allow-from": []})
    for source in ("127.0.0.1", "127.0.0.2"):
        await (await admitted(sb, source, port)).close()
    body = await sb.call("GetServerOptions", "qb", [port, False])
    assert body[0]["allow-from"].value == []


async def test_options_show_canonical_entries(sb: Client) -> None:
    entries = ["10.0.0.0/8", "0:0::1", "::ffff:192.168.1.0/120", "FE80::/10", "127.0.0.1/32"]
    port = await sb.start_server("", True, "canonical", {"allow-from": entries})
    body = await sb.call("GetServerOptions", "qb", [port, True])
    assert body[0]["allow-from"].signature == "as"
    assert body[0]["allow-from"].value == [
        "10.0.0.0/8",
        "::1",
        "192.168.1.0/24",
        "fe80::/10",
        "127.0.0.1",
    ]
    # The same list in another spelling is the same setting.
    again = await sb.create_server(
        port, "", True, "canonical", {"allow-from": body[0]["allow-from"]}
    )
    assert again == port


INVALID: list[tuple[Any, str]] = [
    (["localhost"], "allow-from entry 'localhost' is not a numeric IPv4 or IPv6 address"),
    (["10.0.0.1", "10.0.0.0/33"], "allow-from entry '10.0.0.0/33' must have a prefix length"),
    (["::/129"], "allow-from entry '::/129' must have a prefix length from 0 to 128"),
    (
        ["192.168.1.5/24"],
        "allow-from entry '192.168.1.5/24' has bits set past its prefix length; "
        "the network is 192.168.1.0/24",
    ),
    ([""], "allow-from entry '' is not a numeric"),
    (["10.0.0.0/"], "allow-from entry '10.0.0.0/' must have a prefix length"),
    (["fe80::1%lo"], "allow-from entry 'fe80::1%lo' is not a numeric"),
    ([f"10.0.{i // 256}.{i % 256}" for i in range(257)], "has 257 entries; at most 256"),
    ("127.0.0.1", "option 'allow-from' must be of type 'as', not 's'"),
]


@pytest.mark.parametrize("use_udp", [False, True], ids=["tcp", "udp"])
@pytest.mark.parametrize(("value", "message"), INVALID, ids=[m[:30] for _, m in INVALID])
async def test_invalid_entries(sb: Client, use_udp: bool, value: Any, message: str) -> None:
    mark = sb.rec.mark()
    with pytest.raises(DBusError) as exc:
        await sb.create_server(0, "", use_udp, "bad", {"allow-from": value})
    assert exc.value.type == ERR_INVALID_ARGUMENT
    assert message in exc.value.text, exc.value.text
    await sb.barrier()
    assert not sb.rec.sb(start=mark)


async def test_turning_away_is_logged_at_most_once_a_minute(sb: Client, daemon: Daemon) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    tcp = await sb.start_server("\n", False, "log-tcp", {"allow-from": ["10.0.0.0/8"]})
    udp = await sb.start_server("", True, "log-udp", {"allow-from": ["10.0.0.0/8"]})
    other = await sb.start_server("\n", False, "log-other", {"allow-from": ["10.0.0.0/8"]})
    before = await statistics(sb)
    stranger = await UdpPeer.open("127.0.0.2")
    for _ in range(20):
        await turned_away(await connect_from("127.0.0.2", tcp))
        stranger.send(b"x", "127.0.0.1", udp)
    await turned_away(await connect_from("127.0.0.2", other))

    # Every datagram was counted before the statistics answer this.
    deadline = loop.time() + bound(10)
    while (await statistics(sb))["udp-datagrams-denied"] < before["udp-datagrams-denied"] + 20:
        assert loop.time() < deadline, "the datagrams were not all counted"
        await asyncio.sleep(0.05)
    elapsed = loop.time() - started
    stranger.close()

    lines: dict[tuple[int, str], list[str]] = {}
    for line in daemon.output().splitlines():
        m = LOG_LINE.search(line)
        if m:
            lines.setdefault((int(m.group(1)), m.group(2)), []).append(line)
    allowed = 1 + int(elapsed // 60)
    for key in ((tcp, "tcp"), (udp, "udp"), (other, "tcp")):
        assert 1 <= len(lines.get(key, [])) <= allowed, (key, lines)
        assert "127.0.0.2, which allow-from does not name" in lines[key][0]
    assert "(1 turned away since the last such message)" in lines[(tcp, "tcp")][0]
