"""The base of every sockbridge entity: one device per server, via the daemon."""

from __future__ import annotations

import logging
from typing import Any, cast

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.debounce import Debouncer
from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo
from homeassistant.helpers.entity import Entity

from .const import DATA_WRITE_INTERVAL, DOMAIN
from .server import SockbridgeServer

_LOGGER = logging.getLogger(__name__)


def daemon_device_id(entry_id: str) -> tuple[str, str]:
    """The daemon device's identifier.

    Not the bare entry id: a server migrated from version 1 keeps its old
    entry id as its subentry id, and with it its device's identifier.
    """
    return (DOMAIN, f"{entry_id}_daemon")


def find_device(
    hass: HomeAssistant, identifier: tuple[str, str], entry_id: str
) -> dr.DeviceEntry | None:
    """The entry's device with this identifier.

    Home Assistant 2026.x looks devices up per config entry, and deprecates
    the registry-wide async_get_device that 2025.12 has alone.
    """
    registry = dr.async_get(hass)
    by_identifier = getattr(registry, "async_get_device_by_identifier", None)
    if by_identifier is None:  # pragma: no cover - 2025.12
        return registry.async_get_device(identifiers={identifier})
    found: dr.DeviceEntry | None = by_identifier(identifier, entry_id)  # pragma: no cover - 2026.x
    return found  # pragma: no cover - 2026.x


# Home Assistant 2026.x links a device to its parent by registry id, and
# deprecates the identifier (via_device) that 2025.12 takes alone.
_VIA_DEVICE_ID = "via_device_id" in DeviceInfo.__annotations__


def server_device_info(server: SockbridgeServer) -> DeviceInfo:
    """The device of a server: named after it, reached through the daemon."""
    parent: dict[str, Any] = (
        {"via_device_id": server.daemon.device_id}
        if _VIA_DEVICE_ID
        else {"via_device": daemon_device_id(server.daemon.entry.entry_id)}
    )
    return cast(
        DeviceInfo,
        {
            "identifiers": {(DOMAIN, server.subentry_id)},
            "name": server.name,
            "manufacturer": "sockbridge",
            "model": f"{server.protocol.upper()} server",
            "entry_type": DeviceEntryType.SERVICE,
            **parent,
        },
    )


class SockbridgeEntity(Entity):
    """An entity of one server, available while the daemon is."""

    _attr_has_entity_name = True
    _attr_should_poll = False

    def __init__(self, server: SockbridgeServer, key: str) -> None:
        """Name the entity by its translation key, on the server's device."""
        self._server = server
        self._attr_translation_key = key
        self._attr_unique_id = f"{server.subentry_id}_{key}"
        self._attr_device_info = server_device_info(server)

    @property
    def available(self) -> bool:
        """Whether sockbridged is on the bus."""
        return self._server.available

    async def async_added_to_hass(self) -> None:
        """Follow the server's state."""
        await super().async_added_to_hass()
        self.async_on_remove(self._server.async_add_listener(self.async_write_ha_state))


class SockbridgeDataEntity(SockbridgeEntity):
    """An entity that shows the server's last message, its writes coalesced.

    A message after DATA_WRITE_INTERVAL seconds without a write is written at
    once; the messages that follow within the interval are written once, at
    its end, as the latest of them (Home Assistant's Debouncer, immediate).
    So a slow device updates the entity with every message, a busy one costs
    at most one state write per interval, and the last state written is
    always the last message.
    """

    async def async_added_to_hass(self) -> None:
        """Follow the messages, through the debouncer."""
        await super().async_added_to_hass()
        debouncer: Debouncer[None] = Debouncer(
            self.hass,
            _LOGGER,
            cooldown=DATA_WRITE_INTERVAL,
            immediate=True,
            function=self._async_write_data,
        )
        # Removed in reverse: the listener first, then the pending write.
        self.async_on_remove(debouncer.async_shutdown)
        self.async_on_remove(self._server.async_add_data_listener(debouncer.async_schedule_call))

    @callback
    def _async_write_data(self) -> None:
        """Write the state for the latest message (server.last_data)."""
        self.async_write_ha_state()
