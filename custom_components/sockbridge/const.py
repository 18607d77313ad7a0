"""Constants of the sockbridge integration."""

from __future__ import annotations

from typing import Final

DOMAIN: Final = "sockbridge"

# The daemon entry's data: which bus sockbridged is on.
CONF_BUS: Final = "bus"
CONF_ADDRESS: Final = "address"

BUS_SYSTEM: Final = "system"
BUS_SESSION: Final = "session"
BUS_ADDRESS: Final = "address"
BUSES: Final = [BUS_SYSTEM, BUS_SESSION, BUS_ADDRESS]

# Config entry version 2: one entry per daemon, one subentry per server.
# Version 1 was one entry per server (data: bus, address, port, protocol;
# options: the rest).
ENTRY_VERSION: Final = 2

SUBENTRY_SERVER: Final = "server"

# A server subentry's data.
CONF_PORT: Final = "port"
CONF_PROTOCOL: Final = "protocol"
CONF_DELIMITER: Final = "delimiter"
CONF_IDENTIFIER: Final = "identifier"
CONF_FLUSH_TIMEOUT_MS: Final = "flush_timeout_ms"
CONF_MAX_MESSAGE_BYTES: Final = "max_message_bytes"
CONF_MAX_CONNECTIONS: Final = "max_connections"
CONF_UDP_PEER_TIMEOUT_MS: Final = "udp_peer_timeout_ms"
CONF_BIND_ADDRESS: Final = "bind_address"
CONF_STRIP_DELIMITER: Final = "strip_delimiter"
CONF_ALLOW_FROM: Final = "allow_from"
CONF_MULTICAST_GROUPS: Final = "multicast_groups"
CONF_MULTICAST_INTERFACE: Final = "multicast_interface"
# TLS: paths of files that sockbridged reads (on the add-on, under /ssl).
CONF_TLS_CERTIFICATE: Final = "tls_certificate"
CONF_TLS_PRIVATE_KEY: Final = "tls_private_key"
CONF_TLS_PASSWORD: Final = "tls_password"
CONF_TLS_CHAIN: Final = "tls_chain"
CONF_TLS_CLIENT_AUTH: Final = "tls_client_auth"
CONF_TLS_CLIENT_CA: Final = "tls_client_ca"

# The collapsible form section that holds the advanced options.
SECTION_ADVANCED: Final = "advanced"
ADVANCED_KEYS: Final = (
    CONF_BIND_ADDRESS,
    CONF_FLUSH_TIMEOUT_MS,
    CONF_MAX_MESSAGE_BYTES,
    CONF_MAX_CONNECTIONS,
    CONF_UDP_PEER_TIMEOUT_MS,
    CONF_STRIP_DELIMITER,
    CONF_ALLOW_FROM,
    CONF_MULTICAST_GROUPS,
    CONF_MULTICAST_INTERFACE,
    CONF_TLS_CERTIFICATE,
    CONF_TLS_PRIVATE_KEY,
    CONF_TLS_PASSWORD,
    CONF_TLS_CHAIN,
    CONF_TLS_CLIENT_AUTH,
    CONF_TLS_CLIENT_CA,
)
# The advanced keys that only a TLS server takes, and those only UDP takes.
TLS_KEYS: Final = (
    CONF_TLS_CERTIFICATE,
    CONF_TLS_PRIVATE_KEY,
    CONF_TLS_PASSWORD,
    CONF_TLS_CHAIN,
    CONF_TLS_CLIENT_CA,
)
TLS_FILE_KEYS: Final = (
    CONF_TLS_CERTIFICATE,
    CONF_TLS_PRIVATE_KEY,
    CONF_TLS_CHAIN,
    CONF_TLS_CLIENT_CA,
)
MULTICAST_KEYS: Final = (CONF_MULTICAST_GROUPS, CONF_MULTICAST_INTERFACE)

PROTOCOL_TCP: Final = "tcp"
PROTOCOL_UDP: Final = "udp"
PROTOCOL_TLS: Final = "tls"
PROTOCOLS: Final = [PROTOCOL_TCP, PROTOCOL_UDP, PROTOCOL_TLS]

TLS_CLIENT_AUTH_NONE: Final = "none"
TLS_CLIENT_AUTH_REQUEST: Final = "request"
TLS_CLIENT_AUTH_REQUIRE: Final = "require"
TLS_CLIENT_AUTHS: Final = [TLS_CLIENT_AUTH_NONE, TLS_CLIENT_AUTH_REQUEST, TLS_CLIENT_AUTH_REQUIRE]

# The daemon's defaults and bounds (dbus/io.github.Sockbridge1.xml).
DEFAULT_DELIMITER: Final = "\\r\\n"
DEFAULT_FLUSH_TIMEOUT_MS: Final = 1000
DEFAULT_MAX_MESSAGE_BYTES: Final = 1048576
MAX_MAX_MESSAGE_BYTES: Final = 16777216
DEFAULT_MAX_CONNECTIONS: Final = 256
DEFAULT_UDP_PEER_TIMEOUT_MS: Final = 60000
MAX_DELIMITER_BYTES: Final = 64
MAX_IDENTIFIER_BYTES: Final = 255
MAX_UINT32: Final = 0xFFFFFFFF
MAX_ALLOW_FROM: Final = 256
MAX_MULTICAST_GROUPS: Final = 20

DEFAULT_SERVER: Final[dict[str, str | int | bool | list[str]]] = {
    CONF_DELIMITER: DEFAULT_DELIMITER,
    CONF_IDENTIFIER: "",
    CONF_FLUSH_TIMEOUT_MS: DEFAULT_FLUSH_TIMEOUT_MS,
    CONF_MAX_MESSAGE_BYTES: DEFAULT_MAX_MESSAGE_BYTES,
    CONF_MAX_CONNECTIONS: DEFAULT_MAX_CONNECTIONS,
    CONF_UDP_PEER_TIMEOUT_MS: DEFAULT_UDP_PEER_TIMEOUT_MS,
    CONF_BIND_ADDRESS: "",
    CONF_STRIP_DELIMITER: False,
    CONF_ALLOW_FROM: [],
    CONF_MULTICAST_GROUPS: [],
    CONF_MULTICAST_INTERFACE: "",
    CONF_TLS_CERTIFICATE: "",
    CONF_TLS_PRIVATE_KEY: "",
    CONF_TLS_PASSWORD: "",
    CONF_TLS_CHAIN: "",
    CONF_TLS_CLIENT_AUTH: TLS_CLIENT_AUTH_REQUEST,
    CONF_TLS_CLIENT_CA: "",
}

# Supervisor discovery: the add-on announces its bus under this service.
HASSIO_SERVICE: Final = "sockbridge"

# Home Assistant bus events.
EVENT_DATA_IN: Final = "sockbridge_data_in"
EVENT_CONNECTION: Final = "sockbridge_connection"
EVENT_STATUS: Final = "sockbridge_status"

STATUS_ONLINE: Final = "ONLINE"
STATUS_OFFLINE: Final = "OFFLINE"

# Event entity types.
EVENT_TYPE_DATA_RECEIVED: Final = "data_received"
EVENT_TYPE_CONNECTED: Final = "connected"
EVENT_TYPE_DISCONNECTED: Final = "disconnected"

# Event data and attribute keys.
ATTR_ENTRY_ID: Final = "entry_id"
ATTR_SERVER_ID: Final = "server_id"
ATTR_HANDLE: Final = "handle"
ATTR_ADDRESS: Final = "address"
ATTR_REMOTE_PORT: Final = "remote_port"
ATTR_SERVER_PORT: Final = "server_port"
ATTR_IDENTIFIER: Final = "identifier"
ATTR_TEXT: Final = "text"
ATTR_HEX: Final = "hex"
ATTR_STATUS: Final = "status"

# Actions.
SERVICE_SEND: Final = "send"
SERVICE_CLOSE_CLIENT: Final = "close_client"
ATTR_DEVICE_ID: Final = "device_id"
# Diagnostics never show these.
REDACTED_KEYS: Final = frozenset({CONF_TLS_PASSWORD})

# Repair issues: the daemon gone for longer than this, in seconds.
DAEMON_GONE_GRACE: Final = 180.0
# How often a server that could not be created is tried again, in seconds.
SERVER_RETRY_INTERVAL: Final = 30.0

ISSUE_DAEMON_GONE: Final = "daemon_gone"
ISSUE_PORT_IN_USE: Final = "port_in_use"
ISSUE_SERVER_FAILED: Final = "server_failed"
ISSUE_MIGRATION: Final = "migration"

# A state is at most 255 characters.
MAX_STATE_LENGTH: Final = 255

# The entities that show received data (the data event, the last message
# sensor) write their state at once for a message that follows a quiet
# DATA_WRITE_INTERVAL seconds, and otherwise once at the end of that
# interval with the latest message: a device that talks once a second
# updates them with every message, a stream of hundreds a second costs
# about two state writes a second each. The sockbridge_data_in bus event
# fires for every message regardless.
DATA_WRITE_INTERVAL: Final = 0.5
