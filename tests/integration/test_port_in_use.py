# SPDX-License-Identifier: LGPL-2.1-or-later
"""PortInUse."""

import pytest

from sbharness import HAVE_IPV6, NO_IPV6_REASON, Client, free_port, held_socket


async def test_port_in_use_for_served_ports(sb: Client) -> None:
    start = sb.rec.mark()
    tcp = await sb.create_server(free_port(), "", False, "piu-tcp")
    udp = await sb.create_server(free_port(use_udp=True), "", True, "piu-udp")
    await sb.wait_online(tcp, start=start)
    await sb.wait_online(udp, start=start)

    assert await sb.port_in_use(tcp, False) is True
    assert await sb.port_in_use(tcp, True) is False
    assert await sb.port_in_use(udp, True) is True
    assert await sb.port_in_use(udp, False) is False

    await sb.destroy_server(tcp)
    await sb.destroy_server(udp)
    assert await sb.port_in_use(tcp, False) is False
    assert await sb.port_in_use(udp, True) is False


@pytest.mark.parametrize("use_udp", [False, True], ids=["tcp", "udp"])
@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1", "::1"])
async def test_port_in_use_for_ports_held_by_others(sb: Client, use_udp: bool, host: str) -> None:
    if ":" in host and not HAVE_IPV6:
        pytest.skip(NO_IPV6_REASON)
    with held_socket(0, use_udp=use_udp, host=host) as s:
        port = s.getsockname()[1]
        assert await sb.port_in_use(port, use_udp) is True
    assert await sb.port_in_use(port, use_udp) is False


async def test_port_in_use_false_for_free_ports(sb: Client) -> None:
    for _ in range(3):
        port = free_port()
        assert await sb.port_in_use(port, False) is False
        port = free_port(use_udp=True)
        assert await sb.port_in_use(port, True) is False
    # The check itself does not keep the port.
    port = free_port()
    assert await sb.port_in_use(port, False) is False
    with held_socket(port) as s:
        assert s.getsockname()[1] == port
