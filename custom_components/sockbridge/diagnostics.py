"""Diagnostics: the entry's settings and the server's live connections."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant

from .client import SockbridgeError, encode_escapes
from .const import DOMAIN
from .server import SockbridgeServer


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: ConfigEntry
) -> dict[str, Any]:
    """What the entry asks for, and what the daemon says it has."""
    diagnostics: dict[str, Any] = {
        "entry": {
            "title": entry.title,
            "data": dict(entry.data),
            "options": dict(entry.options),
        },
    }
    server: SockbridgeServer | None = hass.data.get(DOMAIN, {}).get(entry.entry_id)
    if server is None:
        return diagnostics
    diagnostics["server"] = {
        "available": server.available,
        "daemon": server.client.daemon_owner if server.client else None,
        "listening": server.listening,
        "bound_port": server.bound_port,
        "protocol": server.protocol,
        "identifier": server.identifier,
        "delimiter": encode_escapes(server.settings.delimiter),
        "clients": [asdict(client) for client in server.clients.values()],
    }
    if server.client is None or not server.available or server.bound_port is None:
        return diagnostics
    try:
        version = await server.client.get_version()
        connections = await server.client.list_connections()
    except SockbridgeError as err:
        diagnostics["daemon_error"] = err.message
        return diagnostics
    diagnostics["daemon_version"] = version
    diagnostics["connections"] = [
        asdict(connection)
        for connection in connections
        if connection.server_port == server.bound_port
        and connection.use_udp == server.settings.use_udp
    ]
    return diagnostics
