# SPDX-License-Identifier: LGPL-2.1-or-later
"""Many TCP clients at once: complete, ordered frames per handle."""

import asyncio
import random

from sbharness import Client, TcpClient, bound, conn_status, data_in, of_handle

N_CLIENTS = 50
N_FRAMES = 100


def frames_of(client_no: int) -> list[bytes]:
    return [
        f"client {client_no:02d} frame {j:03d} {'x' * (j % 17)}\r\n".encode()
        for j in range(N_FRAMES)
    ]


async def run_client(port: int, client_no: int) -> int:
    """Connect, send every frame in randomly sized writes, close; return the local port."""
    rng = random.Random(client_no)
    client = await TcpClient.connect("127.0.0.1", port, timeout=30)
    payload = b"".join(frames_of(client_no))
    pos = 0
    while pos < len(payload):
        size = rng.randint(1, 600)
        client.writer.write(payload[pos : pos + size])
        pos += size
        if rng.random() < 0.3:
            await client.writer.drain()
            await asyncio.sleep(0)
    await client.writer.drain()
    await client.close()
    return client.local_port


async def test_fifty_clients_hundred_frames_each(sb: Client) -> None:
    start = sb.rec.mark()
    port = await sb.create_server(0, "\r\n", False, "crowd", {"flush-timeout-ms": 0})
    await sb.wait_online(port, start=start)

    local_ports = await asyncio.wait_for(
        asyncio.gather(*(run_client(port, i) for i in range(N_CLIENTS))), bound(60)
    )
    client_of_port = {p: i for i, p in enumerate(local_ports)}

    offline = await sb.rec.wait_count(
        conn_status(port=port, status="OFFLINE"),
        N_CLIENTS,
        timeout=60,
        start=start,
        what="connection OFFLINE",
    )
    online = sb.rec.find(conn_status(port=port, status="ONLINE"), start)
    handles = [s.body[0] for s in online]
    assert len(handles) == N_CLIENTS
    assert len(set(handles)) == N_CLIENTS
    assert 0 not in handles
    assert sorted(s.body[0] for s in offline) == sorted(handles)

    seen_clients: set[int] = set()
    for h in handles:
        events = sb.rec.find(of_handle(h), start)
        assert events[0].member == "ServerConnectionStatusChanged"
        assert events[0].body[2] == "ONLINE"
        assert events[-1].member == "ServerConnectionStatusChanged"
        assert events[-1].body[2] == "OFFLINE"
        middle = events[1:-1]
        assert all(e.member == "ServerDataIn" for e in middle), f"handle {h}: {middle}"
        remote_ports = {e.body[3] for e in middle}
        assert len(remote_ports) == 1, f"handle {h} data from several ports {remote_ports}"
        client_no = client_of_port[remote_ports.pop()]
        seen_clients.add(client_no)
        got = [bytes(e.body[1]) for e in middle]
        assert got == frames_of(client_no), f"handle {h} (client {client_no}) frames differ"
        for e in middle:
            assert e.body[2] == "127.0.0.1"
            assert e.body[4] == "crowd"
    assert seen_clients == set(range(N_CLIENTS))
    assert len(sb.rec.find(data_in(), start)) == N_CLIENTS * N_FRAMES

    servers = await sb.list_servers()
    assert [(s.port, s.connections) for s in servers] == [(port, 0)]
