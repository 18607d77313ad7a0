"""Binary sensor: whether the server listens."""

from __future__ import annotations

from homeassistant.components.binary_sensor import (
    BinarySensorDeviceClass,
    BinarySensorEntity,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .daemon import SockbridgeConfigEntry
from .entity import SockbridgeEntity
from .server import SockbridgeServer

# Push only: nothing is polled.
PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: SockbridgeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the listening sensor of every server, now and as servers are added."""

    @callback
    def add(server: SockbridgeServer) -> None:
        async_add_entities([ListeningBinarySensor(server)], config_subentry_id=server.subentry_id)

    entry.runtime_data.async_add_entities_factory(add)


class ListeningBinarySensor(SockbridgeEntity, BinarySensorEntity):
    """On while the server accepts connections or datagrams."""

    _attr_device_class = BinarySensorDeviceClass.CONNECTIVITY

    def __init__(self, server: SockbridgeServer) -> None:
        """The listening sensor of server."""
        super().__init__(server, "listening")

    @property
    def is_on(self) -> bool:
        """Whether the server listens."""
        return self._server.listening
