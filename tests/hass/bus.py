"""The private bus, the daemon and loopback clients of the tests: no Home Assistant here.

Everything that waits waits for the event itself, with a bound; nothing
sleeps for a fixed time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
import contextlib
import os
from pathlib import Path
import select
import shlex
import signal
import socket
import subprocess
from typing import Any, cast

from dbus_fast import Message, MessageType
from dbus_fast.aio.message_bus import MessageBus

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]

# $SB_TEST_WRAPPER (a command line, e.g. valgrind ...) runs sockbridged under it.
WRAPPER = shlex.split(os.environ.get("SB_TEST_WRAPPER", ""))

# Every bound is multiplied by $SB_TEST_TIMEOUT_FACTOR, else 10 under a
# wrapper, else 1. Bounds are upper limits only: nothing waits them out.
TIMEOUT_FACTOR = float(os.environ.get("SB_TEST_TIMEOUT_FACTOR") or (10 if WRAPPER else 1))
EVENT_TIMEOUT = 10.0
START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0

BUS_NAME = "io.github.Sockbridge1"


def bound(seconds: float) -> float:
    """A wait bound, scaled for slow runs (valgrind, sanitizers)."""
    return seconds * TIMEOUT_FACTOR


def daemon_binary() -> Path:
    """The daemon under test: $SOCKBRIDGED, else <repo>/build/src/sockbridged."""
    env = os.environ.get("SOCKBRIDGED")
    return Path(env).resolve() if env else REPO_ROOT / "build" / "src" / "sockbridged"


# --------------------------------------------------------------------------
# A private message bus


@contextlib.contextmanager
def private_bus(log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run a dbus-daemon with tests/bus.conf; yields its address and process.

    Blocking: for synchronous fixtures only.
    """
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [
                "dbus-daemon",
                f"--config-file={HERE / 'bus.conf'}",
                "--nofork",
                "--print-address=1",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
        )
    assert proc.stdout is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], bound(START_TIMEOUT))
        address = proc.stdout.readline().decode().strip() if ready else ""
        if not address:
            raise RuntimeError(f"dbus-daemon printed no address; its log:\n{log.read_text()}")
        yield address, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=bound(STOP_TIMEOUT))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


# --------------------------------------------------------------------------
# sockbridged


class _OwnerWatch:
    """A plain dbus-fast connection that follows who owns the daemon's name."""

    def __init__(self, bus: MessageBus) -> None:
        self._bus = bus
        self.owner: str | None = None
        self._changed = asyncio.Event()
        bus.add_message_handler(self._on_message)

    @classmethod
    async def open(cls, address: str) -> _OwnerWatch:
        bus = await MessageBus(bus_address=address).connect()
        watch = cls(bus)
        rule = (
            "type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged',"
            f"arg0='{BUS_NAME}'"
        )
        await watch._dbus("AddMatch", "s", [rule])
        reply = await watch._dbus("NameHasOwner", "s", [BUS_NAME])
        if reply.body[0] and watch.owner is None:
            reply = await watch._dbus("GetNameOwner", "s", [BUS_NAME])
            watch.owner = reply.body[0]
        return watch

    async def _dbus(self, member: str, signature: str, body: list[Any]) -> Message:
        reply = await self._bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member=member,
                signature=signature,
                body=body,
            )
        )
        assert reply is not None
        assert reply.message_type == MessageType.METHOD_RETURN, reply.body
        return reply

    def _on_message(self, msg: Message) -> None:
        if msg.member == "NameOwnerChanged" and msg.body[0] == BUS_NAME:
            self.owner = msg.body[2] or None
            self._changed.set()

    async def wait(self, present: bool, within: float) -> None:
        async with asyncio.timeout(within):
            while (self.owner is not None) != present:
                self._changed.clear()
                await self._changed.wait()

    async def close(self) -> None:
        self._bus.disconnect()
        await self._bus.wait_for_disconnect()  # type: ignore[no-untyped-call]


async def bus_peers(address: str) -> set[str]:
    """The unique names of every connection on the bus but the asking one."""
    bus = await MessageBus(bus_address=address).connect()
    try:
        reply = await bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="ListNames",
            )
        )
        assert reply is not None
        assert reply.message_type == MessageType.METHOD_RETURN, reply.body
        return {name for name in reply.body[0] if name.startswith(":")} - {bus.unique_name}
    finally:
        bus.disconnect()
        await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]


class Daemon:
    """One sockbridged process on a private bus (--no-state)."""

    def __init__(self, binary: Path, address: str, log: Path) -> None:
        self.binary = binary
        self.address = address
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None
        self.exit_codes: list[int] = []

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def start(self) -> None:
        """Start it; returns once it owns its name on the bus."""
        assert not self.running
        watch = await _OwnerWatch.open(self.address)
        try:
            assert watch.owner is None, f"{BUS_NAME} is already owned by {watch.owner}"
            with self.log.open("ab") as log:
                self.proc = await asyncio.create_subprocess_exec(
                    *WRAPPER,
                    str(self.binary),
                    f"--address={self.address}",
                    "--no-state",
                    "--verbose",
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                )
            owned = asyncio.ensure_future(watch.wait(True, bound(START_TIMEOUT)))
            exited = asyncio.ensure_future(self.proc.wait())
            await asyncio.wait({owned, exited}, return_when=asyncio.FIRST_COMPLETED)
            for task in (owned, exited):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await task
            if watch.owner is None:
                raise RuntimeError(f"sockbridged did not start; its log:\n{self.output()}")
        finally:
            await watch.close()

    async def stop(self) -> int:
        """SIGTERM; returns its exit status once it left the bus and exited."""
        assert self.proc is not None
        assert self.running
        self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(bound(STOP_TIMEOUT)):
                code = await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            code = await self.proc.wait()
        self.exit_codes.append(code)
        return code


# --------------------------------------------------------------------------
# Loopback clients


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def tcp_connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection to 127.0.0.1:port."""
    async with asyncio.timeout(bound(EVENT_TIMEOUT)):
        return await asyncio.open_connection("127.0.0.1", port)


async def read_exactly(reader: asyncio.StreamReader, count: int) -> bytes:
    """count bytes from reader, with a bound."""
    async with asyncio.timeout(bound(EVENT_TIMEOUT)):
        return await reader.readexactly(count)


async def read_eof(reader: asyncio.StreamReader) -> bytes:
    """Whatever reader holds until the peer closes, with a bound."""
    async with asyncio.timeout(bound(EVENT_TIMEOUT)):
        return await reader.read()


async def tcp_close(writer: asyncio.StreamWriter) -> None:
    """Close a test connection and wait until it is closed."""
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


class UdpClient(asyncio.DatagramProtocol):
    """A UDP socket connected to 127.0.0.1:port that queues what it receives."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def open(cls, port: int) -> UdpClient:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_datagram_endpoint(cls, remote_addr=("127.0.0.1", port))
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.received.put_nowait(data)

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.sendto(data)

    async def receive(self) -> bytes:
        async with asyncio.timeout(bound(EVENT_TIMEOUT)):
            return await self.received.get()

    def close(self) -> None:
        assert self.transport is not None
        self.transport.close()
