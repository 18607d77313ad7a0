"""Set-up, unload, the daemon going and coming back, the bus going, diagnostics."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
import socket
import subprocess
from types import MappingProxyType
from unittest.mock import patch

from homeassistant.config_entries import ConfigEntryState, ConfigSubentry
from homeassistant.const import STATE_OFF, STATE_ON, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import (
    entity_registry as er,
    issue_registry as ir,
)
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import (
    async_capture_events,
    async_fire_time_changed,
)

from custom_components.sockbridge.client import (
    DaemonNotRunningError,
    FailedError,
    ServerSettings,
    SockbridgeClient,
)
from custom_components.sockbridge.const import (
    DOMAIN,
    EVENT_CONNECTION,
    EVENT_DATA_IN,
    EVENT_STATUS,
)
from custom_components.sockbridge.daemon import bus_title
from custom_components.sockbridge.diagnostics import async_get_config_entry_diagnostics
from custom_components.sockbridge.entity import find_device
from custom_components.sockbridge.migration import async_migrate_entry

from .helpers import (
    Daemon,
    Server,
    bus_peers,
    device_memberships,
    entity_id,
    free_port,
    make_entry,
    only_server,
    read_eof,
    running,
    server_data,
    setup_entry,
    state_of,
    tcp_close,
    tcp_connect,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("socket_enabled")


def bound_port(hass: HomeAssistant, entry: Server) -> int:
    return int(state_of(hass, entity_id(hass, "sensor", entry, "bound_port")))


async def test_device_and_entities(hass: HomeAssistant, daemon: Daemon) -> None:
    entry = make_entry(daemon.address, server_data(0, identifier="amplifier"))
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    server = only_server(entry)
    daemon_device = find_device(hass, (DOMAIN, f"{entry.entry_id}_daemon"), entry.entry_id)
    assert daemon_device is not None
    assert daemon_device.model == "sockbridged"
    assert daemon_device.sw_version == await daemon_version(daemon.address)
    device = find_device(hass, (DOMAIN, server.subentry_id), entry.entry_id)
    assert device is not None
    assert device.name == "amplifier"
    assert device.model == "TCP server"
    assert device.via_device_id == daemon_device.id
    assert device_memberships(device) == {entry.entry_id: {server.subentry_id}}
    listening = entity_id(hass, "binary_sensor", server, "listening")
    assert listening == "binary_sensor.amplifier_listening"
    assert hass.states.get(listening).attributes["device_class"] == "connectivity"  # type: ignore[union-attr]
    connections = hass.states.get(entity_id(hass, "sensor", server, "open_connections"))
    assert connections is not None
    assert connections.attributes["state_class"] == "measurement"
    # Every frame would be a recorded state change: off unless the user wants it.
    last = er.async_get(hass).async_get(entity_id(hass, "sensor", server, "last_message"))
    assert last is not None
    assert last.disabled_by is er.RegistryEntryDisabler.INTEGRATION
    assert last.config_subentry_id == server.subentry_id


async def daemon_version(address: str) -> str:
    client = await SockbridgeClient.connect("address", address)
    try:
        return await client.get_version()
    finally:
        await client.close()


async def test_not_ready_without_daemon(
    hass: HomeAssistant, bus_address: str, sockbridged_binary: Path, tmp_path: Path
) -> None:
    """ConfigEntryNotReady while the daemon is absent; set up once it is there."""
    entry = make_entry(bus_address, server_data())
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY
    assert entry.error_reason_translation_key == "daemon_not_running"
    assert "not" in (entry.reason or "")

    daemon = Daemon(sockbridged_binary, bus_address, tmp_path / "late.log")
    await daemon.start()
    try:
        async_fire_time_changed(hass, dt_util.utcnow() + timedelta(minutes=5))
        await wait_until(hass, lambda: entry.state is ConfigEntryState.LOADED, "set up")
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        assert await daemon.stop() == 0


async def test_not_ready_without_bus(hass: HomeAssistant) -> None:
    entry = make_entry("unix:path=/nonexistent/bus", server_data())
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY
    assert entry.error_reason_translation_key == "daemon_not_running"
    assert entry.error_reason_translation_placeholders == {
        "bus": "unix:path=/nonexistent/bus",
        "error": (
            "cannot connect to the bus at unix:path=/nonexistent/bus: No such file or directory"
        ),
    }


async def test_port_in_use_at_start(hass: HomeAssistant, daemon: Daemon) -> None:
    """A taken port: loaded, not listening, a repair issue; served once it is free."""
    issues = ir.async_get(hass)
    held = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        held.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        held.bind(("::", 0))
        held.listen()
        port = held.getsockname()[1]
        server = await setup_entry(hass, daemon.address, port, identifier="held")
        assert server.entry.state is ConfigEntryState.LOADED
        listening = entity_id(hass, "binary_sensor", server, "listening")
        assert state_of(hass, listening) == STATE_OFF
        issue = issues.async_get_issue(DOMAIN, f"port_in_use_{server.subentry_id}")
        assert issue is not None
        assert issue.translation_key == "port_in_use"
        assert issue.translation_placeholders is not None
        assert issue.translation_placeholders["port"] == str(port)
        assert issue.translation_placeholders["server"] == "held"
        assert running(server).error
        # Still taken at the next try.
        async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=31))
        await hass.async_block_till_done()
        await asyncio.gather(*server.entry._background_tasks)
        assert state_of(hass, listening) == STATE_OFF
    finally:
        held.close()
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=62))
    await wait_until(hass, lambda: state_of(hass, listening) == STATE_ON, "listening")
    assert issues.async_get_issue(DOMAIN, f"port_in_use_{server.subentry_id}") is None
    assert running(server).error is None


async def test_invalid_option_is_an_issue(hass: HomeAssistant, daemon: Daemon) -> None:
    """Settings the daemon refuses: a repair issue with its message, until they change."""
    server = await setup_entry(hass, daemon.address, 0, max_message_bytes=0)
    issue = ir.async_get(hass).async_get_issue(DOMAIN, f"server_failed_{server.subentry_id}")
    assert issue is not None
    assert issue.translation_placeholders is not None
    assert "max-message-bytes" in issue.translation_placeholders["error"]
    assert await hass.config_entries.async_unload(server.entry.entry_id)
    # Unloading withdraws it: nothing is wrong with an unloaded server.
    assert ir.async_get(hass).async_get_issue(DOMAIN, f"server_failed_{server.subentry_id}") is None


async def test_unload_closes_port(hass: HomeAssistant, daemon: Daemon) -> None:
    peers = await bus_peers(daemon.address)
    entry = await setup_entry(hass, daemon.address, 0)
    # The daemon entry's connection, and the server's own.
    assert len(await bus_peers(daemon.address)) == len(peers) + 2
    port = bound_port(hass, entry)
    reader, writer = await tcp_connect(port)
    await wait_until(
        hass,
        lambda: state_of(hass, entity_id(hass, "sensor", entry, "open_connections")) == "1",
        "a client",
    )
    assert await hass.config_entries.async_unload(entry.entry.entry_id)
    assert entry.entry.state is ConfigEntryState.NOT_LOADED
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
    assert entry.entry.state is ConfigEntryState.LOADED
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
        await asyncio.gather(*entry.entry._background_tasks)
        assert "sockbridged refused the server" in caplog.text
        assert state_of(hass, listening) == STATE_OFF
        issue_id = f"port_in_use_{entry.subentry_id}"
        assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is not None


async def test_port0_entry_without_identifier_keeps_ephemeral_port(
    hass: HomeAssistant, daemon: Daemon
) -> None:
    """A second create of this daemon's server (the owner signal again) changes nothing."""
    entry = await setup_entry(hass, daemon.address, 0)
    port = bound_port(hass, entry)
    server = running(entry)
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
    server = running(entry)
    assert await hass.config_entries.async_unload(entry.entry.entry_id)
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
        hass, lambda: entry.entry.state is ConfigEntryState.SETUP_RETRY, "the entry to retry"
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
    diagnostics = await async_get_config_entry_diagnostics(hass, entry.entry)
    assert diagnostics["entry"]["data"] == dict(entry.entry.data)
    assert diagnostics["daemon"]["available"] is True
    assert diagnostics["daemon"]["version"] == await daemon_version(daemon.address)
    assert diagnostics["daemon"]["statistics"]["connections-accepted"] >= 1
    server = diagnostics["servers"][entry.subentry_id]
    assert server["config"] == dict(entry.entry.subentries[entry.subentry_id].data)
    assert server["available"] is True
    assert server["listening"] is True
    assert server["bound_port"] == port
    assert server["error"] is None
    assert server["delimiter"] == "\\r\\n"
    assert server["identifier"] == "diag"
    (connection,) = diagnostics["daemon"]["connections"]
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
        diagnostics = await async_get_config_entry_diagnostics(hass, entry.entry)
    assert diagnostics["daemon"]["error"] == "no list"
    await tcp_close(writer)

    assert await daemon.stop() == 0
    listening = entity_id(hass, "binary_sensor", entry, "listening")
    await wait_until(hass, lambda: state_of(hass, listening) == STATE_UNAVAILABLE, "unavailable")
    diagnostics = await async_get_config_entry_diagnostics(hass, entry.entry)
    assert diagnostics["daemon"]["available"] is False
    assert diagnostics["servers"][entry.subentry_id]["available"] is False
    assert "connections" not in diagnostics["daemon"]


async def test_daemon_gone_for_minutes(hass: HomeAssistant, daemon: Daemon) -> None:
    """A repair issue after three minutes without the daemon; gone when it is back."""
    server = await setup_entry(hass, daemon.address, 0)
    issue_id = f"daemon_gone_{server.entry.entry_id}"
    listening = entity_id(hass, "binary_sensor", server, "listening")
    assert await daemon.stop() == 0
    await wait_until(hass, lambda: state_of(hass, listening) == STATE_UNAVAILABLE, "unavailable")
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=179))
    await hass.async_block_till_done()
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=181))
    await hass.async_block_till_done()
    issue = ir.async_get(hass).async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.translation_placeholders == {"bus": daemon.address, "minutes": "3"}
    await daemon.start()
    await wait_until(hass, lambda: state_of(hass, listening) == STATE_ON, "listening again")
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None
    await asyncio.gather(*server.entry._background_tasks)
    device = find_device(hass, (DOMAIN, f"{server.entry.entry_id}_daemon"), server.entry.entry_id)
    assert device is not None
    assert device.sw_version == await daemon_version(daemon.address)


async def test_rename_and_reconfigure_live(hass: HomeAssistant, daemon: Daemon) -> None:
    """A new title renames the device alone; new settings make the server again."""
    server = await setup_entry(hass, daemon.address, 0, identifier="old")
    subentry = server.entry.subentries[server.subentry_id]
    count = entity_id(hass, "sensor", server, "open_connections")
    connection = async_capture_events(hass, EVENT_CONNECTION)
    reader, writer = await tcp_connect(bound_port(hass, server))
    await wait_until(hass, lambda: state_of(hass, count) == "1", "a client")
    hass.config_entries.async_update_subentry(server.entry, subentry, title="renamed")
    await hass.async_block_till_done()
    device = find_device(hass, (DOMAIN, server.subentry_id), server.entry.entry_id)
    assert device is not None
    assert device.name == "renamed"
    assert state_of(hass, count) == "1"  # the client is still there
    hass.config_entries.async_update_subentry(
        server.entry, subentry, data={**subentry.data, "delimiter": "\\n"}
    )
    await hass.async_block_till_done()
    assert await read_eof(reader) == b""
    await tcp_close(writer)
    assert [e.data["status"] for e in connection] == ["ONLINE", "OFFLINE"]
    assert running(server).settings.delimiter == b"\n"
    assert state_of(hass, count) == "0"
    assert state_of(hass, entity_id(hass, "binary_sensor", server, "listening")) == STATE_ON


def test_bus_titles() -> None:
    assert bus_title({"bus": "system"}) == "system bus"
    assert bus_title({"bus": "session"}) == "session bus"
    assert bus_title({"bus": "address", "address": "unix:path=/x"}) == "unix:path=/x"


async def test_current_version_needs_no_migration(hass: HomeAssistant) -> None:
    assert await async_migrate_entry(hass, make_entry("unix:path=/x"))


async def test_daemon_gone_between_calls(hass: HomeAssistant, daemon: Daemon) -> None:
    """The daemon leaves while a server is being made: retried, not an error."""
    target = "custom_components.sockbridge.client.SockbridgeClient"
    entry = make_entry(daemon.address, server_data())
    entry.add_to_hass(hass)
    with patch(f"{target}.create_server", side_effect=DaemonNotRunningError("gone")):
        assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY
    assert await daemon_version(daemon.address)  # still there: nothing was left behind
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(minutes=5))
    await wait_until(hass, lambda: entry.state is ConfigEntryState.LOADED, "set up")
    server = only_server(entry)
    live = running(server)
    assert live.client is not None
    owner = live.client.daemon_owner
    # A create that fails in the background (the daemon came and went again) is logged.
    live.listening = False
    with patch(f"{target}.create_server", side_effect=DaemonNotRunningError("gone")):
        live._on_daemon_owner(owner)
        await asyncio.gather(*entry._background_tasks)
    # The daemon's version cannot be read: the device keeps the one it has.
    with patch(f"{target}.get_version", side_effect=FailedError("no version")):
        entry.runtime_data._on_daemon_owner(owner)
        await asyncio.gather(*entry._background_tasks)
    assert entry.runtime_data.version == await daemon_version(daemon.address)
    daemon_object = entry.runtime_data
    assert await hass.config_entries.async_unload(entry.entry_id)
    await daemon_object._async_refresh_version()  # after unload: nothing to do


async def test_server_added_while_daemon_gone(hass: HomeAssistant, daemon: Daemon) -> None:
    """A server that cannot be made for want of the daemon: the entry waits for it."""
    server = await setup_entry(hass, daemon.address, 0)
    listening = entity_id(hass, "binary_sensor", server, "listening")
    assert await daemon.stop() == 0
    await wait_until(hass, lambda: state_of(hass, listening) == STATE_UNAVAILABLE, "unavailable")
    hass.config_entries.async_add_subentry(
        server.entry,
        ConfigSubentry(
            data=MappingProxyType(server_data(0, identifier="late")),
            subentry_type="server",
            title="late",
            unique_id=None,
        ),
    )
    await wait_until(
        hass, lambda: server.entry.state is ConfigEntryState.SETUP_RETRY, "the entry to retry"
    )
    await daemon.start()
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(minutes=5))
    await wait_until(hass, lambda: server.entry.state is ConfigEntryState.LOADED, "loaded")
    assert len(server.entry.runtime_data.servers) == 2
