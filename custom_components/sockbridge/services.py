"""The actions sockbridge.send and sockbridge.close_client."""

from __future__ import annotations

from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant, ServiceCall
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import config_validation as cv, device_registry as dr
import voluptuous as vol

from .client import (
    InvalidArgumentError,
    InvalidEscapeError,
    LimitExceededError,
    NotFoundError,
    SockbridgeError,
    decode_escapes,
)
from .const import (
    ATTR_ADDRESS,
    ATTR_DEVICE_ID,
    ATTR_HANDLE,
    ATTR_HEX,
    ATTR_REMOTE_PORT,
    ATTR_TEXT,
    DOMAIN,
    MAX_UINT32,
    PROTOCOL_UDP,
    SERVICE_CLOSE_CLIENT,
    SERVICE_SEND,
)
from .daemon import SockbridgeConfigEntry
from .server import SockbridgeServer

_HANDLE = vol.All(vol.Coerce(int), vol.Range(min=1, max=MAX_UINT32))

# Typed Any: voluptuous in Home Assistant 2025.12, probatio in 2026.x.
SEND_SCHEMA: Any = vol.Schema(
    {
        vol.Required(ATTR_DEVICE_ID): cv.string,
        vol.Optional(ATTR_HANDLE): _HANDLE,
        vol.Optional(ATTR_TEXT): cv.string,
        vol.Optional(ATTR_HEX): cv.string,
        # UDP: one datagram to any address and port (ServerSendTo).
        vol.Inclusive(ATTR_ADDRESS, "destination"): cv.string,
        vol.Inclusive(ATTR_REMOTE_PORT, "destination"): vol.All(
            vol.Coerce(int), vol.Range(min=1, max=65535)
        ),
    }
)

CLOSE_CLIENT_SCHEMA: Any = vol.Schema(
    {
        vol.Required(ATTR_DEVICE_ID): cv.string,
        vol.Required(ATTR_HANDLE): _HANDLE,
    }
)


def _invalid(key: str, message: str, **placeholders: str) -> ServiceValidationError:
    return ServiceValidationError(
        message,
        translation_domain=DOMAIN,
        translation_key=key,
        translation_placeholders=placeholders,
    )


def _entry_ids(device: Any) -> set[str]:
    """The config entries of a device (a DeviceEntry, or 2026.x's ChildDeviceEntry).

    Home Assistant 2026.x gives a device one entry (config_entry_id) and
    deprecates the set that 2025.12 has alone.
    """
    if (entry_id := getattr(device, "config_entry_id", None)) is not None:
        return {entry_id}  # pragma: no cover - 2026.x
    return set(device.config_entries)  # pragma: no cover - 2025.12


def _find_server(hass: HomeAssistant, device_id: str) -> SockbridgeServer | None:
    """The running server whose device is device_id."""
    device = dr.async_get(hass).async_get(device_id)
    if device is None:
        return None
    for identifier_domain, subentry_id in device.identifiers:
        if identifier_domain != DOMAIN:
            continue
        for entry_id in _entry_ids(device):
            entry: SockbridgeConfigEntry | None = hass.config_entries.async_get_entry(entry_id)
            if (
                entry is not None
                and entry.domain == DOMAIN
                and entry.state is ConfigEntryState.LOADED
                and (server := entry.runtime_data.servers.get(subentry_id)) is not None
            ):
                return server
    return None


def _server(hass: HomeAssistant, call: ServiceCall) -> SockbridgeServer:
    device_id: str = call.data[ATTR_DEVICE_ID]
    server = _find_server(hass, device_id)
    if server is None:
        raise _invalid(
            "server_not_found",
            f"no running sockbridge server has the device id {device_id}",
            device_id=device_id,
        )
    if not server.available or server.client is None:
        raise HomeAssistantError(
            f"{server.name}: sockbridged is not running",
            translation_domain=DOMAIN,
            translation_key="daemon_unavailable",
            translation_placeholders={"server": server.name},
        )
    return server


def _payload(call: ServiceCall) -> bytes:
    text: str | None = call.data.get(ATTR_TEXT)
    hex_digits: str | None = call.data.get(ATTR_HEX)
    if (text is None) == (hex_digits is None):
        raise _invalid("text_or_hex", "give either text or hex, exactly one of them")
    if text is not None:
        try:
            return decode_escapes(text)
        except InvalidEscapeError as err:
            raise _invalid("invalid_escape", str(err), error=str(err)) from err
    assert hex_digits is not None
    try:
        return bytes.fromhex(hex_digits)
    except ValueError as err:
        raise _invalid("invalid_hex", f"invalid hex: {err}", error=str(err)) from err


def _unknown_handle(server: SockbridgeServer, handle: int) -> ServiceValidationError:
    return _invalid(
        "unknown_handle",
        f"{server.name} has no client with handle {handle}",
        server=server.name,
        handle=str(handle),
    )


def _handle_error(
    server: SockbridgeServer, handle: int, err: SockbridgeError
) -> HomeAssistantError:
    if isinstance(err, NotFoundError):
        return _unknown_handle(server, handle)
    if isinstance(err, LimitExceededError):
        return _invalid(
            "send_queue_full",
            err.message,
            server=server.name,
            handle=str(handle),
            error=err.message,
        )
    return _daemon_error(server, err)


def _daemon_error(server: SockbridgeServer, err: SockbridgeError) -> HomeAssistantError:
    return HomeAssistantError(
        err.message,
        translation_domain=DOMAIN,
        translation_key="daemon_error",
        translation_placeholders={"server": server.name, "error": err.message},
    )


def _check_handle(server: SockbridgeServer, handle: int) -> None:
    # Handles are daemon-wide: one of another server is not this server's.
    if handle not in server.clients:
        raise _unknown_handle(server, handle)


async def _async_send_to(server: SockbridgeServer, data: bytes, call: ServiceCall) -> None:
    """One datagram from a UDP server to the address and port of the call."""
    address: str = call.data[ATTR_ADDRESS]
    remote_port: int = call.data[ATTR_REMOTE_PORT]
    if server.protocol != PROTOCOL_UDP:
        raise _invalid("send_to_udp_only", f"{server.name} is not a UDP server", server=server.name)
    if ATTR_HANDLE in call.data:
        raise _invalid("handle_or_address", "give either a handle or an address, not both")
    if not server.listening or server.bound_port is None:
        raise HomeAssistantError(
            f"{server.name} is not serving its port",
            translation_domain=DOMAIN,
            translation_key="server_not_listening",
            translation_placeholders={"server": server.name},
        )
    client = server.client
    assert client is not None
    try:
        await client.server_send_to(server.bound_port, data, address, remote_port)
    except InvalidArgumentError as err:
        raise _invalid(
            "invalid_destination", err.message, address=address, error=err.message
        ) from err
    except LimitExceededError as err:
        raise _invalid("send_to_limit", err.message, server=server.name, error=err.message) from err
    except SockbridgeError as err:
        raise _daemon_error(server, err) from err


async def _async_send(hass: HomeAssistant, call: ServiceCall) -> None:
    server = _server(hass, call)
    data = _payload(call)
    if ATTR_ADDRESS in call.data:
        await _async_send_to(server, data, call)
        return
    client = server.client
    assert client is not None
    if (handle := call.data.get(ATTR_HANDLE)) is not None:
        _check_handle(server, handle)
        try:
            await client.server_send(handle, data)
        except SockbridgeError as err:
            raise _handle_error(server, handle, err) from err
        return
    failure: HomeAssistantError | None = None
    for handle in list(server.clients):
        try:
            await client.server_send(handle, data)
        except NotFoundError:
            continue  # it left meanwhile
        except SockbridgeError as err:
            failure = failure or _handle_error(server, handle, err)
    if failure is not None:
        raise failure


async def _async_close_client(hass: HomeAssistant, call: ServiceCall) -> None:
    server = _server(hass, call)
    handle: int = call.data[ATTR_HANDLE]
    _check_handle(server, handle)
    client = server.client
    assert client is not None
    try:
        await client.server_close_client(handle)
    except SockbridgeError as err:
        raise _handle_error(server, handle, err) from err


def async_register_services(hass: HomeAssistant) -> None:
    """Register the actions of the domain (once, for every entry)."""

    async def send(call: ServiceCall) -> None:
        await _async_send(hass, call)

    async def close_client(call: ServiceCall) -> None:
        await _async_close_client(hass, call)

    hass.services.async_register(DOMAIN, SERVICE_SEND, send, schema=SEND_SCHEMA)
    hass.services.async_register(
        DOMAIN, SERVICE_CLOSE_CLIENT, close_client, schema=CLOSE_CLIENT_SCHEMA
    )
