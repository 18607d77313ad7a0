# SPDX-License-Identifier: LGPL-2.1-or-later
"""Helpers for the sockbridged integration tests.

Everything here is asyncio: the D-Bus client (dbus-fast), the signal
recorder, the daemon process and the loopback test sockets. Nothing waits
for an event by sleeping; every wait is on the event itself, with a bound.
"""

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
import contextlib
import ctypes
from dataclasses import dataclass, field
import os
from pathlib import Path
import re
import shlex
import signal
import socket
from typing import Any, NamedTuple, cast

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio.message_bus import MessageBus
from dbus_fast.errors import DBusError

BUS_NAME = "io.github.Sockbridge1"
OBJECT_PATH = "/io/github/Sockbridge1"
INTERFACE = "io.github.Sockbridge1"
ERROR_PREFIX = "io.github.Sockbridge1.Error."

ERR_ADDRESS_IN_USE = ERROR_PREFIX + "AddressInUse"
ERR_PERMISSION_DENIED = ERROR_PREFIX + "PermissionDenied"
ERR_INVALID_ARGUMENT = ERROR_PREFIX + "InvalidArgument"
ERR_NOT_FOUND = ERROR_PREFIX + "NotFound"
ERR_LIMIT_EXCEEDED = ERROR_PREFIX + "LimitExceeded"
ERR_FAILED = ERROR_PREFIX + "Failed"
ERR_DBUS_INVALID_ARGS = "org.freedesktop.DBus.Error.InvalidArgs"

REPO_ROOT = Path(__file__).resolve().parents[2]

# $SB_TEST_WRAPPER (a command line, e.g. valgrind ...) runs sockbridged under
# it; meson's valgrind test setup sets it.
WRAPPER = shlex.split(os.environ.get("SB_TEST_WRAPPER", ""))

# Generous bounds: the suite must hold on a loaded 2-core machine. Every
# bound is multiplied by TIMEOUT_FACTOR: $SB_TEST_TIMEOUT_FACTOR, else 10
# under a wrapper, else 1. Bounds are only upper limits: nothing waits them out.
TIMEOUT_FACTOR = float(os.environ.get("SB_TEST_TIMEOUT_FACTOR") or (10 if WRAPPER else 1))
EVENT_TIMEOUT = 10.0
CALL_TIMEOUT = 30.0
START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0


def bound(seconds: float) -> float:
    """A wait bound, scaled for slow runs (valgrind, sanitizers)."""
    return seconds * TIMEOUT_FACTOR


# GLib's default log writer: "(prog:pid): domain-WARNING **: ..." or
# "** (prog:pid): CRITICAL **: ..."; and the sanitizers' reports.
BAD_LOG_LINE = re.compile(
    r"\b(WARNING|CRITICAL|ERROR) \*\*|AddressSanitizer|LeakSanitizer|runtime error:"
)


def daemon_binary() -> Path:
    """The daemon under test: $SOCKBRIDGED, else <repo>/build/src/sockbridged."""
    env = os.environ.get("SOCKBRIDGED")
    if env:
        return Path(env).resolve()
    return REPO_ROOT / "build" / "src" / "sockbridged"


def _can_bind(family: socket.AddressFamily, host: str) -> bool:
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
    except OSError:
        return False
    return True


HAVE_IPV6 = _can_bind(socket.AF_INET6, "::1")
NO_IPV6_REASON = "this machine has no IPv6 loopback (cannot bind a socket to ::1)"


# --------------------------------------------------------------------------
# Signal recording


@dataclass(frozen=True)
class Signal:
    """One received D-Bus signal."""

    index: int
    time: float  # loop.time() when it arrived
    sender: str
    interface: str
    member: str
    body: list[Any]

    def __repr__(self) -> str:
        return f"#{self.index} {self.member}{tuple(self.body)!r} from {self.sender}"


class Recorder:
    """Records every signal its connection receives, in arrival order."""

    def __init__(self) -> None:
        self.signals: list[Signal] = []
        self._changed = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def handle_message(self, msg: Message) -> None:
        if msg.message_type != MessageType.SIGNAL:
            return
        self.signals.append(
            Signal(
                index=len(self.signals),
                time=self._loop.time(),
                sender=msg.sender or "",
                interface=msg.interface or "",
                member=msg.member or "",
                body=list(msg.body),
            )
        )
        self._changed.set()

    def mark(self) -> int:
        """An index to pass as start= to only look at later signals."""
        return len(self.signals)

    def sb(self, member: str | None = None, start: int = 0) -> list[Signal]:
        """sockbridge signals (of one member, if given) since start."""
        return [
            s
            for s in self.signals[start:]
            if s.interface == INTERFACE and (member is None or s.member == member)
        ]

    def find(self, predicate: Callable[[Signal], bool], start: int = 0) -> list[Signal]:
        return [s for s in self.signals[start:] if predicate(s)]

    def dump(self, last: int = 40) -> str:
        shown = self.sb()[-last:]
        return "\n".join(repr(s) for s in shown) or "(no sockbridge signals)"

    async def wait_until(
        self,
        condition: Callable[[], bool],
        timeout: float = EVENT_TIMEOUT,
        what: str = "a condition",
    ) -> None:
        """Wait until condition() holds; re-checked after every signal."""
        timeout = bound(timeout)
        deadline = self._loop.time() + timeout
        while not condition():
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {timeout:.1f} s waiting for {what}; "
                    f"last signals:\n{self.dump()}"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def wait_for(
        self,
        predicate: Callable[[Signal], bool],
        timeout: float = EVENT_TIMEOUT,
        start: int = 0,
        what: str = "a signal",
    ) -> Signal:
        """The first signal since start for which predicate holds."""
        found: list[Signal] = []

        def condition() -> bool:
            found[:] = self.find(predicate, start)
            return bool(found)

        await self.wait_until(condition, timeout, what)
        return found[0]

    async def wait_count(
        self,
        predicate: Callable[[Signal], bool],
        count: int,
        timeout: float = EVENT_TIMEOUT,
        start: int = 0,
        what: str = "signals",
    ) -> list[Signal]:
        """Wait until at least count signals since start match; return them all."""
        found: list[Signal] = []

        def condition() -> bool:
            found[:] = self.find(predicate, start)
            return len(found) >= count

        await self.wait_until(condition, timeout, f"{count} x {what}")
        return found


# Predicates on sockbridge signals.


def server_status(
    port: int, status: str, identifier: str | None = None
) -> Callable[[Signal], bool]:
    def pred(s: Signal) -> bool:
        return (
            s.interface == INTERFACE
            and s.member == "ServerStatusChanged"
            and s.body[0] == port
            and s.body[1] == status
            and (identifier is None or s.body[2] == identifier)
        )

    return pred


def conn_status(
    *, handle: int | None = None, port: int | None = None, status: str | None = None
) -> Callable[[Signal], bool]:
    def pred(s: Signal) -> bool:
        return (
            s.interface == INTERFACE
            and s.member == "ServerConnectionStatusChanged"
            and (handle is None or s.body[0] == handle)
            and (port is None or s.body[1] == port)
            and (status is None or s.body[2] == status)
        )

    return pred


def data_in(
    *, handle: int | None = None, remote_port: int | None = None
) -> Callable[[Signal], bool]:
    def pred(s: Signal) -> bool:
        return (
            s.interface == INTERFACE
            and s.member == "ServerDataIn"
            and (handle is None or s.body[0] == handle)
            and (remote_port is None or s.body[3] == remote_port)
        )

    return pred


def of_handle(handle: int) -> Callable[[Signal], bool]:
    """Connection status and data signals of one handle."""

    def pred(s: Signal) -> bool:
        return (
            s.interface == INTERFACE
            and s.member in ("ServerConnectionStatusChanged", "ServerDataIn")
            and s.body[0] == handle
        )

    return pred


def is_name_owner_changed(name: str) -> Callable[[Signal], bool]:
    def pred(s: Signal) -> bool:
        return s.member == "NameOwnerChanged" and s.body[0] == name

    return pred


# --------------------------------------------------------------------------
# The D-Bus client


class ServerInfo(NamedTuple):
    port: int
    use_udp: bool
    identifier: str
    delimiter: bytes
    connections: int


class ConnInfo(NamedTuple):
    handle: int
    port: int
    use_udp: bool
    identifier: str
    address: str
    remote_port: int


def to_variant(value: Any) -> Variant:
    """Option values: bool → b, int → u, str → s, bytes → ay, list of str → as; Variant as is."""
    if isinstance(value, Variant):
        return value
    if isinstance(value, bool):
        return Variant("b", value)
    if isinstance(value, int):
        return Variant("u", value)
    if isinstance(value, str):
        return Variant("s", value)
    if isinstance(value, bytes | bytearray):
        return Variant("ay", bytes(value))
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return Variant("as", value)
    raise TypeError(f"no D-Bus type for option value {value!r}")


class Client:
    """A dbus-fast connection to the private bus, with a signal recorder."""

    def __init__(self, bus: MessageBus, recorder: Recorder) -> None:
        self.bus = bus
        self.rec = recorder

    @classmethod
    async def connect(cls, address: str) -> "Client":
        bus = await MessageBus(bus_address=address).connect()
        rec = Recorder()
        bus.add_message_handler(rec.handle_message)
        client = cls(bus, rec)
        # Subscribe before the test acts.
        await client.bus_call(
            "AddMatch", "s", [f"type='signal',interface='{INTERFACE}',path='{OBJECT_PATH}'"]
        )
        await client.bus_call(
            "AddMatch",
            "s",
            [
                "type='signal',sender='org.freedesktop.DBus',"
                f"member='NameOwnerChanged',arg0='{BUS_NAME}'"
            ],
        )
        return client

    @property
    def unique_name(self) -> str:
        return str(self.bus.unique_name)

    def disconnect(self) -> None:
        self.bus.disconnect()

    async def raw_call(
        self,
        destination: str,
        path: str,
        interface: str,
        member: str,
        signature: str = "",
        args: Sequence[Any] = (),
        timeout: float = CALL_TIMEOUT,
    ) -> list[Any]:
        msg = Message(
            destination=destination,
            path=path,
            interface=interface,
            member=member,
            signature=signature,
            body=list(args),
        )
        reply = await asyncio.wait_for(self.bus.call(msg), bound(timeout))
        assert reply is not None
        if reply.message_type == MessageType.ERROR:
            text = reply.body[0] if reply.body else ""
            raise DBusError(reply.error_name or "unknown", str(text), reply)
        return list(reply.body)

    async def call(
        self,
        method: str,
        signature: str = "",
        args: Sequence[Any] = (),
        timeout: float = CALL_TIMEOUT,
    ) -> list[Any]:
        """Call a method of io.github.Sockbridge1; DBusError on an error reply."""
        return await self.raw_call(
            BUS_NAME, OBJECT_PATH, INTERFACE, method, signature, args, timeout
        )

    async def bus_call(
        self, method: str, signature: str = "", args: Sequence[Any] = ()
    ) -> list[Any]:
        return await self.raw_call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            method,
            signature,
            args,
        )

    async def name_owner(self) -> str | None:
        try:
            return str((await self.bus_call("GetNameOwner", "s", [BUS_NAME]))[0])
        except DBusError as e:
            if e.type == "org.freedesktop.DBus.Error.NameHasNoOwner":
                return None
            raise

    async def pid_of(self, unique_name: str) -> int | None:
        try:
            return int((await self.bus_call("GetConnectionUnixProcessID", "s", [unique_name]))[0])
        except DBusError:
            return None  # it went away meanwhile

    # The sockbridge API.

    async def create_server(
        self,
        port: int = 0,
        delimiter: str = "",
        use_udp: bool = False,
        identifier: str = "",
        options: dict[str, Any] | None = None,
    ) -> int:
        if options is None:
            body = await self.call("CreateServer", "qsbs", [port, delimiter, use_udp, identifier])
        else:
            opts = {k: to_variant(v) for k, v in options.items()}
            body = await self.call(
                "CreateServerWithOptions", "qsbsa{sv}", [port, delimiter, use_udp, identifier, opts]
            )
        return int(body[0])

    async def destroy_server(self, port: int) -> None:
        await self.call("DestroyServer", "q", [port])

    async def send(self, handle: int, data: bytes) -> None:
        await self.call("ServerSend", "uay", [handle, data])

    async def close_client(self, handle: int) -> None:
        await self.call("ServerCloseClient", "u", [handle])

    async def port_in_use(self, port: int, use_udp: bool) -> bool:
        return bool((await self.call("PortInUse", "qb", [port, use_udp]))[0])

    async def list_servers(self) -> list[ServerInfo]:
        body = await self.call("ListServers")
        return sorted(ServerInfo(p, u, i, bytes(d), n) for p, u, i, d, n in body[0])

    async def list_connections(self) -> list[ConnInfo]:
        body = await self.call("ListConnections")
        return sorted(ConnInfo(*row) for row in body[0])

    async def version(self) -> str:
        body = await self.raw_call(
            BUS_NAME,
            OBJECT_PATH,
            "org.freedesktop.DBus.Properties",
            "Get",
            "ss",
            [INTERFACE, "Version"],
        )
        variant = body[0]
        assert isinstance(variant, Variant)
        assert variant.signature == "s"
        return str(variant.value)

    # Waiting helpers built on the recorder.

    async def wait_online(self, port: int, identifier: str | None = None, start: int = 0) -> Signal:
        return await self.rec.wait_for(
            server_status(port, "ONLINE", identifier), start=start, what=f"server {port} ONLINE"
        )

    async def start_server(
        self,
        delimiter: str,
        use_udp: bool,
        identifier: str,
        options: dict[str, Any] | None = None,
    ) -> int:
        """A server on an ephemeral port, once its ONLINE has arrived."""
        start = self.rec.mark()
        port = await self.create_server(0, delimiter, use_udp, identifier, options)
        await self.wait_online(port, start=start)
        return port

    async def wait_offline(self, port: int, start: int = 0) -> Signal:
        return await self.rec.wait_for(
            server_status(port, "OFFLINE"), start=start, what=f"server {port} OFFLINE"
        )

    async def new_handle(self, port: int, start: int, taken: Iterable[int] = ()) -> int:
        """The handle of the next connection ONLINE on port since start that is not taken."""
        taken_set = set(taken)

        def pred(s: Signal) -> bool:
            return conn_status(port=port, status="ONLINE")(s) and s.body[0] not in taken_set

        sig = await self.rec.wait_for(pred, start=start, what=f"a new connection ONLINE on {port}")
        return int(sig.body[0])

    async def wait_conn_offline(self, handle: int, start: int = 0) -> Signal:
        return await self.rec.wait_for(
            conn_status(handle=handle, status="OFFLINE"),
            start=start,
            what=f"handle {handle} OFFLINE",
        )

    async def barrier(self) -> None:
        """Round trip through the daemon that also emits a signal pair.

        Every signal the daemon emitted before has arrived once this returns.
        """
        # The bus keeps the order of one sender's messages, so the reply
        # comes after every signal the daemon emitted before answering.
        await self.call("GetStatistics")


def data_of(signals: Iterable[Signal]) -> list[bytes]:
    return [bytes(s.body[1]) for s in signals if s.member == "ServerDataIn"]


# --------------------------------------------------------------------------
# The daemon process


@dataclass
class Daemon:
    """One sockbridged process on the private bus."""

    binary: Path
    address: str
    workdir: Path
    args: list[str]
    name: str = "sockbridged"
    proc: asyncio.subprocess.Process | None = None
    allowed_log: list[re.Pattern[str]] = field(default_factory=list)
    returncode: int | None = None
    umask: int = -1  # the daemon's umask; -1 keeps the test's
    prefix: list[str] = field(default_factory=list)  # e.g. NetNamespace.prefix

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> None:
        env = dict(os.environ)
        env["G_DEBUG"] = "fatal-criticals"
        for var in ("DBUS_SESSION_BUS_ADDRESS", "DBUS_SYSTEM_BUS_ADDRESS", "G_MESSAGES_DEBUG"):
            env.pop(var, None)
        args = [f"--address={self.address}", *self.args]
        if os.environ.get("SB_TEST_VERBOSE") and "--verbose" not in args:
            args.append("--verbose")
        with self.log_path.open("ab") as log:
            command = [*self.prefix, *WRAPPER, str(self.binary), *args]
            log.write(f"$ {shlex.join(command)}\n".encode())
            log.flush()
            self.proc = await asyncio.create_subprocess_exec(
                *self.prefix,
                *WRAPPER,
                str(self.binary),
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                umask=self.umask,
            )

    async def wait_ready(self, client: Client, timeout: float = START_TIMEOUT) -> None:
        """Wait until this process owns io.github.Sockbridge1."""
        assert self.proc is not None
        loop = asyncio.get_running_loop()
        timeout = bound(timeout)
        deadline = loop.time() + timeout
        exited = asyncio.ensure_future(self.proc.wait())
        try:
            while True:
                start = client.rec.mark()
                owner = await client.name_owner()
                if owner is not None and await client.pid_of(owner) == self.proc.pid:
                    return
                remaining = deadline - loop.time()
                if exited.done() or remaining <= 0:
                    break
                changed = asyncio.ensure_future(
                    client.rec.wait_for(
                        is_name_owner_changed(BUS_NAME),
                        timeout=remaining / TIMEOUT_FACTOR,
                        start=start,
                    )
                )
                await asyncio.wait({changed, exited}, return_when=asyncio.FIRST_COMPLETED)
                if not changed.done():
                    changed.cancel()
                with contextlib.suppress(asyncio.CancelledError, AssertionError):
                    await changed
        finally:
            if not exited.done():
                exited.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await exited
        if self.proc.returncode is not None:
            self.returncode = self.proc.returncode
            raise AssertionError(
                f"{self.name} exited with status {self.proc.returncode} before owning "
                f"{BUS_NAME}; its output:\n{self.output()}"
            )
        raise AssertionError(
            f"{self.name} did not own {BUS_NAME} within {timeout} s; its output:\n{self.output()}"
        )

    async def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        assert self.proc is not None
        timeout = bound(timeout)
        try:
            rc = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"{self.name} (pid {self.proc.pid}) did not exit within {timeout} s; "
                f"its output:\n{self.output()}"
            ) from None
        self.returncode = rc
        return rc

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Send sig and return the exit status (negative: killed by a signal)."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        return await self.wait_exit(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def allow_log(self, pattern: str) -> None:
        """Declare that warnings matching pattern are expected."""
        self.allowed_log.append(re.compile(pattern))

    def bad_log_lines(self) -> list[str]:
        return [
            line
            for line in self.output().splitlines()
            if BAD_LOG_LINE.search(line) and not any(p.search(line) for p in self.allowed_log)
        ]

    def warning_lines(self) -> list[str]:
        return [line for line in self.output().splitlines() if BAD_LOG_LINE.search(line)]


class DaemonFactory:
    """Starts daemons for one test; tear-down stops them and checks them."""

    def __init__(self, binary: Path, address: str, workdir: Path, client: Client) -> None:
        self.binary = binary
        self.address = address
        self.workdir = workdir
        self.client = client
        self.daemons: list[Daemon] = []

    async def start(
        self,
        *args: str,
        wait: bool = True,
        name: str | None = None,
        address: str | None = None,
        umask: int = -1,
        prefix: Sequence[str] = (),
    ) -> Daemon:
        """Start sockbridged with args (default --no-state); wait for its name unless told.

        prefix goes before the daemon's command line (and its wrapper), as
        NetNamespace.prefix does to run it in a network namespace.
        """
        name = name or f"sockbridged-{len(self.daemons) + 1}"
        d = Daemon(
            self.binary,
            address or self.address,
            self.workdir,
            list(args or ["--no-state"]),
            name,
            umask=umask,
            prefix=list(prefix),
        )
        self.daemons.append(d)
        await d.start()
        if wait:
            await d.wait_ready(self.client)
        return d

    async def finish(self) -> list[str]:
        problems: list[str] = []
        for d in self.daemons:
            if d.proc is None:
                continue
            if d.running:
                try:
                    rc = await d.stop(signal.SIGTERM)
                except AssertionError as e:
                    d.kill()
                    await d.proc.wait()
                    problems.append(str(e))
                    continue
                if rc != 0:
                    problems.append(
                        f"{d.name} exited with status {rc} on SIGTERM (expected 0); "
                        f"its output:\n{d.output()}"
                    )
            bad = d.bad_log_lines()
            if bad:
                problems.append(
                    f"{d.name} logged unexpected warnings/criticals:\n" + "\n".join(bad)
                )
        return problems


# --------------------------------------------------------------------------
# Loopback test sockets


@contextlib.asynccontextmanager
async def running_bus(
    config: Path, log: Path
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """A dbus-daemon of a test's own: yields it and its address, then stops it.

    It is continued before it is stopped, so a test may leave it SIGSTOPped.
    """
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            "dbus-daemon",
            f"--config-file={config}",
            "--nofork",
            "--print-address=1",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
        )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), bound(EVENT_TIMEOUT))
        if not line.strip():
            reason = await asyncio.to_thread(log.read_text)
            raise AssertionError(f"dbus-daemon printed no address: {reason}")
        yield proc, line.decode().strip()
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        await proc.wait()


def free_port(use_udp: bool = False) -> int:
    """A port that is free (on IPv4 and IPv6, all interfaces) right now."""
    kind = socket.SOCK_DGRAM if use_udp else socket.SOCK_STREAM
    for _ in range(50):
        if HAVE_IPV6:
            with socket.socket(socket.AF_INET6, kind) as s:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                s.bind(("::", 0))
                port = int(s.getsockname()[1])
        else:
            with socket.socket(socket.AF_INET, kind) as s:
                s.bind(("0.0.0.0", 0))
                port = int(s.getsockname()[1])
        # Also free for the other protocol, so TCP+UDP tests can share it.
        if port_is_free(port, not use_udp):
            return port
    raise RuntimeError("no free port found")


def port_is_free(port: int, use_udp: bool) -> bool:
    """Whether a test socket can bind port on all interfaces (SO_REUSEADDR like any server)."""
    kind = socket.SOCK_DGRAM if use_udp else socket.SOCK_STREAM
    family, host = (socket.AF_INET6, "::") if HAVE_IPV6 else (socket.AF_INET, "0.0.0.0")
    with socket.socket(family, kind) as s:
        if not use_udp:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        try:
            s.bind((host, port))
            if not use_udp:
                s.listen(1)
        except OSError:
            return False
    return True


@dataclass
class TcpClient:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    local_port: int
    handle: int = 0

    @classmethod
    async def connect(cls, host: str, port: int, timeout: float = EVENT_TIMEOUT) -> "TcpClient":
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), bound(timeout))
        local_port = int(writer.get_extra_info("sockname")[1])
        return cls(reader, writer, local_port)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_exactly(self, n: int, timeout: float = EVENT_TIMEOUT) -> bytes:
        return await asyncio.wait_for(self.reader.readexactly(n), bound(timeout))

    async def read_to_eof(self, timeout: float = EVENT_TIMEOUT) -> bytes:
        """Everything until the peer closes; fails on a timeout or a reset."""
        return await asyncio.wait_for(self.reader.read(), bound(timeout))

    async def close(self) -> None:
        if self.writer.is_closing():
            return
        self.writer.close()
        with contextlib.suppress(OSError):
            await asyncio.wait_for(self.writer.wait_closed(), bound(EVENT_TIMEOUT))

    def abort(self) -> None:
        self.writer.transport.abort()


async def connect_tcp(sb: Client, port: int) -> TcpClient:
    """A loopback client of a server of sb's daemon, with its handle."""
    mark = sb.rec.mark()
    client = await TcpClient.connect("127.0.0.1", port)
    client.handle = await sb.new_handle(port, mark)
    return client


class UdpPeer(asyncio.DatagramProtocol):
    """A UDP socket on the loopback that queues what it receives."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[Any, ...]]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None
        self.host = "127.0.0.1"

    @classmethod
    async def open(cls, host: str = "127.0.0.1", port: int = 0) -> "UdpPeer":
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        _, proto = await loop.create_datagram_endpoint(cls, local_addr=(host, port), family=family)
        proto.host = host
        return proto

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.queue.put_nowait((data, addr))

    @property
    def local_port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, data: bytes, host: str, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(data, (host, port))

    async def recv(self, timeout: float = EVENT_TIMEOUT) -> tuple[bytes, tuple[Any, ...]]:
        return await asyncio.wait_for(self.queue.get(), bound(timeout))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def held_socket(port: int = 0, use_udp: bool = False, host: str = "0.0.0.0") -> socket.socket:
    """A socket of this test process holding a port (listening, for TCP)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM if use_udp else socket.SOCK_STREAM)
    s.bind((host, port))
    if not use_udp:
        s.listen(8)
    return s


# --------------------------------------------------------------------------
# A D-Bus client running as another Unix user (the ownership tests)


@dataclass
class CmdResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def error_name(self) -> str | None:
        """The D-Bus error name in gdbus's "GDBus.Error:NAME: text" output."""
        m = re.search(r"GDBus\.Error:([A-Za-z0-9_.]+):", self.stderr)
        return m.group(1) if m else None


async def finish(
    proc: asyncio.subprocess.Process, what: str, timeout: float
) -> tuple[int, bytes, bytes]:
    """Wait, with a bound, for proc to exit: its status and output. Killed after the bound."""
    try:
        out, err = await asyncio.wait_for(proc.communicate(), bound(timeout))
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"{what} did not finish within {timeout} s") from None
    assert proc.returncode is not None
    return proc.returncode, out, err


async def run_as(
    uid: int, gid: int, argv: Sequence[str], timeout: float = CALL_TIMEOUT
) -> CmdResult:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        user=uid,
        group=gid,
        extra_groups=[],
        cwd="/",
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/", "LC_ALL": "C"},
    )
    status, out, err = await finish(proc, str(argv), timeout)
    return CmdResult(status, out.decode(errors="replace"), err.decode(errors="replace"))


# --------------------------------------------------------------------------
# A network namespace of a test's own (the multicast tests)


CLONE_NEWNET = 0x40000000


@dataclass
class NetNamespace:
    """A network namespace, kept alive by a sleeping process of its own.

    A daemon runs in it through prefix (nsenter); the test's own sockets
    are made in it inside entered(). Both stay on the private bus, whose
    socket is a path and so reachable from any network namespace.
    """

    holder: asyncio.subprocess.Process

    @property
    def path(self) -> str:
        return f"/proc/{self.holder.pid}/ns/net"

    @property
    def prefix(self) -> list[str]:
        return ["nsenter", f"--net={self.path}", "--"]

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """The calling thread in the namespace: sockets made meanwhile stay in it.

        Make them without awaiting anything: other coroutines would run in
        the namespace too.
        """
        libc = ctypes.CDLL(None, use_errno=True)
        with open(self.path) as there, open("/proc/thread-self/ns/net") as here:
            if libc.setns(there.fileno(), CLONE_NEWNET) != 0:
                errno = ctypes.get_errno()
                raise OSError(errno, f"setns into {self.path}: {os.strerror(errno)}")
            try:
                yield
            finally:
                if libc.setns(here.fileno(), CLONE_NEWNET) != 0:
                    errno = ctypes.get_errno()
                    raise OSError(errno, f"setns back: {os.strerror(errno)}")


@contextlib.asynccontextmanager
async def network_namespace(setup: str) -> AsyncIterator[NetNamespace]:
    """A new network namespace (needs root), set up by the shell commands setup."""
    holder = await asyncio.create_subprocess_exec(
        "unshare",
        "--net",
        "--",
        "sh",
        "-ec",
        f"{setup}\necho ready\nexec sleep 100000",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert holder.stdout is not None
    assert holder.stderr is not None
    try:
        line = await asyncio.wait_for(holder.stdout.readline(), bound(EVENT_TIMEOUT))
        if line != b"ready\n":
            error = await asyncio.wait_for(holder.stderr.read(), bound(EVENT_TIMEOUT))
            raise AssertionError(f"cannot set up a network namespace: {error.decode()}")
        yield NetNamespace(holder)
    finally:
        if holder.returncode is None:
            holder.kill()
        await holder.wait()
