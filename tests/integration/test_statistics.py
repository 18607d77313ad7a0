# SPDX-License-Identifier: LGPL-2.1-or-later
"""GetStatistics: daemon-wide counters."""

from sbharness import Client, TcpClient, UdpPeer, data_in

DOCUMENTED = {
    "connections-accepted",
    "connections-refused",
    "udp-peers-evicted",
    "udp-datagrams-dropped",
    "frames-in",
    "bytes-in",
    "bytes-out",
    "clients",
    "servers",
    "bus-backlog-bytes",
    "bus-stalls",
}


async def statistics(sb: Client) -> dict[str, int]:
    body = await sb.call("GetStatistics")
    stats = body[0]
    assert isinstance(stats, dict)
    assert all(isinstance(v, int) and v >= 0 for v in stats.values())
    return {str(k): int(v) for k, v in stats.items()}


async def test_statistics_count_what_happens(sb: Client) -> None:
    before = await statistics(sb)
    assert set(before) >= DOCUMENTED, f"missing keys: {DOCUMENTED - set(before)}"
    assert before["clients"] == 0
    assert before["servers"] == 0

    start = sb.rec.mark()
    tcp = await sb.create_server(0, "\n", False, "stats", {"max-connections": 1})
    udp = await sb.create_server(0, "", True, "stats-udp")
    await sb.wait_online(tcp, start=start)
    await sb.wait_online(udp, start=start)

    mark = sb.rec.mark()
    client = await TcpClient.connect("127.0.0.1", tcp)
    handle = await sb.new_handle(tcp, mark)
    await client.send(b"one\ntwo\n")
    await sb.rec.wait_count(data_in(handle=handle), 2, start=mark)
    await sb.send(handle, b"12345")
    assert await client.read_exactly(5) == b"12345"

    # Over max-connections: accepted and closed at once, counted as refused.
    extra = await TcpClient.connect("127.0.0.1", tcp)
    assert await extra.read_to_eof() == b""
    await extra.close()

    peer = await UdpPeer.open()
    mark = sb.rec.mark()
    peer.send(b"dgram", "127.0.0.1", udp)
    hu = await sb.new_handle(udp, mark)
    await sb.rec.wait_for(data_in(handle=hu), start=mark)

    now = await statistics(sb)
    assert now["servers"] == 2
    assert now["clients"] == 2
    assert now["connections-accepted"] == before["connections-accepted"] + 1
    assert now["connections-refused"] >= before["connections-refused"] + 1
    assert now["frames-in"] == before["frames-in"] + 3
    assert now["bytes-in"] == before["bytes-in"] + len(b"one\ntwo\n") + len(b"dgram")
    assert now["bytes-out"] == before["bytes-out"] + 5

    await client.close()
    peer.close()
    mark = sb.rec.mark()
    await sb.destroy_server(0)
    await sb.wait_offline(tcp, start=mark)
    await sb.wait_offline(udp, start=mark)
    after = await statistics(sb)
    assert after["servers"] == 0
    assert after["clients"] == 0
