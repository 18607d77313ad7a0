"""Real clients on loopback: events, entities and actions, over TCP and UDP."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import astuple, dataclass
from datetime import timedelta

from homeassistant.const import EVENT_STATE_CHANGED, STATE_ON
from homeassistant.core import HomeAssistant, State
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import (
    async_capture_events,
    async_fire_time_changed,
)

from custom_components.sockbridge.const import (
    DATA_WRITE_INTERVAL,
    DOMAIN,
    EVENT_CONNECTION,
    EVENT_DATA_IN,
    EVENT_STATUS,
)

from .helpers import (
    Daemon,
    Server,
    UdpClient,
    device_id,
    entity_id,
    read_eof,
    read_exactly,
    running,
    server_data,
    setup_daemon_entry,
    setup_entry,
    tcp_close,
    tcp_connect,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("socket_enabled")


@dataclass
class Entities:
    """The entity ids of one server."""

    listening: str
    open_connections: str
    bound_port: str
    last_message: str
    data_received: str
    client_connection: str

    @classmethod
    def of(cls, hass: HomeAssistant, entry: Server) -> Entities:
        return cls(
            listening=entity_id(hass, "binary_sensor", entry, "listening"),
            open_connections=entity_id(hass, "sensor", entry, "open_connections"),
            bound_port=entity_id(hass, "sensor", entry, "bound_port"),
            last_message=entity_id(hass, "sensor", entry, "last_message"),
            data_received=entity_id(hass, "event", entry, "data_received"),
            client_connection=entity_id(hass, "event", entry, "client_connection"),
        )


def skip_write_interval(hass: HomeAssistant) -> None:
    """Run what waits for the end of the data entities' write interval, as if it passed."""
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=DATA_WRITE_INTERVAL))


def state(hass: HomeAssistant, entity: str) -> State:
    found = hass.states.get(entity)
    assert found is not None, entity
    return found


async def send(hass: HomeAssistant, server: Server, **data: object) -> None:
    await hass.services.async_call(
        DOMAIN, "send", {"device_id": device_id(hass, server), **data}, blocking=True
    )


async def close_client(hass: HomeAssistant, server: Server, handle: int) -> None:
    await hass.services.async_call(
        DOMAIN,
        "close_client",
        {"device_id": device_id(hass, server), "handle": handle},
        blocking=True,
    )


async def test_tcp_line_in_reply_close(hass: HomeAssistant, daemon: Daemon) -> None:
    status = async_capture_events(hass, EVENT_STATUS)
    entry = await setup_entry(hass, daemon.address, 0, identifier="projector")
    ids = Entities.of(hass, entry)
    assert state(hass, ids.listening).state == STATE_ON
    port = int(state(hass, ids.bound_port).state)
    assert state(hass, ids.open_connections).state == "0"
    assert [e.data for e in status] == [
        {
            "entry_id": entry.entry.entry_id,
            "server_id": entry.subentry_id,
            "server_port": port,
            "identifier": "projector",
            "status": "ONLINE",
        }
    ]
    data_in = async_capture_events(hass, EVENT_DATA_IN)
    connection = async_capture_events(hass, EVENT_CONNECTION)

    # A client connects: the count goes up, the connection event fires.
    reader, writer = await tcp_connect(port)
    local_port = writer.get_extra_info("sockname")[1]
    await wait_until(hass, lambda: state(hass, ids.open_connections).state == "1", "1 client")
    (online,) = (e.data for e in connection)
    handle = online["handle"]
    assert online == {
        "entry_id": entry.entry.entry_id,
        "server_id": entry.subentry_id,
        "handle": handle,
        "address": "127.0.0.1",
        "remote_port": None,
        "server_port": port,
        "identifier": "projector",
        "status": "ONLINE",
    }
    connected = state(hass, ids.client_connection)
    assert connected.attributes["event_type"] == "connected"
    assert connected.attributes["handle"] == handle

    # A line in: sockbridge_data_in, the event entity, the last message.
    writer.write(b"PWR=ON\r\nrest")
    await writer.drain()
    await wait_until(hass, lambda: len(data_in) >= 1, "sockbridge_data_in")
    assert data_in[0].data == {
        "entry_id": entry.entry.entry_id,
        "server_id": entry.subentry_id,
        "handle": handle,
        "address": "127.0.0.1",
        "remote_port": local_port,
        "server_port": port,
        "identifier": "projector",
        "text": "PWR=ON\r\n",
        "hex": "5057523d4f4e0d0a",
    }
    received = state(hass, ids.data_received)
    assert received.attributes["event_type"] == "data_received"
    assert received.attributes["text"] == "PWR=ON\r\n"
    assert received.attributes["hex"] == "5057523d4f4e0d0a"
    assert received.attributes["handle"] == handle
    assert received.attributes["remote_port"] == local_port
    last = state(hass, ids.last_message)
    assert last.state == "PWR=ON\r\n"
    assert last.attributes["address"] == "127.0.0.1"

    # Replies: text with escapes, and hex.
    await send(hass, entry, handle=handle, text="PWR?\\r\\n")
    assert await read_exactly(reader, 6) == b"PWR?\r\n"
    await send(hass, entry, handle=handle, hex="00 ff 0d 0a")
    assert await read_exactly(reader, 4) == b"\x00\xff\r\n"

    # close_client: the partial frame is delivered, then the client goes.
    await close_client(hass, entry, handle)
    assert await read_eof(reader) == b""
    await tcp_close(writer)
    await wait_until(hass, lambda: state(hass, ids.open_connections).state == "0", "0 clients")
    assert [e.data["text"] for e in data_in] == ["PWR=ON\r\n", "rest"]
    offline = connection[-1].data
    assert offline["status"] == "OFFLINE"
    assert offline["handle"] == handle
    assert offline["remote_port"] == local_port
    assert state(hass, ids.client_connection).attributes["event_type"] == "disconnected"


async def test_binary_data_as_hex(hass: HomeAssistant, daemon: Daemon) -> None:
    entry = await setup_entry(hass, daemon.address, 0, delimiter="\\x03")
    ids = Entities.of(hass, entry)
    port = int(state(hass, ids.bound_port).state)
    data_in = async_capture_events(hass, EVENT_DATA_IN)
    reader, writer = await tcp_connect(port)
    payload = b"\x00\xff\xfe\x80A\x03"
    writer.write(payload)
    await writer.drain()
    await wait_until(hass, lambda: len(data_in) >= 1, "sockbridge_data_in")
    event = data_in[0].data
    assert event["hex"] == payload.hex()
    assert bytes.fromhex(event["hex"]) == payload
    assert event["text"] == "\x00\ufffd\ufffd\ufffdA\x03"
    # The sensor's state is cut to 255 characters; the attributes hold it all.
    long_line = b"x" * 300 + b"\x03"
    writer.write(long_line)
    await writer.drain()
    await wait_until(hass, lambda: len(data_in) >= 2, "the long line")
    # Within the write interval of the first: written at its end.
    skip_write_interval(hass)
    last = state(hass, ids.last_message)
    assert last.state == "x" * 255
    assert last.attributes["text"] == long_line.decode()
    assert last.attributes["hex"] == long_line.hex()
    # Every byte value goes out again through hex.
    await send(hass, entry, handle=event["handle"], hex=bytes(range(256)).hex())
    assert await read_exactly(reader, 256) == bytes(range(256))
    await tcp_close(writer)


async def test_udp(hass: HomeAssistant, daemon: Daemon) -> None:
    entry = await setup_entry(hass, daemon.address, 0, "udp", delimiter="\\n", identifier="udp")
    ids = Entities.of(hass, entry)
    port = int(state(hass, ids.bound_port).state)
    data_in = async_capture_events(hass, EVENT_DATA_IN)
    connection = async_capture_events(hass, EVENT_CONNECTION)
    peer = await UdpClient.open(port)
    try:
        peer.send(b"temp 21\nhum 40\n")
        await wait_until(hass, lambda: len(data_in) >= 2, "two lines")
        assert [e.data["text"] for e in data_in] == ["temp 21\n", "hum 40\n"]
        handle = data_in[0].data["handle"]
        assert state(hass, ids.open_connections).state == "1"
        assert connection[0].data["status"] == "ONLINE"
        await send(hass, entry, handle=handle, text="ack\\n")
        assert await peer.receive() == b"ack\n"
        await close_client(hass, entry, handle)
        await wait_until(hass, lambda: state(hass, ids.open_connections).state == "0", "peer gone")
        assert connection[-1].data["status"] == "OFFLINE"
        # Its next datagram makes it a new peer.
        peer.send(b"again\n")
        await wait_until(hass, lambda: len(data_in) >= 3, "a new peer")
        assert data_in[2].data["handle"] != handle
    finally:
        peer.close()


async def test_send_to_every_client(hass: HomeAssistant, daemon: Daemon) -> None:
    entry = await setup_entry(hass, daemon.address, 0)
    ids = Entities.of(hass, entry)
    port = int(state(hass, ids.bound_port).state)
    first = await tcp_connect(port)
    second = await tcp_connect(port)
    await wait_until(hass, lambda: state(hass, ids.open_connections).state == "2", "2 clients")
    await send(hass, entry, text="all\\n")
    for reader, writer in (first, second):
        assert await read_exactly(reader, 4) == b"all\n"
        await tcp_close(writer)
    await wait_until(hass, lambda: state(hass, ids.open_connections).state == "0", "0 clients")
    await send(hass, entry, text="nobody")  # no client: nothing to do


async def test_two_servers_apart(hass: HomeAssistant, daemon: Daemon) -> None:
    """Each server sees only its own clients and data."""
    entry = await setup_daemon_entry(
        hass,
        daemon.address,
        server_data(0, identifier="one"),
        server_data(0, identifier="two"),
    )
    one, two = (Server(entry, sid) for sid in entry.subentries)
    if running(one).identifier != "one":
        one, two = two, one
    ids_one, ids_two = Entities.of(hass, one), Entities.of(hass, two)
    data_in = async_capture_events(hass, EVENT_DATA_IN)
    _reader, writer = await tcp_connect(int(state(hass, ids_two.bound_port).state))
    writer.write(b"to two\r\n")
    await writer.drain()
    await wait_until(hass, lambda: len(data_in) >= 1, "data")
    assert data_in[0].data["server_id"] == two.subentry_id
    assert state(hass, ids_one.open_connections).state == "0"
    assert state(hass, ids_two.open_connections).state == "1"
    assert state(hass, ids_one.last_message).state == "unknown"
    await tcp_close(writer)
    await wait_until(hass, lambda: state(hass, ids_two.open_connections).state == "0", "gone")


async def test_burst_every_event_few_state_writes(hass: HomeAssistant, daemon: Daemon) -> None:
    """A burst: every frame a bus event, in order; the entities coalesce their writes."""
    entry = await setup_entry(hass, daemon.address, 0, delimiter="\\n", identifier="burst")
    ids = Entities.of(hass, entry)
    port = int(state(hass, ids.bound_port).state)
    # The integration asks for batches: the daemon reports the option.
    client = running(entry).client
    assert client is not None
    (options,) = await client._call("GetServerOptions", "qb", [port, False])
    assert options["batch"].value is True

    _reader, writer = await tcp_connect(port)
    local_port = writer.get_extra_info("sockname")[1]
    await wait_until(hass, lambda: state(hass, ids.open_connections).state == "1", "1 client")
    (handle,) = running(entry).clients
    data_in = async_capture_events(hass, EVENT_DATA_IN)
    changes = async_capture_events(hass, EVENT_STATE_CHANGED)
    ours = set(astuple(ids))

    count = 2000
    lines = [f"frame {n:05d}\n".encode() for n in range(count)]
    writer.write(b"".join(lines))
    await writer.drain()
    await wait_until(hass, lambda: len(data_in) >= count, f"{count} sockbridge_data_in")
    skip_write_interval(hass)
    await hass.async_block_till_done()

    assert len(data_in) == count
    assert [e.data for e in data_in] == [
        {
            "entry_id": entry.entry.entry_id,
            "server_id": entry.subentry_id,
            "server_port": port,
            "identifier": "burst",
            "handle": handle,
            "address": "127.0.0.1",
            "remote_port": local_port,
            "text": line.decode(),
            "hex": line.hex(),
        }
        for line in lines
    ]
    written = [e for e in changes if e.data["entity_id"] in ours]
    assert 2 <= len(written) <= count // 10, len(written)
    # The last state written is the last frame.
    assert state(hass, ids.data_received).attributes["text"] == "frame 01999\n"
    assert state(hass, ids.last_message).state == "frame 01999\n"
    await tcp_close(writer)


async def test_slow_frames_each_written(hass: HomeAssistant, daemon: Daemon) -> None:
    """Frames a write interval apart or more: each one updates the data entities at once."""
    entry = await setup_entry(hass, daemon.address, 0, delimiter="\\n")
    ids = Entities.of(hass, entry)
    _reader, writer = await tcp_connect(int(state(hass, ids.bound_port).state))
    await wait_until(hass, lambda: state(hass, ids.open_connections).state == "1", "1 client")
    data_in = async_capture_events(hass, EVENT_DATA_IN)
    changes = async_capture_events(hass, EVENT_STATE_CHANGED)

    def arrived(count: int) -> Callable[[], bool]:
        return lambda: len(data_in) >= count

    for n in range(4):
        writer.write(f"reading {n}\n".encode())
        await writer.drain()
        await wait_until(hass, arrived(n + 1), f"frame {n}")
        # Written with the frame's own bus event, no wait.
        received = state(hass, ids.data_received)
        assert received.attributes["text"] == f"reading {n}\n"
        assert received.attributes["event_type"] == "data_received"
        assert state(hass, ids.last_message).state == f"reading {n}\n"
        skip_write_interval(hass)
    written = [e.data["entity_id"] for e in changes]
    assert written.count(ids.data_received) == 4
    assert written.count(ids.last_message) == 4
    await tcp_close(writer)
