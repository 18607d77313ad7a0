# SPDX-License-Identifier: LGPL-2.1-or-later
"""TCP servers: framing with and without a delimiter, flush timeout, limits."""

import asyncio
import os
from typing import Any

from sbharness import (
    Client,
    Signal,
    TcpClient,
    conn_status,
    connect_tcp,
    data_in,
    data_of,
    of_handle,
)

# A pause between two writes so that the daemon reads them separately. Only
# correctness is asserted, never timing, so a longer pause is harmless.
SPLIT_PAUSE = 0.1


async def start_tcp(
    sb: Client, delimiter: str, identifier: str, options: dict[str, Any] | None = None
) -> int:
    return await sb.start_server(delimiter, False, identifier, options)


def handle_events(sb: Client, handle: int) -> list[Signal]:
    return sb.rec.find(of_handle(handle))


async def wait_frames(sb: Client, handle: int, count: int) -> list[bytes]:
    sigs = await sb.rec.wait_count(data_in(handle=handle), count, what=f"ServerDataIn of {handle}")
    return data_of(sigs)


async def test_delimited_frames_one_per_signal(sb: Client) -> None:
    port = await start_tcp(sb, "\r\n", "crlf")
    client = await connect_tcp(sb, port)

    await client.send(b"hello\r\nworld\r\n")
    frames = await wait_frames(sb, client.handle, 2)
    assert frames == [b"hello\r\n", b"world\r\n"]

    sigs = sb.rec.find(data_in(handle=client.handle))
    for s in sigs:
        assert s.body[2:] == ["127.0.0.1", client.local_port, "crlf"]

    events = handle_events(sb, client.handle)
    assert events[0].member == "ServerConnectionStatusChanged"
    assert events[0].body == [client.handle, port, "ONLINE", "127.0.0.1", "crlf"]
    assert all(e.member == "ServerDataIn" for e in events[1:])

    await client.close()
    off = await sb.wait_conn_offline(client.handle)
    assert off.body == [client.handle, port, "OFFLINE", "127.0.0.1", "crlf"]
    # Nothing after OFFLINE, and no stray data.
    assert handle_events(sb, client.handle)[-1] == off
    assert data_of(handle_events(sb, client.handle)) == [b"hello\r\n", b"world\r\n"]


async def test_many_frames_in_one_write(sb: Client) -> None:
    port = await start_tcp(sb, "\n", "many")
    client = await connect_tcp(sb, port)
    expected = [f"line {i}\n".encode() for i in range(200)]
    await client.send(b"".join(expected))
    assert await wait_frames(sb, client.handle, 200) == expected
    await client.close()


async def test_delimiter_split_across_writes(sb: Client) -> None:
    # flush-timeout-ms 0 (never): a slow machine cannot turn the pause into a flush.
    port = await start_tcp(sb, "\r\n", "split", {"flush-timeout-ms": 0})
    client = await connect_tcp(sb, port)

    await client.send(b"first\r")
    await asyncio.sleep(SPLIT_PAUSE)
    await client.send(b"\nsecond")
    await asyncio.sleep(SPLIT_PAUSE)
    await client.send(b"-part\r")
    await asyncio.sleep(SPLIT_PAUSE)
    await client.send(b"\n")
    for byte in b"bytewise\r\n":
        await client.send(bytes([byte]))
    frames = await wait_frames(sb, client.handle, 3)
    assert frames == [b"first\r\n", b"second-part\r\n", b"bytewise\r\n"]
    await client.close()
    await sb.wait_conn_offline(client.handle)
    assert data_of(handle_events(sb, client.handle)) == frames


async def test_binary_delimiter_bytes_option(sb: Client) -> None:
    # delimiter-bytes overrides the text delimiter.
    port = await start_tcp(
        sb, "\r\n", "binary", {"delimiter-bytes": b"\x00\xff", "flush-timeout-ms": 0}
    )
    client = await connect_tcp(sb, port)

    await client.send(b"a\r\nb\x00\xffc\x00")
    await asyncio.sleep(SPLIT_PAUSE)
    await client.send(b"\xffd\xff\x00")
    frames = await wait_frames(sb, client.handle, 2)
    assert frames == [b"a\r\nb\x00\xff", b"c\x00\xff"]

    await client.close()  # "d\xff\x00" is a partial frame, delivered on close
    off = await sb.wait_conn_offline(client.handle)
    events = handle_events(sb, client.handle)
    assert data_of(events) == [b"a\r\nb\x00\xff", b"c\x00\xff", b"d\xff\x00"]
    assert events[-1] == off


async def test_empty_delimiter_bytes_means_no_delimiter(sb: Client) -> None:
    # An empty delimiter-bytes overrides the text delimiter: no framing.
    # flush-timeout-ms 0: were "\n" still in use, "y" would never come.
    port = await start_tcp(sb, "\n", "empty-bin", {"delimiter-bytes": b"", "flush-timeout-ms": 0})
    assert [s.delimiter for s in await sb.list_servers()] == [b""]
    client = await connect_tcp(sb, port)
    await client.send(b"x\ny")

    def received() -> bytes:
        return b"".join(data_of(sb.rec.find(data_in(handle=client.handle))))

    await sb.rec.wait_until(lambda: received() == b"x\ny", what="x\\ny as it arrived")
    await client.close()


async def test_partial_frame_delivered_on_close_before_offline(sb: Client) -> None:
    port = await start_tcp(sb, "\r\n", "partial")
    client = await connect_tcp(sb, port)
    await client.send(b"frame\r\npartial")
    await wait_frames(sb, client.handle, 1)
    await client.close()
    off = await sb.wait_conn_offline(client.handle)
    events = handle_events(sb, client.handle)
    assert [e.body[2] if e.member != "ServerDataIn" else e.body[1] for e in events] == [
        "ONLINE",
        b"frame\r\n",
        b"partial",
        "OFFLINE",
    ]
    assert events[-1] == off


async def test_no_delimiter_delivers_bytes_as_they_arrive(sb: Client) -> None:
    port = await start_tcp(sb, "", "raw")
    client = await connect_tcp(sb, port)
    payload = os.urandom(256 * 1024) + b"\x00\r\n\xff"
    for i in range(0, len(payload), 7000):
        await client.send(payload[i : i + 7000])

    def received() -> bytes:
        return b"".join(data_of(sb.rec.find(data_in(handle=client.handle))))

    await sb.rec.wait_until(
        lambda: len(received()) >= len(payload), what=f"{len(payload)} bytes of ServerDataIn"
    )
    assert received() == payload
    for s in sb.rec.find(data_in(handle=client.handle)):
        assert len(s.body[1]) > 0
        assert s.body[2:] == ["127.0.0.1", client.local_port, "raw"]

    await client.close()
    off = await sb.wait_conn_offline(client.handle)
    assert handle_events(sb, client.handle)[-1] == off
    assert received() == payload


async def test_flush_timeout_delivers_partial_frame(sb: Client) -> None:
    port = await start_tcp(sb, "\n", "flush", {"flush-timeout-ms": 300})
    client = await connect_tcp(sb, port)
    loop = asyncio.get_running_loop()

    sent_at = loop.time()
    await client.send(b"abc")
    sig = await sb.rec.wait_for(data_in(handle=client.handle), what="the flushed partial frame")
    assert sig.body[1] == b"abc"
    elapsed = sig.time - sent_at
    assert elapsed >= 0.25, f"partial frame delivered after {elapsed:.3f} s, flush-timeout-ms=300"

    # The framer starts afresh after a flush.
    await client.send(b"def\n")
    assert await wait_frames(sb, client.handle, 2) == [b"abc", b"def\n"]
    await client.close()


async def test_flush_timeout_default_is_one_second(sb: Client) -> None:
    port = await start_tcp(sb, "\n", "flush-default")
    client = await connect_tcp(sb, port)
    loop = asyncio.get_running_loop()
    sent_at = loop.time()
    await client.send(b"xyz")
    sig = await sb.rec.wait_for(data_in(handle=client.handle), what="the flushed partial frame")
    assert sig.body[1] == b"xyz"
    elapsed = sig.time - sent_at
    assert elapsed >= 0.9, f"partial frame delivered after {elapsed:.3f} s, default is 1000 ms"
    await client.close()


async def test_flush_timeout_zero_never_flushes(sb: Client) -> None:
    port = await start_tcp(sb, "\n", "flush-never", {"flush-timeout-ms": 0})
    client = await connect_tcp(sb, port)
    await client.send(b"abc")
    # A negative check needs time to pass: longer than the default flush timeout.
    await asyncio.sleep(1.5)
    await client.send(b"\n")
    frames = await wait_frames(sb, client.handle, 1)
    assert frames == [b"abc\n"]
    await client.close()
    await sb.wait_conn_offline(client.handle)
    assert data_of(handle_events(sb, client.handle)) == [b"abc\n"]


async def test_max_message_bytes_cuts_frames(sb: Client) -> None:
    port = await start_tcp(sb, "\n", "cut", {"max-message-bytes": 8, "flush-timeout-ms": 300})
    client = await connect_tcp(sb, port)
    loop = asyncio.get_running_loop()
    sent_at = loop.time()
    await client.send(b"ABCDEFGHIJKLMNOPQRST")
    sigs = await sb.rec.wait_count(data_in(handle=client.handle), 3, what="three pieces")
    assert data_of(sigs) == [b"ABCDEFGH", b"IJKLMNOP", b"QRST"]
    # The rest came with the flush timeout.
    assert sigs[2].time - sent_at >= 0.25
    # A delimited frame longer than the limit is cut as well.
    await client.send(b"0123456789\n")
    sigs = await sb.rec.wait_count(data_in(handle=client.handle), 5, what="five pieces")
    assert data_of(sigs)[3:] == [b"01234567", b"89\n"]
    await client.close()


async def test_max_connections_closes_extra_clients(sb: Client) -> None:
    port = await start_tcp(sb, "\n", "maxconn", {"max-connections": 2})
    first = await connect_tcp(sb, port)
    second = await connect_tcp(sb, port)

    extra = await TcpClient.connect("127.0.0.1", port)
    # Accepted and closed at once.
    assert await extra.read_to_eof() == b""
    await extra.close()

    # The two first still work.
    await first.send(b"one\n")
    await second.send(b"two\n")
    assert await wait_frames(sb, first.handle, 1) == [b"one\n"]
    assert await wait_frames(sb, second.handle, 1) == [b"two\n"]
    await sb.send(first.handle, b"back\n")
    assert await first.read_exactly(5) == b"back\n"
    assert len(sb.rec.find(conn_status(port=port, status="OFFLINE", handle=first.handle))) == 0

    # Once one leaves, a new client is served.
    await second.close()
    await sb.wait_conn_offline(second.handle)
    third = await connect_tcp(sb, port)
    await third.send(b"three\n")
    assert await wait_frames(sb, third.handle, 1) == [b"three\n"]
    await first.close()
    await third.close()
