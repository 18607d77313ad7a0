"""The daemon entry's runtime data: sockbridged on one bus and its servers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
import logging
from typing import Any

from homeassistant.config_entries import ConfigEntry, ConfigSubentry
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers import device_registry as dr, issue_registry as ir
from homeassistant.helpers.event import async_call_later

from .client import DaemonNotRunningError, SignalHandlers, SockbridgeClient, SockbridgeError
from .const import (
    BUS_ADDRESS,
    CONF_ADDRESS,
    CONF_BUS,
    DAEMON_GONE_GRACE,
    DOMAIN,
    ISSUE_DAEMON_GONE,
    SUBENTRY_SERVER,
)
from .entity import daemon_device_id, find_device, server_device_info
from .server import SockbridgeServer

_LOGGER = logging.getLogger(__name__)

type SockbridgeConfigEntry = ConfigEntry[SockbridgeDaemon]
type ServerEntitiesFactory = Callable[[SockbridgeServer], None]


def bus_title(data: Mapping[str, Any]) -> str:
    """How people name the bus of an entry's data."""
    if data[CONF_BUS] == BUS_ADDRESS:
        return str(data[CONF_ADDRESS])
    return f"{data[CONF_BUS]} bus"


class SockbridgeDaemon:
    """sockbridged on the entry's bus, and one SockbridgeServer per subentry.

    A connection of its own follows the daemon: its version for the device,
    and a repair issue when it has been gone for DAEMON_GONE_GRACE seconds.
    Subentries added, changed or removed while the entry is loaded start,
    restart or stop their server alone; the other servers and their clients
    are left alone.
    """

    def __init__(self, hass: HomeAssistant, entry: SockbridgeConfigEntry) -> None:
        """Nothing runs before async_start()."""
        self.hass = hass
        self.entry = entry
        self.bus: str = entry.data[CONF_BUS]
        self.address: str | None = entry.data.get(CONF_ADDRESS)
        self.client: SockbridgeClient | None = None
        self.version: str | None = None
        # The daemon's device, registered before any server's.
        self.device_id = ""
        self.servers: dict[str, SockbridgeServer] = {}
        self._factories: list[ServerEntitiesFactory] = []
        self._gone_timer: CALLBACK_TYPE | None = None

    @property
    def _gone_issue_id(self) -> str:
        return f"{ISSUE_DAEMON_GONE}_{self.entry.entry_id}"

    @property
    def available(self) -> bool:
        """Whether sockbridged is on the bus."""
        return self.client is not None and self.client.daemon_owner is not None

    async def async_connect(self) -> SockbridgeClient:
        """A new connection to the entry's bus (DaemonNotRunningError if none)."""
        return await SockbridgeClient.connect(self.bus, self.address)

    async def async_start(self) -> None:
        """Find the daemon, then start every server.

        Raises DaemonNotRunningError when the bus cannot be reached or the
        daemon is not on it.
        """
        client = await self.async_connect()
        self.client = client
        try:
            owner = await client.subscribe(
                SignalHandlers(daemon_owner=self._on_daemon_owner, disconnected=self._on_lost)
            )
            if owner is None:
                raise DaemonNotRunningError("sockbridged is not on the bus")
            self.version = await client.get_version()
            self._register_device()
            for subentry in self._server_subentries():
                await self._async_start_server(subentry)
        except SockbridgeError:
            await self.async_stop()
            raise

    async def async_stop(self) -> None:
        """Stop every server, then the daemon's connection."""
        self._cancel_gone_timer()
        ir.async_delete_issue(self.hass, DOMAIN, self._gone_issue_id)
        servers, self.servers = self.servers, {}
        for server in servers.values():
            await server.async_stop()
        client, self.client = self.client, None
        if client is not None:
            await client.close()

    # -- servers ---------------------------------------------------------------

    def _server_subentries(self) -> list[ConfigSubentry]:
        return [s for s in self.entry.subentries.values() if s.subentry_type == SUBENTRY_SERVER]

    async def _async_start_server(self, subentry: ConfigSubentry) -> None:
        server = SockbridgeServer(self, subentry)
        await server.async_start()
        self.servers[subentry.subentry_id] = server
        for factory in self._factories:
            factory(server)

    @callback
    def async_add_entities_factory(self, factory: ServerEntitiesFactory) -> None:
        """Call factory for every server, now and as servers are added."""
        self._factories.append(factory)
        for server in self.servers.values():
            factory(server)

    async def async_sync_servers(self) -> None:
        """Start, restart or stop servers after subentries changed.

        Home Assistant removes a removed subentry's devices and entities
        itself; a changed server keeps its entities, which follow it.
        """
        try:
            await self._async_sync_servers()
        except DaemonNotRunningError as err:
            _LOGGER.warning("cannot change the servers now (%s); reloading", err.message)
            self.hass.config_entries.async_schedule_reload(self.entry.entry_id)

    async def _async_sync_servers(self) -> None:
        wanted = {s.subentry_id: s for s in self._server_subentries()}
        for subentry_id, server in list(self.servers.items()):
            subentry = wanted.get(subentry_id)
            if subentry is None:
                del self.servers[subentry_id]
                await server.async_stop()
            elif dict(subentry.data) != server.data:
                await server.async_reconfigure(subentry)
                self._update_server_device(server)
            elif subentry.title != server.title:
                server.title = subentry.title
                self._update_server_device(server)
        for subentry_id, subentry in wanted.items():
            if subentry_id not in self.servers:
                await self._async_start_server(subentry)

    def _update_server_device(self, server: SockbridgeServer) -> None:
        device = find_device(self.hass, (DOMAIN, server.subentry_id), self.entry.entry_id)
        if device is not None:
            info = server_device_info(server)
            dr.async_get(self.hass).async_update_device(
                device.id, name=info["name"], model=info["model"]
            )

    # -- the daemon's device and presence ---------------------------------------

    def _register_device(self) -> None:
        self.device_id = (
            dr.async_get(self.hass)
            .async_get_or_create(
                config_entry_id=self.entry.entry_id,
                identifiers={daemon_device_id(self.entry.entry_id)},
                name="sockbridged",
                manufacturer="sockbridge",
                model="sockbridged",
                sw_version=self.version,
                entry_type=dr.DeviceEntryType.SERVICE,
            )
            .id
        )

    @callback
    def _on_daemon_owner(self, owner: str | None) -> None:
        if owner is None:
            _LOGGER.warning("sockbridged left the %s", bus_title(self.entry.data))
            self._cancel_gone_timer()
            self._gone_timer = async_call_later(self.hass, DAEMON_GONE_GRACE, self._on_gone_long)
            return
        _LOGGER.info("sockbridged is back on the %s", bus_title(self.entry.data))
        self._cancel_gone_timer()
        ir.async_delete_issue(self.hass, DOMAIN, self._gone_issue_id)
        self.entry.async_create_background_task(
            self.hass, self._async_refresh_version(), f"sockbridge version {self.entry.entry_id}"
        )

    async def _async_refresh_version(self) -> None:
        if self.client is None:
            return
        try:
            self.version = await self.client.get_version()
        except SockbridgeError as err:
            _LOGGER.debug("cannot read the version of sockbridged: %s", err.message)
            return
        self._register_device()

    @callback
    def _on_gone_long(self, _now: Any) -> None:
        self._gone_timer = None
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            self._gone_issue_id,
            is_fixable=False,
            severity=ir.IssueSeverity.ERROR,
            translation_key=ISSUE_DAEMON_GONE,
            translation_placeholders={
                "bus": bus_title(self.entry.data),
                "minutes": str(int(DAEMON_GONE_GRACE // 60)),
            },
        )

    def _cancel_gone_timer(self) -> None:
        if self._gone_timer is not None:
            self._gone_timer()
            self._gone_timer = None

    @callback
    def _on_lost(self) -> None:
        _LOGGER.warning(
            "lost the D-Bus connection to the %s; reloading", bus_title(self.entry.data)
        )
        self.hass.config_entries.async_schedule_reload(self.entry.entry_id)
