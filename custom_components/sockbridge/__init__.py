"""The sockbridge integration: Control4 DriverWorks server sockets through sockbridged."""

from __future__ import annotations

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.typing import ConfigType

from .const import DOMAIN
from .server import SockbridgeServer
from .services import async_register_services

PLATFORMS: list[Platform] = [Platform.BINARY_SENSOR, Platform.EVENT, Platform.SENSOR]

CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the actions, once for every entry."""
    async_register_services(hass)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: ConfigEntry) -> bool:
    """Create the entry's server, then its entities."""
    server = SockbridgeServer(hass, entry)
    await server.async_start()
    hass.data.setdefault(DOMAIN, {})[entry.entry_id] = server
    entry.async_on_unload(entry.add_update_listener(_async_options_updated))
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    return True


async def async_unload_entry(hass: HomeAssistant, entry: ConfigEntry) -> bool:
    """Remove the entities, then end the server and the bus connection."""
    if not await hass.config_entries.async_unload_platforms(entry, PLATFORMS):
        return False  # pragma: no cover - our platforms always unload
    server: SockbridgeServer = hass.data[DOMAIN].pop(entry.entry_id)
    await server.async_stop()
    return True


async def _async_options_updated(hass: HomeAssistant, entry: ConfigEntry) -> None:
    """New options: make the server again with them."""
    await hass.config_entries.async_reload(entry.entry_id)
