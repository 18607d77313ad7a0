"""The sockbridge integration: Control4 DriverWorks server sockets through sockbridged."""

from __future__ import annotations

from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryNotReady
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.typing import ConfigType

from .client import DaemonNotRunningError
from .const import CONF_ADDRESS, CONF_BUS, DOMAIN
from .daemon import SockbridgeConfigEntry, SockbridgeDaemon, bus_title
from .migration import async_migrate_entry
from .services import async_register_services

PLATFORMS: list[Platform] = [Platform.BINARY_SENSOR, Platform.EVENT, Platform.SENSOR]

CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)

__all__ = ["async_migrate_entry", "async_setup", "async_setup_entry", "async_unload_entry"]


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the actions, once for every entry."""
    async_register_services(hass)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: SockbridgeConfigEntry) -> bool:
    """Find the daemon, create the servers, then their entities."""
    daemon = SockbridgeDaemon(hass, entry)
    try:
        await daemon.async_start()
    except DaemonNotRunningError as err:
        raise ConfigEntryNotReady(
            translation_domain=DOMAIN,
            translation_key="daemon_not_running",
            translation_placeholders={"bus": bus_title(entry.data), "error": err.message},
        ) from err
    entry.runtime_data = daemon
    entry.async_on_unload(entry.add_update_listener(_async_entry_updated))
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    return True


async def async_unload_entry(hass: HomeAssistant, entry: SockbridgeConfigEntry) -> bool:
    """Remove the entities, then end the servers and the bus connections."""
    if not await hass.config_entries.async_unload_platforms(entry, PLATFORMS):
        return False  # pragma: no cover - our platforms always unload
    await entry.runtime_data.async_stop()
    return True


async def _async_entry_updated(hass: HomeAssistant, entry: SockbridgeConfigEntry) -> None:
    """A new bus reloads the entry; servers added, changed or removed change alone."""
    daemon = entry.runtime_data
    if (daemon.bus, daemon.address) != (entry.data[CONF_BUS], entry.data.get(CONF_ADDRESS)):
        hass.config_entries.async_schedule_reload(entry.entry_id)
        return
    await daemon.async_sync_servers()
