"""One server subentry: its own D-Bus connection, its state and its events."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
import logging
from typing import TYPE_CHECKING, Any

from homeassistant.config_entries import ConfigSubentry
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.event import async_call_later

from .client import (
    AddressInUseError,
    BatchFrame,
    ConnectionStatus,
    DaemonNotRunningError,
    DataIn,
    ServerSettings,
    ServerStatus,
    SignalHandlers,
    SockbridgeClient,
    SockbridgeError,
    TlsSettings,
    decode_escapes,
)
from .const import (
    ATTR_ADDRESS,
    ATTR_ENTRY_ID,
    ATTR_HANDLE,
    ATTR_HEX,
    ATTR_IDENTIFIER,
    ATTR_REMOTE_PORT,
    ATTR_SERVER_ID,
    ATTR_SERVER_PORT,
    ATTR_STATUS,
    ATTR_TEXT,
    CONF_ALLOW_FROM,
    CONF_BIND_ADDRESS,
    CONF_DELIMITER,
    CONF_FLUSH_TIMEOUT_MS,
    CONF_IDENTIFIER,
    CONF_MAX_CONNECTIONS,
    CONF_MAX_MESSAGE_BYTES,
    CONF_MULTICAST_GROUPS,
    CONF_MULTICAST_INTERFACE,
    CONF_PORT,
    CONF_PROTOCOL,
    CONF_STRIP_DELIMITER,
    CONF_TLS_CERTIFICATE,
    CONF_TLS_CHAIN,
    CONF_TLS_CLIENT_AUTH,
    CONF_TLS_CLIENT_CA,
    CONF_TLS_PASSWORD,
    CONF_TLS_PRIVATE_KEY,
    CONF_UDP_PEER_TIMEOUT_MS,
    DEFAULT_SERVER,
    DOMAIN,
    EVENT_CONNECTION,
    EVENT_DATA_IN,
    EVENT_STATUS,
    EVENT_TYPE_CONNECTED,
    EVENT_TYPE_DISCONNECTED,
    ISSUE_PORT_IN_USE,
    ISSUE_SERVER_FAILED,
    PROTOCOL_TLS,
    PROTOCOL_UDP,
    SERVER_RETRY_INTERVAL,
    STATUS_OFFLINE,
    STATUS_ONLINE,
)

if TYPE_CHECKING:
    from .daemon import SockbridgeDaemon

_LOGGER = logging.getLogger(__name__)


def settings_from_config(config: Mapping[str, Any]) -> ServerSettings:
    """The server that a subentry's data describes.

    Raises InvalidEscapeError for a delimiter with an invalid escape.
    """
    merged = {**DEFAULT_SERVER, **config}
    return ServerSettings(
        port=int(merged[CONF_PORT]),
        use_udp=merged[CONF_PROTOCOL] == PROTOCOL_UDP,
        tls=tls_from_config(merged) if merged[CONF_PROTOCOL] == PROTOCOL_TLS else None,
        delimiter=decode_escapes(str(merged[CONF_DELIMITER])),
        identifier=str(merged[CONF_IDENTIFIER]),
        flush_timeout_ms=int(merged[CONF_FLUSH_TIMEOUT_MS]),
        max_message_bytes=int(merged[CONF_MAX_MESSAGE_BYTES]),
        max_connections=int(merged[CONF_MAX_CONNECTIONS]),
        udp_peer_timeout_ms=int(merged[CONF_UDP_PEER_TIMEOUT_MS]),
        bind_address=str(merged[CONF_BIND_ADDRESS]) or None,
        exit_with_caller=True,
        strip_delimiter=bool(merged[CONF_STRIP_DELIMITER]),
        allow_from=tuple(merged[CONF_ALLOW_FROM]),
        multicast_groups=tuple(merged[CONF_MULTICAST_GROUPS]),
        multicast_interface=str(merged[CONF_MULTICAST_INTERFACE]) or None,
        batch=True,
    )


def tls_from_config(merged: Mapping[str, Any]) -> TlsSettings:
    """The TLS settings of a TLS server's data (defaults merged in)."""
    return TlsSettings(
        certificate=str(merged[CONF_TLS_CERTIFICATE]),
        private_key=str(merged[CONF_TLS_PRIVATE_KEY]),
        password=str(merged[CONF_TLS_PASSWORD]),
        chain=str(merged[CONF_TLS_CHAIN]),
        client_auth=str(merged[CONF_TLS_CLIENT_AUTH]),
        client_ca=str(merged[CONF_TLS_CLIENT_CA]),
    )


def default_name(protocol: str, port: int) -> str:
    """A server's name when it has no identifier."""
    return f"{protocol.upper()} {port or 'ephemeral port'}"


@dataclass(slots=True)
class ConnectedClient:
    """A TCP connection or a UDP peer of the server."""

    handle: int
    address: str
    remote_port: int | None = None


class Listeners[T]:
    """Callbacks that entities register, each removed by what add() returns."""

    def __init__(self) -> None:
        """Start with none."""
        self._callbacks: list[Callable[[T], None]] = []

    def add(self, func: Callable[[T], None]) -> Callable[[], None]:
        """Call func with every value from now on."""
        self._callbacks.append(func)
        return lambda: self._callbacks.remove(func)

    def __call__(self, value: T) -> None:
        """Call every callback with value."""
        for func in list(self._callbacks):
            func(value)


class SockbridgeServer:
    """The server of one subentry, kept up as long as its entry is loaded.

    It owns one D-Bus connection: the server is created from it with
    exit-with-caller, so it ends with the connection, and closing the
    connection ends this server alone (DestroyServer would end the TCP and
    the UDP server of its port). When the daemon leaves the bus the server
    is gone and the entities are unavailable; when the daemon comes back the
    server is created again. A server the daemon refuses (its port taken by
    another program, say) raises a repair issue and is tried again every
    SERVER_RETRY_INTERVAL seconds.
    """

    def __init__(self, daemon: SockbridgeDaemon, subentry: ConfigSubentry) -> None:
        """Read the settings; nothing runs before async_start()."""
        self.daemon = daemon
        self.hass: HomeAssistant = daemon.hass
        self.subentry_id = subentry.subentry_id
        # Copies: Home Assistant changes a subentry in place when it is
        # reconfigured, and the daemon compares them to see what changed.
        self.data = dict(subentry.data)
        self.title = subentry.title
        self.settings = settings_from_config(self.data)
        self.client: SockbridgeClient | None = None
        self.listening = False
        self.bound_port: int | None = None
        self.error: str | None = None
        self.clients: dict[int, ConnectedClient] = {}
        self.last_data: DataIn | None = None
        self._server_owner: str | None = None
        self._lock = asyncio.Lock()
        self._retry: CALLBACK_TYPE | None = None
        self._state_listeners: Listeners[None] = Listeners()
        # Called once per signal of frames: plain functions without the
        # frames, which find the latest in last_data, in a tuple that the
        # loop reads as it is.
        self._data_listeners: tuple[Callable[[], None], ...] = ()
        self._connection_listeners: Listeners[tuple[str, ConnectedClient]] = Listeners()

    @property
    def identifier(self) -> str:
        """The identifier the daemon echoes in this server's signals."""
        return self.settings.identifier

    @property
    def protocol(self) -> str:
        """Tcp, udp or tls."""
        return str(self.data[CONF_PROTOCOL])

    @property
    def name(self) -> str:
        """The device's name: the subentry's title."""
        return self.title

    @property
    def available(self) -> bool:
        """Whether the bus connection is up and the daemon is on the bus."""
        return (
            self.client is not None
            and self.client.connected
            and self.client.daemon_owner is not None
        )

    # -- entities' listeners -------------------------------------------------

    @callback
    def async_add_listener(self, func: Callable[[], None]) -> Callable[[], None]:
        """Call func when availability, listening, port or clients change."""
        return self._state_listeners.add(lambda _: func())

    @callback
    def async_add_data_listener(self, func: Callable[[], None]) -> Callable[[], None]:
        """Call func after each signal's messages, their bus events fired.

        last_data is then the latest of them; a slow client's messages come
        one a signal, so func sees each.
        """
        self._data_listeners = (*self._data_listeners, func)

        def remove() -> None:
            self._data_listeners = tuple(f for f in self._data_listeners if f is not func)

        return remove

    @callback
    def async_add_connection_listener(
        self, func: Callable[[tuple[str, ConnectedClient]], None]
    ) -> Callable[[], None]:
        """Call func with ("connected" | "disconnected", client)."""
        return self._connection_listeners.add(func)

    # -- life ----------------------------------------------------------------

    async def async_start(self) -> None:
        """Connect, subscribe and create the server.

        Raises DaemonNotRunningError while the bus or the daemon is missing;
        a server the daemon refuses is a repair issue, not an error.
        """
        client = await self.daemon.async_connect()
        self.client = client
        handlers = SignalHandlers(
            server_status=self._on_server_status,
            connection_status=self._on_connection_status,
            data_in_batch=self._on_data_in_batch,
            daemon_owner=self._on_daemon_owner,
            disconnected=self._on_disconnected,
        )
        try:
            await client.subscribe(handlers, self.identifier)
            await self._async_create()
        except DaemonNotRunningError:
            await self.async_stop()
            raise

    async def async_stop(self) -> None:
        """Close the connection; returns once the daemon ended the server."""
        self._cancel_retry()
        self._delete_issues()
        client, self.client = self.client, None
        if client is not None:
            await client.close_confirmed()

    async def async_reconfigure(self, subentry: ConfigSubentry) -> None:
        """Make the server again with the subentry's new settings."""
        await self.async_stop()
        for handle in list(self.clients):
            self._client_gone(handle)
        self._set_listening(False)
        self.data = dict(subentry.data)
        self.title = subentry.title
        self.settings = settings_from_config(self.data)
        self.bound_port = None
        self.error = None
        self._state_listeners(None)
        await self.async_start()

    async def _async_create(self) -> None:
        """Create the server, unless this daemon already runs ours."""
        async with self._lock:
            client = self.client
            if client is None:
                return  # stopped meanwhile
            if self.listening and self._server_owner == client.daemon_owner:
                return
            try:
                port = await client.create_server(self.settings)
            except DaemonNotRunningError:
                raise
            except SockbridgeError as err:
                self._refused(err)
                return
            self._created(client, port)
            connections = await client.list_connections()
            self.clients = {
                c.handle: ConnectedClient(c.handle, c.address, c.remote_port)
                for c in connections
                if c.server_port == port and c.use_udp == self.settings.use_udp
            }
            self._set_listening(True)
            self._state_listeners(None)

    def _created(self, client: SockbridgeClient, port: int) -> None:
        _LOGGER.debug("%s: serving port %d", self.name, port)
        self._server_owner = client.daemon_owner
        self.bound_port = port
        self.error = None
        self._cancel_retry()
        self._delete_issues()

    def _refused(self, err: SockbridgeError) -> None:
        """The daemon refused the server: say so, and try again later."""
        first = self.error is None
        self.error = err.message
        key = ISSUE_PORT_IN_USE if isinstance(err, AddressInUseError) else ISSUE_SERVER_FAILED
        if first:
            _LOGGER.warning("%s: sockbridged refused the server: %s", self.name, err.message)
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            f"{key}_{self.subentry_id}",
            is_fixable=False,
            severity=ir.IssueSeverity.ERROR,
            translation_key=key,
            translation_placeholders={
                "server": self.name,
                "port": str(self.settings.port),
                "error": err.message,
            },
        )
        self._state_listeners(None)
        self._cancel_retry()
        self._retry = async_call_later(self.hass, SERVER_RETRY_INTERVAL, self._on_retry)

    def _delete_issues(self) -> None:
        for key in (ISSUE_PORT_IN_USE, ISSUE_SERVER_FAILED):
            ir.async_delete_issue(self.hass, DOMAIN, f"{key}_{self.subentry_id}")

    def _cancel_retry(self) -> None:
        if self._retry is not None:
            self._retry()
            self._retry = None

    @callback
    def _on_retry(self, _now: Any) -> None:
        self._retry = None
        self._schedule_create("retry")

    def _schedule_create(self, why: str) -> None:
        self.daemon.entry.async_create_background_task(
            self.hass, self._async_recreate(), f"sockbridge {why} {self.subentry_id}"
        )

    async def _async_recreate(self) -> None:
        try:
            await self._async_create()
        except SockbridgeError as err:
            _LOGGER.debug("%s: cannot create the server now: %s", self.name, err.message)

    # -- what the daemon says ------------------------------------------------

    @callback
    def _on_daemon_owner(self, owner: str | None) -> None:
        if owner is None:
            for handle in list(self.clients):
                self._client_gone(handle)
            self._set_listening(False)
        else:
            self._schedule_create("create")
        self._state_listeners(None)

    @callback
    def _on_disconnected(self) -> None:
        _LOGGER.warning("%s: lost the D-Bus connection; reloading", self.name)
        self._state_listeners(None)
        self.hass.config_entries.async_schedule_reload(self.daemon.entry.entry_id)

    def _is_ours(self, port: int, identifier: str) -> bool:
        # The signals name no protocol: the subentry flow keeps a TCP and a
        # UDP server on one port apart by their identifiers.
        return port == self.bound_port and identifier == self.identifier

    @callback
    def _on_server_status(self, status: ServerStatus) -> None:
        if not self._is_ours(status.port, status.identifier):
            return
        if status.status == STATUS_OFFLINE:
            for handle in list(self.clients):
                self._client_gone(handle)
        self._set_listening(status.status == STATUS_ONLINE)
        self._state_listeners(None)

    @callback
    def _on_connection_status(self, status: ConnectionStatus) -> None:
        if not self._is_ours(status.port, status.identifier):
            return
        if status.status == STATUS_ONLINE and status.handle not in self.clients:
            client = ConnectedClient(status.handle, status.address)
            self.clients[status.handle] = client
            self._fire_connection(client, STATUS_ONLINE)
            self._connection_listeners((EVENT_TYPE_CONNECTED, client))
            self._state_listeners(None)
        elif status.status == STATUS_OFFLINE and status.handle in self.clients:
            self._client_gone(status.handle)
            self._state_listeners(None)

    @callback
    def _on_data_in_batch(self, frames: list[BatchFrame], identifier: str) -> None:
        # The loop's per-frame cost, the limit of a burst's rate into the
        # event bus: one dict and the event, nothing else, the rest once per
        # signal. Its servers are always batch servers (the daemon refuses a
        # create whose settings differ from the server's on that port), so
        # ServerDataIn never comes for their handles.
        clients = self.clients
        fire = self.hass.bus.async_fire
        entry_id = self.daemon.entry.entry_id
        subentry_id = self.subentry_id
        port = self.bound_port
        ident = self.identifier
        last: BatchFrame | None = None
        for frame in frames:
            handle, data, address, remote_port = frame
            client = clients.get(handle)
            if client is None:
                continue
            client.remote_port = remote_port
            fire(
                EVENT_DATA_IN,
                {
                    ATTR_ENTRY_ID: entry_id,
                    ATTR_SERVER_ID: subentry_id,
                    ATTR_SERVER_PORT: port,
                    ATTR_IDENTIFIER: ident,
                    ATTR_HANDLE: handle,
                    ATTR_ADDRESS: address,
                    ATTR_REMOTE_PORT: remote_port,
                    ATTR_TEXT: data.decode("utf-8", errors="replace"),
                    ATTR_HEX: data.hex(),
                },
            )
            last = frame
        if last is None:
            return
        handle, data, address, remote_port = last
        self.last_data = DataIn(handle, bytes(data), address, remote_port, identifier)
        for func in self._data_listeners:
            func()

    def _client_gone(self, handle: int) -> None:
        client = self.clients.pop(handle)
        self._fire_connection(client, STATUS_OFFLINE)
        self._connection_listeners((EVENT_TYPE_DISCONNECTED, client))

    def _fire_connection(self, client: ConnectedClient, status: str) -> None:
        self._fire(
            EVENT_CONNECTION,
            {
                ATTR_HANDLE: client.handle,
                ATTR_ADDRESS: client.address,
                ATTR_REMOTE_PORT: client.remote_port,
                ATTR_STATUS: status,
            },
        )

    def _set_listening(self, listening: bool) -> None:
        if listening == self.listening:
            return
        self.listening = listening
        self._fire(EVENT_STATUS, {ATTR_STATUS: STATUS_ONLINE if listening else STATUS_OFFLINE})

    def _fire(self, event_type: str, data: dict[str, Any]) -> None:
        """Fire one of the integration's events: each names its entry and server."""
        self.hass.bus.async_fire(
            event_type,
            {
                ATTR_ENTRY_ID: self.daemon.entry.entry_id,
                ATTR_SERVER_ID: self.subentry_id,
                ATTR_SERVER_PORT: self.bound_port,
                ATTR_IDENTIFIER: self.identifier,
                **data,
            },
        )
