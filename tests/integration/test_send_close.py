# SPDX-License-Identifier: LGPL-2.1-or-later
"""ServerSend and ServerCloseClient on TCP connections."""

import asyncio
import os
import re

from dbus_fast.errors import DBusError
import pytest

from sbharness import (
    ERR_LIMIT_EXCEEDED,
    ERR_NOT_FOUND,
    Client,
    TcpClient,
    conn_status,
    data_in,
    data_of,
    of_handle,
)

MiB = 1024 * 1024
SEND_LIMIT = 4 * MiB


async def serve_one(sb: Client, identifier: str, delimiter: str = "\n") -> tuple[int, TcpClient]:
    start = sb.rec.mark()
    port = await sb.create_server(0, delimiter, False, identifier)
    await sb.wait_online(port, start=start)
    mark = sb.rec.mark()
    client = await TcpClient.connect("127.0.0.1", port)
    client.handle = await sb.new_handle(port, mark)
    return port, client


async def test_server_send_in_order_binary(sb: Client) -> None:
    _, client = await serve_one(sb, "send")
    chunks = [b"\x00\x01", b"abc\x00\xff", bytes(range(256)), b"\r\n", os.urandom(100_000), b"end"]
    for chunk in chunks:
        await sb.send(client.handle, chunk)
    expected = b"".join(chunks)
    assert await client.read_exactly(len(expected)) == expected

    # Still a working connection both ways.
    await client.send(b"up\n")
    sig = await sb.rec.wait_for(data_in(handle=client.handle))
    assert sig.body[1] == b"up\n"
    await client.close()


async def test_server_send_empty_data(sb: Client) -> None:
    _, client = await serve_one(sb, "send-empty")
    await sb.send(client.handle, b"")
    await sb.send(client.handle, b"after")
    assert await client.read_exactly(5) == b"after"
    await client.close()


async def fill_send_queue(sb: Client, handle: int) -> tuple[bytes, DBusError]:
    """ServerSend 1 MiB chunks to a client that does not read, until LimitExceeded.

    Returns what was accepted (the kernel's socket buffers hold part of it,
    the daemon's send queue more than 3 MiB of it) and the error.
    """
    accepted: list[bytes] = []
    for i in range(96):
        chunk = bytes([i % 251]) * MiB
        try:
            await sb.send(handle, chunk)
        except DBusError as e:
            error = e
            break
        accepted.append(chunk)
    else:
        raise AssertionError(f"{len(accepted)} MiB queued to a client that never reads")
    assert error.type == ERR_LIMIT_EXCEEDED, error.text
    return b"".join(accepted), error


async def test_close_client_flushes_queue_then_eof_then_offline(sb: Client) -> None:
    port, client = await serve_one(sb, "close")
    queued, _ = await fill_send_queue(sb, client.handle)
    mark = sb.rec.mark()
    await sb.close_client(client.handle)

    # The client has not read: the daemon still holds megabytes for it, so the
    # connection cannot be closed yet and its OFFLINE must not have come.
    await sb.barrier()
    assert not sb.rec.find(conn_status(handle=client.handle, status="OFFLINE"), mark), (
        "OFFLINE emitted before the queued data was sent"
    )

    received = await client.read_to_eof(timeout=60)
    assert len(received) == len(queued)
    assert received == queued

    off = await sb.wait_conn_offline(client.handle, start=mark)
    assert off.body == [client.handle, port, "OFFLINE", "127.0.0.1", "close"]
    assert sb.rec.find(of_handle(client.handle))[-1] == off

    # The handle is gone.
    with pytest.raises(DBusError) as exc:
        await sb.send(client.handle, b"late")
    assert exc.value.type == ERR_NOT_FOUND
    with pytest.raises(DBusError) as exc:
        await sb.close_client(client.handle)
    assert exc.value.type == ERR_NOT_FOUND
    assert await sb.list_connections() == []
    await client.close()


async def test_close_client_small_queue(sb: Client) -> None:
    port, client = await serve_one(sb, "close-small")
    payload = os.urandom(300_000)
    mark = sb.rec.mark()
    await sb.send(client.handle, payload[:100_000])
    await sb.send(client.handle, payload[100_000:])
    await sb.close_client(client.handle)
    assert await client.read_to_eof() == payload
    off = await sb.wait_conn_offline(client.handle, start=mark)
    assert off.body == [client.handle, port, "OFFLINE", "127.0.0.1", "close-small"]
    await client.close()


async def test_close_client_delivers_pending_input_before_offline(sb: Client) -> None:
    _, client = await serve_one(sb, "close-partial")
    await client.send(b"whole\nhalf")
    await sb.rec.wait_for(data_in(handle=client.handle))
    await sb.close_client(client.handle)
    off = await sb.wait_conn_offline(client.handle)
    events = sb.rec.find(of_handle(client.handle))
    assert events[-1] == off
    assert data_of(events) == [b"whole\n", b"half"]
    assert await client.read_to_eof() == b""
    await client.close()


async def test_server_send_unknown_handle(sb: Client) -> None:
    for handle in (0xDEADBEEF, 1):
        with pytest.raises(DBusError) as exc:
            await sb.send(handle, b"x")
        assert exc.value.type == ERR_NOT_FOUND
        with pytest.raises(DBusError) as exc:
            await sb.close_client(handle)
        assert exc.value.type == ERR_NOT_FOUND


def assert_names_send_limit(message: str) -> None:
    assert re.search(r"4\s*MiB|4194304|4096\s*KiB|4\s*MB", message, re.IGNORECASE), (
        f"LimitExceeded message does not name the 4 MiB limit: {message!r}"
    )


async def test_server_send_over_limit_in_one_call(sb: Client) -> None:
    _, client = await serve_one(sb, "limit-one")
    with pytest.raises(DBusError) as exc:
        await sb.send(client.handle, b"\xaa" * (SEND_LIMIT + 1))
    assert exc.value.type == ERR_LIMIT_EXCEEDED
    assert_names_send_limit(exc.value.text)

    # Nothing of it was queued, and the connection still works both ways.
    await sb.send(client.handle, b"ok\n")
    assert await client.read_exactly(3) == b"ok\n"
    await client.send(b"still here\n")
    sig = await sb.rec.wait_for(data_in(handle=client.handle))
    assert sig.body[1] == b"still here\n"

    # Exactly the limit fits.
    await sb.send(client.handle, b"\xbb" * SEND_LIMIT)
    assert await client.read_exactly(SEND_LIMIT, timeout=30) == b"\xbb" * SEND_LIMIT
    await client.close()


async def test_server_send_queue_limit_to_a_client_that_never_reads(sb: Client) -> None:
    _, client = await serve_one(sb, "limit-queue")
    # Kernel buffers absorb some megabytes; the daemon's queue the next 4 MiB.
    queued, error = await fill_send_queue(sb, client.handle)
    assert_names_send_limit(error.text)

    # Reading now gets exactly what was accepted, in order; then it still works.
    got = await client.read_exactly(len(queued), timeout=60)
    assert got == queued
    await sb.send(client.handle, b"after\n")
    assert await client.read_exactly(6) == b"after\n"
    await client.send(b"in\n")
    sig = await sb.rec.wait_for(data_in(handle=client.handle))
    assert sig.body[1] == b"in\n"
    await client.close()


async def test_many_small_sends_keep_order(sb: Client) -> None:
    _, client = await serve_one(sb, "small-sends")
    msgs = [f"{i:05d};".encode() for i in range(2000)]
    # Pipelined calls, a window at a time: dbus-fast 2.21 drops its connection
    # when its socket buffer fills (EAGAIN is not retried), so do not flood it.
    window = 50
    for i in range(0, len(msgs), window):
        await asyncio.gather(*(sb.send(client.handle, m) for m in msgs[i : i + window]))
    expected = b"".join(msgs)
    assert await client.read_exactly(len(expected), timeout=30) == expected
    await client.close()


async def test_first_calls_of_a_new_connection_keep_order(sb: Client, bus_address: str) -> None:
    """Calls pipelined by a connection the daemon has not seen yet run in order."""
    _, client = await serve_one(sb, "new-caller")
    other = await Client.connect(bus_address)
    try:
        msgs = [f"<{i:02d}>".encode() for i in range(40)]
        await asyncio.gather(*(other.send(client.handle, m) for m in msgs))
        expected = b"".join(msgs)
        assert await client.read_exactly(len(expected)) == expected
    finally:
        other.disconnect()
    await client.close()
