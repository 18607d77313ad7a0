"""Binary sensor: whether the server listens."""

from __future__ import annotations

from homeassistant.components.binary_sensor import (
    BinarySensorDeviceClass,
    BinarySensorEntity,
)
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddEntitiesCallback

from .const import DOMAIN
from .entity import SockbridgeEntity
from .server import SockbridgeServer


async def async_setup_entry(
    hass: HomeAssistant, entry: ConfigEntry, async_add_entities: AddEntitiesCallback
) -> None:
    """Add the listening sensor of the entry's server."""
    server: SockbridgeServer = hass.data[DOMAIN][entry.entry_id]
    async_add_entities([ListeningBinarySensor(server)])


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
