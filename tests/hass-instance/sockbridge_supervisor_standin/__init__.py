# SPDX-License-Identifier: LGPL-2.1-or-later
"""Test only: the Supervisor integration's part in an add-on's discovery.

tests/hass-instance/smoke.py --discovery copies this integration into the
configuration directory of the instance it starts, where there is no
Supervisor. Its websocket command sockbridge_supervisor_standin/discover
hands Home Assistant a discovery message as the hassio integration does for
the Supervisor's (homeassistant/components/hassio/discovery.py): a
discovery flow of the message's service with source "hassio" and a
HassioServiceInfo of the message's config and the add-on's name, slug and
discovery uuid. Never shipped: not in custom_components/.
"""

from __future__ import annotations

from typing import Any

from homeassistant.components import websocket_api
from homeassistant.config_entries import SOURCE_HASSIO
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import discovery_flow
from homeassistant.helpers.service_info.hassio import HassioServiceInfo
from homeassistant.helpers.typing import ConfigType
import voluptuous as vol

DOMAIN = "sockbridge_supervisor_standin"


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the websocket command."""
    websocket_api.async_register_command(hass, discover)
    return True


# What the Supervisor's discovery message and its add-on's info hold. Typed
# Any: Home Assistant 2025.12 validates with voluptuous, 2026.x with probatio
# (which answers to `import voluptuous` there), and their types differ.
DISCOVER: Any = {
    vol.Required("type"): f"{DOMAIN}/discover",
    vol.Required("service"): str,
    vol.Required("config"): dict,
    vol.Required("name"): str,
    vol.Required("slug"): str,
    vol.Required("uuid"): str,
}


@websocket_api.require_admin
@websocket_api.websocket_command(DISCOVER)
@callback
def discover(
    hass: HomeAssistant, connection: websocket_api.ActiveConnection, msg: dict[str, Any]
) -> None:
    """Start the discovery flow, as the hassio integration would."""
    discovery_flow.async_create_flow(
        hass,
        msg["service"],
        context={"source": SOURCE_HASSIO},
        data=HassioServiceInfo(
            config=msg["config"], name=msg["name"], slug=msg["slug"], uuid=msg["uuid"]
        ),
        discovery_key=discovery_flow.DiscoveryKey(domain="hassio", key=msg["uuid"], version=1),
    )
    connection.send_result(msg["id"])
