"""Config flow and options flow of sockbridge: one entry per server."""

from __future__ import annotations

from collections.abc import Mapping
import ipaddress
from typing import Any

from homeassistant.config_entries import ConfigEntry, ConfigFlow, OptionsFlow
from homeassistant.core import callback
from homeassistant.data_entry_flow import FlowResult
from homeassistant.helpers.selector import (
    BooleanSelector,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TextSelector,
)
import voluptuous as vol

from .client import (
    AddressInUseError,
    DaemonNotRunningError,
    InvalidArgumentError,
    InvalidEscapeError,
    PermissionDeniedError,
    SockbridgeError,
    decode_escapes,
    probe_server,
)
from .const import (
    BUS_ADDRESS,
    BUS_SYSTEM,
    BUSES,
    CONF_ADDRESS,
    CONF_ADVANCED,
    CONF_BIND_ADDRESS,
    CONF_BUS,
    CONF_DELIMITER,
    CONF_FLUSH_TIMEOUT_MS,
    CONF_IDENTIFIER,
    CONF_MAX_CONNECTIONS,
    CONF_MAX_MESSAGE_BYTES,
    CONF_PORT,
    CONF_PROTOCOL,
    CONF_UDP_PEER_TIMEOUT_MS,
    DEFAULT_OPTIONS,
    DOMAIN,
    MAX_DELIMITER_BYTES,
    MAX_MAX_MESSAGE_BYTES,
    MAX_UINT32,
    PROTOCOL_TCP,
    PROTOCOLS,
)
from .server import default_name, settings_from_config


def _number(minimum: int, maximum: int) -> vol.All:
    return vol.All(
        NumberSelector(
            NumberSelectorConfig(min=minimum, max=maximum, step=1, mode=NumberSelectorMode.BOX)
        ),
        vol.Coerce(int),
    )


USER_SCHEMA = vol.Schema(
    {
        vol.Required(CONF_BUS, default=BUS_SYSTEM): SelectSelector(
            SelectSelectorConfig(options=BUSES, translation_key=CONF_BUS)
        ),
        vol.Optional(CONF_ADDRESS, default=""): TextSelector(),
        vol.Required(CONF_PORT): _number(0, 65535),
        vol.Required(CONF_PROTOCOL, default=PROTOCOL_TCP): SelectSelector(
            SelectSelectorConfig(
                options=PROTOCOLS, translation_key=CONF_PROTOCOL, mode=SelectSelectorMode.LIST
            )
        ),
        # Defaults "": a field left empty means none (the form suggests \r\n).
        vol.Optional(CONF_DELIMITER, default=""): TextSelector(),
        vol.Optional(CONF_IDENTIFIER, default=""): TextSelector(),
        vol.Required(CONF_ADVANCED, default=False): BooleanSelector(),
    }
)

ADVANCED_SCHEMA = vol.Schema(
    {
        vol.Required(
            CONF_FLUSH_TIMEOUT_MS, default=DEFAULT_OPTIONS[CONF_FLUSH_TIMEOUT_MS]
        ): _number(0, MAX_UINT32),
        vol.Required(
            CONF_MAX_MESSAGE_BYTES, default=DEFAULT_OPTIONS[CONF_MAX_MESSAGE_BYTES]
        ): _number(1, MAX_MAX_MESSAGE_BYTES),
        vol.Required(CONF_MAX_CONNECTIONS, default=DEFAULT_OPTIONS[CONF_MAX_CONNECTIONS]): _number(
            1, MAX_UINT32
        ),
        vol.Required(
            CONF_UDP_PEER_TIMEOUT_MS, default=DEFAULT_OPTIONS[CONF_UDP_PEER_TIMEOUT_MS]
        ): _number(0, MAX_UINT32),
        vol.Optional(CONF_BIND_ADDRESS, default=""): TextSelector(),
    }
)

OPTIONS_SCHEMA = vol.Schema(
    {
        vol.Optional(CONF_DELIMITER, default=""): TextSelector(),
        vol.Optional(CONF_IDENTIFIER, default=""): TextSelector(),
    }
).extend(ADVANCED_SCHEMA.schema)


def _delimiter_error(delimiter: str) -> str | None:
    try:
        data = decode_escapes(delimiter)
    except InvalidEscapeError:
        return "invalid_delimiter"
    return "invalid_delimiter" if len(data) > MAX_DELIMITER_BYTES else None


def _bind_address_error(bind_address: str) -> str | None:
    if not bind_address:
        return None
    try:
        ipaddress.ip_address(bind_address)
    except ValueError:
        return "invalid_option"
    return None


def _bus_key(data: Mapping[str, Any]) -> str:
    if data[CONF_BUS] == BUS_ADDRESS:
        return f"{BUS_ADDRESS}={data[CONF_ADDRESS]}"
    return str(data[CONF_BUS])


def unique_id(data: Mapping[str, Any]) -> str | None:
    """The entry's unique id: bus, protocol and port; none for port 0."""
    if not data[CONF_PORT]:
        return None
    return f"{_bus_key(data)}:{data[CONF_PROTOCOL]}:{data[CONF_PORT]}"


def _identifier_clash(
    entries: list[ConfigEntry], data: Mapping[str, Any], identifier: str, exclude: str | None
) -> bool:
    """Whether a TCP and a UDP server on one port would share an identifier.

    The daemon's signals carry the port and the identifier but not the
    protocol, so those two must differ.
    """
    if not data[CONF_PORT]:
        return False
    for entry in entries:
        if (
            entry.entry_id != exclude
            and _bus_key(entry.data) == _bus_key(data)
            and entry.data[CONF_PORT] == data[CONF_PORT]
            and entry.data[CONF_PROTOCOL] != data[CONF_PROTOCOL]
            and entry.options.get(CONF_IDENTIFIER, "") == identifier
        ):
            return True
    return False


class SockbridgeConfigFlow(ConfigFlow, domain=DOMAIN):
    """Set up a server: where the daemon is, which port, how to frame."""

    VERSION = 1

    def __init__(self) -> None:
        """Start with nothing entered."""
        self._user_input: dict[str, Any] = {}

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> OptionsFlow:
        """The options flow of an entry."""
        return SockbridgeOptionsFlow(config_entry)

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> FlowResult:
        """Bus, port, protocol, delimiter and identifier."""
        errors: dict[str, str] = {}
        if user_input is not None:
            self._user_input = user_input
            if user_input[CONF_BUS] == BUS_ADDRESS and not user_input[CONF_ADDRESS].strip():
                errors[CONF_ADDRESS] = "address_required"
            elif error := _delimiter_error(user_input[CONF_DELIMITER]):
                errors[CONF_DELIMITER] = error
            elif _identifier_clash(
                self._async_current_entries(), self._data(), user_input[CONF_IDENTIFIER], None
            ):
                errors[CONF_IDENTIFIER] = "identifier_clash"
            else:
                if (uid := unique_id(self._data())) is not None:
                    await self.async_set_unique_id(uid)
                    self._abort_if_unique_id_configured()
                if user_input[CONF_ADVANCED]:
                    return await self.async_step_advanced()
                return await self._async_finish({})
        return self._show_user_form(errors, "")

    async def async_step_advanced(self, user_input: dict[str, Any] | None = None) -> FlowResult:
        """The options of CreateServerWithOptions()."""
        errors: dict[str, str] = {}
        if user_input is not None:
            if error := _bind_address_error(user_input[CONF_BIND_ADDRESS]):
                errors[CONF_BIND_ADDRESS] = error
            else:
                return await self._async_finish(user_input)
        return self._show_advanced_form(errors, "", user_input)

    def _data(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            CONF_BUS: self._user_input[CONF_BUS],
            CONF_PORT: self._user_input[CONF_PORT],
            CONF_PROTOCOL: self._user_input[CONF_PROTOCOL],
        }
        if data[CONF_BUS] == BUS_ADDRESS:
            data[CONF_ADDRESS] = self._user_input[CONF_ADDRESS].strip()
        return data

    def _show_user_form(self, errors: dict[str, str], detail: str) -> FlowResult:
        return self.async_show_form(
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(
                USER_SCHEMA, self._user_input or {CONF_DELIMITER: DEFAULT_OPTIONS[CONF_DELIMITER]}
            ),
            errors=errors,
            description_placeholders={"detail": detail},
        )

    def _show_advanced_form(
        self, errors: dict[str, str], detail: str, user_input: Mapping[str, Any] | None
    ) -> FlowResult:
        return self.async_show_form(
            step_id="advanced",
            data_schema=self.add_suggested_values_to_schema(
                ADVANCED_SCHEMA, user_input or DEFAULT_OPTIONS
            ),
            errors=errors,
            description_placeholders={"detail": detail},
        )

    async def _async_finish(self, advanced: Mapping[str, Any]) -> FlowResult:
        """Create the server for real once; the entry if that worked."""
        data = self._data()
        options: dict[str, Any] = {
            **DEFAULT_OPTIONS,
            CONF_DELIMITER: self._user_input[CONF_DELIMITER],
            CONF_IDENTIFIER: self._user_input[CONF_IDENTIFIER],
            **advanced,
        }
        try:
            await probe_server(
                data[CONF_BUS], data.get(CONF_ADDRESS), settings_from_config(data, options)
            )
        except SockbridgeError as err:
            error = _probe_error(err)
            if error == "invalid_option" and advanced:
                return self._show_advanced_form({"base": error}, err.message, advanced)
            return self._show_user_form({"base": error}, err.message)
        title = options[CONF_IDENTIFIER] or default_name(data[CONF_PROTOCOL], data[CONF_PORT])
        return self.async_create_entry(title=title, data=data, options=options)


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


class SockbridgeOptionsFlow(OptionsFlow):
    """Change a server's delimiter, identifier and advanced options."""

    def __init__(self, config_entry: ConfigEntry) -> None:
        """The options flow of config_entry."""
        self._entry = config_entry

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> FlowResult:
        """All the options on one form; the entry reloads with them."""
        errors: dict[str, str] = {}
        if user_input is not None:
            if error := _delimiter_error(user_input[CONF_DELIMITER]):
                errors[CONF_DELIMITER] = error
            elif error := _bind_address_error(user_input[CONF_BIND_ADDRESS]):
                errors[CONF_BIND_ADDRESS] = error
            elif _identifier_clash(
                self.hass.config_entries.async_entries(DOMAIN),
                self._entry.data,
                user_input[CONF_IDENTIFIER],
                self._entry.entry_id,
            ):
                errors[CONF_IDENTIFIER] = "identifier_clash"
            else:
                return self.async_create_entry(title="", data={**DEFAULT_OPTIONS, **user_input})
        current = user_input or {**DEFAULT_OPTIONS, **self._entry.options}
        return self.async_show_form(
            step_id="init",
            data_schema=self.add_suggested_values_to_schema(OPTIONS_SCHEMA, current),
            errors=errors,
        )
