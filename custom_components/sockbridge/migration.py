"""From one entry per server (version 1) to one entry per daemon (version 2).

A version 1 entry held one server: data {bus, address, port, protocol},
options {delimiter, identifier, advanced options}. The first version 1
entry of a bus becomes that bus's daemon entry, with its server as the first
subentry; each further one of the same bus becomes a subentry of it and is
then removed. A subentry takes the old entry's id as its own, so entity
unique ids ("<id>_<key>") and device identifiers stay what they were, and
so do entity ids, names and history.
"""

from __future__ import annotations

import inspect
import logging
from types import MappingProxyType
from typing import Any

from homeassistant.config_entries import ConfigEntry, ConfigSubentry
from homeassistant.core import HomeAssistant
from homeassistant.helpers import (
    device_registry as dr,
    entity_registry as er,
    issue_registry as ir,
)

from .config_flow import bus_unique_id, server_title, server_unique_id
from .const import (
    ADVANCED_KEYS,
    CONF_ADDRESS,
    CONF_BUS,
    CONF_DELIMITER,
    CONF_IDENTIFIER,
    CONF_PORT,
    CONF_PROTOCOL,
    DEFAULT_SERVER,
    DOMAIN,
    ENTRY_VERSION,
    ISSUE_MIGRATION,
    SUBENTRY_SERVER,
)
from .daemon import bus_title

_LOGGER = logging.getLogger(__name__)


def _server_data(entry: ConfigEntry) -> dict[str, Any]:
    options = {**DEFAULT_SERVER, **entry.options}
    data: dict[str, Any] = {
        CONF_PORT: int(entry.data[CONF_PORT]),
        CONF_PROTOCOL: str(entry.data[CONF_PROTOCOL]),
        CONF_DELIMITER: str(options[CONF_DELIMITER]),
        CONF_IDENTIFIER: str(options[CONF_IDENTIFIER]),
    }
    data.update({key: options[key] for key in ADVANCED_KEYS})
    return data


def _daemon_data(entry: ConfigEntry) -> dict[str, Any]:
    data: dict[str, Any] = {CONF_BUS: entry.data[CONF_BUS]}
    if CONF_ADDRESS in entry.data:
        data[CONF_ADDRESS] = entry.data[CONF_ADDRESS]
    return data


def _move_registries(hass: HomeAssistant, old: ConfigEntry, target: ConfigEntry) -> None:
    """Put the old entry's devices and entities under the target's subentry."""
    subentry_id = old.entry_id
    entities = er.async_get(hass)
    for entity in er.async_entries_for_config_entry(entities, old.entry_id):
        entities.async_update_entity(
            entity.entity_id, config_entry_id=target.entry_id, config_subentry_id=subentry_id
        )
    devices = dr.async_get(hass)
    for device in dr.async_entries_for_config_entry(devices, old.entry_id):
        _move_device(devices, device.id, old.entry_id, target.entry_id, subentry_id)


def _move_device(
    devices: dr.DeviceRegistry, device_id: str, old: str, target: str, subentry_id: str
) -> None:
    # Home Assistant 2026.x: a device has one entry and subentry, set with
    # new_config_*; 2025.12 adds and removes memberships.
    if "new_config_entry_id" in inspect.signature(devices.async_update_device).parameters:
        moved: dict[str, Any] = {  # pragma: no cover - 2026.x
            "new_config_entry_id": target,
            "new_config_subentry_id": subentry_id,
        }
        devices.async_update_device(device_id, **moved)  # pragma: no cover - 2026.x
        return  # pragma: no cover - 2026.x
    devices.async_update_device(  # pragma: no cover - 2025.12
        device_id, add_config_entry_id=target, add_config_subentry_id=subentry_id
    )
    if old != target:  # pragma: no cover - 2025.12
        devices.async_update_device(device_id, remove_config_entry_id=old)
    else:  # pragma: no cover - 2025.12
        devices.async_update_device(
            device_id, remove_config_entry_id=old, remove_config_subentry_id=None
        )


async def async_migrate_entry(hass: HomeAssistant, entry: ConfigEntry) -> bool:
    """Migrate an entry of an older version; False leaves it for the user."""
    if entry.version > ENTRY_VERSION:
        return False  # a downgrade: this release cannot read it
    if entry.version == ENTRY_VERSION:
        return True
    daemon = _daemon_data(entry)
    server = _server_data(entry)
    subentry = ConfigSubentry(
        data=MappingProxyType(server),
        subentry_id=entry.entry_id,
        subentry_type=SUBENTRY_SERVER,
        title=server_title(server),
        unique_id=server_unique_id(server),
    )
    unique_id = bus_unique_id(daemon)
    # No await from here on: two entries migrating at once cannot interleave.
    target = next(
        (
            other
            for other in hass.config_entries.async_entries(DOMAIN)
            if other.version == ENTRY_VERSION and other.unique_id == unique_id
        ),
        None,
    )
    if target is not None and any(
        s.unique_id is not None and s.unique_id == subentry.unique_id
        for s in target.subentries.values()
    ):
        _migration_issue(hass, entry, "the daemon entry already has a server on that port")
        return False
    if target is None:
        hass.config_entries.async_update_entry(
            entry,
            data=daemon,
            options={},
            title=f"sockbridged ({bus_title(daemon)})",
            unique_id=unique_id,
            version=ENTRY_VERSION,
            minor_version=1,
        )
        hass.config_entries.async_add_subentry(entry, subentry)
        _move_registries(hass, entry, entry)
        _LOGGER.info("migrated %s to the daemon entry of the %s", server_title(server), daemon)
        return True
    hass.config_entries.async_add_subentry(target, subentry)
    _move_registries(hass, entry, target)
    _LOGGER.info("migrated %s into %s", server_title(server), target.title)
    hass.async_create_task(
        hass.config_entries.async_remove(entry.entry_id), f"sockbridge remove {entry.entry_id}"
    )
    # The entry itself is gone as soon as the task runs; it must not load.
    return False


def _migration_issue(hass: HomeAssistant, entry: ConfigEntry, why: str) -> None:
    ir.async_create_issue(
        hass,
        DOMAIN,
        f"{ISSUE_MIGRATION}_{entry.entry_id}",
        is_fixable=False,
        severity=ir.IssueSeverity.WARNING,
        translation_key=ISSUE_MIGRATION,
        translation_placeholders={"title": entry.title, "why": why},
    )
