# SPDX-License-Identifier: LGPL-2.1-or-later
"""Hostile peers, stalled buses, bad input: bounded memory, nothing lost, nothing let in.

Each test drives the real daemon into one of its limits, checks what a peer
or caller sees there, checks that the daemon's resident memory stayed under a
stated bound, and ends by serving a normal client.

Memory is read from /proc/<pid>/status: VmHWM is the kernel's high-water
mark of VmRSS over the daemon's whole life (every test starts a fresh
daemon), so a peak between two samples still counts. Under $SB_TEST_WRAPPER
(valgrind) the process's RSS is valgrind's, not the daemon's, and an
AddressSanitizer build's RSS is mostly shadow memory and quarantine: only the
RSS assertions are skipped then. Under a wrapper the heaviest counts are
scaled down too (10 000 connection attempts become 1 000, and so on).

The figures docs/RELIABILITY.md quotes are printed (run pytest with -s) and
recorded as junit properties.
"""

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
import contextlib
from dataclasses import dataclass
import functools
import json
import math
import os
from pathlib import Path
import random
import re
import resource
import shlex
import signal
import socket
import subprocess
import threading
import time
from typing import Any

from dbus_fast import Variant
from dbus_fast.errors import DBusError
import pytest

import sbharness
from sbharness import (
    BUS_NAME,
    ERR_DBUS_INVALID_ARGS,
    ERR_INVALID_ARGUMENT,
    ERR_LIMIT_EXCEEDED,
    ERR_NOT_FOUND,
    EVENT_TIMEOUT,
    HAVE_IPV6,
    INTERFACE,
    OBJECT_PATH,
    WRAPPER,
    Client,
    Daemon,
    DaemonFactory,
    ServerInfo,
    Signal,
    TcpClient,
    UdpPeer,
    bound,
    conn_status,
    daemon_binary,
    data_in,
    data_of,
    port_is_free,
    running_bus,
    server_status,
)

HERE = Path(__file__).resolve().parent
KIB = 1024
MIB = 1024 * 1024

# The daemon's own limits (src/), as the interface XML documents them.
SEND_QUEUE_MAX = 4 * MIB  # per TCP connection / UDP peer (sb-tcp-connection.h)
CLOSE_TIMEOUT_S = 5.0  # ServerCloseClient's wait for a client that does not read
MAX_SERVERS = 1024  # sb-daemon.h
MAX_MESSAGE_BYTES_MAX = 16 * MIB

# Under a wrapper every step is ~30x slower: scale the heaviest counts down.
SCALE_DOWN = bool(WRAPPER)

ERR_UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"

Note = Callable[[str, object], None]


# --------------------------------------------------------------------------
# Helpers: memory, figures, statistics, a normal client


@pytest.fixture
def note(record_property: Callable[[str, object], None], request: pytest.FixtureRequest) -> Note:
    """Record a measured figure: printed (pytest -s) and kept as a junit property."""

    def record(name: str, value: object) -> None:
        record_property(name, value)
        print(f"figure {request.node.name}: {name} = {value}")

    return record


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in KiB."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(rest.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


@functools.cache
def rss_says_nothing() -> str | None:
    """Why the daemon's RSS is not its own, if it is not."""
    if WRAPPER:
        return "it runs under $SB_TEST_WRAPPER (valgrind's memory is all /proc shows)"
    if b"__asan_init" in daemon_binary().read_bytes():
        return "it is an AddressSanitizer build (shadow memory, quarantined frees)"
    return None


def check_rss(d: Daemon, bound_mib: int, note: Note, when: str) -> float:
    """Assert the daemon's peak RSS so far is under bound_mib; return it in MiB.

    Only this assertion is skipped (the figure is still noted) when the RSS
    says nothing: under a wrapper such as valgrind, or in a sanitizer build.
    """
    rss, hwm = memory_kib(d.pid)
    peak = hwm / KIB
    note(f"rss-mib-{when}", round(rss / KIB, 1))
    note(f"peak-rss-mib-{when}", round(peak, 1))
    if rss_says_nothing() is None:
        assert peak < bound_mib, (
            f"sockbridged's peak RSS {peak:.1f} MiB ({when}) is over the bound of {bound_mib} MiB"
        )
    return peak


async def statistics(sb: Client) -> dict[str, int]:
    body = await sb.call("GetStatistics")
    return {str(k): int(v) for k, v in body[0].items()}


async def serves_a_normal_tcp_client(sb: Client, port: int | None = None) -> None:
    """A line in, a reply out, a clean close: on a fresh TCP server, or on port (LF-framed)."""
    if port is None:
        start = sb.rec.mark()
        port = await sb.create_server(0, "\n", False, "normal")
        await sb.wait_online(port, start=start)
    mark = sb.rec.mark()
    c = await TcpClient.connect("127.0.0.1", port)
    handle = await sb.new_handle(port, mark)
    await c.send(b"hello after the storm\n")
    sig = await sb.rec.wait_for(data_in(handle=handle), start=mark)
    assert bytes(sig.body[1]) == b"hello after the storm\n"
    await sb.send(handle, b"still here\n")
    assert await c.read_exactly(11) == b"still here\n"
    await c.close()
    await sb.wait_conn_offline(handle, start=mark)


def first_difference(got: Sequence[bytes], expected: Sequence[bytes]) -> str | None:
    """None when equal; else where they differ (no megabyte diffs in reports)."""
    for i, (a, b) in enumerate(zip(got, expected, strict=False)):
        if a != b:
            return f"item {i} differs: {a[:40]!r}... != {b[:40]!r}..."
    if len(got) != len(expected):
        return f"{len(got)} items, expected {len(expected)}"
    return None


def bytes_mismatch(got: bytes, expected: bytes) -> str | None:
    """None when equal; else the first offset where they differ."""
    if got == expected:
        return None
    lo, hi = 0, min(len(got), len(expected))
    while lo < hi:  # the longest common prefix, by halves
        mid = (lo + hi + 1) // 2
        if got[:mid] == expected[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return f"{len(got)} bytes, expected {len(expected)}; they differ from offset {lo}"


async def recv_exactly(sock: socket.socket, n: int, timeout: float = EVENT_TIMEOUT) -> bytes:
    """n bytes from a non-blocking socket, or fewer if it reaches end of file."""
    loop = asyncio.get_running_loop()
    got = bytearray()
    while len(got) < n:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, n - len(got)), bound(timeout))
        if not chunk:
            break
        got += chunk
    return bytes(got)


async def wait_log(d: Daemon, text: str, timeout: float = EVENT_TIMEOUT) -> None:
    """Wait, with a bound, until the daemon's log holds text (no log notification here)."""
    loop = asyncio.get_running_loop()
    timeout = bound(timeout)
    deadline = loop.time() + timeout
    while text not in await asyncio.to_thread(d.output):
        if loop.time() > deadline:
            raise AssertionError(
                f"{d.name} did not log {text!r} within {timeout:.1f} s; its output:\n{d.output()}"
            )
        await asyncio.sleep(0.02)


# A bus that does not keep up lets the daemon hold at most 16 MiB of signals
# (sb-backlog.h) before it stops reading; GDBus keeps each queued signal twice
# (its body and the serialized message) until written. Twice 16 MiB plus the
# idle daemon (about 6 MiB) plus allocator slack:
BUS_RSS_BOUND_MIB = 64
# Where the bus is not the bottleneck (a few signals, or none).
QUIET_RSS_BOUND_MIB = 32


def raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        pytest.fail(f"this test needs {wanted} descriptors; RLIMIT_NOFILE allows only {soft}")


# --------------------------------------------------------------------------
# 1. Endless bytes without a delimiter

FLOOD_BYTES = 64 * MIB + 1000  # 1024 full cuts and a tail delivered at close
FLOOD_CUT = 64 * KIB


async def test_no_delimiter_flood_is_cut_at_max_message_bytes(
    sb: Client, daemon: Daemon, note: Note
) -> None:
    d = daemon
    start = sb.rec.mark()
    port = await sb.create_server(0, "\r\n", False, "flood", {"max-message-bytes": FLOOD_CUT})
    await sb.wait_online(port, start=start)

    payload = random.Random(1).randbytes(FLOOD_BYTES).replace(b"\r", b"R")
    sock = socket.create_connection(("127.0.0.1", port))
    mark = sb.rec.mark()
    handle = await sb.new_handle(port, mark)

    t0 = time.monotonic()
    sending = asyncio.ensure_future(asyncio.to_thread(sock.sendall, payload))
    while not sending.done():  # a few samples while the flood runs
        check_rss(d, BUS_RSS_BOUND_MIB, note, "during")
        await asyncio.wait({sending}, timeout=0.5)
    await sending
    sock.close()
    await sb.rec.wait_for(
        conn_status(handle=handle, status="OFFLINE"), timeout=60, start=mark, what="OFFLINE"
    )
    elapsed = time.monotonic() - t0
    frames = data_of(sb.rec.find(data_in(handle=handle), mark))

    assert max(len(f) for f in frames) <= FLOOD_CUT
    assert [len(f) for f in frames[:-1]] == [FLOOD_CUT] * (FLOOD_BYTES // FLOOD_CUT)
    assert len(frames[-1]) == FLOOD_BYTES % FLOOD_CUT
    assert sum(len(f) for f in frames) == FLOOD_BYTES
    mismatch = bytes_mismatch(b"".join(frames), payload)
    assert mismatch is None, mismatch
    note("flood-mib", round(FLOOD_BYTES / MIB, 1))
    note("flood-frames", len(frames))
    note("flood-seconds", round(elapsed, 2))
    note("flood-mib-per-s", round(FLOOD_BYTES / MIB / elapsed, 1))
    check_rss(d, BUS_RSS_BOUND_MIB, note, "after")
    await serves_a_normal_tcp_client(sb)


# Many clients each holding a partial frame just short of max-message-bytes:
# the daemon holds each one (it must, to deliver it whole), so its memory
# grows by max-message-bytes per connection, and no more.

HOLDING_CLIENTS = 8 if SCALE_DOWN else 64
HOLDING_BYTES = MIB - 1  # one byte short of the default max-message-bytes
HOLDING_RSS_BOUND_MIB = 16 + HOLDING_CLIENTS * 5 // 4  # the idle daemon, and 1 MiB each + 25 %


def tcp_receive_queue(port: int) -> int:
    """Bytes not yet read by the daemon on its established connections of port."""
    waiting = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                waiting += int(fields[4].split(":")[1], 16)
    return waiting


async def test_partial_frames_of_many_clients(sb: Client, daemon: Daemon, note: Note) -> None:
    start = sb.rec.mark()
    port = await sb.create_server(0, "\n", False, "holding", {"flush-timeout-ms": 0})
    await sb.wait_online(port, start=start)
    mark = sb.rec.mark()
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(HOLDING_CLIENTS)]
    onlines = await sb.rec.wait_count(
        conn_status(port=port, status="ONLINE"), HOLDING_CLIENTS, start=mark, what="ONLINE"
    )
    handle_of = {c.remote_port: c.handle for c in await sb.list_connections()}
    handles = [handle_of[s.getsockname()[1]] for s in socks]
    assert sorted(handles) == sorted(s.body[0] for s in onlines)

    payloads = [
        f"{i:04d}".encode() + random.Random(i).randbytes(HOLDING_BYTES - 4).replace(b"\n", b"N")
        for i in range(HOLDING_CLIENTS)
    ]
    await asyncio.gather(
        *(asyncio.to_thread(s.sendall, p) for s, p in zip(socks, payloads, strict=True))
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound(EVENT_TIMEOUT)
    while tcp_receive_queue(port) > 0:  # wait until the daemon has read it all
        assert loop.time() < deadline, "the daemon does not read its clients"
        await asyncio.sleep(0.02)
    assert not sb.rec.find(data_in(), mark), "a partial frame was delivered early"
    note("holding-clients", HOLDING_CLIENTS)
    note("holding-mib", round(HOLDING_CLIENTS * HOLDING_BYTES / MIB, 1))
    check_rss(daemon, HOLDING_RSS_BOUND_MIB, note, "holding")

    # One more byte: the delimiter completes a frame; anything else cuts it.
    socks[0].sendall(b"\n")
    socks[1].sendall(b"x")
    first = await sb.rec.wait_for(data_in(handle=handles[0]), start=mark)
    second = await sb.rec.wait_for(data_in(handle=handles[1]), start=mark)
    assert bytes(first.body[1]) == payloads[0] + b"\n"
    assert bytes(second.body[1]) == payloads[1] + b"x"
    # Closing delivers each held frame, before its OFFLINE.
    for sock in socks:
        sock.close()
    await sb.rec.wait_count(
        conn_status(port=port, status="OFFLINE"), HOLDING_CLIENTS, start=mark, what="OFFLINE"
    )
    for i, handle in enumerate(handles[2:], start=2):
        frames = data_of(sb.rec.find(data_in(handle=handle), mark))
        assert len(frames) == 1, f"client {i}: {len(frames)} frames"
        assert frames[0] == payloads[i], f"client {i}: {bytes_mismatch(frames[0], payloads[i])}"
    rss, _ = memory_kib(daemon.pid)
    note("rss-mib-released", round(rss / KIB, 1))
    await serves_a_normal_tcp_client(sb)


# --------------------------------------------------------------------------
# 2. Thousands of connections on a server with max-connections 100

KEPT_CLIENTS = 100
# 10 000 attempts; 1 000 under a wrapper.
CONNECT_ATTEMPTS = 1_000 if SCALE_DOWN else 10_000
CONNECT_BATCH = 250
# From connect() to end of file, for a connection past the limit.
REFUSED_PROMPTLY_S = 2.0


async def refused_attempt(port: int) -> float:
    """Connect past the limit: the daemon must accept and close at once.

    Returns the seconds from connect() to end of file (or reset).
    """
    loop = asyncio.get_running_loop()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        t0 = loop.time()
        await loop.sock_connect(s, ("127.0.0.1", port))
        try:
            data = await loop.sock_recv(s, 1)
        except ConnectionResetError:
            data = b""
        assert data == b"", f"a connection past max-connections received {data!r}"
        return loop.time() - t0
    finally:
        s.close()


async def test_ten_thousand_connections_past_max_connections(
    sb: Client, daemon: Daemon, note: Note
) -> None:
    raise_fd_limit(KEPT_CLIENTS + CONNECT_BATCH + 256)
    start = sb.rec.mark()
    port = await sb.create_server(0, "\n", False, "crowd", {"max-connections": KEPT_CLIENTS})
    await sb.wait_online(port, start=start)

    mark = sb.rec.mark()
    kept = [await TcpClient.connect("127.0.0.1", port) for _ in range(KEPT_CLIENTS)]
    await sb.rec.wait_count(
        conn_status(port=port, status="ONLINE"), KEPT_CLIENTS, start=mark, what="ONLINE"
    )
    handle_of = {c.remote_port: c.handle for c in await sb.list_connections()}
    for k in kept:
        k.handle = handle_of[k.local_port]
    before = await statistics(sb)

    t0 = time.monotonic()
    latencies: list[float] = []
    for first in range(0, CONNECT_ATTEMPTS, CONNECT_BATCH):
        n = min(CONNECT_BATCH, CONNECT_ATTEMPTS - first)
        batch = [asyncio.wait_for(refused_attempt(port), bound(EVENT_TIMEOUT)) for _ in range(n)]
        latencies += await asyncio.gather(*batch)
    elapsed = time.monotonic() - t0

    after = await statistics(sb)
    assert after["connections-refused"] - before["connections-refused"] == CONNECT_ATTEMPTS
    assert after["connections-accepted"] == before["connections-accepted"]
    assert after["clients"] == KEPT_CLIENTS
    assert await sb.list_servers() == [ServerInfo(port, False, "crowd", b"\n", KEPT_CLIENTS)]
    assert len(await sb.list_connections()) == KEPT_CLIENTS
    # No signal for a refused connection.
    assert len(sb.rec.find(conn_status(port=port), mark)) == KEPT_CLIENTS

    # Logged at powers of two only: 1, 2, 4, ... 8192 for 10 000.
    refusal_lines = [
        line
        for line in daemon.output().splitlines()
        if "connection refused at a connection limit" in line
    ]
    most = int(math.log2(CONNECT_ATTEMPTS)) + 1
    assert 1 <= len(refusal_lines) <= most, refusal_lines
    assert f"({2 ** (most - 1)} so far)" in refusal_lines[-1], refusal_lines[-1]

    latencies.sort()
    assert latencies[-1] < bound(REFUSED_PROMPTLY_S)
    note("connect-attempts", CONNECT_ATTEMPTS)
    note("connect-attempts-seconds", round(elapsed, 2))
    note("refused-eof-median-ms", round(latencies[len(latencies) // 2] * 1000, 2))
    note("refused-eof-max-ms", round(latencies[-1] * 1000, 1))
    note("refusal-log-lines", len(refusal_lines))
    check_rss(daemon, QUIET_RSS_BOUND_MIB, note, "after")

    # The kept clients were not disturbed: each one's line arrives.
    mark = sb.rec.mark()
    for i, k in enumerate(kept):
        k.writer.write(f"kept {i}\n".encode())
    for k in kept:
        await k.writer.drain()
    sigs = await sb.rec.wait_count(data_in(), KEPT_CLIENTS, start=mark, what="kept lines")
    got = {s.body[0]: bytes(s.body[1]) for s in sigs}
    assert got == {k.handle: f"kept {i}\n".encode() for i, k in enumerate(kept)}
    await sb.send(kept[-1].handle, b"pong\n")
    assert await kept[-1].read_exactly(5) == b"pong\n"

    # One leaves: a new client gets its place, and the one after is refused again.
    mark = sb.rec.mark()
    await kept[0].close()
    await sb.wait_conn_offline(kept[0].handle, start=mark)
    newcomer = await TcpClient.connect("127.0.0.1", port)
    handle = await sb.new_handle(port, mark)
    await newcomer.send(b"let in\n")
    sig = await sb.rec.wait_for(data_in(handle=handle), start=mark)
    assert bytes(sig.body[1]) == b"let in\n"
    await asyncio.wait_for(refused_attempt(port), bound(EVENT_TIMEOUT))
    for k in [*kept[1:], newcomer]:
        await k.close()
    await serves_a_normal_tcp_client(sb)


# The daemon-wide cap: descriptors kept back for servers and the bus
# (2 x 1024 servers + 64, src/main.c), the rest for clients.
FD_RESERVE = 2 * MAX_SERVERS + 64
# Room for 100 clients (below reserve + 64 the daemon would still allow 64).
DAEMON_FD_LIMIT = FD_RESERVE + 100


async def start_with_fd_limit(
    daemons: DaemonFactory, client: Client, limit: int, monkeypatch: pytest.MonkeyPatch
) -> Daemon:
    """sockbridged with RLIMIT_NOFILE lowered to limit, soft and hard, by a shell in front.

    The shell lowers the limit, then runs the wrapper (valgrind), if any,
    which runs the daemon.
    """
    script = daemons.workdir / "sockbridged-fd-limited"
    command = shlex.join([*WRAPPER, str(daemons.binary)])
    script.write_text(f'#!/bin/sh\nulimit -n {limit} || exit 97\nexec {command} "$@"\n')
    script.chmod(0o755)
    d = Daemon(
        script, daemons.address, daemons.workdir, ["--no-state", "--verbose"], "sockbridged-fds"
    )
    daemons.daemons.append(d)  # stopped and checked like the others
    with monkeypatch.context() as patch:
        patch.setattr(sbharness, "WRAPPER", [])  # the script runs it
        await d.start()
    await d.wait_ready(client)
    return d


async def test_daemon_wide_client_cap(
    daemons: DaemonFactory, client: Client, note: Note, monkeypatch: pytest.MonkeyPatch
) -> None:
    sb = client
    d = await start_with_fd_limit(daemons, client, DAEMON_FD_LIMIT, monkeypatch)
    found = re.search(r"serving at most (\d+) clients in all", d.output())
    assert found, d.output()
    cap = int(found.group(1))
    if not WRAPPER:  # valgrind keeps some descriptors of the limit for itself
        assert cap == DAEMON_FD_LIMIT - FD_RESERVE
    note("daemon-wide-cap", cap)

    start = sb.rec.mark()
    a = await sb.create_server(0, "\n", False, "cap-a")
    b = await sb.create_server(0, "\n", False, "cap-b")
    udp = await sb.create_server(0, "", True, "cap-udp")
    for port in (a, b, udp):
        await sb.wait_online(port, start=start)
    mark = sb.rec.mark()
    clients = [await TcpClient.connect("127.0.0.1", a if i % 2 else b) for i in range(cap)]
    await sb.rec.wait_count(conn_status(status="ONLINE"), cap, start=mark, what="ONLINE")
    before = await statistics(sb)
    assert before["clients"] == cap

    # Full, though each server is far below its own max-connections.
    for port in (a, b):
        await asyncio.wait_for(refused_attempt(port), bound(EVENT_TIMEOUT))
    peer = await UdpPeer.open("127.0.0.1")
    peer.send(b"let me in", "127.0.0.1", udp)
    # No signal for a refused peer: wait for the counter.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound(EVENT_TIMEOUT)
    while (await statistics(sb))["connections-refused"] < before["connections-refused"] + 3:
        assert loop.time() < deadline, "the new UDP peer was neither served nor refused"
        await asyncio.sleep(0.02)
    after = await statistics(sb)
    assert after["connections-refused"] == before["connections-refused"] + 3
    assert after["clients"] == cap
    assert not sb.rec.find(conn_status(port=udp), mark)

    # One leaves: the next one gets its place.
    mark = sb.rec.mark()
    await clients[0].close()
    await sb.rec.wait_for(conn_status(status="OFFLINE"), start=mark)
    peer.send(b"now?", "127.0.0.1", udp)
    h_peer = await sb.new_handle(udp, mark)
    sig = await sb.rec.wait_for(data_in(handle=h_peer), start=mark)
    assert bytes(sig.body[1]) == b"now?"
    check_rss(d, QUIET_RSS_BOUND_MIB, note, "after")
    peer.close()
    for c in clients:
        await c.close()
    await sb.rec.wait_count(
        lambda s: conn_status(status="OFFLINE")(s) and s.body[1] in (a, b),
        cap,
        start=mark,
        what="every TCP client OFFLINE",
    )
    await serves_a_normal_tcp_client(sb)


# --------------------------------------------------------------------------
# 3. A client that never reads while ServerSend is called again and again

SEND_CHUNK = 64 * KIB
RESPONSIVE_S = 1.0  # the longest a ListServers may take meanwhile


def numbered_chunk(i: int) -> bytes:
    return i.to_bytes(4, "big") + bytes([i % 251]) * (SEND_CHUNK - 4)


async def fill_until_refused(
    sb: Client, handle: int, first: int
) -> tuple[list[bytes], DBusError, float]:
    """ServerSend 64 KiB chunks until LimitExceeded, timing a ListServers every 16 calls.

    Returns the accepted chunks, the error and the slowest ListServers.
    """
    accepted: list[bytes] = []
    slowest = 0.0
    # Kernel buffers (at most tcp_wmem's 4 MiB here) and the 4 MiB queue.
    for i in range(first, first + 4096):
        if i % 16 == 0:
            t0 = time.monotonic()
            await sb.list_servers()
            slowest = max(slowest, time.monotonic() - t0)
        chunk = numbered_chunk(i)
        try:
            await sb.send(handle, chunk)
        except DBusError as e:
            return accepted, e, slowest
        accepted.append(chunk)
    raise AssertionError(f"{len(accepted)} chunks queued to a client that never reads")


async def test_client_that_never_reads(sb: Client, daemon: Daemon, note: Note) -> None:
    start = sb.rec.mark()
    port = await sb.create_server(0, "\n", False, "stuck")
    await sb.wait_online(port, start=start)

    mark = sb.rec.mark()
    stuck = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window
    stuck.connect(("127.0.0.1", port))
    stuck.setblocking(False)
    h_stuck = await sb.new_handle(port, mark)
    other = await TcpClient.connect("127.0.0.1", port)
    other.handle = await sb.new_handle(port, mark, taken=[h_stuck])
    before = await statistics(sb)

    accepted, error, slowest = await fill_until_refused(sb, h_stuck, 0)
    assert error.type == ERR_LIMIT_EXCEEDED, error
    assert str(SEND_QUEUE_MAX) in error.text, error.text
    # Nothing of the refused call was counted, and a second try is refused too.
    accepted_bytes = sum(len(c) for c in accepted)
    assert (await statistics(sb))["bytes-out"] - before["bytes-out"] == accepted_bytes
    with pytest.raises(DBusError) as again:
        await sb.send(h_stuck, numbered_chunk(99_999))
    assert again.value.type == ERR_LIMIT_EXCEEDED
    note("accepted-before-limit-mib", round(accepted_bytes / MIB, 2))
    note("slowest-list-servers-ms", round(slowest * 1000, 1))
    assert slowest < bound(RESPONSIVE_S)

    # The daemon answers at once, and serves the other client of the server.
    t0 = time.monotonic()
    await sb.list_servers()
    assert time.monotonic() - t0 < bound(RESPONSIVE_S)
    await sb.send(other.handle, b"reply\n")
    assert await other.read_exactly(6) == b"reply\n"
    mark = sb.rec.mark()
    await other.send(b"request\n")
    sig = await sb.rec.wait_for(data_in(handle=other.handle), start=mark)
    assert bytes(sig.body[1]) == b"request\n"
    check_rss(daemon, QUIET_RSS_BOUND_MIB, note, "full-queue")

    # Reading now yields exactly the accepted chunks, then a marker: the
    # refused calls queued nothing.
    expected = b"".join(accepted)
    mismatch = bytes_mismatch(await recv_exactly(stuck, len(expected)), expected)
    assert mismatch is None, mismatch
    await sb.send(h_stuck, b"MARK")
    assert await recv_exactly(stuck, 4) == b"MARK"

    # Full again; ServerCloseClient gives up on it after its grace period.
    accepted, error, _ = await fill_until_refused(sb, h_stuck, len(accepted) + 1)
    assert error.type == ERR_LIMIT_EXCEEDED
    mark = sb.rec.mark()
    t0 = time.monotonic()
    await sb.close_client(h_stuck)
    await sb.rec.wait_for(
        conn_status(handle=h_stuck, status="OFFLINE"),
        timeout=CLOSE_TIMEOUT_S + 3,
        start=mark,
        what="OFFLINE of the client that never reads",
    )
    waited = time.monotonic() - t0
    note("close-client-offline-after-s", round(waited, 2))
    assert waited >= CLOSE_TIMEOUT_S - 1.5, "closed without waiting for the client to read"

    # What it reads then is a prefix of what was accepted, in order, then EOF.
    expected = b"".join(accepted)
    got = await recv_exactly(stuck, len(expected) + 1)
    stuck.close()
    assert 0 < len(got) < len(expected)
    mismatch = bytes_mismatch(got, expected[: len(got)])
    assert mismatch is None, mismatch
    assert [c.handle for c in await sb.list_connections()] == [other.handle]
    await other.close()
    check_rss(daemon, QUIET_RSS_BOUND_MIB, note, "after")
    await serves_a_normal_tcp_client(sb)


# --------------------------------------------------------------------------
# 4. A UDP flood from many source ports


def data_with(handle: int, data: bytes) -> Callable[[Signal], bool]:
    def pred(s: Signal) -> bool:
        return data_in(handle=handle)(s) and bytes(s.body[1]) == data

    return pred


UDP_MAX_PEERS = 50
# 2 000 source ports; 500 under a wrapper.
UDP_SOURCES = 500 if SCALE_DOWN else 2_000
# New sources between two datagrams of the talker: fewer than the table
# holds, so the talker is never the idlest peer.
UDP_BATCH = 25


async def test_udp_flood_from_many_source_ports(sb: Client, daemon: Daemon, note: Note) -> None:
    raise_fd_limit(UDP_SOURCES + 256)
    start = sb.rec.mark()
    port = await sb.create_server(
        0, "", True, "udp-flood", {"max-connections": UDP_MAX_PEERS, "udp-peer-timeout-ms": 0}
    )
    await sb.wait_online(port, start=start)

    talker = await UdpPeer.open("127.0.0.1")
    mark = sb.rec.mark()
    talker.send(b"tick -1", "127.0.0.1", port)
    h_talker = await sb.new_handle(port, mark)
    before = await statistics(sb)

    sources: list[socket.socket] = []
    flood_start = sb.rec.mark()
    most_listed = 0
    t0 = time.monotonic()
    try:
        for batch in range(0, UDP_SOURCES, UDP_BATCH):
            for i in range(batch, min(batch + UDP_BATCH, UDP_SOURCES)):
                src = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                src.bind(("127.0.0.1", 0))
                src.setblocking(False)
                src.sendto(f"source {i}".encode(), ("127.0.0.1", port))
                sources.append(src)
            await sb.rec.wait_count(
                lambda s: conn_status(port=port, status="ONLINE")(s) and s.body[0] != h_talker,
                len(sources),
                start=flood_start,
                what="flood peers ONLINE",
            )
            # The talker speaks every batch: it is never the idlest peer.
            tick = f"tick {batch}".encode()
            talker.send(tick, "127.0.0.1", port)
            await sb.rec.wait_for(
                data_with(h_talker, tick), start=flood_start, what="the talker's tick"
            )
            if batch % (4 * UDP_BATCH) == 0:
                listed = len(await sb.list_connections())
                most_listed = max(most_listed, listed)
                assert listed <= UDP_MAX_PEERS
        elapsed = time.monotonic() - t0

        after = await statistics(sb)
        evicted = UDP_SOURCES - (UDP_MAX_PEERS - 1)
        assert after["udp-peers-evicted"] - before["udp-peers-evicted"] == evicted
        assert after["connections-refused"] == before["connections-refused"]

        # Never more than max-connections at once, counted in signal order.
        flood_signals = sb.rec.find(conn_status(port=port), flood_start)
        open_now = 1  # the talker
        most_open = 1
        for s in flood_signals:
            open_now += 1 if s.body[2] == "ONLINE" else -1
            most_open = max(most_open, open_now)
        assert most_open <= UDP_MAX_PEERS

        # The idlest first: flood peers leave in the order they came; the
        # talker never leaves and keeps its handle.
        onlines = [s.body[0] for s in flood_signals if s.body[2] == "ONLINE"]
        offlines = [s.body[0] for s in flood_signals if s.body[2] == "OFFLINE"]
        assert h_talker not in offlines
        assert offlines == onlines[:evicted]
        assert {s.body[0] for s in sb.rec.find(data_in(remote_port=talker.local_port))} == {
            h_talker
        }
        conns = await sb.list_connections()
        assert [c.handle for c in conns] == sorted([h_talker, *onlines[evicted:]])
        assert len(conns) == UDP_MAX_PEERS
        note("udp-sources", UDP_SOURCES)
        note("udp-peers-evicted", evicted)
        note("udp-most-listed", most_listed)
        note("udp-flood-seconds", round(elapsed, 2))
        check_rss(daemon, QUIET_RSS_BOUND_MIB, note, "after")
    finally:
        for src in sources:
            src.close()

    # A normal peer is then served, both ways.
    peer = await UdpPeer.open("127.0.0.1")
    mark = sb.rec.mark()
    peer.send(b"normal", "127.0.0.1", port)
    handle = await sb.new_handle(port, mark)
    sig = await sb.rec.wait_for(data_in(handle=handle), start=mark)
    assert bytes(sig.body[1]) == b"normal"
    await sb.send(handle, b"answer")
    assert (await peer.recv())[0] == b"answer"
    await sb.send(h_talker, b"still you")
    assert (await talker.recv())[0] == b"still you"
    peer.close()
    talker.close()
    await serves_a_normal_tcp_client(sb)


# --------------------------------------------------------------------------
# 5. Stalled D-Bus consumers and a stopped bus


class Blaster:
    """Writes a payload to a connected TCP socket from a thread, as fast as it is taken."""

    def __init__(self, sock: socket.socket, payload: bytes, piece: int = 256 * KIB) -> None:
        self.sock = sock
        self.payload = payload
        self.piece = piece
        self.sent = 0
        self.error: OSError | None = None
        self.finished = threading.Event()
        self._thread = threading.Thread(target=self._run, name="blaster", daemon=True)

    def _run(self) -> None:
        view = memoryview(self.payload)
        try:
            while self.sent < len(view):
                self.sent += self.sock.send(view[self.sent : self.sent + self.piece])
        except OSError as e:
            self.error = e
        finally:
            self.finished.set()

    def start(self) -> None:
        self._thread.start()

    async def wait_done(self, timeout: float) -> None:
        timeout = bound(timeout)
        if not await asyncio.to_thread(self.finished.wait, timeout):
            raise AssertionError(
                f"the client sent {self.sent} of {len(self.payload)} bytes in {timeout:.0f} s"
            )
        assert self.error is None, self.error

    async def wait_held_back(self, timeout: float = EVENT_TIMEOUT) -> int:
        """Wait until the client cannot write any more; return what it sent by then."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + bound(timeout)
        last = -1
        while self.sent != last:
            if self.finished.is_set() or loop.time() > deadline:
                raise AssertionError(
                    f"the client was not held back: it sent {self.sent} of "
                    f"{len(self.payload)} bytes"
                )
            last = self.sent
            await asyncio.sleep(0.3)  # let the flood run; a held-back client makes no progress
        return self.sent

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(bound(EVENT_TIMEOUT))
        self.sock.close()


def numbered_frames(count: int, size: int) -> list[bytes]:
    return [f"{i:08d} ".encode().ljust(size - 1, b"s") + b"\n" for i in range(count)]


async def start_tcp_flood_target(sb: Client, identifier: str) -> tuple[int, socket.socket, int]:
    """A TCP server framing at LF, and one connected client: (port, socket, handle)."""
    port = await sb.start_server("\n", False, identifier, {"flush-timeout-ms": 0})
    mark = sb.rec.mark()
    sock = socket.create_connection(("127.0.0.1", port))
    return port, sock, await sb.new_handle(port, mark)


SUBSCRIBER_FRAME = 16 * KIB
SUBSCRIBER_BYTES = 32 * MIB


async def test_stopped_subscriber_does_not_stall_the_daemon(
    sb: Client, daemon: Daemon, bus_address: str, tmp_path: Path, note: Note
) -> None:
    """A subscriber stopped with SIGSTOP: the bus queues for it, the daemon goes on.

    dbus-daemon keeps reading from sockbridged and queues (or, past its
    max_outgoing_bytes, drops) per recipient, so the daemon's own memory
    stays bounded and every other subscriber gets everything.
    """
    log = tmp_path / "gdbus-monitor.log"
    with log.open("wb") as out:
        monitor = await asyncio.create_subprocess_exec(
            "gdbus",
            "monitor",
            "--address",
            bus_address,
            "--dest",
            BUS_NAME,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + bound(EVENT_TIMEOUT)
        # It subscribes to the signals before it asks who owns the name.
        while "is owned by" not in log.read_text(errors="replace"):
            assert loop.time() < deadline, f"gdbus monitor did not start: {log.read_text()}"
            await asyncio.sleep(0.02)
        monitor.send_signal(signal.SIGSTOP)

        _, sock, handle = await start_tcp_flood_target(sb, "stopped-subscriber")
        frames = numbered_frames(SUBSCRIBER_BYTES // SUBSCRIBER_FRAME, SUBSCRIBER_FRAME)
        blaster = Blaster(sock, b"".join(frames))
        mark = sb.rec.mark()
        t0 = time.monotonic()
        blaster.start()
        try:
            while not blaster.finished.is_set():
                check_rss(daemon, BUS_RSS_BOUND_MIB, note, "during")
                await asyncio.to_thread(blaster.finished.wait, 0.5)
            await blaster.wait_done(60)
        finally:
            blaster.abort()
        await sb.rec.wait_for(
            conn_status(handle=handle, status="OFFLINE"), timeout=60, start=mark, what="OFFLINE"
        )
        elapsed = time.monotonic() - t0
        got = data_of(sb.rec.find(data_in(handle=handle), mark))
        assert first_difference(got, frames) is None, first_difference(got, frames)
        stats = await statistics(sb)
        note("subscriber-flood-mib", SUBSCRIBER_BYTES // MIB)
        note("subscriber-flood-seconds", round(elapsed, 2))
        note("subscriber-bus-stalls", stats["bus-stalls"])
        check_rss(daemon, BUS_RSS_BOUND_MIB, note, "after")
        await serves_a_normal_tcp_client(sb)
    finally:
        monitor.kill()  # also ends a stopped process
        await monitor.wait()


@dataclass
class PrivateBus:
    """A dbus-daemon of one test's own, which the test may stop and continue."""

    proc: asyncio.subprocess.Process
    address: str

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def cont(self) -> None:
        self.proc.send_signal(signal.SIGCONT)


@pytest.fixture
async def private_bus(tmp_path: Path) -> AsyncIterator[PrivateBus]:
    """Ask for it before `daemons`, so that it outlives the daemons on it."""
    async with running_bus(HERE / "bus.conf", tmp_path / "private-dbus.log") as (proc, address):
        yield PrivateBus(proc, address)


@contextlib.asynccontextmanager
async def daemon_on(
    daemons: DaemonFactory, bus: PrivateBus
) -> AsyncIterator[tuple[Daemon, Client]]:
    """sockbridged on the private bus, and a subscriber there that never stalls."""
    sub = await Client.connect(bus.address)
    try:
        d = await daemons.start("--no-state", address=bus.address, wait=False)
        await d.wait_ready(sub)
        yield d, sub
        bus.cont()
        assert await d.stop() == 0
    finally:
        bus.cont()
        sub.disconnect()


STALL_FRAME = 8 * KIB
# More than the daemon's backlog (16 MiB) and both ends' TCP buffers (here up
# to tcp_rmem's 32 MiB and tcp_wmem's 4 MiB) can take.
STALL_BYTES = 128 * MIB
# The bound the issue states for a stopped bus.
STALL_RSS_BOUND_MIB = 80


async def test_stopped_bus_holds_tcp_clients_back_and_loses_nothing(
    private_bus: PrivateBus, daemons: DaemonFactory, note: Note
) -> None:
    async with daemon_on(daemons, private_bus) as (d, sub):
        _, sock, handle = await start_tcp_flood_target(sub, "stopped-bus")
        frames = numbered_frames(STALL_BYTES // STALL_FRAME, STALL_FRAME)
        blaster = Blaster(sock, b"".join(frames))
        mark = sub.rec.mark()
        try:
            private_bus.stop()
            blaster.start()
            await wait_log(d, "pausing reads until it drains", timeout=30)
            held_at = await blaster.wait_held_back()
            assert held_at < STALL_BYTES
            check_rss(d, STALL_RSS_BOUND_MIB, note, "bus-stopped")
            note("stopped-bus-client-held-at-mib", round(held_at / MIB, 1))

            t0 = time.monotonic()
            private_bus.cont()
            await blaster.wait_done(120)
        finally:
            blaster.abort()
        await sub.rec.wait_for(
            conn_status(handle=handle, status="OFFLINE"), timeout=120, start=mark, what="OFFLINE"
        )
        note("stopped-bus-drain-seconds", round(time.monotonic() - t0, 2))
        got = data_of(sub.rec.find(data_in(handle=handle), mark))
        # Nothing lost, nothing twice, in order.
        assert first_difference(got, frames) is None, first_difference(got, frames)
        assert "the bus drained; reading again" in d.output()
        stats = await statistics(sub)
        assert stats["bus-stalls"] >= 1
        note("stopped-bus-stalls", stats["bus-stalls"])
        check_rss(d, STALL_RSS_BOUND_MIB, note, "after")
        await serves_a_normal_tcp_client(sub)


def udp_socket_queues(port: int) -> tuple[int, int]:
    """(bytes waiting, datagrams the kernel dropped) of the UDP sockets bound to port."""
    waiting = dropped = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                waiting += int(fields[4].split(":")[1], 16)
                dropped += int(fields[-1])
    return waiting, dropped


STALL_DATAGRAM = 32_000


def numbered_datagram(i: int) -> bytes:
    return i.to_bytes(4, "big") + bytes([i % 251]) * (STALL_DATAGRAM - 4)


async def test_stopped_bus_drops_and_counts_udp_datagrams(
    private_bus: PrivateBus, daemons: DaemonFactory, note: Note
) -> None:
    async with daemon_on(daemons, private_bus) as (d, sub):
        start = sub.rec.mark()
        port = await sub.create_server(0, "", True, "stopped-bus-udp")
        await sub.wait_online(port, start=start)
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        mark = sub.rec.mark()
        peer.sendto(numbered_datagram(0), ("127.0.0.1", port))
        handle = await sub.new_handle(port, mark)
        await sub.rec.wait_for(data_in(handle=handle), start=mark)

        private_bus.stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + bound(30)
        sent = 1
        # Until the backlog passes its high mark; then as many again, dropped.
        while "pausing reads until it drains" not in d.output():
            assert loop.time() < deadline, f"no congestion after {sent} datagrams"
            for _ in range(8):
                peer.sendto(numbered_datagram(sent), ("127.0.0.1", port))
                sent += 1
            await asyncio.sleep(0.002)  # let the daemon read: the kernel would drop them
        congested_at = sent
        for _ in range(congested_at // 8):
            peer.sendto(numbered_datagram(sent), ("127.0.0.1", port))
            sent += 1
            await asyncio.sleep(0.0005)
        while udp_socket_queues(port)[0] > 0:  # every datagram was read
            assert loop.time() < deadline, "the daemon stopped reading its UDP socket"
            await asyncio.sleep(0.02)
        check_rss(d, STALL_RSS_BOUND_MIB, note, "bus-stopped")

        private_bus.cont()
        await wait_log(d, "the bus drained; reading again", timeout=60)
        stats = await statistics(sub)
        dropped = stats["udp-datagrams-dropped"]
        assert dropped > 0
        assert stats["bus-stalls"] >= 1

        # Reading again: a new datagram comes through.
        peer.sendto(b"after", ("127.0.0.1", port))
        await sub.rec.wait_for(data_with(handle, b"after"), start=mark)
        got = data_of(sub.rec.find(data_in(handle=handle), mark))[:-1]
        numbers = [int.from_bytes(g[:4], "big") for g in got]
        # What was delivered is intact and in order; the rest was dropped.
        assert numbers == sorted(set(numbers))
        assert all(g == numbered_datagram(n) for g, n in zip(got, numbers, strict=True))
        # Every datagram is accounted for: delivered, dropped and counted by
        # the daemon, or dropped by the kernel when its socket buffer was full.
        kernel_dropped = udp_socket_queues(port)[1]
        assert len(got) + dropped + kernel_dropped == sent
        note("udp-sent-while-stopped", sent - 1)
        note("udp-delivered", len(got))
        note("udp-datagrams-dropped", dropped)
        note("udp-kernel-dropped", kernel_dropped)
        peer.close()
        check_rss(d, STALL_RSS_BOUND_MIB, note, "after")
        await serves_a_normal_tcp_client(sub)


# --------------------------------------------------------------------------
# 6. State files that are not what they should be (test_state_file.py covers
# a few bytes of garbage and a truncated file)

HUGE_STATE_BYTES = 20 * MIB
# A refused state file must not cost memory in proportion to its size: the
# file's bytes once, and the idle daemon.
STATE_RSS_BOUND_MIB = 48
STATE_START_BOUND_S = 10.0


def state_entry(port: int, use_udp: bool, identifier: str) -> dict[str, Any]:
    """One server as the daemon writes it."""
    return {
        "port": port,
        "udp": use_udp,
        "identifier": identifier,
        "delimiter": "Cg==",  # LF
        "flush-timeout-ms": 1000,
        "max-message-bytes": 1048576,
        "max-connections": 256,
        "udp-peer-timeout-ms": 60000,
        "owner-uid": os.geteuid(),
    }


def huge_state_file() -> bytes:
    """20 MiB of well-formed state: servers as the daemon writes them, ~65 000 of them.

    There are only 64 512 unprivileged TCP ports, so it names some twice, far down.
    """
    head, tail = b'{\n  "version" : 1,\n  "servers" : [\n', b"\n  ]\n}\n"
    entries: list[bytes] = []
    size = len(head) + len(tail)
    while size < HUGE_STATE_BYTES:
        i = len(entries)
        entry = state_entry(1024 + i % 64512, False, f"{i:08d}" + "x" * 56)
        text = json.dumps(entry, indent=2).replace("\n", "\n    ").encode()
        entries.append(b"    " + text)
        size += len(entries[-1]) + 2
    return head + b",\n".join(entries) + tail


def free_tcp_ports(count: int) -> list[int]:
    """Ports below the ephemeral range that are free now, for restored servers."""
    ports = [p for p in range(20000, 32000) if port_is_free(p, use_udp=False)]
    assert len(ports) >= count
    return ports[:count]


def over_cap_state_file() -> bytes:
    """Well-formed, valid state naming more servers than the daemon may run."""
    ports = free_tcp_ports(MAX_SERVERS + 100)
    servers = [state_entry(p, False, f"over-cap-{i}") for i, p in enumerate(ports)]
    return json.dumps({"version": 1, "servers": servers}, indent=2).encode()


STATE_CASES = ["random-binary", "empty", "huge-json", "directory", "over-server-cap"]


@pytest.mark.parametrize("kind", STATE_CASES)
async def test_bad_state_file(
    daemons: DaemonFactory, client: Client, tmp_path: Path, kind: str, note: Note
) -> None:
    sb = client
    state = tmp_path / "state.json"
    if kind == "random-binary":
        state.write_bytes(random.Random(6).randbytes(256 * KIB))
    elif kind == "empty":
        state.write_bytes(b"")
    elif kind == "huge-json":
        state.write_bytes(await asyncio.to_thread(huge_state_file))
        note("state-file-mib", round(state.stat().st_size / MIB, 1))
    elif kind == "directory":
        state.mkdir()
        (state / "servers").write_text("{}")
    else:
        state.write_bytes(await asyncio.to_thread(over_cap_state_file))

    mark = sb.rec.mark()
    t0 = time.monotonic()
    d = await daemons.start(f"--state-file={state}")
    d.allow_log(r"[Ss]tate file|state\.json|restore")  # the warning about the file is expected
    await sb.list_servers()  # answered once the state file was dealt with
    started = time.monotonic() - t0
    note("start-seconds", round(started, 2))
    assert started < bound(STATE_START_BOUND_S)
    assert d.running

    servers = (await statistics(sb))["servers"]
    if kind == "over-server-cap":
        note("servers-restored", servers)
        assert servers <= MAX_SERVERS, (
            f"the daemon restored {servers} servers from its state file; "
            f"it may run at most {MAX_SERVERS}"
        )
    else:
        # Nothing served from it; the one warning names the file.
        assert servers == 0
        assert not sb.rec.sb("ServerStatusChanged", mark)
        warnings = d.warning_lines()
        assert len(warnings) == 1, warnings
        assert str(state) in warnings[0], warnings[0]
    check_rss(d, STATE_RSS_BOUND_MIB, note, "started")
    if servers < MAX_SERVERS:
        await serves_a_normal_tcp_client(sb)
    else:  # no room for another server: a restored one serves
        await serves_a_normal_tcp_client(sb, (await sb.list_servers())[0].port)
    assert d.running


# --------------------------------------------------------------------------
# 7. Every method, with wrong types and out-of-range values

BAD_ARGS_RSS_BOUND_MIB = BUS_RSS_BOUND_MIB  # one 16 MiB + 1 message is read whole


@dataclass(frozen=True)
class BadCall:
    what: str
    member: str
    signature: str
    args: list[Any]
    error: str
    interface: str = INTERFACE
    path: str = OBJECT_PATH


# Short names for the table below.
TYPES = ERR_DBUS_INVALID_ARGS  # GDBus: the signature does not match the interface
INVALID = ERR_INVALID_ARGUMENT
NOT_FOUND = ERR_NOT_FOUND
LIMIT = ERR_LIMIT_EXCEEDED
PROPERTIES = "org.freedesktop.DBus.Properties"

MakeCall = Callable[[str, str, list[Any], str], BadCall]


def calls_of(member: str, interface: str = INTERFACE) -> MakeCall:
    def make(what: str, signature: str, args: list[Any], error: str) -> BadCall:
        return BadCall(f"{member} {what}", member, signature, args, error, interface)

    return make


def create_calls() -> list[BadCall]:
    create = calls_of("CreateServer")
    with_options = calls_of("CreateServerWithOptions")

    def opts(what: str, options: dict[str, Variant]) -> BadCall:
        return with_options(what, "qsbsa{sv}", [0, "", False, "bad", options], INVALID)

    deep: Any = Variant("s", "core")
    for _ in range(30):
        deep = Variant("v", deep)
    u = functools.partial(Variant, "u")
    return [
        create("no args", "", [], TYPES),
        create("port as s", "ssbs", ["1", "", False, "x"], TYPES),
        create("port as u", "usbs", [70000, "", False, "x"], TYPES),
        create("missing arg", "qsb", [0, "", False], TYPES),
        create("extra arg", "qsbsa{sv}", [0, "", False, "x", {}], TYPES),
        create("use_udp as y", "qsys", [0, "", 1, "x"], TYPES),
        create("identifier 256 bytes", "qsbs", [0, "", False, "i" * 256], INVALID),
        create("identifier 100 KiB", "qsbs", [0, "", False, "i" * 100_000], INVALID),
        create("delimiter 65 bytes", "qsbs", [0, "d" * 65, False, "x"], INVALID),
        create("delimiter 1 MiB", "qsbs", [0, "d" * MIB, True, "x"], INVALID),
        with_options("no options", "qsbs", [0, "", False, "x"], TYPES),
        with_options("a{ss}", "qsbsa{ss}", [0, "", False, "x", {"bind-address": "::1"}], TYPES),
        with_options("av", "qsbsav", [0, "", False, "x", [u(1)]], TYPES),
        with_options("identifier 256 bytes", "qsbsa{sv}", [0, "", False, "i" * 256, {}], INVALID),
        with_options("delimiter 65 bytes", "qsbsa{sv}", [0, "d" * 65, False, "x", {}], INVALID),
        opts("max-message-bytes 0", {"max-message-bytes": u(0)}),
        opts("max-message-bytes 16 MiB + 1", {"max-message-bytes": u(MAX_MESSAGE_BYTES_MAX + 1)}),
        opts("max-message-bytes 2^32-1", {"max-message-bytes": u(0xFFFFFFFF)}),
        opts("max-message-bytes as t", {"max-message-bytes": Variant("t", 1024)}),
        opts("max-connections 0", {"max-connections": u(0)}),
        opts("max-connections 65537", {"max-connections": u(65537)}),
        opts("max-connections as i", {"max-connections": Variant("i", -1)}),
        opts("flush-timeout-ms as x", {"flush-timeout-ms": Variant("x", -1)}),
        opts("udp-peer-timeout-ms as d", {"udp-peer-timeout-ms": Variant("d", 1.5)}),
        opts("exit-with-caller as s", {"exit-with-caller": Variant("s", "true")}),
        opts("bind-address empty", {"bind-address": Variant("s", "")}),
        opts("bind-address 256.1.1.1", {"bind-address": Variant("s", "256.1.1.1")}),
        opts("bind-address with a port", {"bind-address": Variant("s", "127.0.0.1:80")}),
        opts("bind-address long junk", {"bind-address": Variant("s", "::1%lo" + "x" * 300)}),
        opts("delimiter-bytes 65", {"delimiter-bytes": Variant("ay", b"\x00" * 65)}),
        opts("delimiter-bytes as aay", {"delimiter-bytes": Variant("aay", [b"\r", b"\n"])}),
        opts("empty key", {"": u(1)}),
        opts("key with a space", {"max-connections ": u(1)}),
        opts("variant in a variant", {"max-connections": Variant("v", u(5))}),
        opts("a{sv} value", {"bind-address": Variant("a{sv}", {"x": Variant("s", "::1")})}),
        opts("struct value", {"delimiter-bytes": Variant("(ay)", [b"\n"])}),
        opts("30 nested variants", {"no-such-option": deep}),
        opts("one good, one junk", {"max-connections": u(5), "x" * 4096: Variant("as", ["y"])}),
    ]


def other_calls(tcp_handle: int, udp_handle: int, unserved: int) -> list[BadCall]:
    destroy = calls_of("DestroyServer")
    send = calls_of("ServerSend")
    close = calls_of("ServerCloseClient")
    port_in_use = calls_of("PortInUse")
    get = calls_of("Get", PROPERTIES)
    set_ = calls_of("Set", PROPERTIES)
    big = b"\xa5" * (16 * MIB + 1)
    return [
        destroy("port as u", "u", [1], TYPES),
        destroy("port as s", "s", ["1"], TYPES),
        destroy("no args", "", [], TYPES),
        destroy("two ports", "qq", [1, 2], TYPES),
        destroy("unserved port", "q", [unserved], NOT_FOUND),
        destroy("65535", "q", [65535], NOT_FOUND),
        send("data as s", "us", [tcp_handle, "x"], TYPES),
        send("handle as q", "qay", [1, b"x"], TYPES),
        send("swapped", "ayu", [b"x", 1], TYPES),
        send("no data", "u", [tcp_handle], TYPES),
        send("handle 0", "uay", [0, b"x"], NOT_FOUND),
        send("handle 2^32-1", "uay", [0xFFFFFFFF, b"x"], NOT_FOUND),
        send("16 MiB + 1 to TCP", "uay", [tcp_handle, big], LIMIT),
        send("16 MiB + 1 to handle 0", "uay", [0, big], NOT_FOUND),
        send("16 MiB + 1 to UDP", "uay", [udp_handle, big], LIMIT),
        send("65 508 bytes to UDP", "uay", [udp_handle, b"\x5a" * 65508], LIMIT),
        close("handle as q", "q", [1], TYPES),
        close("handle as s", "s", ["1"], TYPES),
        close("no args", "", [], TYPES),
        close("handle 0", "u", [0], NOT_FOUND),
        close("handle 2^32-1", "u", [0xFFFFFFFF], NOT_FOUND),
        port_in_use("port only", "q", [1], TYPES),
        port_in_use("port as u", "ub", [70000, False], TYPES),
        port_in_use("use_udp as s", "qs", [1, "no"], TYPES),
        port_in_use("port 0 tcp", "qb", [0, False], INVALID),
        port_in_use("port 0 udp", "qb", [0, True], INVALID),
        calls_of("ListServers")("with an arg", "u", [1], TYPES),
        calls_of("ListServers")("with a{sv}", "a{sv}", [{"x": Variant("u", 1)}], TYPES),
        calls_of("ListConnections")("with an arg", "s", ["all"], TYPES),
        calls_of("GetStatistics")("with an arg", "as", [["bytes-in"]], TYPES),
        calls_of("Frobnicate")("(no such method)", "", [], ERR_UNKNOWN_METHOD),
        BadCall(
            "no such object", "ListServers", "", [], ERR_UNKNOWN_METHOD, path=OBJECT_PATH + "/x"
        ),
        set_("Version", "ssv", [INTERFACE, "Version", Variant("s", "9.9.9")], TYPES),
        set_("Version as u", "ssv", [INTERFACE, "Version", Variant("u", 9)], TYPES),
        set_("unknown property", "ssv", [INTERFACE, "Servers", Variant("u", 9)], TYPES),
        # GDBus finds Properties methods by their signature: any other is unknown.
        set_("wrong signature", "ss", [INTERFACE, "Version"], ERR_UNKNOWN_METHOD),
        get("unknown property", "ss", [INTERFACE, "Nope"], TYPES),
        get("unknown interface", "ss", ["io.github.Nope", "Version"], TYPES),
        calls_of("GetAll", PROPERTIES)("as u", "u", [1], ERR_UNKNOWN_METHOD),
    ]


async def test_every_method_rejects_bad_arguments(sb: Client, daemon: Daemon, note: Note) -> None:
    # Something to leave unchanged: a TCP server with a client, a UDP server with a peer.
    start = sb.rec.mark()
    tcp = await sb.create_server(0, "\n", False, "keep-tcp")
    udp = await sb.create_server(0, "", True, "keep-udp")
    await sb.wait_online(tcp, start=start)
    await sb.wait_online(udp, start=start)
    client = await TcpClient.connect("127.0.0.1", tcp)
    client.handle = await sb.new_handle(tcp, start)
    peer = await UdpPeer.open("127.0.0.1")
    mark = sb.rec.mark()
    peer.send(b"hi", "127.0.0.1", udp)
    h_udp = await sb.new_handle(udp, mark)
    unserved = next(p for p in range(30000, 32000) if port_is_free(p, use_udp=False))

    servers = await sb.list_servers()
    connections = await sb.list_connections()
    before = await statistics(sb)
    calls = create_calls() + other_calls(client.handle, h_udp, unserved)

    problems: list[str] = []
    for call in calls:
        mark = sb.rec.mark()
        try:
            reply = await sb.raw_call(
                BUS_NAME, call.path, call.interface, call.member, call.signature, call.args
            )
            problems.append(f"{call.what}: succeeded with {reply!r}")
        except DBusError as e:
            if e.type != call.error:
                problems.append(f"{call.what}: {e.type} ({e.text}), expected {call.error}")
            elif not e.text:
                problems.append(f"{call.what}: {e.type} without a message")
        if await sb.list_servers() != servers or await sb.list_connections() != connections:
            problems.append(f"{call.what}: changed the servers or connections")
        if sb.rec.sb(start=mark):
            problems.append(f"{call.what}: emitted {sb.rec.sb(start=mark)}")
    assert not problems, "\n".join(problems)

    after = await statistics(sb)
    for key in ("bytes-out", "servers", "clients", "connections-accepted"):
        assert after[key] == before[key], key
    note("bad-calls", len(calls))
    check_rss(daemon, BAD_ARGS_RSS_BOUND_MIB, note, "after")

    # The client and the peer were not disturbed.
    await sb.send(client.handle, b"ok\n")
    assert await client.read_exactly(3) == b"ok\n"
    await sb.send(h_udp, b"ok")
    assert (await peer.recv())[0] == b"ok"
    await client.close()
    peer.close()
    await serves_a_normal_tcp_client(sb)


# --------------------------------------------------------------------------
# 8. A restart loses no configuration; exit-with-caller servers stay while
# their creator does


ServerSpec = tuple[int, str, bool, str, dict[str, Any] | None]


def twenty_servers() -> list[ServerSpec]:
    """Twenty servers of every kind, and one exit-with-caller server that must not come back."""
    shared = [free_port_pair() for _ in range(2)]
    local6 = "::1" if HAVE_IPV6 else "127.0.0.1"
    everything: dict[str, Any] = {
        "bind-address": "127.0.0.1",
        "delimiter-bytes": b"\x00\xfe",
        "flush-timeout-ms": 250,
        "max-message-bytes": 4096,
        "max-connections": 7,
        "udp-peer-timeout-ms": 1234,
        "exit-with-caller": False,
    }
    return [
        (0, "\r\n", False, "plain-tcp", None),
        (0, "", True, "plain-udp", None),
        (0, "\n", False, "local-tcp", {"bind-address": "127.0.0.1"}),
        (0, "", False, "binary-delim", {"delimiter-bytes": b"\x00\xff\x00"}),
        (0, "\x03", True, "etx-udp", {"udp-peer-timeout-ms": 1234}),
        (0, "\n", False, "never-flush", {"flush-timeout-ms": 0}),
        (0, "\n", False, "one-byte-frames", {"max-message-bytes": 1}),
        (0, "\n", False, "max-frames", {"max-message-bytes": MAX_MESSAGE_BYTES_MAX}),
        (0, "\n", False, "one-client", {"max-connections": 1}),
        (0, "", True, "many-peers", {"max-connections": 65536, "udp-peer-timeout-ms": 0}),
        (0, ";", False, "é" * 127, None),
        (0, "D" * 64, False, "long-delimiter", None),
        (0, "", True, "local6-udp", {"bind-address": local6}),
        (shared[0], "\n", False, "shared-port", None),
        (shared[0], "\n", True, "shared-port", None),
        (shared[1], "", False, "shared-2-tcp", {"max-connections": 3}),
        (shared[1], "|", True, "shared-2-udp", {"flush-timeout-ms": 42}),
        (0, "x", False, "no-delimiter", {"delimiter-bytes": b""}),
        (0, "", False, "everything-tcp", everything),
        (0, "", True, "everything-udp", everything),
        (0, "\n", False, "gone-with-caller", {"exit-with-caller": True}),
    ]


def free_port_pair() -> int:
    """A port free for both TCP and UDP, below the ephemeral range."""
    return next(
        p
        for p in range(random.randrange(20000, 30000), 32000)
        if port_is_free(p, use_udp=False) and port_is_free(p, use_udp=True)
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
async def test_restart_loses_no_server(
    daemons: DaemonFactory, client: Client, tmp_path: Path, sig: signal.Signals, note: Note
) -> None:
    sb = client
    state = tmp_path / "state.json"
    d1 = await daemons.start(f"--state-file={state}")
    specs = twenty_servers()
    created: list[ServerSpec] = []
    start = sb.rec.mark()
    for port, delimiter, use_udp, identifier, options in specs:
        bound_port = await sb.create_server(port, delimiter, use_udp, identifier, options)
        await sb.wait_online(bound_port, identifier, start=start)
        created.append((bound_port, delimiter, use_udp, identifier, options))
    persistent = created[:-1]
    gone = created[-1][0]
    before = await sb.list_servers()
    assert len(before) == len(created)

    # A crash (SIGKILL) leaves the file as the last change wrote it.
    status = await d1.stop(sig)
    assert status == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
    names = await asyncio.to_thread(lambda: [p.name for p in tmp_path.iterdir()])
    leftovers = sorted(n for n in names if "state" in n)
    assert leftovers == ["state.json"], leftovers

    mark = sb.rec.mark()
    t0 = time.monotonic()
    await daemons.start(f"--state-file={state}")
    for port, _, _, identifier, _ in persistent:
        await sb.wait_online(port, identifier, start=mark)
    note("restore-seconds", round(time.monotonic() - t0, 2))
    assert await sb.list_servers() == sorted(s for s in before if s.port != gone or s.use_udp)
    assert not sb.rec.find(server_status(gone, "ONLINE"), mark)

    # Identical settings, option by option: creating each again is a no-op
    # (a server started would have said ONLINE before the call returned)...
    mark = sb.rec.mark()
    for port, delimiter, use_udp, identifier, options in persistent:
        assert await sb.create_server(port, delimiter, use_udp, identifier, options) == port
    assert not sb.rec.sb("ServerStatusChanged", mark)
    # ...while other settings clash.
    port, delimiter, use_udp, identifier, _ = persistent[-1]
    with pytest.raises(DBusError):
        await sb.create_server(port, delimiter, use_udp, identifier, {"max-connections": 8})
    note("servers-restored", len(persistent))


# 1 000 other bus clients; 100 under a wrapper.
OTHER_BUS_CLIENTS = 100 if SCALE_DOWN else 1_000
BUS_CLIENT_BATCH = 50


async def passing_client(address: str, i: int) -> tuple[str, int | None]:
    """A bus client that calls the daemon and leaves; every tenth one leaves a server behind.

    Returns its unique name and the port of that server, if any.
    """
    other = await Client.connect(address)
    try:
        await other.list_servers()
        if i % 10 == 0:
            options = {"exit-with-caller": True}
            return other.unique_name, await other.create_server(0, "", i % 20 == 0, "pass", options)
        return other.unique_name, None
    finally:
        other.disconnect()


async def test_exit_with_caller_servers_stay_while_their_creator_stays(
    sb: Client, daemon: Daemon, bus_address: str, note: Note
) -> None:
    # Every client that leaves the bus, as the daemon learns it too.
    await sb.bus_call(
        "AddMatch", "s", ["type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged'"]
    )
    creator = await Client.connect(bus_address)
    try:
        start = sb.rec.mark()
        tcp = await creator.create_server(0, "\n", False, "creator-tcp", {"exit-with-caller": True})
        udp = await creator.create_server(0, "", True, "creator-udp", {"exit-with-caller": True})
        await sb.wait_online(tcp, start=start)
        await sb.wait_online(udp, start=start)

        t0 = time.monotonic()
        passed: list[tuple[str, int | None]] = []
        for first in range(0, OTHER_BUS_CLIENTS, BUS_CLIENT_BATCH):
            batch = range(first, min(first + BUS_CLIENT_BATCH, OTHER_BUS_CLIENTS))
            passed += await asyncio.gather(*(passing_client(bus_address, i) for i in batch))
        names = {name for name, _ in passed}

        def gone(s: Signal) -> bool:
            return s.member == "NameOwnerChanged" and s.body[0] in names and s.body[2] == ""

        await sb.rec.wait_count(gone, len(names), start=start, what="passing clients gone")
        # The daemon heard of each departure before this call, and answers it
        # after any OFFLINE those departures caused.
        servers = await sb.list_servers()
        note("bus-clients-passed", OTHER_BUS_CLIENTS)
        note("bus-clients-seconds", round(time.monotonic() - t0, 2))
        # Theirs went with them; the creator's stay, and serve. Matched by
        # identifier too: a passing client's UDP server may get the number
        # of the creator's TCP port, and the other way round.
        for _, port in passed:
            if port is not None:
                assert sb.rec.find(server_status(port, "OFFLINE", "pass"), start), port
        assert not sb.rec.find(server_status(tcp, "OFFLINE", "creator-tcp"), start)
        assert not sb.rec.find(server_status(udp, "OFFLINE", "creator-udp"), start)
        assert [(s.port, s.use_udp) for s in servers] == sorted([(tcp, False), (udp, True)])
        mark = sb.rec.mark()
        c = await TcpClient.connect("127.0.0.1", tcp)
        handle = await sb.new_handle(tcp, mark)
        await c.send(b"still served\n")
        sig = await sb.rec.wait_for(data_in(handle=handle), start=mark)
        assert bytes(sig.body[1]) == b"still served\n"
        check_rss(daemon, QUIET_RSS_BOUND_MIB, note, "after")
    finally:
        creator.disconnect()

    # And go when it leaves.
    await sb.wait_offline(tcp, start=start)
    await sb.wait_offline(udp, start=start)
    assert await c.read_to_eof() == b""
    await c.close()
    assert await sb.list_servers() == []
    await serves_a_normal_tcp_client(sb)
