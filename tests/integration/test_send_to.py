# SPDX-License-Identifier: LGPL-2.1-or-later
"""ServerSendTo: one datagram from a UDP server to any address."""

import asyncio
import os
import shutil
import socket
from typing import Any

from dbus_fast.errors import DBusError
import pytest

from sbharness import (
    BUS_NAME,
    ERR_DBUS_INVALID_ARGS,
    ERR_FAILED,
    ERR_INVALID_ARGUMENT,
    ERR_LIMIT_EXCEEDED,
    ERR_NOT_FOUND,
    ERR_PERMISSION_DENIED,
    HAVE_IPV6,
    INTERFACE,
    NO_IPV6_REASON,
    OBJECT_PATH,
    Client,
    UdpPeer,
    bound,
    conn_status,
    data_in,
    free_port,
    run_as,
)


async def send_to(sb: Client, port: int, data: bytes, address: str, remote_port: int) -> None:
    await sb.call("ServerSendTo", "qaysq", [port, data, address, remote_port])


async def bytes_out(sb: Client) -> int:
    body = await sb.call("GetStatistics")
    return int(body[0]["bytes-out"])


async def test_send_to_another_loopback_address(sb: Client) -> None:
    port = await sb.start_server("", True, "sender")
    other = await UdpPeer.open("127.0.0.2")
    before = await bytes_out(sb)
    mark = sb.rec.mark()

    await send_to(sb, port, b"hello\x00\xff", "127.0.0.2", other.local_port)
    data, addr = await other.recv()
    assert data == b"hello\x00\xff"
    assert addr == ("127.0.0.1", port)
    assert await bytes_out(sb) == before + 7
    # No handle is made for a destination...
    await sb.barrier()
    assert not sb.rec.sb(start=mark)
    assert await sb.list_connections() == []

    # ...but its reply makes it a peer, as any datagram does.
    other.send(b"reply", "127.0.0.1", port)
    online = await sb.rec.wait_for(conn_status(port=port, status="ONLINE"), start=mark)
    assert online.body[2:] == ["ONLINE", "127.0.0.2", "sender"]
    sig = await sb.rec.wait_for(data_in(handle=online.body[0]), start=mark)
    assert sig.body[1:4] == [b"reply", "127.0.0.2", other.local_port]
    other.close()


async def test_send_to_an_empty_and_the_largest_datagram(sb: Client) -> None:
    port = await sb.start_server("", True, "sizes")
    other = await UdpPeer.open("127.0.0.1")
    await send_to(sb, port, b"", "127.0.0.1", other.local_port)
    assert await other.recv() == (b"", ("127.0.0.1", port))
    biggest = bytes(range(256)) * (65507 // 256) + b"\x01" * (65507 % 256)
    await send_to(sb, port, biggest, "127.0.0.1", other.local_port)
    assert (await other.recv())[0] == biggest
    other.close()


@pytest.mark.ipv6
@pytest.mark.skipif(not HAVE_IPV6, reason=NO_IPV6_REASON)
async def test_send_to_ipv6(sb: Client) -> None:
    port = await sb.start_server("", True, "sender6")
    other = await UdpPeer.open("::1")
    await send_to(sb, port, b"six", "::1", other.local_port)
    data, addr = await other.recv()
    assert (data, addr[0], addr[1]) == (b"six", "::1", port)
    # The same with the address in a longer spelling.
    await send_to(sb, port, b"six again", "0:0::1", other.local_port)
    assert (await other.recv())[0] == b"six again"
    other.close()


async def test_send_to_a_port_nobody_listens_on(sb: Client) -> None:
    """No error, now or later: the server goes on sending and receiving."""
    port = await sb.start_server("", True, "into-the-void")
    nobody_port = free_port(use_udp=True)
    for _ in range(3):
        await send_to(sb, port, b"anyone?", "127.0.0.1", nobody_port)

    peer = await UdpPeer.open("127.0.0.1")
    mark = sb.rec.mark()
    peer.send(b"here", "127.0.0.1", port)
    handle = await sb.new_handle(port, mark)
    await sb.rec.wait_for(data_in(handle=handle), start=mark)
    await sb.send(handle, b"hi")
    assert (await peer.recv())[0] == b"hi"
    await send_to(sb, port, b"direct", "127.0.0.1", peer.local_port)
    assert (await peer.recv())[0] == b"direct"
    peer.close()


async def test_send_to_broadcast(sb: Client) -> None:
    """127.255.255.255 is the loopback's broadcast: it needs SO_BROADCAST."""
    port = await sb.start_server("", True, "broadcaster")
    loop = asyncio.get_running_loop()
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("0.0.0.0", 0))
    receiver.setblocking(False)
    try:
        await send_to(sb, port, b"everyone", "127.255.255.255", receiver.getsockname()[1])
        data, addr = await asyncio.wait_for(loop.sock_recvfrom(receiver, 100), bound(10))
        assert (data, addr[1]) == (b"everyone", port)
    finally:
        receiver.close()


async def test_send_to_errors(sb: Client) -> None:
    udp = await sb.start_server("", True, "errors")
    tcp = await sb.start_server("", False, "tcp-only")
    local = await sb.start_server("", True, "local4", {"bind-address": "127.0.0.1"})
    unserved = free_port(use_udp=True)
    cases: list[tuple[list[Any], str, str]] = [
        ([0, b"x", "127.0.0.1", 9], ERR_INVALID_ARGUMENT, "port must be from 1 to 65535, not 0"),
        (
            [udp, b"x", "127.0.0.1", 0],
            ERR_INVALID_ARGUMENT,
            "remote_port must be from 1 to 65535, not 0",
        ),
        ([tcp, b"x", "127.0.0.1", 9], ERR_NOT_FOUND, f"no UDP server on port {tcp}"),
        ([unserved, b"x", "127.0.0.1", 9], ERR_NOT_FOUND, f"no UDP server on port {unserved}"),
        (
            [udp, b"x" * 65508, "127.0.0.1", 9],
            ERR_LIMIT_EXCEEDED,
            "a UDP datagram holds at most 65507 bytes, not 65508",
        ),
        (
            [local, b"x", "::1", 9],
            ERR_FAILED,
            f"cannot send from port {local}/udp to ::1 port 9: ",
        ),
    ]
    for address in ("localhost", "", "1.2.3", "127.0.0.1:9", "256.1.1.1", "::1%nosuchif0", " ::1"):
        message = f"address must be a numeric IPv4 or IPv6 address, not '{address}'"
        cases.append(([udp, b"x", address, 9], ERR_INVALID_ARGUMENT, message))

    before = await bytes_out(sb)
    mark = sb.rec.mark()
    for args, error, message in cases:
        with pytest.raises(DBusError) as exc:
            await send_to(sb, *args)
        assert exc.value.type == error, (args[2:], exc.value.text)
        assert exc.value.text.startswith(message), (exc.value.text, message)
    assert await bytes_out(sb) == before
    await sb.barrier()
    assert not sb.rec.sb(start=mark)

    for signature, args in [
        ("qays", [udp, b"x", "127.0.0.1"]),
        ("qsq", [udp, "127.0.0.1", 9]),
        ("uaysq", [udp, b"x", "127.0.0.1", 9]),
    ]:
        with pytest.raises(DBusError) as exc:
            await sb.call("ServerSendTo", signature, args)
        assert exc.value.type == ERR_DBUS_INVALID_ARGS


NOBODY = 65534


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: calls as nobody (uid 65534)")
@pytest.mark.skipif(shutil.which("gdbus") is None, reason="needs gdbus to call as nobody")
async def test_send_to_from_another_users_server_is_permission_denied(
    sb: Client, bus_address: str
) -> None:
    port = await sb.start_server("", True, "root-owned")
    other = await UdpPeer.open("127.0.0.1")
    result = await run_as(
        NOBODY,
        NOBODY,
        [
            "gdbus",
            "call",
            "--address",
            bus_address,
            "--dest",
            BUS_NAME,
            "--object-path",
            OBJECT_PATH,
            "--method",
            f"{INTERFACE}.ServerSendTo",
            "--",
            str(port),
            "[104, 105]",
            "127.0.0.1",
            str(other.local_port),
        ],
    )
    assert result.returncode != 0, result.stdout
    assert result.error_name == ERR_PERMISSION_DENIED, result.stderr
    assert f"port {port}/udp is served for another user" in result.stderr
    # Nothing was sent: the next datagram to arrive is root's own.
    await send_to(sb, port, b"root's", "127.0.0.1", other.local_port)
    assert (await other.recv())[0] == b"root's"
    other.close()
