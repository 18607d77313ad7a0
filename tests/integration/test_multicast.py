# SPDX-License-Identifier: LGPL-2.1-or-later
"""multicast-groups and multicast-interface, in network namespaces of the tests' own.

The daemon and every socket of a test run in a fresh network namespace,
so that no group is joined and no datagram sent on the machine's real
interfaces. IPv4 multicast goes over the loopback (multicast on, a route
for 224.0.0.0/4). Linux does not carry IPv6 multicast over the loopback,
so IPv6 goes over a pair of virtual Ethernet interfaces, sb-a and sb-b,
joined to each other.
"""

import asyncio
from collections.abc import AsyncIterator
import os
import socket
import struct
from typing import Any

from dbus_fast.errors import DBusError
import pytest

from sbharness import (
    ERR_FAILED,
    ERR_INVALID_ARGUMENT,
    Client,
    DaemonFactory,
    NetNamespace,
    bound,
    conn_status,
    data_in,
    data_of,
    network_namespace,
)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: makes network namespaces"),
]

LOOPBACK_MULTICAST = """
ip link set lo up multicast on
ip route add 224.0.0.0/4 dev lo
"""

VETH_PAIR = """
ip link add sb-a type veth peer name sb-b
ip link set sb-a up multicast on
ip link set sb-b up multicast on
ip -6 addr add fd00:5b::1/64 dev sb-a nodad
ip -6 addr add fd00:5b::2/64 dev sb-b nodad
until ip link show sb-a | grep -q LOWER_UP && ip link show sb-b | grep -q LOWER_UP; do
  sleep 0.05
done
"""

GROUP4 = "239.1.2.3"
OTHER_GROUP4 = "239.9.9.9"
GROUP6 = "ff15::5b"


@pytest.fixture
async def netns() -> AsyncIterator[NetNamespace]:
    """A namespace with IPv4 multicast on the loopback and IPv6 multicast on sb-a/sb-b."""
    async with network_namespace(LOOPBACK_MULTICAST + VETH_PAIR) as ns:
        yield ns


@pytest.fixture
async def bare_netns() -> AsyncIterator[NetNamespace]:
    """A namespace with nothing but its loopback up: no route to anywhere."""
    async with network_namespace("ip link set lo up") as ns:
        yield ns


async def daemon_in(daemons: DaemonFactory, ns: NetNamespace) -> None:
    await daemons.start("--no-state", prefix=ns.prefix)


def udp_socket(ns: NetNamespace, family: socket.AddressFamily, host: str) -> socket.socket:
    """A non-blocking UDP socket bound in the namespace."""
    with ns.entered():
        s = socket.socket(family, socket.SOCK_DGRAM)
    s.setblocking(False)
    s.bind((host, 0))
    return s


def sender4(ns: NetNamespace) -> socket.socket:
    s = udp_socket(ns, socket.AF_INET, "127.0.0.1")
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
    return s


def sender6(ns: NetNamespace, interface: str) -> socket.socket:
    with ns.entered():
        index = socket.if_nametoindex(interface)
    s = udp_socket(ns, socket.AF_INET6, "::")
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
    return s


def join4(s: socket.socket, group: str) -> None:
    request = socket.inet_aton(group) + socket.inet_aton("127.0.0.1")
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, request)


def join6(ns: NetNamespace, s: socket.socket, group: str, interface: str) -> None:
    with ns.entered():
        index = socket.if_nametoindex(interface)
    request = socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", index)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, request)


async def receive(s: socket.socket) -> tuple[bytes, Any]:
    loop = asyncio.get_running_loop()
    return await asyncio.wait_for(loop.sock_recvfrom(s, 70000), bound(10))


async def test_ipv4_and_ipv6_groups_arrive_like_any_datagram(
    daemons: DaemonFactory, client: Client, netns: NetNamespace
) -> None:
    sb = client
    await daemon_in(daemons, netns)
    port = await sb.start_server("\n", True, "groups", {"multicast-groups": [GROUP4, GROUP6]})
    s4 = sender4(netns)
    s6 = sender6(netns, "sb-a")
    try:
        mark = sb.rec.mark()
        s4.sendto(b"to the v4 group\n", (GROUP4, port))
        h4 = await sb.new_handle(port, mark)
        sig = await sb.rec.wait_for(data_in(handle=h4), start=mark)
        assert sig.body == [h4, b"to the v4 group\n", "127.0.0.1", s4.getsockname()[1], "groups"]

        mark = sb.rec.mark()
        s6.sendto(b"to the v6 group\n", (GROUP6, port))
        h6 = await sb.new_handle(port, mark, taken=[h4])
        sig = await sb.rec.wait_for(data_in(handle=h6), start=mark)
        assert sig.body == [h6, b"to the v6 group\n", "fd00:5b::1", s6.getsockname()[1], "groups"]

        # The same peer, by unicast: the same handle.
        s4.sendto(b"direct\n", ("127.0.0.1", port))
        sigs = await sb.rec.wait_count(data_in(handle=h4), 2)
        assert data_of(sigs) == [b"to the v4 group\n", b"direct\n"]

        # Replies go to the peer, from the server's port.
        await sb.send(h4, b"reply")
        assert await receive(s4) == (b"reply", ("127.0.0.1", port))
    finally:
        s4.close()
        s6.close()


async def test_only_the_servers_own_groups_are_heard(
    daemons: DaemonFactory, client: Client, netns: NetNamespace
) -> None:
    """Linux hands a socket every group any socket joined; a server with groups hears its own."""
    sb = client
    await daemon_in(daemons, netns)
    port = await sb.start_server("", True, "own-groups", {"multicast-groups": [GROUP4]})
    # Another socket of the namespace joins another group.
    other = udp_socket(netns, socket.AF_INET, "0.0.0.0")
    join4(other, OTHER_GROUP4)
    s4 = sender4(netns)
    try:
        mark = sb.rec.mark()
        s4.sendto(b"not yours", (OTHER_GROUP4, port))
        s4.sendto(b"yours", (GROUP4, port))
        handle = await sb.new_handle(port, mark)
        await sb.rec.wait_for(data_in(handle=handle), start=mark)
        await sb.barrier()
        assert data_of(sb.rec.find(data_in(handle=handle), mark)) == [b"yours"]
    finally:
        other.close()
        s4.close()


async def test_multicast_interface_joins_and_sends_there(
    daemons: DaemonFactory, client: Client, netns: NetNamespace
) -> None:
    sb = client
    await daemon_in(daemons, netns)
    port = await sb.start_server(
        "", True, "on-sb-a", {"multicast-groups": [GROUP6], "multicast-interface": "sb-a"}
    )
    listener = udp_socket(netns, socket.AF_INET6, "::")
    join6(netns, listener, GROUP6, "sb-a")
    s6 = sender6(netns, "sb-a")
    try:
        mark = sb.rec.mark()
        s6.sendto(b"hello group", (GROUP6, port))
        handle = await sb.new_handle(port, mark)
        sig = await sb.rec.wait_for(data_in(handle=handle), start=mark)
        assert sig.body[1:3] == [b"hello group", "fd00:5b::1"]

        # ServerSendTo a group leaves on the server's multicast-interface.
        await sb.call(
            "ServerSendTo", "qaysq", [port, b"from the server", GROUP6, listener.getsockname()[1]]
        )
        data, addr = await receive(listener)
        assert (data, addr[0], addr[1]) == (b"from the server", "fd00:5b::1", port)
    finally:
        listener.close()
        s6.close()


async def test_send_to_an_ipv4_group(
    daemons: DaemonFactory, client: Client, netns: NetNamespace
) -> None:
    sb = client
    await daemon_in(daemons, netns)
    port = await sb.start_server("", True, "sender")
    listener = udp_socket(netns, socket.AF_INET, "0.0.0.0")
    join4(listener, GROUP4)
    try:
        await sb.call(
            "ServerSendTo", "qaysq", [port, b"to the group", GROUP4, listener.getsockname()[1]]
        )
        # From the server's port; the source address is the kernel's choice
        # (here, with no IPv4 address fit for multicast, 0.0.0.0).
        data, addr = await receive(listener)
        assert (data, addr[1]) == (b"to the group", port)
    finally:
        listener.close()


async def test_options_are_shown_and_compared(
    daemons: DaemonFactory, client: Client, netns: NetNamespace
) -> None:
    sb = client
    await daemon_in(daemons, netns)
    options = {"multicast-groups": [GROUP4, "FF15:0::5b"], "multicast-interface": "sb-a"}
    port = await sb.start_server("", True, "shown", options)
    body = await sb.call("GetServerOptions", "qb", [port, True])
    shown = {k: (v.signature, v.value) for k, v in body[0].items()}
    assert shown["multicast-groups"] == ("as", [GROUP4, GROUP6])
    assert shown["multicast-interface"] == ("s", "sb-a")
    assert await sb.create_server(port, "", True, "shown", options) == port
    for other in ({"multicast-groups": [GROUP4]}, {**options, "multicast-interface": "sb-b"}):
        with pytest.raises(DBusError) as exc:
            await sb.create_server(port, "", True, "shown", other)
        assert "other settings" in exc.value.text


async def test_failures_say_why(
    daemons: DaemonFactory, client: Client, bare_netns: NetNamespace
) -> None:
    """Where the kernel cannot join, or no interface has the name, CreateServer says so."""
    sb = client
    await daemon_in(daemons, bare_netns)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"multicast-interface": "nosuch0"}, "no network interface named 'nosuch0'"),
        (
            {"multicast-groups": [GROUP6]},
            f"cannot join multicast group {GROUP6}: Error joining multicast group: No such device",
        ),
    ]
    for options, message in cases:
        mark = sb.rec.mark()
        with pytest.raises(DBusError) as exc:
            await sb.create_server(0, "", True, "fails", options)
        assert (exc.value.type, exc.value.text) == (ERR_FAILED, message)
        await sb.barrier()
        assert not sb.rec.sb(start=mark)
    assert await sb.list_servers() == []

    # No route at all: ServerSendTo says so.
    port = await sb.start_server("", True, "no-route")
    for address in ("255.255.255.255", "192.0.2.1", GROUP4):
        with pytest.raises(DBusError) as exc:
            await sb.call("ServerSendTo", "qaysq", [port, b"x", address, 9])
        assert exc.value.type == ERR_FAILED
        assert exc.value.text == (
            f"cannot send from port {port}/udp to {address} port 9: "
            "Error sending message: Network is unreachable"
        )


async def test_server_bound_to_its_group_hears_only_the_group(
    daemons: DaemonFactory, client: Client, netns: NetNamespace
) -> None:
    """A group as bind-address: only the group's datagrams arrive."""
    sb = client
    await daemon_in(daemons, netns)
    port = await sb.start_server(
        "", True, "bound-to-group", {"bind-address": GROUP4, "multicast-groups": [GROUP4]}
    )
    s4 = sender4(netns)
    try:
        mark = sb.rec.mark()
        s4.sendto(b"unicast", ("127.0.0.1", port))
        s4.sendto(b"group", (GROUP4, port))
        handle = await sb.new_handle(port, mark)
        await sb.rec.wait_for(data_in(handle=handle), start=mark)
        await sb.barrier()
        assert data_of(sb.rec.find(data_in(handle=handle), mark)) == [b"group"]
        assert len(sb.rec.find(conn_status(port=port, status="ONLINE"), mark)) == 1
    finally:
        s4.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"multicast-groups": [GROUP4]}, "option 'multicast-groups' is for UDP servers only"),
        ({"multicast-groups": []}, "option 'multicast-groups' is for UDP servers only"),
        ({"multicast-interface": "lo"}, "option 'multicast-interface' is for UDP servers only"),
    ],
    ids=["groups", "no-groups", "interface"],
)
async def test_tcp_server_with_multicast_options_is_invalid(
    sb: Client, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(DBusError) as exc:
        await sb.create_server(0, "", False, "tcp", options)
    assert (exc.value.type, exc.value.text) == (ERR_INVALID_ARGUMENT, message)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"multicast-groups": ["10.0.0.1"]},
            "multicast-groups entry '10.0.0.1' is not a numeric IPv4 or IPv6 multicast address",
        ),
        (
            {"multicast-groups": [GROUP4, GROUP4]},
            f"multicast-groups entry '{GROUP4}' names group {GROUP4} a second time",
        ),
        (
            {"multicast-groups": [GROUP4], "bind-address": "127.0.0.1"},
            "bind-address 127.0.0.1 is a unicast address",
        ),
        (
            {"multicast-groups": [GROUP6], "bind-address": "0.0.0.0"},
            f"multicast group {GROUP6} and bind-address 0.0.0.0 are of different families",
        ),
        ({"multicast-interface": "eth0:1"}, "must be a network interface name"),
        (
            {"multicast-groups": [f"239.0.0.{i}" for i in range(21)]},
            "option 'multicast-groups' has 21 entries; at most 20 are allowed",
        ),
    ],
    ids=["unicast", "twice", "unicast-bind", "families", "interface-name", "too-many"],
)
async def test_invalid_multicast_options(sb: Client, options: dict[str, Any], message: str) -> None:
    with pytest.raises(DBusError) as exc:
        await sb.create_server(0, "", True, "bad", options)
    assert exc.value.type == ERR_INVALID_ARGUMENT
    assert message in exc.value.text, exc.value.text
