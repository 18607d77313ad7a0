"""The daemon's config flow, discovery, and the server subentry flow, against the real daemon."""

from __future__ import annotations

import socket
from typing import Any
from unittest.mock import patch

from homeassistant import config_entries
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers.service_info.hassio import HassioServiceInfo
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.sockbridge.client import (
    FailedError,
    InvalidArgumentError,
    PermissionDeniedError,
    ServerSettings,
    SockbridgeClient,
)
from custom_components.sockbridge.config_flow import bus_unique_id, server_unique_id
from custom_components.sockbridge.const import (
    CONF_ADDRESS,
    CONF_BIND_ADDRESS,
    CONF_BUS,
    CONF_DELIMITER,
    CONF_FLUSH_TIMEOUT_MS,
    CONF_IDENTIFIER,
    CONF_MAX_CONNECTIONS,
    CONF_MAX_MESSAGE_BYTES,
    CONF_PORT,
    CONF_PROTOCOL,
    CONF_UDP_PEER_TIMEOUT_MS,
    DEFAULT_SERVER,
    DOMAIN,
    SECTION_ADVANCED,
    SUBENTRY_SERVER,
)
from custom_components.sockbridge.entity import find_device

from .helpers import (
    ADVANCED_DEFAULTS,
    Daemon,
    add_server,
    free_port,
    make_entry,
    running,
    server_data,
    server_input,
    setup_daemon_entry,
    setup_entry,
)

pytestmark = pytest.mark.usefixtures("socket_enabled")


async def list_servers(address: str) -> list[tuple[int, bool, str]]:
    client = await SockbridgeClient.connect("address", address)
    try:
        return [(s.port, s.use_udp, s.identifier) for s in await client.list_servers()]
    finally:
        await client.close()


# --------------------------------------------------------------------------
# The daemon entry


async def start_flow(hass: HomeAssistant) -> str:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    assert result["type"] == FlowResultType.FORM
    assert result["step_id"] == "user"
    assert result["errors"] == {}
    return str(result["flow_id"])


async def test_daemon_entry(hass: HomeAssistant, daemon: Daemon) -> None:
    flow_id = await start_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_BUS: "address", CONF_ADDRESS: f" {daemon.address} "}
    )
    assert result["type"] == FlowResultType.CREATE_ENTRY
    assert result["title"] == f"sockbridged ({daemon.address})"
    assert result["data"] == {CONF_BUS: "address", CONF_ADDRESS: daemon.address}
    entry = result["result"]
    assert entry.unique_id == f"address={daemon.address}"
    await hass.async_block_till_done()
    assert entry.state is config_entries.ConfigEntryState.LOADED
    assert entry.runtime_data.servers == {}

    # The same bus again: aborted before anything is asked of it.
    flow_id = await start_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_BUS: "address", CONF_ADDRESS: daemon.address}
    )
    assert result["type"] == FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_daemon_entry_errors(hass: HomeAssistant, bus_address: str) -> None:
    flow_id = await start_flow(hass)
    result: Any = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_BUS: "address", CONF_ADDRESS: " "}
    )
    assert result["type"] == FlowResultType.FORM
    assert result["errors"] == {CONF_ADDRESS: "address_required"}
    # A bus that is not there.
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_BUS: "address", CONF_ADDRESS: "unix:path=/nonexistent/bus"}
    )
    assert result["errors"] == {"base": "cannot_connect"}
    assert "No such file or directory" in result["description_placeholders"]["detail"]
    # A bus without the daemon.
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_BUS: "address", CONF_ADDRESS: bus_address}
    )
    assert result["errors"] == {"base": "cannot_connect"}
    assert "io.github.Sockbridge1" in result["description_placeholders"]["detail"]


async def test_system_bus_entry_unique_id(hass: HomeAssistant) -> None:
    """The system bus is one daemon however it is reached."""
    MockConfigEntry(
        domain=DOMAIN, unique_id="system", version=2, data={CONF_BUS: "system"}
    ).add_to_hass(hass)
    flow_id = await start_flow(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, {CONF_BUS: "system"})
    assert result["type"] == FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_reconfigure_daemon(hass: HomeAssistant, daemon: Daemon, bus_address: str) -> None:
    entry = await setup_daemon_entry(hass, daemon.address)
    other = MockConfigEntry(
        domain=DOMAIN, unique_id="session", version=2, data={CONF_BUS: "session"}
    )
    other.add_to_hass(hass)
    result: Any = await entry.start_reconfigure_flow(hass)
    assert result["type"] == FlowResultType.FORM
    assert result["step_id"] == "reconfigure"
    # Another entry's bus.
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_BUS: "session"}
    )
    assert result["type"] == FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    # A bus that is not there, then the same daemon by a new spelling of its address.
    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_BUS: "address", CONF_ADDRESS: "unix:path=/nonexistent"}
    )
    assert result["errors"] == {"base": "cannot_connect"}
    moved = daemon.address.split(",guid=")[0]
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_BUS: "address", CONF_ADDRESS: moved}
    )
    assert result["type"] == FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert entry.data == {CONF_BUS: "address", CONF_ADDRESS: moved}
    assert entry.unique_id == f"address={moved}"
    assert entry.state is config_entries.ConfigEntryState.LOADED


def discovery(address: str) -> HassioServiceInfo:
    return HassioServiceInfo(
        config={"address": address},
        name="sockbridge",
        slug="local_sockbridge",
        uuid="0123456789abcdef0123456789abcdef",
    )


async def test_hassio_discovery(hass: HomeAssistant, daemon: Daemon) -> None:
    result: Any = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_HASSIO}, data=discovery(daemon.address)
    )
    assert result["type"] == FlowResultType.FORM
    assert result["step_id"] == "hassio_confirm"
    assert result["description_placeholders"]["address"] == daemon.address
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] == FlowResultType.CREATE_ENTRY
    assert result["title"] == "sockbridged (sockbridge)"
    assert result["data"] == {CONF_BUS: "address", CONF_ADDRESS: daemon.address}
    assert result["result"].unique_id == f"address={daemon.address}"
    await hass.async_block_till_done()
    # Announced again (the add-on restarted): already there.
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_HASSIO}, data=discovery(daemon.address)
    )
    assert result["type"] == FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_hassio_discovery_errors(hass: HomeAssistant, bus_address: str) -> None:
    result: Any = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_HASSIO}, data=discovery(" ")
    )
    assert result["type"] == FlowResultType.ABORT
    assert result["reason"] == "invalid_discovery"
    # The daemon is not (yet) on the announced bus: the form says so.
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_HASSIO}, data=discovery(bus_address)
    )
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] == FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}


# --------------------------------------------------------------------------
# Server subentries


async def test_add_server(hass: HomeAssistant, daemon: Daemon) -> None:
    """The server is made and listens; the daemon's other servers are left alone."""
    entry = await setup_daemon_entry(hass, daemon.address, server_data(0, identifier="first"))
    (first,) = entry.runtime_data.servers.values()
    port = free_port()
    result = await add_server(hass, entry, server_input(port, identifier="projector"))
    assert result["type"] == FlowResultType.CREATE_ENTRY
    assert result["title"] == "projector"
    await hass.async_block_till_done()
    (subentry,) = (s for s in entry.subentries.values() if s.title == "projector")
    assert subentry.unique_id == f"tcp:{port}"
    assert dict(subentry.data) == {
        **DEFAULT_SERVER,
        CONF_PORT: port,
        CONF_PROTOCOL: "tcp",
        CONF_IDENTIFIER: "projector",
    }
    server = entry.runtime_data.servers[subentry.subentry_id]
    assert server.listening
    assert entry.runtime_data.servers[first.subentry_id] is first
    assert sorted(await list_servers(daemon.address)) == sorted(
        [(first.bound_port, False, "first"), (port, False, "projector")]
    )


async def test_add_server_advanced_udp_ephemeral(hass: HomeAssistant, daemon: Daemon) -> None:
    entry = await setup_daemon_entry(hass, daemon.address)
    advanced = {
        CONF_BIND_ADDRESS: "127.0.0.1",
        CONF_FLUSH_TIMEOUT_MS: 0,
        CONF_MAX_MESSAGE_BYTES: 512,
        CONF_MAX_CONNECTIONS: 3,
        CONF_UDP_PEER_TIMEOUT_MS: 5000,
    }
    result = await add_server(
        hass,
        entry,
        server_input(0, protocol="udp", delimiter="", **{SECTION_ADVANCED: advanced}),
    )
    assert result["type"] == FlowResultType.CREATE_ENTRY
    assert result["title"] == "UDP ephemeral port"
    (subentry,) = entry.subentries.values()
    assert subentry.unique_id is None
    assert dict(subentry.data) == {
        **ADVANCED_DEFAULTS,
        CONF_PORT: 0,
        CONF_PROTOCOL: "udp",
        CONF_DELIMITER: "",
        CONF_IDENTIFIER: "",
        **advanced,
    }
    await hass.async_block_till_done()
    server = entry.runtime_data.servers[subentry.subentry_id]
    assert server.settings == ServerSettings(
        port=0,
        use_udp=True,
        delimiter=b"",
        identifier="",
        flush_timeout_ms=0,
        max_message_bytes=512,
        max_connections=3,
        udp_peer_timeout_ms=5000,
        bind_address="127.0.0.1",
        batch=True,
    )
    assert server.listening


async def test_server_flow_defaults(hass: HomeAssistant, daemon: Daemon) -> None:
    """The form suggests CR LF, with the advanced options collapsed at their defaults."""
    entry = await setup_daemon_entry(hass, daemon.address)
    result: Any = await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_SERVER), context={"source": config_entries.SOURCE_USER}
    )
    schema = result["data_schema"].schema
    suggested = {str(key): key.description for key in schema}
    assert suggested[CONF_DELIMITER] == {"suggested_value": "\\r\\n"}
    advanced = next(v for k, v in schema.items() if str(k) == SECTION_ADVANCED)
    assert advanced.options == {"collapsed": True}
    assert {str(k): k.description for k in advanced.schema.schema} == {
        key: {"suggested_value": value} for key, value in ADVANCED_DEFAULTS.items()
    }


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({CONF_DELIMITER: "\\q"}, {CONF_DELIMITER: "invalid_delimiter"}),
        ({CONF_DELIMITER: "x" * 65}, {CONF_DELIMITER: "invalid_delimiter"}),
        (
            {SECTION_ADVANCED: {CONF_BIND_ADDRESS: "not-an-address"}},
            {SECTION_ADVANCED: "invalid_bind_address"},
        ),
    ],
)
async def test_server_input_errors(
    hass: HomeAssistant, daemon: Daemon, fields: dict[str, Any], errors: dict[str, str]
) -> None:
    entry = await setup_daemon_entry(hass, daemon.address)
    result = await add_server(hass, entry, server_input(0, **fields))
    assert result["type"] == FlowResultType.FORM
    assert result["errors"] == errors
    assert entry.subentries == {}


async def test_server_daemon_errors(hass: HomeAssistant, daemon: Daemon) -> None:
    """What the daemon refuses is shown with its message, and nothing is made."""
    entry = await setup_daemon_entry(hass, daemon.address)
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as held:
        held.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        held.bind(("::", 0))
        held.listen()
        result = await add_server(hass, entry, server_input(held.getsockname()[1]))
    assert result["errors"] == {"base": "port_in_use"}
    assert result["description_placeholders"]["detail"]
    result = await add_server(
        hass, entry, server_input(0, **{SECTION_ADVANCED: {CONF_BIND_ADDRESS: "192.0.2.1"}})
    )
    assert result["errors"] == {"base": "unknown"}  # the daemon's Failed: cannot bind there
    for error, key in (
        (PermissionDeniedError("below 1024"), "permission_denied"),
        (InvalidArgumentError("bad"), "invalid_option"),
        (FailedError("broken"), "unknown"),
    ):
        with patch(
            "custom_components.sockbridge.client.SockbridgeClient.create_server",
            side_effect=error,
        ):
            result = await add_server(hass, entry, server_input(0))
        assert result["errors"] == {"base": key}
        assert result["description_placeholders"]["detail"] == error.message
    assert entry.subentries == {}
    assert await list_servers(daemon.address) == []


async def test_server_daemon_gone(hass: HomeAssistant, daemon: Daemon) -> None:
    entry = await setup_daemon_entry(hass, daemon.address)
    assert await daemon.stop() == 0
    result = await add_server(hass, entry, server_input(0))
    assert result["errors"] == {"base": "cannot_connect"}


async def test_server_clashes(hass: HomeAssistant, daemon: Daemon) -> None:
    """One server per port and protocol; TCP and UDP on one port differ in identifier."""
    port = free_port()
    entry = await setup_daemon_entry(hass, daemon.address, server_data(port, identifier="tv"))
    result = await add_server(hass, entry, server_input(port))
    assert result["errors"] == {CONF_PORT: "port_configured"}
    result = await add_server(hass, entry, server_input(port, protocol="udp", identifier="tv"))
    assert result["errors"] == {CONF_IDENTIFIER: "identifier_clash"}
    result = await add_server(hass, entry, server_input(port, protocol="udp", identifier="tv-u"))
    assert result["type"] == FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert sorted(await list_servers(daemon.address)) == [(port, False, "tv"), (port, True, "tv-u")]


async def test_reconfigure_server(hass: HomeAssistant, daemon: Daemon) -> None:
    """Same port: the running server is not in the way. New settings: made again."""
    port = free_port()
    entry = await setup_daemon_entry(
        hass, daemon.address, server_data(port, identifier="amp"), server_data(0, identifier="x")
    )
    subentry = next(s for s in entry.subentries.values() if s.title == "amp")
    other = next(s for s in entry.runtime_data.servers.values() if s.identifier == "x")
    result: Any = await entry.start_subentry_reconfigure_flow(hass, subentry.subentry_id)
    assert result["type"] == FlowResultType.FORM
    assert result["step_id"] == "reconfigure"
    suggested = {str(k): k.description for k in result["data_schema"].schema}
    assert suggested[CONF_PORT] == {"suggested_value": port}
    assert suggested[CONF_IDENTIFIER] == {"suggested_value": "amp"}
    # The port of the other server (port 0 in its settings): the daemon says it is taken.
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], server_input(other.bound_port or 1, identifier="amp")
    )
    assert result["errors"] == {"base": "port_in_use"}
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"],
        server_input(port, identifier="amplifier", delimiter="\\n"),
    )
    assert result["type"] == FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    subentry = entry.subentries[subentry.subentry_id]
    assert subentry.title == "amplifier"
    assert subentry.data[CONF_DELIMITER] == "\\n"
    server = running_server(entry, subentry.subentry_id)
    assert server.listening
    assert server.settings.delimiter == b"\n"
    assert entry.runtime_data.servers[other.subentry_id] is other
    assert sorted(await list_servers(daemon.address)) == sorted(
        [(port, False, "amplifier"), (other.bound_port, False, "x")]
    )


def running_server(entry: MockConfigEntry, subentry_id: str) -> Any:
    return entry.runtime_data.servers[subentry_id]


async def test_reconfigure_server_to_taken_port(hass: HomeAssistant, daemon: Daemon) -> None:
    server = await setup_entry(hass, daemon.address, 0, identifier="moving")
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as held:
        held.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        held.bind(("::", 0))
        held.listen()
        result: Any = await server.entry.start_subentry_reconfigure_flow(hass, server.subentry_id)
        result = await hass.config_entries.subentries.async_configure(
            result["flow_id"], server_input(held.getsockname()[1], identifier="moving")
        )
    assert result["type"] == FlowResultType.FORM
    assert result["errors"] == {"base": "port_in_use"}
    assert running(server).listening


async def test_remove_server(hass: HomeAssistant, daemon: Daemon) -> None:
    """Its server ends, its device and entities go; the other server stays."""
    entry = await setup_daemon_entry(
        hass, daemon.address, server_data(0, identifier="a"), server_data(0, identifier="b")
    )
    gone = next(s for s in entry.runtime_data.servers.values() if s.identifier == "a")
    kept = next(s for s in entry.runtime_data.servers.values() if s.identifier == "b")
    assert hass.config_entries.async_remove_subentry(entry, gone.subentry_id)
    await hass.async_block_till_done()
    assert list(entry.runtime_data.servers) == [kept.subentry_id]
    assert await list_servers(daemon.address) == [(kept.bound_port, False, "b")]
    from homeassistant.helpers import entity_registry as er

    assert find_device(hass, (DOMAIN, gone.subentry_id), entry.entry_id) is None
    assert not [
        e
        for e in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
        if e.config_subentry_id == gone.subentry_id
    ]
    assert hass.states.get("binary_sensor.a_listening") is None
    assert hass.states.get("binary_sensor.b_listening") is not None


def test_unique_ids() -> None:
    assert bus_unique_id({CONF_BUS: "system"}) == "system"
    assert bus_unique_id({CONF_BUS: "address", CONF_ADDRESS: "unix:path=/x"}) == (
        "address=unix:path=/x"
    )
    assert server_unique_id({CONF_PORT: 0, CONF_PROTOCOL: "tcp"}) is None
    assert server_unique_id({CONF_PORT: 5000, CONF_PROTOCOL: "udp"}) == "udp:5000"
    # A TLS server takes a TCP port: it clashes with a TCP server there.
    assert server_unique_id({CONF_PORT: 5000, CONF_PROTOCOL: "tls"}) == "tcp:5000"


def test_make_entry_is_version_2() -> None:
    assert make_entry("unix:path=/x").version == 2
