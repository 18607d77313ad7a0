"""Config flows of sockbridge: the daemon entry, and its server subentries."""

from __future__ import annotations

from collections.abc import Mapping
import ipaddress
from typing import Any

from homeassistant.config_entries import (
    ConfigEntry,
    ConfigFlow,
    ConfigFlowResult,
    ConfigSubentry,
    ConfigSubentryFlow,
    SubentryFlowResult,
)
from homeassistant.core import callback
from homeassistant.data_entry_flow import section
from homeassistant.helpers.selector import (
    BooleanSelector,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
from homeassistant.helpers.service_info.hassio import HassioServiceInfo
import voluptuous as vol

from .client import (
    AddressInUseError,
    DaemonNotRunningError,
    InvalidArgumentError,
    InvalidEscapeError,
    PermissionDeniedError,
    SockbridgeError,
    decode_escapes,
    probe_daemon,
    probe_server,
)
from .const import (
    ADVANCED_KEYS,
    BUS_ADDRESS,
    BUS_SYSTEM,
    BUSES,
    CONF_ADDRESS,
    CONF_ALLOW_FROM,
    CONF_BIND_ADDRESS,
    CONF_BUS,
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
    ENTRY_VERSION,
    MAX_ALLOW_FROM,
    MAX_DELIMITER_BYTES,
    MAX_MAX_MESSAGE_BYTES,
    MAX_MULTICAST_GROUPS,
    MAX_UINT32,
    MULTICAST_KEYS,
    PROTOCOL_TCP,
    PROTOCOL_TLS,
    PROTOCOL_UDP,
    PROTOCOLS,
    SECTION_ADVANCED,
    SUBENTRY_SERVER,
    TLS_CLIENT_AUTHS,
    TLS_FILE_KEYS,
    TLS_KEYS,
)
from .daemon import bus_title
from .server import default_name, settings_from_config


def _number(minimum: int, maximum: int) -> vol.All:
    return vol.All(
        NumberSelector(
            NumberSelectorConfig(min=minimum, max=maximum, step=1, mode=NumberSelectorMode.BOX)
        ),
        vol.Coerce(int),
    )


# Typed Any: Home Assistant 2025.12 validates with voluptuous, 2026.x with
# probatio (which answers to `import voluptuous` there), and their types differ.
DAEMON_SCHEMA: Any = vol.Schema(
    {
        vol.Required(CONF_BUS, default=BUS_SYSTEM): SelectSelector(
            SelectSelectorConfig(options=BUSES, translation_key=CONF_BUS)
        ),
        vol.Optional(CONF_ADDRESS, default=""): TextSelector(),
    }
)

ADVANCED_SCHEMA: Any = vol.Schema(
    {
        vol.Optional(CONF_BIND_ADDRESS, default=""): TextSelector(),
        vol.Required(CONF_FLUSH_TIMEOUT_MS, default=DEFAULT_SERVER[CONF_FLUSH_TIMEOUT_MS]): _number(
            0, MAX_UINT32
        ),
        vol.Required(
            CONF_MAX_MESSAGE_BYTES, default=DEFAULT_SERVER[CONF_MAX_MESSAGE_BYTES]
        ): _number(1, MAX_MAX_MESSAGE_BYTES),
        vol.Required(CONF_MAX_CONNECTIONS, default=DEFAULT_SERVER[CONF_MAX_CONNECTIONS]): _number(
            1, MAX_UINT32
        ),
        vol.Required(
            CONF_UDP_PEER_TIMEOUT_MS, default=DEFAULT_SERVER[CONF_UDP_PEER_TIMEOUT_MS]
        ): _number(0, MAX_UINT32),
        vol.Required(CONF_STRIP_DELIMITER, default=False): BooleanSelector(),
        vol.Optional(CONF_ALLOW_FROM, default=[]): TextSelector(TextSelectorConfig(multiple=True)),
        vol.Optional(CONF_MULTICAST_GROUPS, default=[]): TextSelector(
            TextSelectorConfig(multiple=True)
        ),
        vol.Optional(CONF_MULTICAST_INTERFACE, default=""): TextSelector(),
        vol.Optional(CONF_TLS_CERTIFICATE, default=""): TextSelector(),
        vol.Optional(CONF_TLS_PRIVATE_KEY, default=""): TextSelector(),
        vol.Optional(CONF_TLS_PASSWORD, default=""): TextSelector(
            TextSelectorConfig(type=TextSelectorType.PASSWORD)
        ),
        vol.Optional(CONF_TLS_CHAIN, default=""): TextSelector(),
        vol.Required(CONF_TLS_CLIENT_AUTH, default=DEFAULT_SERVER[CONF_TLS_CLIENT_AUTH]): (
            SelectSelector(
                SelectSelectorConfig(options=TLS_CLIENT_AUTHS, translation_key=CONF_TLS_CLIENT_AUTH)
            )
        ),
        vol.Optional(CONF_TLS_CLIENT_CA, default=""): TextSelector(),
    }
)

SERVER_SCHEMA: Any = vol.Schema(
    {
        vol.Required(CONF_PORT): _number(0, 65535),
        vol.Required(CONF_PROTOCOL, default=PROTOCOL_TCP): SelectSelector(
            SelectSelectorConfig(
                options=PROTOCOLS, translation_key=CONF_PROTOCOL, mode=SelectSelectorMode.LIST
            )
        ),
        # Defaults "": a field left empty means none (the form suggests \r\n).
        vol.Optional(CONF_DELIMITER, default=""): TextSelector(),
        vol.Optional(CONF_IDENTIFIER, default=""): TextSelector(),
        vol.Required(SECTION_ADVANCED): section(ADVANCED_SCHEMA, {"collapsed": True}),
    }
)


def bus_unique_id(data: Mapping[str, Any]) -> str:
    """A daemon entry's unique id: its bus."""
    if data[CONF_BUS] == BUS_ADDRESS:
        return f"{BUS_ADDRESS}={data[CONF_ADDRESS]}"
    return str(data[CONF_BUS])


def transport(protocol: str) -> str:
    """The ports a protocol's server takes: TLS servers take TCP ports."""
    return PROTOCOL_TCP if protocol == PROTOCOL_TLS else protocol


def server_unique_id(data: Mapping[str, Any]) -> str | None:
    """A server subentry's unique id: transport and port; none for port 0.

    A TLS server is "tcp:<port>": it and a TCP server cannot share a port.
    """
    if not data[CONF_PORT]:
        return None
    return f"{transport(data[CONF_PROTOCOL])}:{data[CONF_PORT]}"


def server_title(data: Mapping[str, Any]) -> str:
    """A server's title: its identifier, else protocol and port."""
    return str(data.get(CONF_IDENTIFIER) or default_name(data[CONF_PROTOCOL], data[CONF_PORT]))


def _daemon_data(user_input: Mapping[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {CONF_BUS: user_input[CONF_BUS]}
    if data[CONF_BUS] == BUS_ADDRESS:
        data[CONF_ADDRESS] = str(user_input.get(CONF_ADDRESS, "")).strip()
    return data


def _daemon_title(data: Mapping[str, Any]) -> str:
    return f"sockbridged ({bus_title(data)})"


def _probe_error(err: SockbridgeError) -> str:
    if isinstance(err, DaemonNotRunningError):
        return "cannot_connect"
    if isinstance(err, AddressInUseError):
        return "port_in_use"
    if isinstance(err, PermissionDeniedError):
        return "permission_denied"
    if isinstance(err, InvalidArgumentError):
        return "invalid_option"
    return "unknown"


class SockbridgeConfigFlow(ConfigFlow, domain=DOMAIN):
    """Find sockbridged: one entry per daemon, that is per bus."""

    VERSION = ENTRY_VERSION
    MINOR_VERSION = 1

    def __init__(self) -> None:
        """Start with nothing discovered."""
        self._discovered: dict[str, Any] = {}
        self._addon = ""

    @classmethod
    @callback
    def async_get_supported_subentry_types(
        cls, config_entry: ConfigEntry
    ) -> dict[str, type[ConfigSubentryFlow]]:
        """Servers are subentries of the daemon's entry."""
        return {SUBENTRY_SERVER: ServerSubentryFlow}

    async def _async_check_daemon(
        self, user_input: Mapping[str, Any], errors: dict[str, str]
    ) -> tuple[dict[str, Any], str]:
        """The entry data of user_input, and the error detail if any."""
        data = _daemon_data(user_input)
        if data[CONF_BUS] == BUS_ADDRESS and not data[CONF_ADDRESS]:
            errors[CONF_ADDRESS] = "address_required"
            return data, ""
        try:
            await probe_daemon(data[CONF_BUS], data.get(CONF_ADDRESS))
        except SockbridgeError as err:
            errors["base"] = _probe_error(err)
            return data, err.message
        return data, ""

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """The bus sockbridged is on."""
        errors: dict[str, str] = {}
        detail = ""
        if user_input is not None:
            data = _daemon_data(user_input)
            if data[CONF_BUS] != BUS_ADDRESS or data[CONF_ADDRESS]:
                await self.async_set_unique_id(bus_unique_id(data))
                self._abort_if_unique_id_configured()
            data, detail = await self._async_check_daemon(user_input, errors)
            if not errors:
                return self.async_create_entry(title=_daemon_title(data), data=data)
        return self.async_show_form(
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(DAEMON_SCHEMA, user_input or {}),
            errors=errors,
            description_placeholders={"detail": detail},
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Another bus for the same daemon, e.g. a moved socket."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        detail = ""
        if user_input is not None:
            data = _daemon_data(user_input)
            unique_id = bus_unique_id(data)
            if any(
                other.unique_id == unique_id and other.entry_id != entry.entry_id
                for other in self._async_current_entries(include_ignore=False)
            ):
                return self.async_abort(reason="already_configured")
            data, detail = await self._async_check_daemon(user_input, errors)
            if not errors:
                # The entry's update listener reloads it for its new bus.
                return self.async_update_and_abort(
                    entry, unique_id=unique_id, title=_daemon_title(data), data=data
                )
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(
                DAEMON_SCHEMA, user_input or dict(entry.data)
            ),
            errors=errors,
            description_placeholders={"detail": detail},
        )

    async def async_step_hassio(self, discovery_info: HassioServiceInfo) -> ConfigFlowResult:
        """The sockbridge add-on announced its bus through the Supervisor."""
        address = str(discovery_info.config.get(CONF_ADDRESS, "")).strip()
        if not address:
            return self.async_abort(reason="invalid_discovery")
        self._discovered = {CONF_BUS: BUS_ADDRESS, CONF_ADDRESS: address}
        self._addon = discovery_info.name
        await self.async_set_unique_id(bus_unique_id(self._discovered))
        self._abort_if_unique_id_configured()
        self.context["title_placeholders"] = {"addon": self._addon}
        return await self.async_step_hassio_confirm()

    async def async_step_hassio_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask before adding the add-on's daemon."""
        errors: dict[str, str] = {}
        detail = ""
        if user_input is not None:
            data, detail = await self._async_check_daemon(self._discovered, errors)
            if not errors:
                return self.async_create_entry(title=f"sockbridged ({self._addon})", data=data)
        return self.async_show_form(
            step_id="hassio_confirm",
            errors=errors,
            description_placeholders={
                "addon": self._addon,
                "address": self._discovered[CONF_ADDRESS],
                "detail": detail,
            },
        )


def _server_errors(data: Mapping[str, Any]) -> tuple[dict[str, str], str]:
    """What is wrong with a server's settings before the daemon is asked.

    The errors, and the detail their message shows (the wrong entry).
    """
    try:
        delimiter = decode_escapes(str(data[CONF_DELIMITER]))
    except InvalidEscapeError:
        return {CONF_DELIMITER: "invalid_delimiter"}, ""
    if len(delimiter) > MAX_DELIMITER_BYTES:
        return {CONF_DELIMITER: "invalid_delimiter"}, ""
    if bind_address := str(data[CONF_BIND_ADDRESS]):
        try:
            ipaddress.ip_address(bind_address)
        except ValueError:
            return {SECTION_ADVANCED: "invalid_bind_address"}, bind_address
    for check in (_allow_from_error, _multicast_error, _tls_error):
        if error := check(data):
            return {SECTION_ADVANCED: error[0]}, error[1]
    return {}, ""


def _allow_from_error(data: Mapping[str, Any]) -> tuple[str, str] | None:
    entries: list[str] = data[CONF_ALLOW_FROM]
    if len(entries) > MAX_ALLOW_FROM:
        return "too_many_allow_from", str(MAX_ALLOW_FROM)
    for entry in entries:
        try:
            # strict: the daemon refuses bits set past the prefix length.
            ipaddress.ip_network(entry, strict=True)
        except ValueError:
            return "invalid_allow_from", entry
    return None


def _multicast_error(data: Mapping[str, Any]) -> tuple[str, str] | None:
    groups: list[str] = data[CONF_MULTICAST_GROUPS]
    if data[CONF_PROTOCOL] != PROTOCOL_UDP:
        return ("multicast_udp_only", "") if any(data[k] for k in MULTICAST_KEYS) else None
    if len(groups) > MAX_MULTICAST_GROUPS:
        return "too_many_multicast_groups", str(MAX_MULTICAST_GROUPS)
    for group in groups:
        try:
            multicast = ipaddress.ip_address(group).is_multicast
        except ValueError:
            multicast = False
        if not multicast:
            return "invalid_multicast_group", group
    return None


def _tls_error(data: Mapping[str, Any]) -> tuple[str, str] | None:
    if data[CONF_PROTOCOL] != PROTOCOL_TLS:
        return ("tls_only", "") if any(data[k] for k in TLS_KEYS) else None
    if not data[CONF_TLS_CERTIFICATE]:
        return "tls_certificate_required", ""
    for key in TLS_FILE_KEYS:
        # Paths only: sockbridged reads the files (PEM text fits no form field).
        if (path := str(data[key])) and not path.startswith("/"):
            return "tls_path_not_absolute", path
    return None


def _flatten(user_input: Mapping[str, Any]) -> dict[str, Any]:
    """A subentry's data: the form's fields with the advanced section's inlined."""
    data = {k: v for k, v in user_input.items() if k != SECTION_ADVANCED}
    data[CONF_DELIMITER] = str(data.get(CONF_DELIMITER, ""))
    data[CONF_IDENTIFIER] = str(data.get(CONF_IDENTIFIER, ""))
    advanced = {**DEFAULT_SERVER, **user_input.get(SECTION_ADVANCED, {})}
    for key in ADVANCED_KEYS:
        value = advanced[key]
        if isinstance(value, list):
            value = [entry for item in value if (entry := str(item).strip())]
        elif isinstance(value, str) and key != CONF_TLS_PASSWORD:
            value = value.strip()
        data[key] = value
    return data


def _form_values(data: Mapping[str, Any]) -> dict[str, Any]:
    """The form's suggested values for a subentry's data."""
    values = {k: v for k, v in data.items() if k not in ADVANCED_KEYS}
    values[SECTION_ADVANCED] = {key: data.get(key, DEFAULT_SERVER[key]) for key in ADVANCED_KEYS}
    return values


class ServerSubentryFlow(ConfigSubentryFlow):
    """Add or change one server of the daemon."""

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        """A new server: port, protocol, framing and the advanced options."""
        return await self._async_step_server("user", user_input, None)

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Change a server: it is made again with the new settings."""
        return await self._async_step_server(
            "reconfigure", user_input, self._get_reconfigure_subentry()
        )

    async def _async_step_server(
        self,
        step_id: str,
        user_input: dict[str, Any] | None,
        current: ConfigSubentry | None,
    ) -> SubentryFlowResult:
        errors: dict[str, str] = {}
        detail = ""
        if user_input is not None:
            data = _flatten(user_input)
            errors, detail = _server_errors(data)
            errors = errors or self._clash_errors(data, current)
            if not errors:
                detail = await self._async_probe(data, current, errors)
            if not errors:
                return self._finish(data, current)
        if user_input is not None:
            values: Mapping[str, Any] = user_input
        elif current is not None:
            values = _form_values(current.data)
        else:
            values = _form_values({CONF_DELIMITER: DEFAULT_SERVER[CONF_DELIMITER]})
        return self.async_show_form(
            step_id=step_id,
            data_schema=self.add_suggested_values_to_schema(SERVER_SCHEMA, values),
            errors=errors,
            description_placeholders={"detail": detail},
        )

    def _clash_errors(
        self, data: Mapping[str, Any], current: ConfigSubentry | None
    ) -> dict[str, str]:
        """Another server of this daemon with the same port and protocol, or identifier."""
        others = [
            s
            for s in self._get_entry().subentries.values()
            if s.subentry_type == SUBENTRY_SERVER
            and (current is None or s.subentry_id != current.subentry_id)
        ]
        if (uid := server_unique_id(data)) is not None and any(s.unique_id == uid for s in others):
            return {CONF_PORT: "port_configured"}
        # The daemon's signals carry port and identifier but no protocol: a
        # TCP and a UDP server on one port must differ in identifier.
        if data[CONF_PORT] and any(
            s.data[CONF_PORT] == data[CONF_PORT]
            and transport(s.data[CONF_PROTOCOL]) != transport(data[CONF_PROTOCOL])
            and s.data.get(CONF_IDENTIFIER, "") == data[CONF_IDENTIFIER]
            for s in others
        ):
            return {CONF_IDENTIFIER: "identifier_clash"}
        return {}

    async def _async_probe(
        self, data: Mapping[str, Any], current: ConfigSubentry | None, errors: dict[str, str]
    ) -> str:
        """Ask the daemon to serve the settings once; the error's detail if it cannot."""
        probe = dict(data)
        if current is not None and data[CONF_PORT] and server_unique_id(data) == current.unique_id:
            # The running server holds this port: try the rest on any port.
            probe[CONF_PORT] = 0
        entry = self._get_entry()
        try:
            await probe_server(
                entry.data[CONF_BUS], entry.data.get(CONF_ADDRESS), settings_from_config(probe)
            )
        except SockbridgeError as err:
            errors["base"] = _probe_error(err)
            return err.message
        return ""

    def _finish(self, data: dict[str, Any], current: ConfigSubentry | None) -> SubentryFlowResult:
        if current is None:
            return self.async_create_entry(
                title=server_title(data), data=data, unique_id=server_unique_id(data)
            )
        return self.async_update_and_abort(
            self._get_entry(),
            current,
            title=server_title(data),
            data=data,
            unique_id=server_unique_id(data),
        )
