"""Set-up, unload, the daemon going and coming back, the bus going, diagnostics."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
import socket
import subprocess
from unittest.mock import patch

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_OFF, STATE_ON, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_capture_events,
    async_fire_time_changed,
)

from custom_components.sockbridge.client import FailedError, ServerSettings, SockbridgeClient
from custom_components.sockbridge.const import (
    DOMAIN,
    EVENT_CONNECTION,
    EVENT_DATA_IN,
    EVENT_STATUS,
)
from custom_components.sockbridge.diagnostics import async_get_config_entry_diagnostics
from custom_components.sockbridge.server import SockbridgeServer

from .helpers import (
    Daemon,
    bus_peers,
    entity_id,
    free_port,
    make_entry,
    read_eof,
    setup_entry,
    state_of,
    tcp_close,
    tcp_connect,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("socket_enabled")


def bound_port(hass: HomeAssistant, entry: MockConfigEntry) -> int:
    return int(state_of(hass, entity_id(hass, "sensor", entry, "bound_port")))


async def test_device_and_entities(hass: HomeAssistant, daemon: Daemon) -> None:
    entry = await setup_entry(hass, daemon.address, 0, identifier="amplifier")
    device = dr.async_get(hass).async_get_device(identifiers={(DOMAIN, entry.entry_id)})
    assert device is not None
    assert device.name == "amplifier"
    assert device.model == "TCP server"
    listening = entity_id(hass, "binary_sensor", entry, "listening")
    assert listening == "binary_sensor.amplifier_listening"
    assert hass.states.get(listening).attributes["device_class"] == "connectivity"  # type: ignore[union-attr]
    connections = hass.states.get(entity_id(hass, "sensor", entry, "open_connections"))
    assert connections is not None
    assert connections.attributes["state_class"] == "measurement"


async def test_not_ready_without_daemon(
    hass: HomeAssistant, bus_address: str, sockbridged_binary: Path, tmp_path: Path
) -> None:
    """ConfigEntryNotReady while the daemon is absent; set up once it is there."""
    entry = make_entry(bus_address, 0)
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY
    assert "not running" in (entry.reason or "")

    daemon = Daemon(sockbridged_binary, bus_address, tmp_path / "late.log")
    await daemon.start()
    try:
        async_fire_time_changed(hass, dt_util.utcnow() + timedelta(minutes=5))
        await wait_until(hass, lambda: entry.state is ConfigEntryState.LOADED, "set up")
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        assert await daemon.stop() == 0


async def test_not_ready_without_bus(hass: HomeAssistant) -> None:
    entry = make_entry("unix:path=/nonexistent/bus", 0)
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY
    assert "cannot reach" in (entry.reason or "")


async def test_not_ready_port_in_use(hass: HomeAssistant, daemon: Daemon) -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as held:
        held.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        held.bind(("::", 0))
        held.listen()
        entry = make_entry(daemon.address, held.getsockname()[1])
        entry.add_to_hass(hass)
        assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY
    assert "cannot serve" in (entry.reason or "")


async def test_setup_error_invalid_option(hass: HomeAssistant, daemon: Daemon) -> None:
    """Settings the daemon refuses will not fix themselves: an error, no retry."""
    entry = make_entry(daemon.address, 0, max_message_bytes=0)
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_ERROR


async def test_unload_closes_port(hass: HomeAssistant, daemon: Daemon) -> None:
    peers = await bus_peers(daemon.address)
    entry = await setup_entry(hass, daemon.address, 0)
    assert len(await bus_peers(daemon.address)) == len(peers) + 1  # the entry's connection
    port = bound_port(hass, entry)
    reader, writer = await tcp_connect(port)
    await wait_until(
        hass,
        lambda: state_of(hass, entity_id(hass, "sensor", entry, "open_connections")) == "1",
        "a client",
    )
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert entry.state is ConfigEntryState.NOT_LOADED
    assert hass.data[DOMAIN] == {}
    # Closed when the unload returns: the client was dropped, the port is free.
    assert await read_eof(reader) == b""
    await tcp_close(writer)
    client = await SockbridgeClient.connect("address", daemon.address)
    try:
        assert await client.list_servers() == []
        assert not await client.port_in_use(port, False)
    finally:
        await client.close()
    with pytest.raises(ConnectionRefusedError):
        await tcp_connect(port)
    # No bus connection is left; the harness fails the test on any task,
    # timer or thread left behind.
    assert await bus_peers(daemon.address) == peers


async def test_daemon_stops_and_comes_back(
    hass: HomeAssistant, daemon: Daemon, bus_address: str
) -> None:
    """Unavailable while the daemon is gone; served again once it is back."""
    entry = await setup_entry(hass, daemon.address, 0, identifier="tv")
    listening = entity_id(hass, "binary_sensor", entry, "listening")
    count = entity_id(hass, "sensor", entry, "open_connections")
    status = async_capture_events(hass, EVENT_STATUS)
    connection = async_capture_events(hass, EVENT_CONNECTION)
    data_in = async_capture_events(hass, EVENT_DATA_IN)
    reader, writer = await tcp_connect(bound_port(hass, entry))
    await wait_until(hass, lambda: state_of(hass, count) == "1", "a client")

    assert await daemon.stop() == 0
    await wait_until(hass, lambda: state_of(hass, listening) == STATE_UNAVAILABLE, "unavailable")
    for key in ("open_connections", "bound_port", "last_message"):
        assert state_of(hass, entity_id(hass, "sensor", entry, key)) == STATE_UNAVAILABLE
    for key in ("data_received", "client_connection"):
        assert state_of(hass, entity_id(hass, "event", entry, key)) == STATE_UNAVAILABLE
    assert [e.data["status"] for e in connection] == ["ONLINE", "OFFLINE"]
    assert status[-1].data["status"] == "OFFLINE"
    assert await read_eof(reader) == b""
    await tcp_close(writer)

    await daemon.start()
    await wait_until(hass, lambda: state_of(hass, listening) == STATE_ON, "listening again")
    assert status[-1].data["status"] == "ONLINE"
    assert state_of(hass, count) == "0"
    assert entry.state is ConfigEntryState.LOADED
    reader, writer = await tcp_connect(bound_port(hass, entry))
    writer.write(b"back\r\n")
    await writer.drain()
    await wait_until(hass, lambda: len(data_in) >= 1, "data after the restart")
    assert data_in[0].data["text"] == "back\r\n"
    assert data_in[0].data["server_port"] == bound_port(hass, entry)
    await tcp_close(writer)


async def test_daemon_killed(hass: HomeAssistant, daemon: Daemon) -> None:
    """A daemon that dies without a word: its clients are reported gone all the same."""
    entry = await setup_entry(hass, daemon.address, 0)
    listening = entity_id(hass, "binary_sensor", entry, "listening")
    connection_entity = entity_id(hass, "event", entry, "client_connection")
    count = entity_id(hass, "sensor", entry, "open_connections")
    connection = async_capture_events(hass, EVENT_CONNECTION)
    status = async_capture_events(hass, EVENT_STATUS)
    _reader, writer = await tcp_connect(bound_port(hass, entry))
    await wait_until(hass, lambda: state_of(hass, count) == "1", "a client")
    assert daemon.proc is not None
    daemon.proc.kill()
    assert await daemon.proc.wait() == -9
    await wait_until(hass, lambda: state_of(hass, listening) == STATE_UNAVAILABLE, "unavailable")
    assert [e.data["status"] for e in connection] == ["ONLINE", "OFFLINE"]
    assert [e.data["status"] for e in status] == ["OFFLINE"]
    assert state_of(hass, connection_entity) == STATE_UNAVAILABLE
    await tcp_close(writer)
    await daemon.start()
    await wait_until(hass, lambda: state_of(hass, listening) == STATE_ON, "listening again")


async def test_daemon_back_but_port_taken(
    hass: HomeAssistant, daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    """The server cannot be made again: available, not listening, and logged."""
    port = free_port()
    entry = await setup_entry(hass, daemon.address, port)
    listening = entity_id(hass, "binary_sensor", entry, "listening")
    assert await daemon.stop() == 0
    await wait_until(hass, lambda: state_of(hass, listening) == STATE_UNAVAILABLE, "unavailable")
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as held:
        held.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        held.bind(("::", port))
        held.listen()
        await daemon.start()
        await wait_until(hass, lambda: state_of(hass, listening) == STATE_OFF, "available")
        # The attempt to make the server again runs as the entry's background task.
        await asyncio.gather(*entry._background_tasks)
        assert "cannot create the server again" in caplog.text
        assert state_of(hass, listening) == STATE_OFF


async def test_port0_entry_without_identifier_keeps_ephemeral_port(
    hass: HomeAssistant, daemon: Daemon
) -> None:
    """A second create of this daemon's server (the owner signal again) changes nothing."""
    entry = await setup_entry(hass, daemon.address, 0)
    port = bound_port(hass, entry)
    server: SockbridgeServer = hass.data[DOMAIN][entry.entry_id]
    assert server.client is not None
    server._on_daemon_owner(server.client.daemon_owner)
    await hass.async_block_till_done()
    assert bound_port(hass, entry) == port
    client = await SockbridgeClient.connect("address", daemon.address)
    try:
        assert [s.port for s in await client.list_servers()] == [port]
    finally:
        await client.close()


async def test_create_after_stop_does_nothing(hass: HomeAssistant, daemon: Daemon) -> None:
    """A re-create that comes after the entry stopped (a race with unload) does nothing."""
    entry = await setup_entry(hass, daemon.address, 0)
    server: SockbridgeServer = hass.data[DOMAIN][entry.entry_id]
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert server.client is None
    server.listening = False
    await server._async_create()
    assert server.client is None


async def test_server_destroyed_behind_its_back(hass: HomeAssistant, daemon: Daemon) -> None:
    entry = await setup_entry(hass, daemon.address, 0, identifier="dev")
    listening = entity_id(hass, "binary_sensor", entry, "listening")
    count = entity_id(hass, "sensor", entry, "open_connections")
    status = async_capture_events(hass, EVENT_STATUS)
    _reader, writer = await tcp_connect(bound_port(hass, entry))
    await wait_until(hass, lambda: state_of(hass, count) == "1", "a client")
    client = await SockbridgeClient.connect("address", daemon.address)
    try:
        await client.destroy_server(bound_port(hass, entry))
    finally:
        await client.close()
    await wait_until(hass, lambda: state_of(hass, listening) == STATE_OFF, "not listening")
    assert state_of(hass, count) == "0"
    assert [e.data["status"] for e in status] == ["OFFLINE"]
    await tcp_close(writer)


async def test_others_servers_ignored(hass: HomeAssistant, daemon: Daemon) -> None:
    """A server of someone else on the bus changes nothing here."""
    entry = await setup_entry(hass, daemon.address, 0, identifier="mine")
    status = async_capture_events(hass, EVENT_STATUS)
    connection = async_capture_events(hass, EVENT_CONNECTION)
    client = await SockbridgeClient.connect("address", daemon.address)
    try:
        port = await client.create_server(ServerSettings(0, identifier="theirs"))
        _reader, writer = await tcp_connect(port)
        writer.write(b"x")
        await writer.drain()
        await tcp_close(writer)
        await client.destroy_server(port)
        # A round trip through the daemon after its signals: they have arrived.
        await client.list_servers()
        await hass.async_block_till_done()
    finally:
        await client.close()
    assert status == []
    assert connection == []
    assert state_of(hass, entity_id(hass, "sensor", entry, "open_connections")) == "0"


async def test_bus_lost(
    hass: HomeAssistant,
    sockbridged_binary: Path,
    second_bus: tuple[str, subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    """The bus itself goes: unavailable, and the entry retries its set-up."""
    address, bus = second_bus
    daemon = Daemon(sockbridged_binary, address, tmp_path / "lost.log")
    await daemon.start()
    entry = await setup_entry(hass, address, 0)
    listening = entity_id(hass, "binary_sensor", entry, "listening")
    bus.terminate()
    # Home Assistant reloads the entry, which waits for the bus again.
    await wait_until(
        hass, lambda: entry.state is ConfigEntryState.SETUP_RETRY, "the entry to retry"
    )
    assert state_of(hass, listening) == STATE_UNAVAILABLE
    # sockbridged, without its bus, exits on its own.
    assert daemon.proc is not None
    code = await daemon.proc.wait()
    assert code >= 0, f"sockbridged died of signal {-code}:\n{daemon.output()}"


async def test_diagnostics(hass: HomeAssistant, daemon: Daemon) -> None:
    entry = await setup_entry(hass, daemon.address, 0, identifier="diag")
    port = bound_port(hass, entry)
    _reader, writer = await tcp_connect(port)
    local_port = writer.get_extra_info("sockname")[1]
    await wait_until(
        hass,
        lambda: state_of(hass, entity_id(hass, "sensor", entry, "open_connections")) == "1",
        "a client",
    )
    diagnostics = await async_get_config_entry_diagnostics(hass, entry)
    assert diagnostics["entry"]["data"] == dict(entry.data)
    assert diagnostics["entry"]["options"] == dict(entry.options)
    server = diagnostics["server"]
    assert server["available"] is True
    assert server["listening"] is True
    assert server["bound_port"] == port
    assert server["delimiter"] == "\\r\\n"
    assert server["identifier"] == "diag"
    assert diagnostics["daemon_version"]
    (connection,) = diagnostics["connections"]
    assert connection["server_port"] == port
    assert connection["address"] == "127.0.0.1"
    assert connection["remote_port"] == local_port
    assert server["clients"] == [
        {"handle": connection["handle"], "address": "127.0.0.1", "remote_port": None}
    ]

    with patch(
        "custom_components.sockbridge.client.SockbridgeClient.list_connections",
        side_effect=FailedError("no list"),
    ):
        diagnostics = await async_get_config_entry_diagnostics(hass, entry)
    assert diagnostics["daemon_error"] == "no list"
    await tcp_close(writer)

    assert await daemon.stop() == 0
    listening = entity_id(hass, "binary_sensor", entry, "listening")
    await wait_until(hass, lambda: state_of(hass, listening) == STATE_UNAVAILABLE, "unavailable")
    diagnostics = await async_get_config_entry_diagnostics(hass, entry)
    assert diagnostics["server"]["available"] is False
    assert "connections" not in diagnostics

    assert await hass.config_entries.async_unload(entry.entry_id)
    diagnostics = await async_get_config_entry_diagnostics(hass, entry)
    assert "server" not in diagnostics
