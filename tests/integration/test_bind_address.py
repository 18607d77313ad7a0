# SPDX-License-Identifier: LGPL-2.1-or-later
"""The bind-address option."""

import pytest

from sbharness import (
    HAVE_IPV6,
    NO_IPV6_REASON,
    Client,
    TcpClient,
    UdpPeer,
    conn_status,
    data_in,
)


async def test_bind_ipv4_loopback_only(sb: Client) -> None:
    start = sb.rec.mark()
    port = await sb.create_server(0, "", False, "v4only", {"bind-address": "127.0.0.1"})
    await sb.wait_online(port, start=start)

    mark = sb.rec.mark()
    client = await TcpClient.connect("127.0.0.1", port)
    sig = await sb.rec.wait_for(conn_status(port=port, status="ONLINE"), start=mark)
    assert sig.body[3] == "127.0.0.1"
    await client.close()

    if HAVE_IPV6:
        with pytest.raises(ConnectionRefusedError):
            await TcpClient.connect("::1", port)


@pytest.mark.ipv6
@pytest.mark.skipif(not HAVE_IPV6, reason=NO_IPV6_REASON)
async def test_bind_ipv6_loopback_only(sb: Client) -> None:
    start = sb.rec.mark()
    port = await sb.create_server(0, "", False, "v6only", {"bind-address": "::1"})
    await sb.wait_online(port, start=start)

    mark = sb.rec.mark()
    client = await TcpClient.connect("::1", port)
    sig = await sb.rec.wait_for(conn_status(port=port, status="ONLINE"), start=mark)
    assert sig.body[3] == "::1"
    await client.close()

    with pytest.raises(ConnectionRefusedError):
        await TcpClient.connect("127.0.0.1", port)


async def test_bind_address_udp(sb: Client) -> None:
    start = sb.rec.mark()
    port = await sb.create_server(0, "", True, "udp-v4", {"bind-address": "127.0.0.1"})
    await sb.wait_online(port, start=start)
    peer = await UdpPeer.open("127.0.0.1")
    mark = sb.rec.mark()
    peer.send(b"v4", "127.0.0.1", port)
    sig = await sb.rec.wait_for(data_in(), start=mark)
    assert sig.body[1:] == [b"v4", "127.0.0.1", peer.local_port, "udp-v4"]
    peer.close()
