"""Helpers of the Home Assistant tests: the bus, the daemon, loopback clients.

Everything that waits waits for the event itself, with a bound; nothing
sleeps for a fixed time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from homeassistant import config_entries
from homeassistant.config_entries import SIGNAL_CONFIG_ENTRY_CHANGED, ConfigSubentryData
from homeassistant.const import MATCH_ALL
from homeassistant.core import HomeAssistant, callback
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.sockbridge.config_flow import (
    bus_unique_id,
    server_title,
    server_unique_id,
)
from custom_components.sockbridge.const import (
    BUS_ADDRESS,
    CONF_ADDRESS,
    CONF_ALLOW_FROM,
    CONF_BIND_ADDRESS,
    CONF_BUS,
    CONF_DELIMITER,
    CONF_FLUSH_TIMEOUT_MS,
    CONF_IDENTIFIER,
    CONF_MAX_CONNECTIONS,
    CONF_MAX_MESSAGE_BYTES,
    CONF_MULTICAST_GROUPS,
    CONF_MULTICAST_INTERFACE,
    CONF_PORT,
    CONF_PROTOCOL,
    CONF_STRIP_DELIMITER,
    CONF_TLS_CERTIFICATE,
    CONF_TLS_CHAIN,
    CONF_TLS_CLIENT_AUTH,
    CONF_TLS_CLIENT_CA,
    CONF_TLS_PASSWORD,
    CONF_TLS_PRIVATE_KEY,
    CONF_UDP_PEER_TIMEOUT_MS,
    DEFAULT_SERVER,
    DOMAIN,
    ENTRY_VERSION,
    PROTOCOL_TCP,
    SECTION_ADVANCED,
    SUBENTRY_SERVER,
)
from custom_components.sockbridge.entity import find_device
from custom_components.sockbridge.server import SockbridgeServer

# Re-exported: the tests import them from here.
from .bus import (
    EVENT_TIMEOUT as EVENT_TIMEOUT,
    REPO_ROOT as REPO_ROOT,
    TIMEOUT_FACTOR as TIMEOUT_FACTOR,
    Daemon as Daemon,
    UdpClient as UdpClient,
    bound as bound,
    bus_peers as bus_peers,
    daemon_binary as daemon_binary,
    free_port as free_port,
    private_bus as private_bus,
    read_eof as read_eof,
    read_exactly as read_exactly,
    tcp_close as tcp_close,
    tcp_connect as tcp_connect,
)

# --------------------------------------------------------------------------
# Home Assistant


async def wait_until(
    hass: HomeAssistant,
    condition: Callable[[], bool],
    what: str,
    within: float = EVENT_TIMEOUT,
) -> None:
    """Wait until condition() holds.

    Re-checked after every Home Assistant event and config entry change.
    """
    changed = asyncio.Event()

    @callback
    def on_change(*args: Any) -> None:
        changed.set()

    unsubscribe_bus = hass.bus.async_listen(MATCH_ALL, on_change)
    unsubscribe_entries = async_dispatcher_connect(hass, SIGNAL_CONFIG_ENTRY_CHANGED, on_change)
    try:
        async with asyncio.timeout(bound(within)):
            while not condition():
                changed.clear()
                await changed.wait()
    except TimeoutError:
        raise AssertionError(f"timed out after {bound(within):.0f} s waiting for {what}") from None
    finally:
        unsubscribe_bus()
        unsubscribe_entries()


@dataclass(frozen=True)
class Server:
    """A server subentry of a daemon entry, as the tests make them."""

    entry: MockConfigEntry
    subentry_id: str


def server_data(port: int = 0, protocol: str = PROTOCOL_TCP, **options: Any) -> dict[str, Any]:
    """A server subentry's data."""
    return {**DEFAULT_SERVER, CONF_PORT: port, CONF_PROTOCOL: protocol, **options}


def make_entry(address: str, *servers: dict[str, Any]) -> MockConfigEntry:
    """A daemon entry on the bus at address, with a subentry per server data."""
    data = {CONF_BUS: BUS_ADDRESS, CONF_ADDRESS: address}
    return MockConfigEntry(
        domain=DOMAIN,
        title=f"sockbridged ({address})",
        data=data,
        unique_id=bus_unique_id(data),
        version=ENTRY_VERSION,
        subentries_data=[
            ConfigSubentryData(
                data=server,
                subentry_type=SUBENTRY_SERVER,
                title=server_title(server),
                unique_id=server_unique_id(server),
            )
            for server in servers
        ],
    )


def enable_last_message(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Enable the servers' last message sensors, which are disabled by default."""
    registry = er.async_get(hass)
    for subentry_id in entry.subentries:
        registry.async_get_or_create(
            "sensor",
            DOMAIN,
            f"{subentry_id}_last_message",
            config_entry=entry,
            config_subentry_id=subentry_id,
            disabled_by=None,
        )


async def setup_daemon_entry(
    hass: HomeAssistant, address: str, *servers: dict[str, Any]
) -> MockConfigEntry:
    """Add a daemon entry with these servers and set it up; asserts it loaded.

    The servers' last message sensors are enabled.
    """
    entry = make_entry(address, *servers)
    entry.add_to_hass(hass)
    enable_last_message(hass, entry)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


def only_server(entry: MockConfigEntry) -> Server:
    """The one server subentry of entry."""
    (subentry_id,) = entry.subentries
    return Server(entry, subentry_id)


async def setup_entry(
    hass: HomeAssistant, address: str, port: int = 0, protocol: str = PROTOCOL_TCP, **options: Any
) -> Server:
    """A daemon entry with one server, set up; asserts it loaded."""
    return only_server(
        await setup_daemon_entry(hass, address, server_data(port, protocol, **options))
    )


def device_id(hass: HomeAssistant, server: Server) -> str:
    """The device id of a server, as the actions take it."""
    device = find_device(hass, (DOMAIN, server.subentry_id), server.entry.entry_id)
    assert device is not None, server
    return device.id


def running(server: Server) -> SockbridgeServer:
    """The running SockbridgeServer of a test server."""
    found: SockbridgeServer = server.entry.runtime_data.servers[server.subentry_id]
    return found


def state_of(hass: HomeAssistant, entity: str) -> str:
    """The state of an entity that must exist."""
    found = hass.states.get(entity)
    assert found is not None, entity
    return found.state


def entity_id(hass: HomeAssistant, platform: str, server: Server, key: str) -> str:
    """The entity id of the server's entity key on platform."""
    found = er.async_get(hass).async_get_entity_id(platform, DOMAIN, f"{server.subentry_id}_{key}")
    assert found is not None, f"no {platform} entity {key}"
    return found


def device_memberships(device: Any) -> dict[str, set[str | None]]:
    """The entries and subentries a device (of any release's types) belongs to."""
    if hasattr(device, "config_subentry_id"):
        # 2026.x: one entry and subentry per device.
        return {getattr(device, "config_entry_id"): {device.config_subentry_id}}  # noqa: B009
    subentries: dict[str, set[str | None]] = device.config_entries_subentries
    return subentries


# --------------------------------------------------------------------------
# The server subentry flow

# The advanced section's defaults, as the form shows them.
ADVANCED_DEFAULTS = {
    CONF_BIND_ADDRESS: "",
    CONF_FLUSH_TIMEOUT_MS: 1000,
    CONF_MAX_MESSAGE_BYTES: 1048576,
    CONF_MAX_CONNECTIONS: 256,
    CONF_UDP_PEER_TIMEOUT_MS: 60000,
    CONF_STRIP_DELIMITER: False,
    CONF_ALLOW_FROM: [],
    CONF_MULTICAST_GROUPS: [],
    CONF_MULTICAST_INTERFACE: "",
    CONF_TLS_CERTIFICATE: "",
    CONF_TLS_PRIVATE_KEY: "",
    CONF_TLS_PASSWORD: "",
    CONF_TLS_CHAIN: "",
    CONF_TLS_CLIENT_AUTH: "request",
    CONF_TLS_CLIENT_CA: "",
}


def server_input(port: int, **fields: Any) -> dict[str, Any]:
    """What the server form's user enters: TCP, CR LF, and fields."""
    advanced = {**ADVANCED_DEFAULTS, **fields.pop(SECTION_ADVANCED, {})}
    return {
        CONF_PORT: port,
        CONF_PROTOCOL: "tcp",
        CONF_DELIMITER: "\\r\\n",
        CONF_IDENTIFIER: "",
        SECTION_ADVANCED: advanced,
        **fields,
    }


async def start_server_flow(hass: HomeAssistant, entry: MockConfigEntry) -> str:
    """Open the form of a new server subentry; its flow id."""
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_SERVER), context={"source": config_entries.SOURCE_USER}
    )
    assert result["type"] == FlowResultType.FORM
    assert result["step_id"] == "user"
    return str(result["flow_id"])


async def add_server(hass: HomeAssistant, entry: MockConfigEntry, data: dict[str, Any]) -> Any:
    """Fill in and submit the form of a new server subentry; the flow's result."""
    flow_id = await start_server_flow(hass, entry)
    return await hass.config_entries.subentries.async_configure(flow_id, data)
