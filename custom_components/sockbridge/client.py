"""Client of sockbridged: every D-Bus call and signal of io.github.Sockbridge1.

Nothing here imports Home Assistant: the client works on its own, on any
asyncio loop, with dbus-fast's MessageBus. Errors of the daemon become
SockbridgeError subclasses that carry the daemon's message; a daemon that
is not on the bus, or a bus that cannot be reached, is DaemonNotRunningError.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
import dataclasses
from dataclasses import dataclass, field
import logging
from typing import Any, Final

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio.message_bus import MessageBus
from dbus_fast.errors import AuthError, InvalidAddressError

_LOGGER = logging.getLogger(__name__)

BUS_NAME: Final = "io.github.Sockbridge1"
OBJECT_PATH: Final = "/io/github/Sockbridge1"
INTERFACE: Final = "io.github.Sockbridge1"
ERROR_PREFIX: Final = "io.github.Sockbridge1.Error."

DBUS_NAME: Final = "org.freedesktop.DBus"
DBUS_PATH: Final = "/org/freedesktop/DBus"
DBUS_INTERFACE: Final = "org.freedesktop.DBus"
PROPERTIES_INTERFACE: Final = "org.freedesktop.DBus.Properties"

BUS_SYSTEM: Final = "system"
BUS_SESSION: Final = "session"
BUS_ADDRESS: Final = "address"

# Bound on one method call: the daemon answers at once, even under valgrind.
CALL_TIMEOUT: Final = 30.0

STATUS_ONLINE: Final = "ONLINE"
STATUS_OFFLINE: Final = "OFFLINE"

_SIGNAL_MATCH: Final = (
    f"type='signal',sender='{BUS_NAME}',interface='{INTERFACE}',path='{OBJECT_PATH}'"
)
# Each signal of the daemon with the index of its identifier argument.
_IDENTIFIER_ARG: Final = {
    "ServerStatusChanged": 2,
    "ServerConnectionStatusChanged": 4,
    "ServerDataIn": 4,
    "ServerDataInBatch": 1,
}
# dbus-daemon refuses match rules over 1024 bytes; an identifier that would
# make one longer is filtered here instead (identifiers are at most 255).
_MAX_MATCH_RULE: Final = 1024
_OWNER_MATCH: Final = (
    f"type='signal',sender='{DBUS_NAME}',interface='{DBUS_INTERFACE}',"
    f"path='{DBUS_PATH}',member='NameOwnerChanged',arg0='{{name}}'"
)


# ---------------------------------------------------------------------------
# Errors


class SockbridgeError(Exception):
    """An error of sockbridged or of the bus, with the daemon's own message."""

    def __init__(self, message: str, dbus_error: str | None = None) -> None:
        """Keep the message and the D-Bus error name it came from."""
        super().__init__(message)
        self.message = message
        self.dbus_error = dbus_error


class DaemonNotRunningError(SockbridgeError):
    """sockbridged is not on the bus, or the bus cannot be reached."""


class AddressInUseError(SockbridgeError):
    """The port is served by another process, or by sockbridge otherwise."""


class PermissionDeniedError(SockbridgeError):
    """A privileged port, or another Unix user's server or handle."""


class InvalidArgumentError(SockbridgeError):
    """A malformed argument or option; the message names it."""


class NotFoundError(SockbridgeError):
    """No such port or handle."""


class LimitExceededError(SockbridgeError):
    """A bound would be passed; the message names it."""


class FailedError(SockbridgeError):
    """Anything else the daemon could not do, with the system's reason."""


_ERRORS: Final[dict[str, type[SockbridgeError]]] = {
    ERROR_PREFIX + "AddressInUse": AddressInUseError,
    ERROR_PREFIX + "PermissionDenied": PermissionDeniedError,
    ERROR_PREFIX + "InvalidArgument": InvalidArgumentError,
    ERROR_PREFIX + "NotFound": NotFoundError,
    ERROR_PREFIX + "LimitExceeded": LimitExceededError,
    ERROR_PREFIX + "Failed": FailedError,
    # Nobody owns the name (and nothing could activate it), or the daemon
    # left the bus before it answered.
    "org.freedesktop.DBus.Error.ServiceUnknown": DaemonNotRunningError,
    "org.freedesktop.DBus.Error.NameHasNoOwner": DaemonNotRunningError,
    "org.freedesktop.DBus.Error.NoReply": DaemonNotRunningError,
    "org.freedesktop.DBus.Error.Disconnected": DaemonNotRunningError,
}


def error_from_dbus(name: str, message: str) -> SockbridgeError:
    """The exception for a D-Bus error reply."""
    return _ERRORS.get(name, SockbridgeError)(message, name)


def _reason(err: BaseException) -> str:
    """Why connecting failed, in words that do not depend on dbus-fast's version."""
    if isinstance(err, TimeoutError):
        return f"no answer within {CALL_TIMEOUT:.0f} s"
    if isinstance(err, AuthError):
        return "the bus refused to authenticate this process"
    if isinstance(err, EOFError):
        return "the bus closed the connection"
    if isinstance(err, OSError):
        return err.strerror or str(err) or type(err).__name__
    return "not a valid D-Bus address"


# ---------------------------------------------------------------------------
# Escapes: how people type bytes such as a delimiter


class InvalidEscapeError(ValueError):
    """Text with a backslash escape that is not one of the known ones."""


_ESCAPES: Final = {"r": 0x0D, "n": 0x0A, "t": 0x09, "0": 0x00, "\\": 0x5C}
_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")


def decode_escapes(text: str) -> bytes:
    r"""The bytes that text with escapes stands for.

    Known escapes: \r \n \t \0 \\ and \xHH (exactly two hex digits). The rest
    of the text is encoded as UTF-8. Anything else after a backslash raises
    InvalidEscapeError.
    """
    out = bytearray()
    i = 0
    while i < len(text):
        char = text[i]
        if char != "\\":
            out += char.encode()
            i += 1
            continue
        code = text[i + 1 : i + 2]
        if code in _ESCAPES:
            out.append(_ESCAPES[code])
            i += 2
        elif code == "x" and len(digits := text[i + 2 : i + 4]) == 2 and set(digits) <= _HEX_DIGITS:
            out.append(int(digits, 16))
            i += 4
        else:
            raise InvalidEscapeError(f"invalid escape at position {i}: {text[i : i + 4]!r}")
    return bytes(out)


def encode_escapes(data: bytes) -> str:
    r"""Bytes as text with escapes, the inverse of decode_escapes()."""
    named = {value: f"\\{code}" for code, value in _ESCAPES.items()}
    return "".join(named.get(b, chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}") for b in data)


# ---------------------------------------------------------------------------
# What the daemon says


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """A server to create: CreateServerWithOptions() arguments.

    None leaves an option at the daemon's default.
    """

    port: int
    use_udp: bool = False
    delimiter: bytes = b""
    identifier: str = ""
    flush_timeout_ms: int | None = None
    max_message_bytes: int | None = None
    max_connections: int | None = None
    udp_peer_timeout_ms: int | None = None
    bind_address: str | None = None
    exit_with_caller: bool = True
    strip_delimiter: bool = False
    allow_from: tuple[str, ...] = ()
    multicast_groups: tuple[str, ...] = ()
    multicast_interface: str | None = None
    tls: TlsSettings | None = None
    # Frames as ServerDataInBatch signals, several per signal (the client
    # handles both kinds).
    batch: bool = False

    def options(self) -> dict[str, Variant]:
        """The a{sv} options of CreateServerWithOptions()."""
        options = {
            "delimiter-bytes": Variant("ay", self.delimiter),
            "exit-with-caller": Variant("b", self.exit_with_caller),
        }
        for key, value in (
            ("flush-timeout-ms", self.flush_timeout_ms),
            ("max-message-bytes", self.max_message_bytes),
            ("max-connections", self.max_connections),
            ("udp-peer-timeout-ms", self.udp_peer_timeout_ms),
        ):
            if value is not None:
                options[key] = Variant("u", value)
        if self.bind_address:
            options["bind-address"] = Variant("s", self.bind_address)
        if self.strip_delimiter:
            options["strip-delimiter"] = Variant("b", True)
        if self.allow_from:
            options["allow-from"] = Variant("as", list(self.allow_from))
        if self.multicast_groups:
            options["multicast-groups"] = Variant("as", list(self.multicast_groups))
        if self.multicast_interface:
            options["multicast-interface"] = Variant("s", self.multicast_interface)
        if self.tls is not None:
            options.update(self.tls.options())
        if self.batch:
            options["batch"] = Variant("b", True)
        return options


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """What makes a server a TLS server: CreateServerWithOptions()' tls-* options.

    The files are PEM text or paths that sockbridged reads; an empty string
    leaves an option out. The password opens a PKCS#12 certificate.
    """

    certificate: str
    private_key: str = ""
    password: str = field(default="", repr=False)
    chain: str = ""
    client_auth: str = "request"
    client_ca: str = ""

    def options(self) -> dict[str, Variant]:
        """The tls-* options."""
        options = {
            "tls-certificate": Variant("s", self.certificate),
            "tls-client-auth": Variant("s", self.client_auth),
        }
        for key, value in (
            ("tls-private-key", self.private_key),
            ("tls-password", self.password),
            ("tls-chain", self.chain),
            ("tls-client-ca", self.client_ca),
        ):
            if value:
                options[key] = Variant("s", value)
        return options


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """One entry of ListServers()."""

    port: int
    use_udp: bool
    identifier: str
    delimiter: bytes
    connections: int


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """One entry of ListConnections()."""

    handle: int
    server_port: int
    use_udp: bool
    identifier: str
    address: str
    remote_port: int


@dataclass(frozen=True, slots=True)
class ServerStatus:
    """ServerStatusChanged: a server went ONLINE or OFFLINE."""

    port: int
    status: str
    identifier: str


@dataclass(frozen=True, slots=True)
class ConnectionStatus:
    """ServerConnectionStatusChanged: port is the server's port."""

    handle: int
    port: int
    status: str
    address: str
    identifier: str


# Not frozen: one is made per frame, and a frozen dataclass takes three
# times as long to make.
@dataclass(slots=True)
class DataIn:
    """One frame of ServerDataIn or ServerDataInBatch: remote_port is the client's port."""

    handle: int
    data: bytes
    address: str
    remote_port: int
    identifier: str

    @property
    def text(self) -> str:
        """The data as UTF-8 text, undecodable bytes replaced."""
        return self.data.decode("utf-8", errors="replace")

    @property
    def hex(self) -> str:
        """The data as lower-case hex digits."""
        return self.data.hex()


# One frame of ServerDataInBatch as dbus-fast unmarshals its (uaysq):
# [handle, data, address, remote_port].
type BatchFrame = list[Any]


@dataclass(slots=True)
class SignalHandlers:
    """What to call for the daemon's signals; each is called on the loop."""

    server_status: Callable[[ServerStatus], None] | None = None
    connection_status: Callable[[ConnectionStatus], None] | None = None
    # Once per frame, in the order the daemon read them, whether the frame
    # came as ServerDataIn or in a ServerDataInBatch.
    data_in: Callable[[DataIn], None] | None = None
    # Instead of data_in for a ServerDataInBatch: once per signal, with its
    # frames as dbus-fast gives them ([handle, data, address, remote_port]
    # each, in order) and the identifier. For a subscriber that pays per
    # frame (Home Assistant's event loop): no DataIn made per frame.
    data_in_batch: Callable[[list[BatchFrame], str], None] | None = None
    # The daemon's unique bus name when it (re)appears, None when it left.
    daemon_owner: Callable[[str | None], None] | None = None
    # The bus connection was lost (never called after close()).
    disconnected: Callable[[], None] | None = None


# ---------------------------------------------------------------------------
# The client


class SockbridgeClient:
    """One D-Bus connection to sockbridged."""

    def __init__(self, bus: MessageBus, kind: str, address: str | None) -> None:
        """Wrap a connected bus; use SockbridgeClient.connect()."""
        self._bus = bus
        self._kind = kind
        self._address = address
        self._handlers = SignalHandlers()
        self._owner: str | None = None
        self._subscribed = False
        self._closing = False
        self._vanish_waiters: dict[str, asyncio.Future[None]] = {}
        self._watch_task = asyncio.get_running_loop().create_task(
            self._watch_disconnect(), name=f"sockbridge bus watch {bus.unique_name}"
        )
        bus.add_message_handler(self._on_message)

    @classmethod
    async def connect(cls, kind: str = BUS_SYSTEM, address: str | None = None) -> SockbridgeClient:
        """Connect to the system bus, the session bus or a bus at an address.

        The error messages are this module's own, the same whatever
        dbus-fast's version words its exceptions.
        """
        where = f"bus at {address}" if kind == BUS_ADDRESS else f"{kind} bus"
        try:
            if kind == BUS_ADDRESS:
                if not address:
                    raise DaemonNotRunningError("no D-Bus address given")
                bus = MessageBus(bus_address=address)
            else:
                bus_type = BusType.SESSION if kind == BUS_SESSION else BusType.SYSTEM
                bus = MessageBus(bus_type=bus_type)
        except (OSError, InvalidAddressError, ValueError) as err:
            raise DaemonNotRunningError(f"cannot connect to the {where}: {_reason(err)}") from err
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                await bus.connect()
        except (OSError, EOFError, AuthError, TimeoutError, InvalidAddressError) as err:
            bus.disconnect()
            raise DaemonNotRunningError(f"cannot connect to the {where}: {_reason(err)}") from err
        return cls(bus, kind, address)

    @property
    def kind(self) -> str:
        """Which bus: system, session or address."""
        return self._kind

    @property
    def address(self) -> str | None:
        """The bus address, for an address bus."""
        return self._address

    @property
    def unique_name(self) -> str:
        """This connection's unique bus name."""
        return self._bus.unique_name or ""

    @property
    def connected(self) -> bool:
        """Whether the bus connection is up."""
        return bool(self._bus.connected) and not self._closing

    @property
    def daemon_owner(self) -> str | None:
        """The daemon's unique name, while subscribed and it is on the bus."""
        return self._owner

    async def close(self) -> None:
        """Close the connection: the daemon ends the servers it made for us."""
        self._closing = True
        if self._bus.connected:
            self._bus.disconnect()
        await self._watch_task

    async def close_confirmed(self) -> None:
        """Close, and return once the daemon has seen this connection go.

        Servers made with exit-with-caller end when their creator leaves, so
        their ports are free (and can be made again) when this returns. A
        second connection hears the bus announce our departure, then makes
        one call through the daemon, which handles that announcement first.
        """
        if not self.connected or (self._subscribed and self._owner is None):
            await self.close()
            return
        try:
            watcher = await SockbridgeClient.connect(self._kind, self._address)
        except DaemonNotRunningError:
            await self.close()
            return
        try:
            gone = await watcher.watch_vanish(self.unique_name)
            await self.close()
            async with asyncio.timeout(CALL_TIMEOUT):
                await gone
            await watcher.list_servers()
        except (SockbridgeError, TimeoutError) as err:
            _LOGGER.debug("cannot confirm that sockbridged saw %s go: %s", self.unique_name, err)
        finally:
            await watcher.close()

    async def _watch_disconnect(self) -> None:
        try:
            await self._bus.wait_for_disconnect()  # type: ignore[no-untyped-call]
        except Exception as err:  # noqa: BLE001 - whatever broke the connection
            _LOGGER.debug("D-Bus connection %s lost: %s", self._bus.unique_name, err)
        for waiter in self._vanish_waiters.values():
            if not waiter.done():
                waiter.set_exception(DaemonNotRunningError("the bus connection closed"))
        self._vanish_waiters.clear()
        if not self._closing and self._handlers.disconnected is not None:
            self._handlers.disconnected()

    # -- calls ---------------------------------------------------------------

    async def _call(
        self,
        member: str,
        signature: str = "",
        body: Sequence[Any] = (),
        *,
        destination: str = BUS_NAME,
        path: str = OBJECT_PATH,
        interface: str = INTERFACE,
    ) -> list[Any]:
        if not self.connected:
            raise DaemonNotRunningError("not connected to the bus")
        message = Message(
            destination=destination,
            path=path,
            interface=interface,
            member=member,
            signature=signature,
            body=list(body),
        )
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                reply = await self._bus.call(message)
        except TimeoutError as err:
            raise DaemonNotRunningError(
                f"{destination} did not answer {member} within {CALL_TIMEOUT:.0f} s"
            ) from err
        except (OSError, EOFError) as err:
            raise DaemonNotRunningError(f"the bus connection failed: {_reason(err)}") from err
        if reply is None:
            raise DaemonNotRunningError("the bus connection closed")
        if reply.message_type == MessageType.ERROR:
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            raise error_from_dbus(reply.error_name or "", text or (reply.error_name or ""))
        return list(reply.body)

    async def create_server(self, settings: ServerSettings) -> int:
        """CreateServerWithOptions(); the port actually bound."""
        body = await self._call(
            "CreateServerWithOptions",
            "qsbsa{sv}",
            [settings.port, "", settings.use_udp, settings.identifier, settings.options()],
        )
        return int(body[0])

    async def destroy_server(self, port: int) -> None:
        """DestroyServer(): stop the TCP and UDP servers on port (0: all of ours)."""
        await self._call("DestroyServer", "q", [port])

    async def server_send(self, handle: int, data: bytes) -> None:
        """ServerSend(): queue bytes to a connection or UDP peer."""
        await self._call("ServerSend", "uay", [handle, data])

    async def server_send_to(self, port: int, data: bytes, address: str, remote_port: int) -> None:
        """ServerSendTo(): one datagram from the UDP server on port to any address."""
        await self._call("ServerSendTo", "qaysq", [port, data, address, remote_port])

    async def server_close_client(self, handle: int) -> None:
        """ServerCloseClient(): flush, then close a connection or forget a peer."""
        await self._call("ServerCloseClient", "u", [handle])

    async def port_in_use(self, port: int, use_udp: bool) -> bool:
        """PortInUse()."""
        body = await self._call("PortInUse", "qb", [port, use_udp])
        return bool(body[0])

    async def list_servers(self) -> list[ServerInfo]:
        """ListServers(): the servers this Unix user may see."""
        body = await self._call("ListServers")
        return [
            ServerInfo(port, use_udp, identifier, bytes(delimiter), connections)
            for port, use_udp, identifier, delimiter, connections in body[0]
        ]

    async def list_connections(self) -> list[ConnectionInfo]:
        """ListConnections(): the connections and peers this Unix user may see."""
        body = await self._call("ListConnections")
        return [ConnectionInfo(*row) for row in body[0]]

    async def get_statistics(self) -> dict[str, int]:
        """GetStatistics(): the daemon's counters."""
        body = await self._call("GetStatistics")
        return {str(key): int(value) for key, value in body[0].items()}

    async def get_version(self) -> str:
        """The Version property."""
        body = await self._call("Get", "ss", [INTERFACE, "Version"], interface=PROPERTIES_INTERFACE)
        return str(body[0].value)

    async def get_daemon_owner(self) -> str | None:
        """The daemon's unique name, or None when it is not on the bus."""
        try:
            body = await self._call(
                "GetNameOwner",
                "s",
                [BUS_NAME],
                destination=DBUS_NAME,
                path=DBUS_PATH,
                interface=DBUS_INTERFACE,
            )
        except DaemonNotRunningError as err:
            if err.dbus_error is None:
                raise
            return None
        return str(body[0])

    async def _add_match(self, rule: str) -> None:
        await self._call(
            "AddMatch",
            "s",
            [rule],
            destination=DBUS_NAME,
            path=DBUS_PATH,
            interface=DBUS_INTERFACE,
        )

    # -- signals -------------------------------------------------------------

    async def subscribe(
        self, handlers: SignalHandlers, identifier: str | None = None
    ) -> str | None:
        """Receive the daemon's signals and its comings and goings.

        Returns the daemon's unique name, or None when it is not running.
        Signals are filtered to the current owner of the daemon's name. The
        bus sends this connection only the signals that handlers has a
        callback for and, given an identifier, only those of servers with
        that identifier: every frame's signal reaches each subscriber, so a
        connection per server that took all of them would unmarshal every
        other server's frames too. The first call's handlers and identifier
        choose the signals; later calls replace the callbacks.
        """
        self._handlers = handlers
        if not self._subscribed:
            for rule in _signal_matches(handlers, identifier):
                await self._add_match(rule)
            await self._add_match(_OWNER_MATCH.format(name=BUS_NAME))
            self._subscribed = True
        # Asked after the matches are in place, so no change is missed; the
        # answer is newer than any signal that came before it.
        self._owner = await self.get_daemon_owner()
        return self._owner

    async def watch_vanish(self, name: str) -> asyncio.Future[None]:
        """A future that is done once the unique name name leaves the bus."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._vanish_waiters[name] = future
        await self._add_match(_OWNER_MATCH.format(name=name))
        return future

    def _on_message(self, msg: Message) -> None:
        if msg.message_type != MessageType.SIGNAL:
            return
        if msg.sender == DBUS_NAME and msg.member == "NameOwnerChanged":
            self._on_name_owner_changed(*msg.body)
        elif (
            msg.interface == INTERFACE
            and msg.path == OBJECT_PATH
            and msg.sender is not None
            and msg.sender == self._owner
        ):
            self._on_daemon_signal(msg.member or "", msg.body)

    def _on_name_owner_changed(self, name: str, old_owner: str, new_owner: str) -> None:
        if (waiter := self._vanish_waiters.get(name)) is not None and not new_owner:
            del self._vanish_waiters[name]
            if not waiter.done():
                waiter.set_result(None)
        if name != BUS_NAME or not self._subscribed:
            return
        owner = new_owner or None
        if owner == self._owner:
            return
        if self._owner is not None and owner is not None:
            # Replaced (sockbridged --replace): the old one is gone first.
            self._owner = None
            self._notify_owner(None)
        self._owner = owner
        self._notify_owner(owner)

    def _notify_owner(self, owner: str | None) -> None:
        if self._handlers.daemon_owner is not None:
            self._handlers.daemon_owner(owner)

    def _on_daemon_signal(self, member: str, body: list[Any]) -> None:
        handlers = self._handlers
        data_in = handlers.data_in
        if member == "ServerDataInBatch" and handlers.data_in_batch is not None:
            frames, identifier = body
            handlers.data_in_batch(frames, identifier)
        elif member == "ServerDataInBatch" and data_in is not None:
            frames, identifier = body
            for handle, data, address, remote_port in frames:
                data_in(DataIn(handle, bytes(data), address, remote_port, identifier))
        elif member == "ServerDataIn" and data_in is not None:
            handle, data, address, remote_port, identifier = body
            data_in(DataIn(handle, bytes(data), address, remote_port, identifier))
        elif member == "ServerConnectionStatusChanged" and handlers.connection_status is not None:
            handlers.connection_status(ConnectionStatus(*body))
        elif member == "ServerStatusChanged" and handlers.server_status is not None:
            handlers.server_status(ServerStatus(*body))


def _match_value(value: str) -> str:
    """A match rule's quoted value: an apostrophe ends the quote, is escaped, resumes it."""
    return "'" + value.replace("'", "'\\''") + "'"


def _signal_matches(handlers: SignalHandlers, identifier: str | None) -> list[str]:
    """The match rules of the daemon's signals that handlers takes."""
    wanted = {
        "ServerStatusChanged": handlers.server_status,
        "ServerConnectionStatusChanged": handlers.connection_status,
        "ServerDataIn": handlers.data_in,
        "ServerDataInBatch": handlers.data_in_batch or handlers.data_in,
    }
    rules = []
    for member, handler in wanted.items():
        if handler is None:
            continue
        rule = f"{_SIGNAL_MATCH},member='{member}'"
        if identifier is not None:
            narrowed = f"{rule},arg{_IDENTIFIER_ARG[member]}={_match_value(identifier)}"
            if len(narrowed.encode()) <= _MAX_MATCH_RULE:
                rule = narrowed
        rules.append(rule)
    return rules


async def probe_daemon(kind: str, address: str | None) -> str:
    """Whether sockbridged answers on a bus: its version.

    Raises DaemonNotRunningError when the bus cannot be reached or the daemon
    is not on it (and cannot be started by the bus).
    """
    client = await SockbridgeClient.connect(kind, address)
    try:
        return await client.get_version()
    finally:
        await client.close()


async def probe_server(kind: str, address: str | None, settings: ServerSettings) -> int:
    """Create a server for real, then end it: the port it bound.

    Proves that the daemon is reachable and that it can serve these settings
    (raises the daemon's error otherwise). The server is made with
    exit-with-caller from a short-lived connection, and is gone, its port free
    again, when this returns.
    """
    creator = await SockbridgeClient.connect(kind, address)
    try:
        port = await creator.create_server(dataclasses.replace(settings, exit_with_caller=True))
    except BaseException:
        await creator.close()
        raise
    await creator.close_confirmed()
    return port


__all__ = [
    "BUS_ADDRESS",
    "BUS_NAME",
    "BUS_SESSION",
    "BUS_SYSTEM",
    "AddressInUseError",
    "ConnectionInfo",
    "ConnectionStatus",
    "DaemonNotRunningError",
    "DataIn",
    "FailedError",
    "InvalidArgumentError",
    "InvalidEscapeError",
    "LimitExceededError",
    "NotFoundError",
    "PermissionDeniedError",
    "ServerInfo",
    "ServerSettings",
    "ServerStatus",
    "SignalHandlers",
    "SockbridgeClient",
    "SockbridgeError",
    "decode_escapes",
    "encode_escapes",
    "error_from_dbus",
    "probe_daemon",
    "probe_server",
]
