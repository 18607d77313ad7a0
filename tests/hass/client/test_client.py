"""client.py on its own, against the real daemon: no Home Assistant in the way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
import contextlib
import socket
from typing import Any

from dbus_fast import Message, MessageType
from dbus_fast.aio.message_bus import MessageBus
from dbus_fast.errors import AuthError
import pytest

from custom_components.sockbridge import client as client_module
from custom_components.sockbridge.client import (
    AddressInUseError,
    ConnectionStatus,
    DaemonNotRunningError,
    DataIn,
    FailedError,
    InvalidArgumentError,
    InvalidEscapeError,
    LimitExceededError,
    NotFoundError,
    PermissionDeniedError,
    ServerSettings,
    ServerStatus,
    SignalHandlers,
    SockbridgeClient,
    SockbridgeError,
    decode_escapes,
    encode_escapes,
    error_from_dbus,
    probe_server,
)

from ..bus import (
    EVENT_TIMEOUT,
    Daemon,
    UdpClient,
    bound,
    read_eof,
    read_exactly,
    tcp_close,
    tcp_connect,
)

pytestmark = pytest.mark.usefixtures("socket_enabled")


class Recorder:
    """Every signal a client's handlers receive, in order."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = asyncio.Event()

    def add(self, item: Any) -> None:
        self.items.append(item)
        self._changed.set()

    def handlers(self) -> SignalHandlers:
        return SignalHandlers(
            server_status=self.add,
            connection_status=self.add,
            data_in=self.add,
            daemon_owner=lambda owner: self.add(("owner", owner)),
            disconnected=lambda: self.add("disconnected"),
        )

    async def wait_for(self, predicate: Callable[[Any], bool], what: str) -> Any:
        async with asyncio.timeout(bound(EVENT_TIMEOUT)):
            while True:
                for item in self.items:
                    if predicate(item):
                        return item
                self._changed.clear()
                await self._changed.wait()
        raise AssertionError(what)  # pragma: no cover - the timeout raises first


@pytest.fixture
async def sb(daemon: Daemon) -> AsyncIterator[SockbridgeClient]:
    """A client of the test's daemon."""
    client = await SockbridgeClient.connect("address", daemon.address)
    try:
        yield client
    finally:
        await client.close()


# --------------------------------------------------------------------------
# Escapes and errors


@pytest.mark.parametrize(
    ("text", "data"),
    [
        ("", b""),
        ("\\r\\n", b"\r\n"),
        ("\\n", b"\n"),
        ("\\t|\\0|\\\\", b"\t|\x00|\\"),
        ("\\x03", b"\x03"),
        ("\\xFF\\xfe", b"\xff\xfe"),
        ("PWR ON\\r", b"PWR ON\r"),
        ("é", "é".encode()),
    ],
)
def test_decode_escapes(text: str, data: bytes) -> None:
    assert decode_escapes(text) == data


@pytest.mark.parametrize("text", ["\\q", "\\x4", "\\x", "\\xg0", "end\\", "\\X41"])
def test_decode_escapes_invalid(text: str) -> None:
    with pytest.raises(InvalidEscapeError):
        decode_escapes(text)


def test_encode_escapes_round_trip() -> None:
    data = bytes(range(256))
    text = encode_escapes(data)
    assert text.isascii()
    assert decode_escapes(text) == data
    assert encode_escapes(b"A\r\n\x03") == "A\\r\\n\\x03"


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("io.github.Sockbridge1.Error.AddressInUse", AddressInUseError),
        ("io.github.Sockbridge1.Error.PermissionDenied", PermissionDeniedError),
        ("io.github.Sockbridge1.Error.InvalidArgument", InvalidArgumentError),
        ("io.github.Sockbridge1.Error.NotFound", NotFoundError),
        ("io.github.Sockbridge1.Error.LimitExceeded", LimitExceededError),
        ("io.github.Sockbridge1.Error.Failed", FailedError),
        ("org.freedesktop.DBus.Error.ServiceUnknown", DaemonNotRunningError),
        ("org.freedesktop.DBus.Error.NameHasNoOwner", DaemonNotRunningError),
        ("org.freedesktop.DBus.Error.NoReply", DaemonNotRunningError),
        ("org.freedesktop.DBus.Error.AccessDenied", SockbridgeError),
    ],
)
def test_error_from_dbus(name: str, cls: type[SockbridgeError]) -> None:
    err = error_from_dbus(name, "what went wrong")
    assert type(err) is cls
    assert err.message == "what went wrong"
    assert str(err) == "what went wrong"
    assert err.dbus_error == name


def test_server_settings_options() -> None:
    settings = ServerSettings(
        5000,
        delimiter=b"\r\n",
        flush_timeout_ms=0,
        max_message_bytes=10,
        max_connections=2,
        udp_peer_timeout_ms=5,
        bind_address="127.0.0.1",
        batch=True,
    )
    options = {key: variant.value for key, variant in settings.options().items()}
    assert options == {
        "delimiter-bytes": b"\r\n",
        "exit-with-caller": True,
        "flush-timeout-ms": 0,
        "max-message-bytes": 10,
        "max-connections": 2,
        "udp-peer-timeout-ms": 5,
        "bind-address": "127.0.0.1",
        "batch": True,
    }
    assert set(ServerSettings(0).options()) == {"delimiter-bytes", "exit-with-caller"}


# --------------------------------------------------------------------------
# No bus, no daemon


async def test_connect_no_bus() -> None:
    """The messages are the client's own, whatever dbus-fast's version says."""
    with pytest.raises(DaemonNotRunningError) as err:
        await SockbridgeClient.connect("address", "unix:path=/nonexistent/bus")
    assert err.value.message == (
        "cannot connect to the bus at unix:path=/nonexistent/bus: No such file or directory"
    )
    with pytest.raises(DaemonNotRunningError) as err:
        await SockbridgeClient.connect("address", "nonsense")
    assert err.value.message == "cannot connect to the bus at nonsense: not a valid D-Bus address"
    with pytest.raises(DaemonNotRunningError, match="no D-Bus address"):
        await SockbridgeClient.connect("address", "")


async def test_connect_system_and_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """The system and session buses are found the usual way (here: nowhere)."""
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/system")
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/session")
    with pytest.raises(DaemonNotRunningError, match="system bus"):
        await SockbridgeClient.connect("system")
    with pytest.raises(DaemonNotRunningError, match="session bus"):
        await SockbridgeClient.connect("session")


async def test_daemon_not_running(bus_address: str) -> None:
    client = await SockbridgeClient.connect("address", bus_address)
    try:
        assert client.kind == "address"
        assert client.address == bus_address
        assert client.unique_name.startswith(":")
        assert await client.subscribe(SignalHandlers()) is None
        with pytest.raises(DaemonNotRunningError) as err:
            await client.create_server(ServerSettings(0))
        assert err.value.dbus_error == "org.freedesktop.DBus.Error.ServiceUnknown"
        with pytest.raises(DaemonNotRunningError):
            await probe_server("address", bus_address, ServerSettings(0))
    finally:
        await client.close()
    assert not client.connected
    with pytest.raises(DaemonNotRunningError, match="not connected"):
        await client.list_servers()
    await client.close()  # twice is fine


# --------------------------------------------------------------------------
# Every call


async def test_calls(sb: SockbridgeClient) -> None:
    recorder = Recorder()
    await sb.subscribe(recorder.handlers())
    assert await sb.get_version()
    port = await sb.create_server(ServerSettings(0, delimiter=b"\n", identifier="calls"))
    assert 0 < port < 65536
    assert await sb.port_in_use(port, False)
    servers = await sb.list_servers()
    assert [(s.port, s.use_udp, s.identifier, s.delimiter, s.connections) for s in servers] == [
        (port, False, "calls", b"\n", 0)
    ]
    # Idempotent: the same settings again give the same port.
    assert await sb.create_server(ServerSettings(port, delimiter=b"\n", identifier="calls")) == port
    with pytest.raises(AddressInUseError, match=str(port)):
        await sb.create_server(ServerSettings(port, identifier="other"))

    reader, writer = await tcp_connect(port)
    writer.write(b"ping\n")
    await writer.drain()
    (connection,) = await _connections(sb, recorder, 1)
    assert (connection.server_port, connection.use_udp, connection.identifier) == (
        port,
        False,
        "calls",
    )
    assert connection.address == "127.0.0.1"
    assert connection.remote_port == writer.get_extra_info("sockname")[1]
    await sb.server_send(connection.handle, b"pong\n")
    assert await read_exactly(reader, 5) == b"pong\n"
    await sb.server_close_client(connection.handle)
    assert await read_eof(reader) == b""
    await tcp_close(writer)

    statistics = await sb.get_statistics()
    assert statistics["connections-accepted"] >= 1
    await sb.destroy_server(port)
    assert await sb.list_servers() == []
    with pytest.raises(NotFoundError, match=str(port)):
        await sb.destroy_server(port)


async def _connections(sb: SockbridgeClient, recorder: Recorder, count: int) -> list[Any]:
    """The connections, once count of them came ONLINE."""
    await recorder.wait_for(
        lambda _: sum(isinstance(s, ConnectionStatus) for s in recorder.items) >= count,
        f"{count} connections",
    )
    return await sb.list_connections()


async def test_errors(sb: SockbridgeClient) -> None:
    with pytest.raises(InvalidArgumentError, match="bind-address"):
        await sb.create_server(ServerSettings(0, bind_address="not an address"))
    with pytest.raises(InvalidArgumentError, match="max-message-bytes"):
        await sb.create_server(ServerSettings(0, max_message_bytes=0))
    with pytest.raises(NotFoundError, match="4242"):
        await sb.server_send(4242, b"x")
    with pytest.raises(NotFoundError):
        await sb.server_close_client(4242)
    # A port another process holds.
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as held:
        held.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        held.bind(("::", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(AddressInUseError):
            await sb.create_server(ServerSettings(port))
        assert await sb.port_in_use(port, False)


async def test_send_limit(sb: SockbridgeClient) -> None:
    """A send past the 4 MiB queue bound is LimitExceeded, nothing queued."""
    recorder = Recorder()
    await sb.subscribe(recorder.handlers())
    port = await sb.create_server(ServerSettings(0))
    _reader, writer = await tcp_connect(port)
    (connection,) = await _connections(sb, recorder, 1)
    with pytest.raises(LimitExceededError):
        await sb.server_send(connection.handle, bytes(5 * 1024 * 1024))
    await tcp_close(writer)


# --------------------------------------------------------------------------
# Signals


async def test_signals_tcp(sb: SockbridgeClient) -> None:
    recorder = Recorder()
    owner = await sb.subscribe(recorder.handlers())
    assert owner is not None
    assert sb.daemon_owner == owner
    port = await sb.create_server(ServerSettings(0, delimiter=b"\r\n", identifier="sig"))
    await recorder.wait_for(lambda s: s == ServerStatus(port, "ONLINE", "sig"), "ONLINE")

    _reader, writer = await tcp_connect(port)
    local_port = writer.get_extra_info("sockname")[1]
    online = await recorder.wait_for(
        lambda s: isinstance(s, ConnectionStatus) and s.status == "ONLINE", "connection ONLINE"
    )
    assert (online.port, online.address, online.identifier) == (port, "127.0.0.1", "sig")
    writer.write(b"one\r\ntw\xffo\r\n")
    await writer.drain()
    second = await recorder.wait_for(
        lambda s: isinstance(s, DataIn) and s.data == b"tw\xffo\r\n", "second frame"
    )
    assert second == DataIn(online.handle, b"tw\xffo\r\n", "127.0.0.1", local_port, "sig")
    data = [s.data for s in recorder.items if isinstance(s, DataIn)]
    assert data == [b"one\r\n", b"tw\xffo\r\n"]
    await tcp_close(writer)
    await recorder.wait_for(
        lambda s: isinstance(s, ConnectionStatus) and s.status == "OFFLINE", "connection OFFLINE"
    )
    await sb.destroy_server(port)
    await recorder.wait_for(lambda s: s == ServerStatus(port, "OFFLINE", "sig"), "OFFLINE")


async def test_signals_batch(sb: SockbridgeClient) -> None:
    """A batch server's ServerDataInBatch: the same DataIn per frame, in order, per handle."""
    members: list[str] = []

    def count(msg: Message) -> None:
        if msg.message_type == MessageType.SIGNAL and msg.member:
            members.append(msg.member)

    sb._bus.add_message_handler(count)
    recorder = Recorder()
    await sb.subscribe(recorder.handlers())
    port = await sb.create_server(ServerSettings(0, delimiter=b"\n", identifier="b", batch=True))
    (options,) = await sb._call("GetServerOptions", "qb", [port, False])
    assert options["batch"].value is True
    clients = [await tcp_connect(port) for _ in range(2)]

    def onlines() -> list[ConnectionStatus]:
        return [i for i in recorder.items if isinstance(i, ConnectionStatus)]

    await recorder.wait_for(lambda _s: len(onlines()) == 2, "2 connections ONLINE")
    count_per_client = 300
    sent: dict[int, list[bytes]] = {}
    for n, (_reader, writer) in enumerate(clients):
        lines = [f"{n}:{i}\n".encode() for i in range(count_per_client)]
        writer.write(b"".join(lines))
        await writer.drain()
        sent[writer.get_extra_info("sockname")[1]] = lines

    def received() -> list[DataIn]:
        return [i for i in recorder.items if isinstance(i, DataIn)]

    await recorder.wait_for(lambda _s: len(received()) == 2 * count_per_client, "every frame")
    frames = received()
    handles = {c.handle for c in onlines()}
    for remote_port, lines in sent.items():
        mine = [f for f in frames if f.remote_port == remote_port]
        assert [f.data for f in mine] == lines
        assert {(f.address, f.identifier) for f in mine} == {("127.0.0.1", "b")}
        assert len({f.handle for f in mine}) == 1
        assert mine[0].handle in handles
        assert mine[0].text == lines[0].decode()
        assert mine[0].hex == lines[0].hex()
    # The frames came as batches (several per signal), never as ServerDataIn.
    assert "ServerDataIn" not in members
    assert 1 <= members.count("ServerDataInBatch") < len(frames)
    for _reader, writer in clients:
        await tcp_close(writer)


async def test_signals_batch_whole(sb: SockbridgeClient) -> None:
    """With data_in_batch, each ServerDataInBatch comes whole, once, its frames in order.

    The subscriber has no data_in: the batch handler alone subscribes it to
    the batches, and no frame is handed over one by one.
    """
    batches: list[tuple[list[Any], str]] = []
    arrived = asyncio.Event()

    def take(frames: list[Any], identifier: str) -> None:
        batches.append((frames, identifier))
        arrived.set()

    await sb.subscribe(SignalHandlers(data_in_batch=take), "w")
    port = await sb.create_server(ServerSettings(0, delimiter=b"\n", identifier="w", batch=True))
    _reader, writer = await tcp_connect(port)
    lines = [f"{i}\n".encode() for i in range(500)]
    writer.write(b"".join(lines))
    await writer.drain()
    async with asyncio.timeout(bound(EVENT_TIMEOUT)):
        while sum(len(frames) for frames, _ in batches) < len(lines):
            arrived.clear()
            await arrived.wait()
    frames = [frame for batch, _ in batches for frame in batch]
    assert [bytes(f[1]) for f in frames] == lines
    assert {(f[0], f[2], f[3]) for f in frames} == {
        (frames[0][0], "127.0.0.1", writer.get_extra_info("sockname")[1])
    }
    assert {identifier for _, identifier in batches} == {"w"}
    assert len(batches) < len(lines)
    await tcp_close(writer)


def signal_counter(into: list[tuple[str, str]]) -> Callable[[Message], None]:
    """A message handler that notes each signal of the daemon: member, last argument."""

    def count(msg: Message) -> None:
        if msg.message_type == MessageType.SIGNAL and msg.interface != "org.freedesktop.DBus":
            into.append((msg.member or "", str(msg.body[-1])))

    return count


def offline_of(identifier: str) -> Callable[[Any], bool]:
    """Whether a signal is a connection of identifier's server going OFFLINE."""
    return lambda s: (
        isinstance(s, ConnectionStatus) and s.status == "OFFLINE" and s.identifier == identifier
    )


async def test_signals_filtered_by_the_bus(daemon: Daemon, sb: SockbridgeClient) -> None:
    """A subscriber with an identifier gets only that identifier's signals from the bus.

    One without data or status callbacks (the daemon entry's) gets none of
    the servers' signals: no connection unmarshals another server's frames.
    """
    theirs = "it's \\ theirs, 'quoted'"
    long_name = "'" * 255  # its match rule would be too long: filtered here
    clients = {
        name: await SockbridgeClient.connect("address", daemon.address)
        for name in (theirs, long_name, "owner only")
    }
    seen: dict[str, list[tuple[str, str]]] = {name: [] for name in clients}
    recorders = {name: Recorder() for name in clients}
    try:
        for name, client in clients.items():
            client._bus.add_message_handler(signal_counter(seen[name]))
            if name == "owner only":
                await client.subscribe(SignalHandlers(daemon_owner=recorders[name].add))
            else:
                await client.subscribe(recorders[name].handlers(), name)
        ports = {}
        for identifier in ("mine", theirs, long_name):
            ports[identifier] = await sb.create_server(
                ServerSettings(0, delimiter=b"\n", identifier=identifier, batch=True)
            )
        for identifier, port in ports.items():
            _reader, writer = await tcp_connect(port)
            writer.write(identifier.encode()[:10] + b"\n")
            await writer.drain()
            await tcp_close(writer)
        for name in (theirs, long_name):
            await recorders[name].wait_for(offline_of(name), f"{name}'s connection OFFLINE")
        frames = [i for i in recorders[theirs].items if isinstance(i, DataIn)]
        assert [(f.data, f.identifier) for f in frames] == [(theirs.encode()[:10] + b"\n", theirs)]
        members = {"ServerStatusChanged", "ServerConnectionStatusChanged", "ServerDataInBatch"}
        assert {m for m, _ in seen[theirs]} == members
        assert {i for _, i in seen[theirs]} == {theirs}
        # Too long to filter on the bus: every server's signals, sorted out here.
        assert {i for _, i in seen[long_name]} == {"mine", theirs, long_name}
        # The daemon's answer comes after every signal it sent before it.
        await clients["owner only"].get_version()
        assert seen["owner only"] == []
    finally:
        for client in clients.values():
            await client.close()


async def test_signals_udp(sb: SockbridgeClient) -> None:
    recorder = Recorder()
    await sb.subscribe(recorder.handlers())
    port = await sb.create_server(ServerSettings(0, use_udp=True, identifier="udp"))
    peer = await UdpClient.open(port)
    try:
        peer.send(b"\x00\x01")
        data_in = await recorder.wait_for(lambda s: isinstance(s, DataIn), "datagram")
        assert data_in.data == b"\x00\x01"
        await sb.server_send(data_in.handle, b"reply")
        assert await peer.receive() == b"reply"
        await sb.server_close_client(data_in.handle)
        await recorder.wait_for(
            lambda s: isinstance(s, ConnectionStatus) and s.status == "OFFLINE", "peer OFFLINE"
        )
    finally:
        peer.close()


async def test_signals_daemon_comes_and_goes(daemon: Daemon, sb: SockbridgeClient) -> None:
    recorder = Recorder()
    first = await sb.subscribe(recorder.handlers())
    assert first is not None
    assert await daemon.stop() == 0
    await recorder.wait_for(lambda s: s == ("owner", None), "daemon gone")
    assert sb.daemon_owner is None
    await daemon.start()
    back = await recorder.wait_for(lambda s: s[0:1] == ("owner",) and s[1], "daemon back")
    assert back[1] != first
    assert sb.daemon_owner == back[1]
    # Subscribing again keeps the same matches and reports the owner.
    assert await sb.subscribe(recorder.handlers()) == back[1]


async def test_signals_daemon_replaced(daemon: Daemon, sb: SockbridgeClient) -> None:
    """A new owner without a gap (--replace): reported as gone, then back."""
    recorder = Recorder()
    first = await sb.subscribe(recorder.handlers())
    sb._on_name_owner_changed("io.github.Sockbridge1", first or "", ":1.999")
    assert recorder.items == [("owner", None), ("owner", ":1.999")]
    sb._on_name_owner_changed("io.github.Sockbridge1", ":1.999", ":1.999")
    assert len(recorder.items) == 2


async def test_disconnected_handler(bus_address: str) -> None:
    """The handler hears of a connection lost, not of close()."""
    client = await SockbridgeClient.connect("address", bus_address)
    recorder = Recorder()
    await client.subscribe(recorder.handlers())
    client._bus.disconnect()  # as if the bus went away
    await recorder.wait_for(lambda s: s == "disconnected", "disconnected")
    assert not client.connected
    await client.close()
    assert recorder.items == ["disconnected"]


# --------------------------------------------------------------------------
# probe_server and close_confirmed


async def test_probe_server(daemon: Daemon, sb: SockbridgeClient) -> None:
    port = await probe_server(
        "address", daemon.address, ServerSettings(0, identifier="probe", exit_with_caller=False)
    )
    assert port > 0
    # Gone when probe_server returns: the port can be made again at once,
    # with other settings even.
    assert await sb.list_servers() == []
    assert await sb.create_server(ServerSettings(port, identifier="again")) == port


async def test_probe_server_error(daemon: Daemon) -> None:
    with pytest.raises(InvalidArgumentError):
        await probe_server("address", daemon.address, ServerSettings(0, max_connections=0))


async def test_close_confirmed(daemon: Daemon, sb: SockbridgeClient) -> None:
    creator = await SockbridgeClient.connect("address", daemon.address)
    port = await creator.create_server(ServerSettings(0))
    await creator.close_confirmed()
    assert not creator.connected
    assert await sb.list_servers() == []
    assert not await sb.port_in_use(port, False)


async def test_close_confirmed_without_daemon(bus_address: str) -> None:
    """Nothing to confirm without a daemon: it only closes."""
    client = await SockbridgeClient.connect("address", bus_address)
    await client.subscribe(SignalHandlers())
    await client.close_confirmed()
    assert not client.connected
    unsubscribed = await SockbridgeClient.connect("address", bus_address)
    await unsubscribed.close_confirmed()  # the barrier call fails: still closed
    assert not unsubscribed.connected
    await unsubscribed.close_confirmed()


async def test_close_confirmed_bus_unreachable(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await SockbridgeClient.connect("address", daemon.address)
    await client.subscribe(SignalHandlers())

    async def no_bus(*args: Any) -> SockbridgeClient:
        raise DaemonNotRunningError("no bus")

    monkeypatch.setattr(SockbridgeClient, "connect", no_bus)
    await client.close_confirmed()
    assert not client.connected


async def test_call_failures(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    """No answer in time, a broken socket, a closed connection: daemon not running."""
    client = await SockbridgeClient.connect("address", daemon.address)
    try:
        monkeypatch.setattr(client_module, "CALL_TIMEOUT", 0.001)

        async def hang(bus: Any, msg: Any) -> None:
            await asyncio.get_running_loop().create_future()

        async def broken(bus: Any, msg: Any) -> None:
            raise BrokenPipeError("broken")

        async def closed(bus: Any, msg: Any) -> None:
            return None

        for call, match in ((hang, "did not answer"), (broken, "broken"), (closed, "closed")):
            with monkeypatch.context() as patch:
                patch.setattr(MessageBus, "call", call)
                with pytest.raises(DaemonNotRunningError, match=match):
                    await client.list_servers()
        with monkeypatch.context() as patch:
            patch.setattr(MessageBus, "call", hang)
            # get_daemon_owner() passes on what is not a D-Bus error.
            with pytest.raises(DaemonNotRunningError):
                await client.get_daemon_owner()
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (AuthError("no"), "the bus refused to authenticate this process"),
        (EOFError(), "the bus closed the connection"),
        (ConnectionResetError(104, "Connection reset by peer"), "Connection reset by peer"),
    ],
)
async def test_connect_failure_reasons(
    bus_address: str, monkeypatch: pytest.MonkeyPatch, error: Exception, reason: str
) -> None:
    async def fail(self: Any) -> None:
        raise error

    monkeypatch.setattr(MessageBus, "connect", fail)
    with pytest.raises(DaemonNotRunningError) as err:
        await SockbridgeClient.connect("address", bus_address)
    assert err.value.message == f"cannot connect to the bus at {bus_address}: {reason}"


async def test_connect_auth_timeout(bus_address: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async def slow_connect(self: Any) -> None:
        raise TimeoutError

    monkeypatch.setattr(MessageBus, "connect", slow_connect)
    with pytest.raises(DaemonNotRunningError, match="cannot connect"):
        await SockbridgeClient.connect("address", bus_address)


async def test_vanish_waiter_fails_when_connection_lost(bus_address: str) -> None:
    watcher = await SockbridgeClient.connect("address", bus_address)
    gone = await watcher.watch_vanish(":1.424242")
    await watcher.close()
    with pytest.raises(DaemonNotRunningError), contextlib.suppress(asyncio.CancelledError):
        await gone
