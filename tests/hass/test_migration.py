"""Version 1 entries (one per server) become servers of one daemon entry."""

from __future__ import annotations

from functools import partial

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_ON
from homeassistant.core import HomeAssistant
from homeassistant.helpers import (
    device_registry as dr,
    entity_registry as er,
    issue_registry as ir,
)
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.sockbridge.const import DEFAULT_SERVER, DOMAIN

from .helpers import (
    Daemon,
    Server,
    device_memberships,
    entity_id,
    free_port,
    make_entry,
    state_of,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("socket_enabled")


def v1_entry(address: str, port: int, protocol: str = "tcp", **options: object) -> MockConfigEntry:
    """An entry as version 1 of the integration made it."""
    data = {"bus": "address", "address": address, "port": port, "protocol": protocol}
    return MockConfigEntry(
        domain=DOMAIN,
        title=str(options.get("identifier") or f"sockbridge {protocol.upper()} {port}"),
        data=data,
        options={**DEFAULT_SERVER, **options},
        unique_id=f"address={address}:{protocol}:{port}" if port else None,
        version=1,
    )


def is_on(hass: HomeAssistant, entity: str) -> bool:
    return state_of(hass, entity) == STATE_ON


def old_registrations(hass: HomeAssistant, entry: MockConfigEntry) -> tuple[str, str]:
    """The device and listening entity version 1 made for entry."""
    device = dr.async_get(hass).async_get_or_create(
        config_entry_id=entry.entry_id, identifiers={(DOMAIN, entry.entry_id)}, name="old"
    )
    entity = er.async_get(hass).async_get_or_create(
        "binary_sensor",
        DOMAIN,
        f"{entry.entry_id}_listening",
        config_entry=entry,
        device_id=device.id,
        suggested_object_id=f"old_{entry.entry_id[-4:]}_listening",
    )
    return device.id, entity.entity_id


async def test_two_servers_of_one_bus(hass: HomeAssistant, daemon: Daemon) -> None:
    """The first becomes the daemon entry, the second joins it; ids are kept."""
    port = free_port()
    first = v1_entry(daemon.address, port, identifier="amp", delimiter="\\n")
    second = v1_entry(daemon.address, 0, "udp", identifier="sensor")
    first.add_to_hass(hass)
    second.add_to_hass(hass)
    first_device, first_entity = old_registrations(hass, first)
    second_device, second_entity = old_registrations(hass, second)

    assert await hass.config_entries.async_setup(first.entry_id)
    await hass.async_block_till_done()
    entries = hass.config_entries.async_entries(DOMAIN)
    assert entries == [first]
    assert first.version == 2
    assert first.state is ConfigEntryState.LOADED
    assert first.unique_id == f"address={daemon.address}"
    assert dict(first.data) == {"bus": "address", "address": daemon.address}
    assert first.options == {}
    subentries = first.subentries
    assert set(subentries) == {first.entry_id, second.entry_id}
    assert dict(subentries[first.entry_id].data) == {
        **DEFAULT_SERVER,
        "port": port,
        "protocol": "tcp",
        "identifier": "amp",
        "delimiter": "\\n",
    }
    assert subentries[first.entry_id].unique_id == f"tcp:{port}"
    assert subentries[second.entry_id].title == "sensor"

    entities = er.async_get(hass)
    for subentry_id, entity, device in (
        (first.entry_id, first_entity, first_device),
        (second.entry_id, second_entity, second_device),
    ):
        registered = entities.async_get(entity)
        assert registered is not None
        assert registered.config_entry_id == first.entry_id
        assert registered.config_subentry_id == subentry_id
        moved = dr.async_get(hass).async_get(device)
        assert moved is not None
        assert device_memberships(moved) == {first.entry_id: {subentry_id}}
        # The same entity id as before, and it works.
        server = Server(first, subentry_id)
        assert entity_id(hass, "binary_sensor", server, "listening") == entity
        await wait_until(hass, partial(is_on, hass, entity), "listening")


async def test_same_port_twice(hass: HomeAssistant, daemon: Daemon) -> None:
    """A server the daemon entry already has: left for the user, with a repair issue."""
    port = free_port()
    entry = make_entry(daemon.address)
    entry.add_to_hass(hass)
    old = v1_entry(daemon.address, port)
    old.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    # The first migration moves it; a second v1 entry of the same port cannot.
    assert old.entry_id in entry.subentries
    again = v1_entry(daemon.address, port)
    again.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(again.entry_id)
    assert again.state is ConfigEntryState.MIGRATION_ERROR
    issue = ir.async_get(hass).async_get_issue(DOMAIN, f"migration_{again.entry_id}")
    assert issue is not None
    assert issue.translation_key == "migration"


async def test_future_version_is_left_alone(hass: HomeAssistant, daemon: Daemon) -> None:
    entry = MockConfigEntry(domain=DOMAIN, version=3, data={"bus": "system"})
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.MIGRATION_ERROR
