"""The config flow and the options flow, against the real daemon."""

from __future__ import annotations

import socket
from typing import Any
from unittest.mock import patch

from homeassistant import config_entries
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
import pytest

from custom_components.sockbridge.client import (
    FailedError,
    InvalidArgumentError,
    PermissionDeniedError,
    ServerSettings,
    SockbridgeClient,
)
from custom_components.sockbridge.config_flow import unique_id
from custom_components.sockbridge.const import (
    CONF_ADDRESS,
    CONF_ADVANCED,
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
    DEFAULT_OPTIONS,
    DOMAIN,
)

from .helpers import Daemon, free_port, setup_entry

pytestmark = pytest.mark.usefixtures("socket_enabled")


def user_input(address: str, port: int, **extra: Any) -> dict[str, Any]:
    return {
        CONF_BUS: "address",
        CONF_ADDRESS: address,
        CONF_PORT: port,
        CONF_PROTOCOL: "tcp",
        CONF_DELIMITER: "\\r\\n",
        CONF_IDENTIFIER: "",
        CONF_ADVANCED: False,
        **extra,
    }


async def start_flow(hass: HomeAssistant) -> str:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    assert result["type"] == FlowResultType.FORM
    assert result["step_id"] == "user"
    assert result["errors"] == {}
    return str(result["flow_id"])


async def submit(hass: HomeAssistant, flow_id: str, data: dict[str, Any]) -> Any:
    return await hass.config_entries.flow.async_configure(flow_id, data)


async def test_success(hass: HomeAssistant, daemon: Daemon) -> None:
    port = free_port()
    flow_id = await start_flow(hass)
    result = await submit(hass, flow_id, user_input(daemon.address, port, identifier="projector"))
    assert result["type"] == FlowResultType.CREATE_ENTRY
    assert result["title"] == "projector"
    assert result["data"] == {
        CONF_BUS: "address",
        CONF_ADDRESS: daemon.address,
        CONF_PORT: port,
        CONF_PROTOCOL: "tcp",
    }
    assert result["options"] == {**DEFAULT_OPTIONS, CONF_IDENTIFIER: "projector"}
    entry = result["result"]
    assert entry.unique_id == f"address={daemon.address}:tcp:{port}"
    await hass.async_block_till_done()
    # The probe's server was gone in time: the entry made its own.
    assert entry.state is config_entries.ConfigEntryState.LOADED
    client = await SockbridgeClient.connect("address", daemon.address)
    try:
        assert [(s.port, s.identifier) for s in await client.list_servers()] == [
            (port, "projector")
        ]
    finally:
        await client.close()


async def test_success_advanced_udp_ephemeral(hass: HomeAssistant, daemon: Daemon) -> None:
    flow_id = await start_flow(hass)
    result = await submit(
        hass,
        flow_id,
        user_input(daemon.address, 0, protocol="udp", delimiter="", advanced=True),
    )
    assert result["type"] == FlowResultType.FORM
    assert result["step_id"] == "advanced"
    advanced = {
        CONF_FLUSH_TIMEOUT_MS: 50,
        CONF_MAX_MESSAGE_BYTES: 4096,
        CONF_MAX_CONNECTIONS: 4,
        CONF_UDP_PEER_TIMEOUT_MS: 1000,
        CONF_BIND_ADDRESS: "127.0.0.1",
    }
    result = await submit(hass, result["flow_id"], advanced)
    assert result["type"] == FlowResultType.CREATE_ENTRY
    assert result["title"] == "sockbridge UDP ephemeral port"
    assert result["result"].unique_id is None
    assert result["options"] == {**DEFAULT_OPTIONS, CONF_DELIMITER: "", **advanced}
    await hass.async_block_till_done()


async def test_cannot_connect_no_bus(hass: HomeAssistant) -> None:
    flow_id = await start_flow(hass)
    result = await submit(hass, flow_id, user_input("unix:path=/nonexistent/bus", 0))
    assert result["type"] == FlowResultType.FORM
    assert result["step_id"] == "user"
    assert result["errors"] == {"base": "cannot_connect"}
    assert "/nonexistent/bus" in result["description_placeholders"]["detail"]


async def test_cannot_connect_no_daemon(hass: HomeAssistant, bus_address: str) -> None:
    flow_id = await start_flow(hass)
    result = await submit(hass, flow_id, user_input(bus_address, 0))
    assert result["errors"] == {"base": "cannot_connect"}


async def test_address_required(hass: HomeAssistant) -> None:
    flow_id = await start_flow(hass)
    result = await submit(hass, flow_id, user_input(" ", 0))
    assert result["errors"] == {CONF_ADDRESS: "address_required"}


async def test_port_in_use(hass: HomeAssistant, daemon: Daemon) -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as held:
        held.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        held.bind(("::", 0))
        held.listen()
        flow_id = await start_flow(hass)
        result = await submit(hass, flow_id, user_input(daemon.address, held.getsockname()[1]))
    assert result["type"] == FlowResultType.FORM
    assert result["errors"] == {"base": "port_in_use"}
    assert result["description_placeholders"]["detail"]


async def test_port_in_use_by_sockbridge(hass: HomeAssistant, daemon: Daemon) -> None:
    """Served by sockbridge with other settings: in use as well."""
    client = await SockbridgeClient.connect("address", daemon.address)
    try:
        port = await client.create_server(ServerSettings(0, identifier="someone else"))
        flow_id = await start_flow(hass)
        result = await submit(hass, flow_id, user_input(daemon.address, port))
    finally:
        await client.close()
    assert result["errors"] == {"base": "port_in_use"}
    assert "someone else" in result["description_placeholders"]["detail"]


async def test_permission_denied(hass: HomeAssistant, daemon: Daemon) -> None:
    """A port below 1024 for a user that is not root (the tests may run as root)."""
    flow_id = await start_flow(hass)
    denied = PermissionDeniedError("port 80 is privileged (below 1024); only root may serve it")
    with patch("custom_components.sockbridge.config_flow.probe_server", side_effect=denied):
        result = await submit(hass, flow_id, user_input(daemon.address, 80))
    assert result["errors"] == {"base": "permission_denied"}
    assert "privileged" in result["description_placeholders"]["detail"]


@pytest.mark.parametrize("delimiter", ["\\q", "\\x4", "\\", "\\x00" * 65])
async def test_invalid_delimiter(hass: HomeAssistant, delimiter: str) -> None:
    flow_id = await start_flow(hass)
    result = await submit(hass, flow_id, user_input("unix:path=/unused", 0, delimiter=delimiter))
    assert result["errors"] == {CONF_DELIMITER: "invalid_delimiter"}


async def test_invalid_bind_address(hass: HomeAssistant, daemon: Daemon) -> None:
    flow_id = await start_flow(hass)
    result = await submit(hass, flow_id, user_input(daemon.address, 0, advanced=True))
    result = await submit(hass, result["flow_id"], {CONF_BIND_ADDRESS: "not an address"})
    assert result["step_id"] == "advanced"
    assert result["errors"] == {CONF_BIND_ADDRESS: "invalid_option"}
    # Fixed, it goes through.
    result = await submit(hass, result["flow_id"], {CONF_BIND_ADDRESS: "::1"})
    assert result["type"] == FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()


async def test_invalid_option_from_daemon(hass: HomeAssistant, daemon: Daemon) -> None:
    """What the form cannot check, the daemon refuses: shown on the advanced step."""
    flow_id = await start_flow(hass)
    result = await submit(hass, flow_id, user_input(daemon.address, 0, advanced=True))
    refused = InvalidArgumentError("option 'max-connections' is too large")
    with patch("custom_components.sockbridge.config_flow.probe_server", side_effect=refused):
        result = await submit(hass, result["flow_id"], {CONF_MAX_CONNECTIONS: 10**9})
    assert result["step_id"] == "advanced"
    assert result["errors"] == {"base": "invalid_option"}
    assert result["description_placeholders"]["detail"] == refused.message


async def test_invalid_option_from_daemon_without_advanced(
    hass: HomeAssistant, daemon: Daemon
) -> None:
    """An identifier over 255 bytes: the daemon says so, on the first step."""
    flow_id = await start_flow(hass)
    result = await submit(hass, flow_id, user_input(daemon.address, 0, identifier="x" * 300))
    assert result["step_id"] == "user"
    assert result["errors"] == {"base": "invalid_option"}


async def test_unknown_error(hass: HomeAssistant, daemon: Daemon) -> None:
    flow_id = await start_flow(hass)
    failed = FailedError("cannot bind: no such device")
    with patch("custom_components.sockbridge.config_flow.probe_server", side_effect=failed):
        result = await submit(hass, flow_id, user_input(daemon.address, 0))
    assert result["errors"] == {"base": "unknown"}


async def test_duplicate_aborts(hass: HomeAssistant, daemon: Daemon) -> None:
    port = free_port()
    await setup_entry(hass, daemon.address, port)
    flow_id = await start_flow(hass)
    result = await submit(hass, flow_id, user_input(daemon.address, port, identifier="again"))
    assert result["type"] == FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_same_port_other_protocol(hass: HomeAssistant, daemon: Daemon) -> None:
    """TCP and UDP on one port are two servers, told apart by their identifiers."""
    port = free_port()
    await setup_entry(hass, daemon.address, port, "tcp", identifier="tcp side")
    flow_id = await start_flow(hass)
    clash = user_input(daemon.address, port, protocol="udp", identifier="tcp side")
    result = await submit(hass, flow_id, clash)
    assert result["errors"] == {CONF_IDENTIFIER: "identifier_clash"}
    result = await submit(hass, flow_id, {**clash, CONF_IDENTIFIER: "udp side"})
    assert result["type"] == FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    # Two ports 0 never clash.
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": config_entries.SOURCE_USER},
        data=user_input(daemon.address, 0, protocol="udp", identifier="tcp side"),
    )
    assert result["type"] == FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()


# --------------------------------------------------------------------------
# Options flow


async def test_options_flow(hass: HomeAssistant, daemon: Daemon) -> None:
    entry = await setup_entry(hass, daemon.address, 0, identifier="before")
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] == FlowResultType.FORM
    assert result["step_id"] == "init"
    new = {
        CONF_DELIMITER: "\\x03",
        CONF_IDENTIFIER: "after",
        CONF_FLUSH_TIMEOUT_MS: 0,
        CONF_MAX_MESSAGE_BYTES: 100,
        CONF_MAX_CONNECTIONS: 1,
        CONF_UDP_PEER_TIMEOUT_MS: 0,
        CONF_BIND_ADDRESS: "",
    }
    result = await hass.config_entries.options.async_configure(result["flow_id"], new)
    assert result["type"] == FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert entry.options == new
    # Reloaded: the server is made again with the new settings.
    assert entry.state is config_entries.ConfigEntryState.LOADED
    client = await SockbridgeClient.connect("address", daemon.address)
    try:
        servers = await client.list_servers()
    finally:
        await client.close()
    assert [(s.identifier, s.delimiter) for s in servers] == [("after", b"\x03")]


async def test_options_flow_errors(hass: HomeAssistant, daemon: Daemon) -> None:
    port = free_port()
    await setup_entry(hass, daemon.address, port, "udp", identifier="udp")
    entry = await setup_entry(hass, daemon.address, port, "tcp", identifier="tcp")
    result = await hass.config_entries.options.async_init(entry.entry_id)
    flow_id = result["flow_id"]
    options = {**entry.options}
    for change, error in (
        ({CONF_DELIMITER: "\\z"}, {CONF_DELIMITER: "invalid_delimiter"}),
        ({CONF_BIND_ADDRESS: "localhost"}, {CONF_BIND_ADDRESS: "invalid_option"}),
        ({CONF_IDENTIFIER: "udp"}, {CONF_IDENTIFIER: "identifier_clash"}),
    ):
        result = await hass.config_entries.options.async_configure(flow_id, {**options, **change})
        assert result["type"] == FlowResultType.FORM
        assert result["errors"] == error
    result = await hass.config_entries.options.async_configure(flow_id, options)
    assert result["type"] == FlowResultType.CREATE_ENTRY


def test_unique_id() -> None:
    base = {CONF_PORT: 5000, CONF_PROTOCOL: "udp"}
    assert unique_id({**base, CONF_BUS: "system"}) == "system:udp:5000"
    assert unique_id({**base, CONF_BUS: "session"}) == "session:udp:5000"
    assert unique_id({**base, CONF_BUS: "address", CONF_ADDRESS: "unix:path=/b"}) == (
        "address=unix:path=/b:udp:5000"
    )
    assert unique_id({**base, CONF_BUS: "system", CONF_PORT: 0}) is None
