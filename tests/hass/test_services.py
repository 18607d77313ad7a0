"""The actions refuse bad input with a clear, translated error."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from unittest.mock import patch

from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import device_registry as dr
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_capture_events
import voluptuous as vol
import yaml

from custom_components.sockbridge.client import FailedError, LimitExceededError, NotFoundError
from custom_components.sockbridge.const import DOMAIN, EVENT_CONNECTION
from custom_components.sockbridge.entity import find_device

from .helpers import (
    REPO_ROOT,
    Daemon,
    Server,
    device_id,
    entity_id,
    only_server,
    read_exactly,
    server_data,
    setup_daemon_entry,
    setup_entry,
    state_of,
    tcp_close,
    tcp_connect,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("socket_enabled")


class Connected:
    """A server with one TCP client connected."""

    def __init__(self, server: Server, device: str, handle: int, reader: Any, writer: Any) -> None:
        self.server = server
        self.device = device
        self.handle = handle
        self.reader = reader
        self.writer = writer


@pytest.fixture
async def connected(hass: HomeAssistant, daemon: Daemon) -> AsyncIterator[Connected]:
    server = await setup_entry(hass, daemon.address, 0, identifier="dev")
    port = int(state_of(hass, entity_id(hass, "sensor", server, "bound_port")))
    events = async_capture_events(hass, EVENT_CONNECTION)
    reader, writer = await tcp_connect(port)
    await wait_until(hass, lambda: bool(events), "the client")
    try:
        yield Connected(server, device_id(hass, server), events[0].data["handle"], reader, writer)
    finally:
        await tcp_close(writer)


async def call(hass: HomeAssistant, service: str, data: dict[str, Any]) -> None:
    await hass.services.async_call(DOMAIN, service, data, blocking=True)


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"text": "a", "hex": "61"}, "text_or_hex"),
        ({}, "text_or_hex"),
        ({"hex": "zz"}, "invalid_hex"),
        ({"hex": "123"}, "invalid_hex"),
        ({"text": "bad \\q escape"}, "invalid_escape"),
        ({"text": "\\x4"}, "invalid_escape"),
        ({"handle": 4242, "text": "x"}, "unknown_handle"),
    ],
)
async def test_send_invalid(
    hass: HomeAssistant, connected: Connected, data: dict[str, Any], key: str
) -> None:
    data = {"device_id": connected.device, "handle": connected.handle, **data}
    with pytest.raises(ServiceValidationError) as err:
        await call(hass, "send", data)
    assert err.value.translation_domain == DOMAIN
    assert err.value.translation_key == key
    assert str(err.value)


async def test_unknown_device(hass: HomeAssistant, connected: Connected) -> None:
    """Not a device, the daemon's device, another integration's device, an unloaded entry."""
    daemon_device = find_device(
        hass,
        (DOMAIN, f"{connected.server.entry.entry_id}_daemon"),
        connected.server.entry.entry_id,
    )
    assert daemon_device is not None
    foreign = MockConfigEntry(domain="other")
    foreign.add_to_hass(hass)
    foreign_device = dr.async_get(hass).async_get_or_create(
        config_entry_id=foreign.entry_id, identifiers={("other", "x")}
    )
    for device in ("no such device", daemon_device.id, foreign_device.id):
        for service, data in (("send", {"text": "x"}), ("close_client", {"handle": 1})):
            with pytest.raises(ServiceValidationError) as err:
                await call(hass, service, {"device_id": device, **data})
            assert err.value.translation_key == "server_not_found"
            assert err.value.translation_placeholders == {"device_id": device}
    assert await hass.config_entries.async_unload(connected.server.entry.entry_id)
    with pytest.raises(ServiceValidationError) as err:
        await call(hass, "send", {"device_id": connected.device, "text": "x"})
    assert err.value.translation_key == "server_not_found"


async def test_close_unknown_handle(hass: HomeAssistant, connected: Connected) -> None:
    with pytest.raises(ServiceValidationError) as err:
        await call(hass, "close_client", {"device_id": connected.device, "handle": 9})
    assert err.value.translation_key == "unknown_handle"
    assert err.value.translation_placeholders == {"server": "dev", "handle": "9"}


async def test_handle_of_another_server(hass: HomeAssistant, connected: Connected) -> None:
    """A handle is daemon-wide: another server does not own it."""
    address = connected.server.entry.data["address"]
    other = await setup_daemon_entry(hass, f"{address};", server_data(0, identifier="other"))
    with pytest.raises(ServiceValidationError) as err:
        await call(
            hass,
            "send",
            {
                "device_id": device_id(hass, only_server(other)),
                "handle": connected.handle,
                "text": "x",
            },
        )
    assert err.value.translation_key == "unknown_handle"


async def test_send_queue_full(hass: HomeAssistant, connected: Connected) -> None:
    """The daemon's LimitExceeded: past the 4 MiB send queue, nothing queued."""
    big = "x" * (5 * 1024 * 1024)
    device = connected.device
    with pytest.raises(ServiceValidationError) as err:
        await call(hass, "send", {"device_id": device, "handle": connected.handle, "text": big})
    assert err.value.translation_key == "send_queue_full"
    with pytest.raises(ServiceValidationError) as err:
        await call(hass, "send", {"device_id": device, "text": big})
    assert err.value.translation_key == "send_queue_full"
    # Nothing of it was queued: the next send arrives alone.
    await call(hass, "send", {"device_id": device, "handle": connected.handle, "text": "ok"})
    assert await read_exactly(connected.reader, 2) == b"ok"


async def test_daemon_errors(hass: HomeAssistant, connected: Connected) -> None:
    """The daemon's NotFound and other errors, as they come between two signals."""
    device = connected.device
    one = {"device_id": device, "handle": connected.handle}
    target = "custom_components.sockbridge.client.SockbridgeClient"
    with patch(f"{target}.server_send", side_effect=NotFoundError("gone")):
        with pytest.raises(ServiceValidationError) as err:
            await call(hass, "send", {**one, "text": "x"})
        assert err.value.translation_key == "unknown_handle"
        await call(hass, "send", {"device_id": device, "text": "x"})  # skipped
    with patch(f"{target}.server_close_client", side_effect=NotFoundError("gone")):
        with pytest.raises(ServiceValidationError) as err:
            await call(hass, "close_client", one)
        assert err.value.translation_key == "unknown_handle"
    with patch(f"{target}.server_send", side_effect=FailedError("broken pipe")):
        with pytest.raises(HomeAssistantError) as failed:
            await call(hass, "send", {**one, "text": "x"})
        assert type(failed.value) is HomeAssistantError
        assert failed.value.translation_key == "daemon_error"
    with (
        patch(f"{target}.server_send", side_effect=LimitExceededError("full")),
        pytest.raises(ServiceValidationError),
    ):
        await call(hass, "send", {"device_id": device, "text": "x"})


async def test_daemon_not_running(
    hass: HomeAssistant, daemon: Daemon, connected: Connected
) -> None:
    listening = entity_id(hass, "binary_sensor", connected.server, "listening")
    assert await daemon.stop() == 0
    await wait_until(hass, lambda: state_of(hass, listening) == "unavailable", "unavailable")
    with pytest.raises(HomeAssistantError) as err:
        await call(hass, "send", {"device_id": connected.device, "text": "x"})
    assert err.value.translation_key == "daemon_unavailable"


async def test_schema(hass: HomeAssistant, connected: Connected) -> None:
    """Handles are 32-bit and non-zero; close_client needs one."""
    device = connected.device
    with pytest.raises(vol.Invalid):
        await call(hass, "send", {"device_id": device, "handle": 0, "text": "x"})
    with pytest.raises(vol.Invalid):
        await call(hass, "send", {"device_id": device, "handle": 2**32, "text": "x"})
    with pytest.raises(vol.Invalid):
        await call(hass, "close_client", {"device_id": device})


async def test_registered_actions_are_described(hass: HomeAssistant, connected: Connected) -> None:
    """What hassfest checks: every registered action is in services.yaml, and back."""
    described = yaml.safe_load(
        (REPO_ROOT / "custom_components" / DOMAIN / "services.yaml").read_text()
    )
    assert set(hass.services.async_services_for_domain(DOMAIN)) == set(described)
