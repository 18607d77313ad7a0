# SPDX-License-Identifier: LGPL-2.1-or-later
"""The debug log of --verbose: servers, connections and frames, shortened."""

import re

import pytest

from sbharness import (
    Client,
    DaemonFactory,
    connect_tcp,
    data_in,
)

SHOWN = 64  # SB_LOG_FRAME_SHOWN: characters of a frame shown between the quotes


def debug_lines(output: str) -> list[str]:
    """The text of each debug message, without GLib's prefix and time stamp."""
    found = re.finditer(r"sockbridge-DEBUG: [\d:.]+: (.*)", output)
    return [m.group(1) for m in found]


async def one_server_one_client(sb: Client) -> tuple[int, int, int]:
    """Create, one client line each way, the client leaves, destroy: port, handle, remote port."""
    start = sb.rec.mark()
    port = await sb.create_server(0, "\n", False, "logged")
    await sb.wait_online(port, start=start)
    client = await connect_tcp(sb, port)
    mark = sb.rec.mark()
    await client.send(b"hello\tw\x00rld\xff\n" + b"A" * 100 + b"\n")
    await sb.rec.wait_count(data_in(handle=client.handle), 2, start=mark)
    await sb.send(client.handle, b"hi\r\n")
    assert await client.read_exactly(4) == b"hi\r\n"
    await client.close()
    await sb.wait_conn_offline(client.handle, start=mark)
    await sb.destroy_server(port)
    await sb.wait_offline(port, start=start)
    return port, client.handle, client.local_port


async def test_verbose_logs_servers_connections_and_frames(
    daemons: DaemonFactory, client: Client
) -> None:
    d = await daemons.start("--no-state", "--verbose")
    port, handle, remote = await one_server_one_client(client)

    # Each line is written before the signal or reply that tells of it.
    lines = debug_lines(d.output())
    expected = [
        f'port {port}/tcp: ONLINE, identifier "logged"',
        f"handle {handle}: ONLINE, port {port}/tcp, peer 127.0.0.1 port {remote}",
        f'handle {handle}: frame in, 13 bytes: "hello\\tw\\x00rld\\xff\\n"',
        f'handle {handle}: frame in, 101 bytes: "{"A" * SHOWN}"...',
        f'handle {handle}: frame out, 4 bytes: "hi\\r\\n"',
        f"handle {handle}: OFFLINE, port {port}/tcp, peer 127.0.0.1 port {remote}",
        f'port {port}/tcp: OFFLINE, identifier "logged"',
    ]
    logged = [line for line in lines if line in expected]
    assert logged == expected, "\n".join(lines)


async def test_quiet_daemon_logs_no_frames(
    daemons: DaemonFactory, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SB_TEST_VERBOSE", raising=False)  # it would add --verbose
    d = await daemons.start("--no-state")
    await one_server_one_client(client)
    assert debug_lines(d.output()) == []
    assert "hello" not in d.output()
