# SPDX-License-Identifier: LGPL-2.1-or-later
"""The strip-delimiter option: frames without their delimiter."""

from dbus_fast.errors import DBusError
import pytest

from sbharness import (
    ERR_INVALID_ARGUMENT,
    Client,
    TcpClient,
    UdpPeer,
    connect_tcp,
    data_in,
    data_of,
)


async def test_tcp_frames_lose_their_delimiter(sb: Client) -> None:
    port = await sb.start_server("\r\n", False, "strip", {"strip-delimiter": True})
    client = await connect_tcp(sb, port)
    # An empty line is an empty frame; a lone \r or \n is data.
    await client.send(b"one\r\ntwo\r\n\r\nthree\rfour\nfive\r\n")
    sigs = await sb.rec.wait_count(data_in(handle=client.handle), 4)
    assert data_of(sigs) == [b"one", b"two", b"", b"three\rfour\nfive"]
    for s in sigs:
        assert s.body[2:] == ["127.0.0.1", client.local_port, "strip"]

    # A delimiter split across writes is still found and stripped.
    await client.send(b"six\r")
    await client.send(b"\nseven\r\n")
    sigs = await sb.rec.wait_count(data_in(handle=client.handle), 6)
    assert data_of(sigs)[4:] == [b"six", b"seven"]

    # What is not a complete frame is delivered as it is: at close...
    await client.send(b"partial\r")
    await client.close()
    await sb.wait_conn_offline(client.handle)
    assert data_of(sb.rec.find(data_in(handle=client.handle)))[6:] == [b"partial\r"]


async def test_tcp_partial_frames_are_delivered_as_they_are(sb: Client) -> None:
    port = await sb.start_server(
        "\r\n", False, "strip-cut", {"strip-delimiter": True, "max-message-bytes": 4}
    )
    client = await connect_tcp(sb, port)
    # A cut at max-message-bytes comes out as it is, \r included; the \n
    # that completes the delimiter after the cut is no frame of its own.
    await client.send(b"abc\r\nxy\r\nabcdefg\r\nhi\r\n")
    sigs = await sb.rec.wait_count(data_in(handle=client.handle), 5)
    assert data_of(sigs) == [b"abc\r", b"xy", b"abcd", b"efg\r", b"hi"]
    await sb.barrier()
    assert len(sb.rec.find(data_in(handle=client.handle))) == 5
    await client.close()


async def test_tcp_flushed_partial_frame_keeps_its_bytes(sb: Client) -> None:
    port = await sb.start_server(
        "\n", False, "strip-flush", {"strip-delimiter": True, "flush-timeout-ms": 100}
    )
    client = await connect_tcp(sb, port)
    await client.send(b"slow")
    first = await sb.rec.wait_for(data_in(handle=client.handle))
    assert bytes(first.body[1]) == b"slow"
    await client.send(b"er\n")
    sigs = await sb.rec.wait_count(data_in(handle=client.handle), 2)
    assert data_of(sigs) == [b"slow", b"er"]
    await client.close()


async def test_udp_datagrams_lose_their_delimiters(sb: Client) -> None:
    port = await sb.start_server("\n", True, "strip-udp", {"strip-delimiter": True})
    peer = await UdpPeer.open("127.0.0.1")
    mark = sb.rec.mark()
    peer.send(b"a\nb\n\nc", "127.0.0.1", port)
    handle = await sb.new_handle(port, mark)
    sigs = await sb.rec.wait_count(data_in(handle=handle), 4, start=mark)
    # The rest of a datagram, c, has no delimiter and is delivered as it is.
    assert data_of(sigs) == [b"a", b"b", b"", b"c"]
    peer.send(b"\n", "127.0.0.1", port)
    peer.send(b"", "127.0.0.1", port)
    peer.send(b"d\n", "127.0.0.1", port)
    sigs = await sb.rec.wait_count(data_in(handle=handle), 6, start=mark)
    assert data_of(sigs)[4:] == [b"", b"d"]
    for s in sigs:
        assert s.body[2:] == ["127.0.0.1", peer.local_port, "strip-udp"]
    peer.close()


async def test_without_a_delimiter_nothing_is_stripped(sb: Client) -> None:
    port = await sb.start_server("", False, "strip-none", {"strip-delimiter": True})
    client = await connect_tcp(sb, port)
    await client.send(b"as\r\nit\ncomes")

    def received() -> bytes:
        return b"".join(data_of(sb.rec.find(data_in(handle=client.handle))))

    await sb.rec.wait_until(lambda: len(received()) >= 12, what="12 bytes")
    assert received() == b"as\r\nit\ncomes"
    await client.close()


async def test_batch_frames_lose_their_delimiter(sb: Client) -> None:
    port = await sb.start_server(
        "\n", False, "strip-batch", {"strip-delimiter": True, "batch": True}
    )
    client = await TcpClient.connect("127.0.0.1", port)
    await client.send(b"x\ny\n\n")

    def frames() -> list[bytes]:
        return [
            bytes(frame[1])
            for s in sb.rec.sb("ServerDataInBatch")
            for frame in s.body[0]
            if s.body[1] == "strip-batch"
        ]

    await sb.rec.wait_until(lambda: len(frames()) >= 3, what="three batched frames")
    assert frames() == [b"x", b"y", b""]
    await client.close()


@pytest.mark.parametrize("use_udp", [False, True], ids=["tcp", "udp"])
async def test_strip_delimiter_must_be_a_boolean(sb: Client, use_udp: bool) -> None:
    with pytest.raises(DBusError) as exc:
        await sb.create_server(0, "\n", use_udp, "bad", {"strip-delimiter": 1})
    assert exc.value.type == ERR_INVALID_ARGUMENT
    assert exc.value.text == "option 'strip-delimiter' must be of type 'b', not 'u'"
