# SPDX-License-Identifier: LGPL-2.1-or-later
"""Daemon life cycle: SIGTERM/SIGINT, --replace, failing to own the name or reach the bus."""

from pathlib import Path
import signal

import pytest

from sbharness import (
    BUS_NAME,
    Client,
    DaemonFactory,
    TcpClient,
    UdpPeer,
    is_name_owner_changed,
    port_is_free,
)


async def serve_with_clients(sb: Client, n_clients: int) -> tuple[int, int, list[TcpClient]]:
    start = sb.rec.mark()
    tcp = await sb.create_server(0, "\n", False, "life-tcp")
    udp = await sb.create_server(0, "", True, "life-udp")
    await sb.wait_online(tcp, start=start)
    await sb.wait_online(udp, start=start)
    clients = []
    for _ in range(n_clients):
        mark = sb.rec.mark()
        c = await TcpClient.connect("127.0.0.1", tcp)
        c.handle = await sb.new_handle(tcp, mark)
        await c.send(b"partial")
        clients.append(c)
    peer = await UdpPeer.open()
    mark = sb.rec.mark()
    peer.send(b"u", "127.0.0.1", udp)
    await sb.new_handle(udp, mark)
    peer.close()
    return tcp, udp, clients


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_signal_closes_everything_and_exits_zero(
    daemons: DaemonFactory, client: Client, sig: signal.Signals
) -> None:
    d = await daemons.start()
    tcp, udp, clients = await serve_with_clients(client, 3)

    mark = client.rec.mark()
    assert await d.stop(sig) == 0
    for c in clients:
        assert await c.read_to_eof() == b""
        await c.close()
    assert port_is_free(tcp, use_udp=False)
    assert port_is_free(udp, use_udp=True)
    # The name is released (or dropped with the connection).
    await client.rec.wait_for(
        lambda s: is_name_owner_changed(BUS_NAME)(s) and s.body[2] == "",
        start=mark,
        what=f"{BUS_NAME} to lose its owner",
    )
    assert await client.name_owner() is None


async def test_replace_takes_over_the_name(daemons: DaemonFactory, client: Client) -> None:
    first = await daemons.start(name="sockbridged-first")
    first_owner = await client.name_owner()
    tcp, _, clients = await serve_with_clients(client, 1)

    second = await daemons.start("--no-state", "--replace", name="sockbridged-second")
    owner = await client.name_owner()
    assert owner is not None
    assert owner != first_owner
    assert await client.pid_of(owner) == second.pid

    # The first one lost its name: it exits, with one clear line.
    first.allow_log(r"")
    status = await first.wait_exit()
    print(f"replaced daemon exit status: {status}")
    out = [line for line in first.output().splitlines()[1:] if line.strip()]
    assert out, "the replaced daemon exited without saying why"
    # Contract (CONVENTIONS.md, D-Bus): "on name_lost print one clear line and exit non-zero".
    assert status > 0, f"the replaced daemon exited with status {status}; output: {out}"

    # Its sockets were closed on the way out.
    for c in clients:
        assert await c.read_to_eof() == b""
        await c.close()
    assert port_is_free(tcp, use_udp=False)

    # The new owner serves.
    start = client.rec.mark()
    port = await client.create_server(0, "", False, "new-owner")
    online = await client.wait_online(port, start=start)
    assert online.sender == owner


async def test_second_instance_without_replace_exits(
    daemons: DaemonFactory, client: Client
) -> None:
    first = await daemons.start(name="sockbridged-first")
    owner = await client.name_owner()
    second = await daemons.start("--no-state", wait=False, name="sockbridged-second")
    second.allow_log(r"")
    status = await second.wait_exit()
    assert status > 0
    lines = [line for line in second.output().splitlines()[1:] if line.strip()]
    assert len(lines) == 1, f"expected one clear line, got {lines}"
    assert BUS_NAME in lines[0]
    # The first keeps its name and keeps working.
    assert await client.name_owner() == owner
    assert first.running
    assert await client.list_servers() == []


async def test_unreachable_bus_exits_non_zero(
    daemons: DaemonFactory, client: Client, tmp_path: Path
) -> None:
    # A socket path nobody listens on.
    address = f"unix:path={tmp_path / 'no-bus-here'}"
    d = await daemons.start("--no-state", wait=False, name="sockbridged-nobus", address=address)
    d.allow_log(r"")
    status = await d.wait_exit()
    assert status > 0, f"started against a bus it could not reach and exited with {status}"
    lines = [line for line in d.output().splitlines()[1:] if line.strip()]
    assert len(lines) == 1, f"expected one clear line, got {lines}"
