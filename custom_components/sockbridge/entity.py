"""The base of every sockbridge entity: one device per server."""

from __future__ import annotations

from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo
from homeassistant.helpers.entity import Entity

from .const import DOMAIN
from .server import SockbridgeServer


class SockbridgeEntity(Entity):
    """An entity of one server, available while the daemon is."""

    _attr_has_entity_name = True
    _attr_should_poll = False

    def __init__(self, server: SockbridgeServer, key: str) -> None:
        """Name the entity by its translation key, on the server's device."""
        self._server = server
        entry_id = server.entry.entry_id
        self._attr_translation_key = key
        self._attr_unique_id = f"{entry_id}_{key}"
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, entry_id)},
            name=server.name,
            manufacturer="sockbridge",
            model=f"{server.protocol.upper()} server",
            entry_type=DeviceEntryType.SERVICE,
        )

    @property
    def available(self) -> bool:
        """Whether sockbridged is on the bus."""
        return self._server.available

    async def async_added_to_hass(self) -> None:
        """Follow the server's state."""
        await super().async_added_to_hass()
        self.async_on_remove(self._server.async_add_listener(self.async_write_ha_state))
