# SPDX-License-Identifier: LGPL-2.1-or-later
"""The batch option: several frames per ServerDataInBatch signal."""

import asyncio
import json
from pathlib import Path
import time
from typing import Any

from dbus_fast.errors import DBusError
import pytest

from sbharness import (
    ERR_ADDRESS_IN_USE,
    ERR_INVALID_ARGUMENT,
    INTERFACE,
    Client,
    DaemonFactory,
    Signal,
    TcpClient,
    UdpPeer,
    conn_status,
    connect_tcp,
    data_in,
)

MAX_FRAMES = 4096
MAX_BYTES = 256 * 1024

Frame = tuple[int, bytes, str, int]


def batches(sb: Client, identifier: str, start: int = 0) -> list[Signal]:
    return [
        s
        for s in sb.rec.sb("ServerDataInBatch", start)
        if s.interface == INTERFACE and s.body[1] == identifier
    ]


def frames_of(signals: list[Signal], handle: int | None = None) -> list[Frame]:
    return [
        (f[0], bytes(f[1]), f[2], f[3])
        for s in signals
        for f in s.body[0]
        if handle is None or f[0] == handle
    ]


async def wait_frames(
    sb: Client, identifier: str, handle: int, count: int, start: int = 0
) -> list[Frame]:
    found: list[Frame] = []

    def condition() -> bool:
        found[:] = frames_of(batches(sb, identifier, start), handle)
        return len(found) >= count

    await sb.rec.wait_until(condition, what=f"{count} batched frames of handle {handle}")
    return found


async def start_server(
    sb: Client, identifier: str, use_udp: bool = False, options: dict[str, Any] | None = None
) -> int:
    return await sb.start_server("\n", use_udp, identifier, {"batch": True, **(options or {})})


async def test_batch_carries_every_frame_in_order(sb: Client) -> None:
    port = await start_server(sb, "batched")
    a = await connect_tcp(sb, port)
    b = await connect_tcp(sb, port)
    mark = sb.rec.mark()
    lines_a = [f"a{i}\n".encode() for i in range(200)]
    lines_b = [f"b{i}\n".encode() for i in range(50)]
    await a.send(b"".join(lines_a))
    await b.send(b"".join(lines_b))

    got_a = await wait_frames(sb, "batched", a.handle, 200, mark)
    got_b = await wait_frames(sb, "batched", b.handle, 50, mark)
    assert got_a == [(a.handle, line, "127.0.0.1", a.local_port) for line in lines_a]
    assert got_b == [(b.handle, line, "127.0.0.1", b.local_port) for line in lines_b]
    # Several frames per signal, and no ServerDataIn at all.
    assert max(len(s.body[0]) for s in batches(sb, "batched", mark)) > 1
    assert not sb.rec.find(data_in(handle=a.handle)) + sb.rec.find(data_in(handle=b.handle))
    await a.close()
    await b.close()


async def test_batch_bounds(sb: Client) -> None:
    port = await start_server(sb, "bounds", options={"max-message-bytes": 100_000})
    client = await connect_tcp(sb, port)
    mark = sb.rec.mark()
    # More small frames than a batch holds, then more bytes than it holds.
    small = [f"{i:05}\n".encode() for i in range(MAX_FRAMES + 1000)]
    await client.send(b"".join(small))
    assert [f[1] for f in await wait_frames(sb, "bounds", client.handle, len(small), mark)] == small

    big = [bytes([65 + i]) * 39_999 + b"\n" for i in range(8)]
    mark2 = sb.rec.mark()
    await client.send(b"".join(big))
    assert [f[1] for f in await wait_frames(sb, "bounds", client.handle, 8, mark2)] == big

    for s in batches(sb, "bounds", mark):
        sizes = [len(f[1]) for f in s.body[0]]
        assert 1 <= len(sizes) <= MAX_FRAMES
        # Full at 256 KiB: only the frame that filled it may pass the bound.
        assert sum(sizes) - sizes[-1] < MAX_BYTES
    await client.close()


async def test_batch_data_before_offline(sb: Client) -> None:
    port = await start_server(sb, "order")
    client = await connect_tcp(sb, port)
    mark = sb.rec.mark()
    # Whole lines and a partial one that only the close delivers.
    await client.send(b"one\ntwo\nthree")
    await client.close()
    off = await sb.wait_conn_offline(client.handle, start=mark)

    signals = batches(sb, "order", mark)
    assert frames_of(signals, client.handle) == [
        (client.handle, data, "127.0.0.1", client.local_port)
        for data in (b"one\n", b"two\n", b"three")
    ]
    assert all(s.index < off.index for s in signals)
    online = sb.rec.find(conn_status(handle=client.handle, status="ONLINE"))
    assert all(online[0].index < s.index for s in signals)


async def test_batch_udp(sb: Client) -> None:
    port = await start_server(sb, "udp-batch", use_udp=True)
    peer = await UdpPeer.open("127.0.0.1")
    mark = sb.rec.mark()
    for i in range(20):
        peer.send(f"d{i}\nrest{i}".encode(), "127.0.0.1", port)
    handle = await sb.new_handle(port, mark)
    got = await wait_frames(sb, "udp-batch", handle, 40, mark)
    expected = [d for i in range(20) for d in (f"d{i}\n".encode(), f"rest{i}".encode())]
    assert got == [(handle, d, "127.0.0.1", peer.local_port) for d in expected]
    assert not sb.rec.find(data_in(handle=handle))
    peer.close()


async def test_batch_trickle_shares_signals(sb: Client) -> None:
    """Datagrams that trickle in, each read on its own, still share signals.

    A batch leaves no sooner than 0.5 ms after the server's previous one:
    200 datagrams 100 µs apart make far fewer signals than datagrams (one
    each if every batch left at once), none lost, in order.
    """
    port = await start_server(sb, "trickle", use_udp=True)
    peer = await UdpPeer.open("127.0.0.1")
    mark = sb.rec.mark()
    count = 200
    for i in range(count):
        peer.send(f"t{i}\n".encode(), "127.0.0.1", port)
        # Blocking on purpose: asyncio's sleep would leave gaps of a
        # millisecond, longer than the interval; the signals wait in the
        # socket meanwhile.
        time.sleep(0.0001)  # noqa: ASYNC251 - deliberate, see above
    handle = await sb.new_handle(port, mark)
    got = await wait_frames(sb, "trickle", handle, count, mark)
    assert [f[1] for f in got] == [f"t{i}\n".encode() for i in range(count)]
    signals = batches(sb, "trickle", mark)
    assert len(signals) < count / 2, f"{len(signals)} signals for {count} datagrams"
    peer.close()


async def test_batch_is_a_setting(sb: Client) -> None:
    port = await start_server(sb, "setting")
    assert await sb.create_server(port, "\n", False, "setting", {"batch": True}) == port
    for options in (None, {"batch": False}):
        with pytest.raises(DBusError) as exc:
            await sb.create_server(port, "\n", False, "setting", options)
        assert exc.value.type == ERR_ADDRESS_IN_USE
    # Without the option a server keeps one ServerDataIn per frame.
    plain = await sb.create_server(0, "\n", False, "plain", {"batch": False})
    mark = sb.rec.mark()
    client = await TcpClient.connect("127.0.0.1", plain)
    handle = await sb.new_handle(plain, mark)
    await client.send(b"x\ny\n")
    await sb.rec.wait_count(data_in(handle=handle), 2, start=mark)
    assert not batches(sb, "plain")
    await client.close()


async def test_batch_wrong_type(sb: Client) -> None:
    before = await sb.list_servers()
    with pytest.raises(DBusError) as exc:
        await sb.create_server(0, "\n", False, "bad", {"batch": 1})
    assert exc.value.type == ERR_INVALID_ARGUMENT
    assert "'batch'" in exc.value.text
    assert await sb.list_servers() == before


async def test_batch_survives_restart(
    daemons: DaemonFactory, client: Client, tmp_path: Path
) -> None:
    sb = client
    state = tmp_path / "state.json"
    d1 = await daemons.start(f"--state-file={state}")
    port = await start_server(sb, "kept")
    assert await d1.stop() == 0
    saved = json.loads(await asyncio.to_thread(state.read_text))
    assert [s.get("batch") for s in saved["servers"]] == [True]

    mark = sb.rec.mark()
    await daemons.start(f"--state-file={state}")
    await sb.wait_online(port, start=mark)
    c = await connect_tcp(sb, port)
    mark = sb.rec.mark()
    await c.send(b"p\nq\n")
    assert [f[1] for f in await wait_frames(sb, "kept", c.handle, 2, mark)] == [b"p\n", b"q\n"]
    await c.close()
