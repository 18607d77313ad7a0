# SPDX-License-Identifier: LGPL-2.1-or-later
"""The state file: servers survive a restart; a corrupt file is set aside."""

import asyncio
import json
from pathlib import Path
import stat

import pytest

from sbharness import (
    EVENT_TIMEOUT,
    HAVE_IPV6,
    Client,
    DaemonFactory,
    ServerInfo,
    TcpClient,
    UdpPeer,
    bound,
    data_in,
    data_of,
    free_port,
    server_status,
)


async def wait_path(path: Path, timeout: float = EVENT_TIMEOUT) -> None:
    """Wait, with a bound, for a file to appear (no file notification here)."""
    loop = asyncio.get_running_loop()
    timeout = bound(timeout)
    deadline = loop.time() + timeout
    while not await asyncio.to_thread(path.exists):
        if loop.time() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout} s")
        await asyncio.sleep(0.05)


async def test_state_file_restores_servers(
    daemons: DaemonFactory, client: Client, tmp_path: Path
) -> None:
    sb = client
    state = tmp_path / "state.json"
    d1 = await daemons.start(f"--state-file={state}")

    start = sb.rec.mark()
    tcp = await sb.create_server(
        0,
        "\r\n",
        False,
        "persist-tcp",
        {
            "bind-address": "127.0.0.1",
            "max-message-bytes": 8,
            "flush-timeout-ms": 0,
            "max-connections": 10,
        },
    )
    udp = await sb.create_server(
        free_port(use_udp=True), "\n", True, "persist-udp", {"udp-peer-timeout-ms": 5000}
    )
    ewc = await sb.create_server(0, "", False, "not-persisted", {"exit-with-caller": True})
    for p in (tcp, udp, ewc):
        await sb.wait_online(p, start=start)

    assert await d1.stop() == 0
    json.loads(await asyncio.to_thread(state.read_text))  # it exists and is JSON
    # Written atomically: no temporary file left behind.
    names = await asyncio.to_thread(lambda: sorted(p.name for p in tmp_path.iterdir()))
    assert [n for n in names if n.startswith(("state", ".state"))] == ["state.json"]

    mark = sb.rec.mark()
    await daemons.start(f"--state-file={state}")
    on_tcp = await sb.wait_online(tcp, start=mark)
    on_udp = await sb.wait_online(udp, start=mark)
    assert on_tcp.body == [tcp, "ONLINE", "persist-tcp"]
    assert on_udp.body == [udp, "ONLINE", "persist-udp"]

    assert await sb.list_servers() == sorted(
        [
            ServerInfo(tcp, False, "persist-tcp", b"\r\n", 0),
            ServerInfo(udp, True, "persist-udp", b"\n", 0),
        ]
    )
    assert not sb.rec.find(server_status(ewc, "ONLINE"), mark)

    # The restored TCP server frames with its delimiter and max-message-bytes...
    mark = sb.rec.mark()
    c = await TcpClient.connect("127.0.0.1", tcp)
    h = await sb.new_handle(tcp, mark)
    await c.send(b"one\r\ntwo\r\nABCDEFGHIJKL")
    sigs = await sb.rec.wait_count(data_in(handle=h), 3, start=mark)
    assert data_of(sigs) == [b"one\r\n", b"two\r\n", b"ABCDEFGH"]
    await c.close()
    await sb.wait_conn_offline(h, start=mark)
    assert data_of(sb.rec.find(data_in(handle=h), mark)) == [
        b"one\r\n",
        b"two\r\n",
        b"ABCDEFGH",
        b"IJKL",
    ]
    # ...and listens on its bind-address only.
    if HAVE_IPV6:
        with pytest.raises(ConnectionRefusedError):
            await TcpClient.connect("::1", tcp)

    # The restored UDP server splits datagrams at its delimiter.
    peer = await UdpPeer.open("127.0.0.1")
    mark = sb.rec.mark()
    peer.send(b"x\ny", "127.0.0.1", udp)
    hu = await sb.new_handle(udp, mark)
    sigs = await sb.rec.wait_count(data_in(handle=hu), 2, start=mark)
    assert data_of(sigs) == [b"x\n", b"y"]
    peer.close()


async def test_state_file_forgets_destroyed_servers(
    daemons: DaemonFactory, client: Client, tmp_path: Path
) -> None:
    sb = client
    state = tmp_path / "state.json"
    d1 = await daemons.start(f"--state-file={state}")
    start = sb.rec.mark()
    keep = await sb.create_server(0, "", False, "keep")
    drop = await sb.create_server(0, "", False, "drop")
    await sb.wait_online(keep, start=start)
    await sb.wait_online(drop, start=start)
    await sb.destroy_server(drop)
    await sb.wait_offline(drop, start=start)
    assert await d1.stop() == 0

    mark = sb.rec.mark()
    await daemons.start(f"--state-file={state}")
    await sb.wait_online(keep, start=mark)
    assert await sb.list_servers() == [ServerInfo(keep, False, "keep", b"", 0)]
    assert not sb.rec.find(server_status(drop, "ONLINE"), mark)


async def test_state_file_missing_is_fine(
    daemons: DaemonFactory, client: Client, tmp_path: Path
) -> None:
    state = tmp_path / "sub" / "state.json"
    await daemons.start(f"--state-file={state}")
    assert await client.list_servers() == []
    start = client.rec.mark()
    port = await client.create_server(0, "", False, "first")
    await client.wait_online(port, start=start)


async def make_truncated(daemons: DaemonFactory, client: Client, path: Path) -> bytes:
    """Half of a real state file with two servers."""
    d = await daemons.start(f"--state-file={path}", name="sockbridged-writer")
    start = client.rec.mark()
    p1 = await client.create_server(0, "\r\n", False, "one")
    p2 = await client.create_server(0, "", True, "two")
    await client.wait_online(p1, start=start)
    await client.wait_online(p2, start=start)
    assert await d.stop() == 0
    whole = await asyncio.to_thread(path.read_bytes)
    assert len(whole) > 10
    return whole[: len(whole) // 2]


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
async def test_corrupt_state_file_is_set_aside(
    daemons: DaemonFactory, client: Client, tmp_path: Path, kind: str
) -> None:
    sb = client
    state = tmp_path / "state.json"
    if kind == "garbage":
        content = b"\x00\xffnot json at all {{{ \xc3\x28\n"
    else:
        content = await make_truncated(daemons, client, state)
    await asyncio.to_thread(state.write_bytes, content)

    mark = sb.rec.mark()
    d = await daemons.start(f"--state-file={state}")
    d.allow_log(r"")  # the one warning about the corrupt file is expected
    corrupt = Path(f"{state}.corrupt")
    await wait_path(corrupt)
    assert await asyncio.to_thread(corrupt.read_bytes) == content

    # It serves nothing from it and keeps running.
    assert await sb.list_servers() == []
    assert not sb.rec.sb("ServerStatusChanged", mark)
    start = sb.rec.mark()
    port = await sb.create_server(0, "", False, "after-corrupt")
    await sb.wait_online(port, start=start)
    assert d.running

    warnings = d.warning_lines()
    assert len(warnings) == 1, f"expected one warning about the corrupt file, got {warnings}"
    assert "state.json" in warnings[0], warnings[0]


@pytest.mark.parametrize(
    ("old_mode", "umask"),
    [(0o644, 0o022), (0o644, 0o277), (None, 0o000)],
    ids=["over-0644", "over-0644-umask-0277", "new-umask-0000"],
)
async def test_state_file_is_0600_whatever_was_there(
    daemons: DaemonFactory, client: Client, tmp_path: Path, old_mode: int | None, umask: int
) -> None:
    """The file may come to hold secrets: 0600, whatever the old file's mode and the umask.

    GLib 2.84 keeps the mode of the file it replaces (over-0644 fails there
    with g_file_set_contents_full()); every GLib applies the umask to a
    new file (umask 0277 made it 0400).
    """
    sb = client
    state = tmp_path / "state.json"
    old_inode = None
    if old_mode is not None:
        await asyncio.to_thread(state.write_text, '{"version": 1, "servers": []}\n')
        await asyncio.to_thread(state.chmod, old_mode)
        old_inode = (await asyncio.to_thread(state.stat)).st_ino
    await daemons.start(f"--state-file={state}", umask=umask)

    start = sb.rec.mark()
    port = await sb.create_server(0, "", False, "private")
    await sb.wait_online(port, start=start)

    # CreateServer answers once the file is written.
    info = await asyncio.to_thread(state.stat)
    assert stat.S_IMODE(info.st_mode) == 0o600, oct(info.st_mode)
    assert info.st_ino != old_inode, "rewritten in place, not replaced atomically"
    written = json.loads(await asyncio.to_thread(state.read_text))
    assert [s["port"] for s in written["servers"]] == [port]
    names = await asyncio.to_thread(lambda: sorted(p.name for p in tmp_path.iterdir()))
    assert [n for n in names if n.startswith("state")] == ["state.json"]
