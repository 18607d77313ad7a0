"""Sensors: open connections, bound port and last message."""

from __future__ import annotations

from typing import Any

from homeassistant.components.sensor import SensorEntity, SensorStateClass
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import (
    ATTR_ADDRESS,
    ATTR_HANDLE,
    ATTR_HEX,
    ATTR_REMOTE_PORT,
    ATTR_TEXT,
    MAX_STATE_LENGTH,
)
from .daemon import SockbridgeConfigEntry
from .entity import SockbridgeDataEntity, SockbridgeEntity
from .server import SockbridgeServer

# Push only: nothing is polled.
PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: SockbridgeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the sensors of every server, now and as servers are added."""

    @callback
    def add(server: SockbridgeServer) -> None:
        async_add_entities(
            [OpenConnectionsSensor(server), BoundPortSensor(server), LastMessageSensor(server)],
            config_subentry_id=server.subentry_id,
        )

    entry.runtime_data.async_add_entities_factory(add)


class OpenConnectionsSensor(SockbridgeEntity, SensorEntity):
    """TCP connections and UDP peers open now."""

    _attr_state_class = SensorStateClass.MEASUREMENT

    def __init__(self, server: SockbridgeServer) -> None:
        """The connection count of server."""
        super().__init__(server, "open_connections")

    @property
    def native_value(self) -> int:
        """How many clients the server has."""
        return len(self._server.clients)


class BoundPortSensor(SockbridgeEntity, SensorEntity):
    """The port the server listens on (the kernel's choice for port 0)."""

    _attr_entity_category = EntityCategory.DIAGNOSTIC

    def __init__(self, server: SockbridgeServer) -> None:
        """The bound port of server."""
        super().__init__(server, "bound_port")

    @property
    def native_value(self) -> int | None:
        """The port bound last."""
        return self._server.bound_port


class LastMessageSensor(SockbridgeDataEntity, SensorEntity):
    """The last message a client sent: its text as state, all of it as attributes.

    Disabled by default: a state change per message (coalesced when they
    come fast, see SockbridgeDataEntity) that few want recorded. The bus
    event sockbridge_data_in carries every frame.
    """

    _attr_entity_registry_enabled_default = False
    # A message may be megabytes: never into the recorder.
    _unrecorded_attributes = frozenset({ATTR_TEXT, ATTR_HEX})

    def __init__(self, server: SockbridgeServer) -> None:
        """The last message of server."""
        super().__init__(server, "last_message")

    @property
    def native_value(self) -> str | None:
        """The message as text, cut to what a state may hold."""
        data = self._server.last_data
        return None if data is None else data.text[:MAX_STATE_LENGTH]

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """The whole message, as text and as hex, and who sent it."""
        data = self._server.last_data
        if data is None:
            return None
        return {
            ATTR_TEXT: data.text,
            ATTR_HEX: data.hex,
            ATTR_HANDLE: data.handle,
            ATTR_ADDRESS: data.address,
            ATTR_REMOTE_PORT: data.remote_port,
        }
