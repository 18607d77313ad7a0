"""Event entities: data received, and clients connecting or disconnecting."""

from __future__ import annotations

from homeassistant.components.event import EventEntity
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import (
    ATTR_ADDRESS,
    ATTR_HANDLE,
    ATTR_HEX,
    ATTR_REMOTE_PORT,
    ATTR_TEXT,
    EVENT_TYPE_CONNECTED,
    EVENT_TYPE_DATA_RECEIVED,
    EVENT_TYPE_DISCONNECTED,
)
from .daemon import SockbridgeConfigEntry
from .entity import SockbridgeDataEntity, SockbridgeEntity
from .server import ConnectedClient, SockbridgeServer

# Push only: nothing is polled.
PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: SockbridgeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the event entities of every server, now and as servers are added."""

    @callback
    def add(server: SockbridgeServer) -> None:
        async_add_entities(
            [DataReceivedEvent(server), ClientConnectionEvent(server)],
            config_subentry_id=server.subentry_id,
        )

    entry.runtime_data.async_add_entities_factory(add)


class DataReceivedEvent(SockbridgeDataEntity, EventEntity):
    """Fires data_received with the messages clients send.

    With each message while they come slowly, with the latest one at most
    every DATA_WRITE_INTERVAL seconds when they come fast (see
    SockbridgeDataEntity); the sockbridge_data_in bus event has every one.
    """

    _unrecorded_attributes = frozenset({ATTR_TEXT, ATTR_HEX})

    def __init__(self, server: SockbridgeServer) -> None:
        """The data event of server."""
        super().__init__(server, "data_received")
        self._attr_event_types = [EVENT_TYPE_DATA_RECEIVED]

    @callback
    def _async_write_data(self) -> None:
        data = self._server.last_data
        if data is None:  # pragma: no cover - written only after a message
            return
        self._trigger_event(
            EVENT_TYPE_DATA_RECEIVED,
            {
                ATTR_HANDLE: data.handle,
                ATTR_ADDRESS: data.address,
                ATTR_REMOTE_PORT: data.remote_port,
                ATTR_TEXT: data.text,
                ATTR_HEX: data.hex,
            },
        )
        self.async_write_ha_state()


class ClientConnectionEvent(SockbridgeEntity, EventEntity):
    """Fires connected or disconnected as clients come and go."""

    def __init__(self, server: SockbridgeServer) -> None:
        """The connection event of server."""
        super().__init__(server, "client_connection")
        self._attr_event_types = [EVENT_TYPE_CONNECTED, EVENT_TYPE_DISCONNECTED]

    async def async_added_to_hass(self) -> None:
        """Follow the clients."""
        await super().async_added_to_hass()
        self.async_on_remove(self._server.async_add_connection_listener(self._on_connection))

    @callback
    def _on_connection(self, change: tuple[str, ConnectedClient]) -> None:
        event_type, client = change
        self._trigger_event(
            event_type,
            {
                ATTR_HANDLE: client.handle,
                ATTR_ADDRESS: client.address,
                ATTR_REMOTE_PORT: client.remote_port,
            },
        )
        self.async_write_ha_state()
