"""Diagnostics: the daemon entry, its servers and their live connections."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.core import HomeAssistant

from .client import SockbridgeError, encode_escapes
from .const import REDACTED_KEYS
from .daemon import SockbridgeConfigEntry
from .server import SockbridgeServer


def _server(server: SockbridgeServer) -> dict[str, Any]:
    return {
        "title": server.name,
        "config": async_redact_data(server.data, REDACTED_KEYS),
        "available": server.available,
        "listening": server.listening,
        "bound_port": server.bound_port,
        "error": server.error,
        "protocol": server.protocol,
        "identifier": server.identifier,
        "delimiter": encode_escapes(server.settings.delimiter),
        "clients": [asdict(client) for client in server.clients.values()],
    }


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: SockbridgeConfigEntry
) -> dict[str, Any]:
    """What the entry asks for, and what the daemon says it has.

    The bus address is a socket path, and the servers' settings are ports,
    framing and the paths of TLS files: nothing secret but a PKCS#12
    password, which is redacted.
    """
    daemon = entry.runtime_data
    diagnostics: dict[str, Any] = {
        "entry": {"title": entry.title, "data": dict(entry.data)},
        "daemon": {
            "available": daemon.available,
            "owner": daemon.client.daemon_owner if daemon.client else None,
            "version": daemon.version,
        },
        "servers": {sid: _server(server) for sid, server in daemon.servers.items()},
    }
    if daemon.client is None or not daemon.available:
        return diagnostics
    try:
        diagnostics["daemon"]["connections"] = [
            asdict(c) for c in await daemon.client.list_connections()
        ]
        diagnostics["daemon"]["statistics"] = await daemon.client.get_statistics()
    except SockbridgeError as err:
        diagnostics["daemon"]["error"] = err.message
    return diagnostics
