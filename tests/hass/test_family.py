"""The server family through Home Assistant: TLS servers, allow-from,
multicast, strip-delimiter, and sockbridge.send to any UDP address.

Against the real daemon with real clients on loopback: Python's ssl for
TLS, sockets bound to 127.0.0.2 for allow-from, and multicast over the
loopback interface (joined on "lo", sent with IP_MULTICAST_IF).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
import json
from pathlib import Path
import socket
import ssl
import struct
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import ServiceValidationError
import pytest
from pytest_homeassistant_custom_component.common import async_capture_events
import voluptuous as vol

from custom_components.sockbridge.client import ServerSettings, TlsSettings
from custom_components.sockbridge.const import (
    CONF_ALLOW_FROM,
    CONF_MULTICAST_GROUPS,
    CONF_MULTICAST_INTERFACE,
    CONF_PROTOCOL,
    CONF_STRIP_DELIMITER,
    CONF_TLS_CERTIFICATE,
    CONF_TLS_CLIENT_AUTH,
    CONF_TLS_CLIENT_CA,
    CONF_TLS_PASSWORD,
    CONF_TLS_PRIVATE_KEY,
    DOMAIN,
    EVENT_CONNECTION,
    EVENT_DATA_IN,
    SECTION_ADVANCED,
)
from custom_components.sockbridge.diagnostics import async_get_config_entry_diagnostics
from custom_components.sockbridge.entity import find_device

from .helpers import (
    ADVANCED_DEFAULTS,
    Daemon,
    Server,
    add_server,
    bound,
    device_id,
    free_port,
    read_eof,
    running,
    server_input,
    setup_daemon_entry,
    setup_entry,
    tcp_close,
    tcp_connect,
    wait_until,
)
from .pki import Pki, make_pki

pytestmark = pytest.mark.usefixtures("socket_enabled")

GROUP = "239.255.77.1"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


def tls_options(pki: Pki, **more: Any) -> dict[str, Any]:
    """A TLS server's data: the certificate and key files of pki."""
    return {
        CONF_TLS_CERTIFICATE: str(pki.server_certificate),
        CONF_TLS_PRIVATE_KEY: str(pki.server_key),
        **more,
    }


async def send(hass: HomeAssistant, server: Server, **data: Any) -> None:
    await hass.services.async_call(
        DOMAIN, "send", {"device_id": device_id(hass, server), **data}, blocking=True
    )


async def tls_connect(
    port: int, context: ssl.SSLContext
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    async with asyncio.timeout(bound(10)):
        return await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="localhost"
        )


async def start_tls(hass: HomeAssistant, daemon: Daemon, **data: Any) -> tuple[Server, int]:
    """A TLS server on an ephemeral port, set up; it and its port."""
    server = await setup_entry(hass, daemon.address, 0, "tls", **data)
    port = running(server).bound_port
    assert port is not None
    return server, port


async def line_over_tls(
    hass: HomeAssistant, port: int, context: ssl.SSLContext, line: str, data_in: list[Any]
) -> None:
    """A TLS client sends line; waits for its sockbridge_data_in."""
    reader, writer = await tls_connect(port, context)
    writer.write(line.encode())
    await writer.drain()
    await wait_until(
        hass, lambda: bool(data_in) and data_in[-1].data["text"] == line, f"{line!r} over TLS"
    )
    writer.close()
    del reader


async def refused_after_handshake(port: int, context: ssl.SSLContext) -> None:
    """A TLS client the server turns away: the connection ends without an answer.

    With TLS 1.3 the client's side of the handshake is done before the
    server has checked the client's certificate: the refusal is an alert or
    the end of the stream on the first read.
    """
    try:
        reader, writer = await tls_connect(port, context)
    except (ssl.SSLError, ConnectionError):
        return
    writer.write(b"let me in\r\n")
    with contextlib.suppress(ssl.SSLError, ConnectionError):
        await writer.drain()
        async with asyncio.timeout(bound(10)):
            assert await reader.read() == b""
    writer.close()


# --------------------------------------------------------------------------
# TLS


async def test_tls_server_from_the_form(hass: HomeAssistant, daemon: Daemon, pki: Pki) -> None:
    """A TLS server made in the subentry flow: a line in over TLS, the answer back."""
    entry = await setup_daemon_entry(hass, daemon.address)
    port = free_port()
    result = await add_server(
        hass,
        entry,
        server_input(
            port, protocol="tls", identifier="panel", **{SECTION_ADVANCED: tls_options(pki)}
        ),
    )
    assert result["type"] == FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    (subentry,) = entry.subentries.values()
    assert subentry.unique_id == f"tcp:{port}"
    assert subentry.data[CONF_PROTOCOL] == "tls"
    server = entry.runtime_data.servers[subentry.subentry_id]
    assert server.listening
    assert server.settings.tls == TlsSettings(
        certificate=str(pki.server_certificate), private_key=str(pki.server_key)
    )
    device = find_device(hass, (DOMAIN, subentry.subentry_id), entry.entry_id)
    assert device is not None
    assert device.model == "TLS server"

    connections = async_capture_events(hass, EVENT_CONNECTION)
    data_in = async_capture_events(hass, EVENT_DATA_IN)
    reader, writer = await tls_connect(port, pki.client_context())
    writer.write(b"PWR?\r\n")
    await writer.drain()
    await wait_until(hass, lambda: len(data_in) == 1, "the line over TLS")
    assert [e.data["status"] for e in connections] == ["ONLINE"]
    event = data_in[0].data
    assert event["text"] == "PWR?\r\n"
    assert event["server_port"] == port
    assert event["identifier"] == "panel"
    await send(
        hass, Server(entry, subentry.subentry_id), handle=event["handle"], text="PWR=ON\\r\\n"
    )
    async with asyncio.timeout(bound(10)):
        assert await reader.readexactly(8) == b"PWR=ON\r\n"
    writer.close()


async def test_tls_client_certificates_required(
    hass: HomeAssistant, daemon: Daemon, pki: Pki
) -> None:
    """require: only clients with a certificate of the given CA get through."""
    _, port = await start_tls(
        hass,
        daemon,
        **tls_options(pki, **{CONF_TLS_CLIENT_AUTH: "require", CONF_TLS_CLIENT_CA: str(pki.ca)}),
    )
    data_in = async_capture_events(hass, EVENT_DATA_IN)
    connections = async_capture_events(hass, EVENT_CONNECTION)
    await refused_after_handshake(port, pki.client_context())
    await refused_after_handshake(port, pki.client_context(foreign=True))
    await line_over_tls(
        hass, port, pki.client_context(certificate=True), "with a certificate\n", data_in
    )
    # The two refused clients never were connections, nor sent anything.
    assert {e.data["handle"] for e in connections} == {data_in[0].data["handle"]}
    assert len(data_in) == 1


async def test_tls_request_takes_clients_without_certificate(
    hass: HomeAssistant, daemon: Daemon, pki: Pki
) -> None:
    """request (the default): no certificate is fine, one of another CA is not."""
    _, port = await start_tls(hass, daemon, **tls_options(pki, **{CONF_TLS_CLIENT_CA: str(pki.ca)}))
    data_in = async_capture_events(hass, EVENT_DATA_IN)
    await refused_after_handshake(port, pki.client_context(foreign=True))
    await line_over_tls(hass, port, pki.client_context(), "without\r\n", data_in)
    await line_over_tls(hass, port, pki.client_context(certificate=True), "with\r\n", data_in)
    assert len(data_in) == 2


async def test_tls_pkcs12_password_stays_secret(
    hass: HomeAssistant, daemon: Daemon, pki: Pki
) -> None:
    """A PKCS#12 file opened with its password; diagnostics never show the password."""
    server, port = await start_tls(
        hass,
        daemon,
        **{CONF_TLS_CERTIFICATE: str(pki.server_p12), CONF_TLS_PASSWORD: pki.p12_password},
    )
    assert pki.p12_password not in repr(running(server).settings)
    data_in = async_capture_events(hass, EVENT_DATA_IN)
    await line_over_tls(hass, port, pki.client_context(), "p12\r\n", data_in)
    diagnostics = await async_get_config_entry_diagnostics(hass, server.entry)
    config = diagnostics["servers"][server.subentry_id]["config"]
    assert config[CONF_TLS_PASSWORD] == "**REDACTED**"
    assert config[CONF_TLS_CERTIFICATE] == str(pki.server_p12)
    assert pki.p12_password not in json.dumps(diagnostics)


async def test_tls_files_the_daemon_refuses(hass: HomeAssistant, daemon: Daemon, pki: Pki) -> None:
    """A missing file, or a key that is no key: the daemon's message, naming the file."""
    entry = await setup_daemon_entry(hass, daemon.address)
    missing = str(pki.directory / "missing.pem")
    for advanced, named in (
        (tls_options(pki, **{CONF_TLS_CERTIFICATE: missing}), missing),
        (tls_options(pki, **{CONF_TLS_PRIVATE_KEY: str(pki.ca)}), str(pki.ca)),
    ):
        result = await add_server(
            hass, entry, server_input(0, protocol="tls", **{SECTION_ADVANCED: advanced})
        )
        assert result["errors"] == {"base": "invalid_option"}
        assert named in result["description_placeholders"]["detail"]
    assert entry.subentries == {}


async def test_tls_and_tcp_share_the_tcp_ports(
    hass: HomeAssistant, daemon: Daemon, pki: Pki
) -> None:
    port = free_port()
    entry = await setup_daemon_entry(hass, daemon.address)
    result = await add_server(hass, entry, server_input(port))
    assert result["type"] == FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    result = await add_server(
        hass, entry, server_input(port, protocol="tls", **{SECTION_ADVANCED: tls_options(pki)})
    )
    assert result["errors"] == {"port": "port_configured"}


# --------------------------------------------------------------------------
# allow-from


async def connect_from(source: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    async with asyncio.timeout(bound(10)):
        return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def test_allow_from(hass: HomeAssistant, daemon: Daemon) -> None:
    """Only 127.0.0.2 may connect: 127.0.0.1's connection is closed without an event."""
    entry = await setup_daemon_entry(hass, daemon.address)
    result = await add_server(
        hass,
        entry,
        server_input(0, **{SECTION_ADVANCED: {CONF_ALLOW_FROM: [" 127.0.0.2 ", "", "::1"]}}),
    )
    assert result["type"] == FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    (subentry,) = entry.subentries.values()
    assert subentry.data[CONF_ALLOW_FROM] == ["127.0.0.2", "::1"]
    server = entry.runtime_data.servers[subentry.subentry_id]
    assert server.settings.allow_from == ("127.0.0.2", "::1")
    assert server.bound_port is not None
    connections = async_capture_events(hass, EVENT_CONNECTION)
    data_in = async_capture_events(hass, EVENT_DATA_IN)

    reader, writer = await connect_from("127.0.0.1", server.bound_port)
    writer.write(b"stranger\r\n")
    # Closed at once: an end of stream, or a reset when the daemon closed
    # with the line unread.
    with contextlib.suppress(ConnectionResetError):
        assert await read_eof(reader) == b""
    await tcp_close(writer)
    reader, writer = await connect_from("127.0.0.2", server.bound_port)
    writer.write(b"friend\r\n")
    await wait_until(hass, lambda: len(data_in) == 1, "the allowed client's line")
    assert data_in[0].data["address"] == "127.0.0.2"
    assert data_in[0].data["text"] == "friend\r\n"
    assert [(e.data["address"], e.data["status"]) for e in connections] == [("127.0.0.2", "ONLINE")]
    await tcp_close(writer)


# --------------------------------------------------------------------------
# strip-delimiter


async def test_strip_delimiter(hass: HomeAssistant, daemon: Daemon) -> None:
    server = await setup_entry(hass, daemon.address, 0, "tcp", **{CONF_STRIP_DELIMITER: True})
    assert running(server).settings == ServerSettings(
        port=0,
        delimiter=b"\r\n",
        identifier="",
        flush_timeout_ms=1000,
        max_message_bytes=1048576,
        max_connections=256,
        udp_peer_timeout_ms=60000,
        strip_delimiter=True,
        batch=True,
    )
    port = running(server).bound_port
    assert port is not None
    data_in = async_capture_events(hass, EVENT_DATA_IN)
    reader, writer = await tcp_connect(port)
    writer.write(b"PWR=ON\r\n\r\nVOL=3\r\n")
    await wait_until(hass, lambda: len(data_in) == 3, "three frames")
    assert [e.data["text"] for e in data_in] == ["PWR=ON", "", "VOL=3"]
    await tcp_close(writer)
    del reader


# --------------------------------------------------------------------------
# UDP: send to any address, multicast


class Receiver(asyncio.DatagramProtocol):
    """A UDP socket on 127.0.0.1 that queues what it receives, with the sender."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self.port = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.port = int(transport.get_extra_info("sockname")[1])

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.received.put_nowait((data, (str(addr[0]), addr[1])))

    async def receive(self) -> tuple[bytes, tuple[str, int]]:
        async with asyncio.timeout(bound(10)):
            return await self.received.get()


@contextlib.asynccontextmanager
async def receiver(sock: socket.socket) -> AsyncIterator[Receiver]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(Receiver, sock=sock)
    try:
        yield protocol
    finally:
        transport.close()


def udp_socket(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1" if not port else "0.0.0.0", port))
    return sock


def join_on_loopback(sock: socket.socket, group: str) -> None:
    request = struct.pack(
        "4s4si", socket.inet_aton(group), socket.inet_aton("0.0.0.0"), socket.if_nametoindex("lo")
    )
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, request)


async def test_send_datagram_to_an_address(hass: HomeAssistant, daemon: Daemon) -> None:
    """sockbridge.send with address and remote_port: one datagram, from the server's port."""
    server = await setup_entry(hass, daemon.address, 0, "udp")
    port = running(server).bound_port
    async with receiver(udp_socket()) as device:
        await send(hass, server, text="PING\\r\\n", address="127.0.0.1", remote_port=device.port)
        data, sender = await device.receive()
        assert data == b"PING\r\n"
        assert sender[1] == port
        await send(hass, server, hex="00ff", address="127.0.0.1", remote_port=device.port)
        assert (await device.receive())[0] == b"\x00\xff"
    # No handle was made: the daemon has no peer until one sends.
    assert running(server).clients == {}


async def test_send_to_errors(hass: HomeAssistant, daemon: Daemon) -> None:
    tcp = await setup_entry(hass, daemon.address, 0)
    with pytest.raises(ServiceValidationError) as raised:
        await send(hass, tcp, text="x", address="127.0.0.1", remote_port=9)
    assert raised.value.translation_key == "send_to_udp_only"
    await hass.config_entries.async_unload(tcp.entry.entry_id)

    udp = await setup_entry(hass, daemon.address, 0, "udp")
    with pytest.raises(ServiceValidationError) as raised:
        await send(hass, udp, text="x", handle=1, address="127.0.0.1", remote_port=9)
    assert raised.value.translation_key == "handle_or_address"
    with pytest.raises(ServiceValidationError) as raised:
        await send(hass, udp, text="x", address="projector.local", remote_port=9)
    assert raised.value.translation_key == "invalid_destination"
    assert "projector.local" in str(raised.value.translation_placeholders)
    with pytest.raises(ServiceValidationError) as raised:
        await send(hass, udp, text="x" * 65508, address="127.0.0.1", remote_port=9)
    assert raised.value.translation_key == "send_to_limit"
    for partial in ({"address": "127.0.0.1"}, {"remote_port": 9}):
        with pytest.raises(vol.Invalid):
            await send(hass, udp, text="x", **partial)
    with pytest.raises(vol.Invalid):
        await send(hass, udp, text="x", address="127.0.0.1", remote_port=0)


async def test_multicast_group(hass: HomeAssistant, daemon: Daemon) -> None:
    """A server that joined a group on lo hears it; send to the group reaches members."""
    port = free_port()
    entry = await setup_daemon_entry(hass, daemon.address)
    result = await add_server(
        hass,
        entry,
        server_input(
            port,
            protocol="udp",
            **{SECTION_ADVANCED: {CONF_MULTICAST_GROUPS: [GROUP], CONF_MULTICAST_INTERFACE: "lo"}},
        ),
    )
    assert result["type"] == FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    (subentry,) = entry.subentries.values()
    server = Server(entry, subentry.subentry_id)
    assert running(server).listening
    data_in = async_capture_events(hass, EVENT_DATA_IN)

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as announcer:
        announcer.setsockopt(
            socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1")
        )
        announcer.sendto(b"STATE=1\r\n", (GROUP, port))
        await wait_until(hass, lambda: len(data_in) == 1, "the datagram to the group")
    assert data_in[0].data["text"] == "STATE=1\r\n"

    member_port = free_port()
    member = udp_socket(member_port)
    join_on_loopback(member, GROUP)
    async with receiver(member) as device:
        await send(hass, server, text="ALL OFF", address=GROUP, remote_port=member_port)
        data, sender = await device.receive()
    assert data == b"ALL OFF"
    assert sender[1] == port


async def test_multicast_interface_the_daemon_refuses(hass: HomeAssistant, daemon: Daemon) -> None:
    entry = await setup_daemon_entry(hass, daemon.address)
    result = await add_server(
        hass,
        entry,
        server_input(
            0,
            protocol="udp",
            **{SECTION_ADVANCED: {CONF_MULTICAST_GROUPS: [GROUP], CONF_MULTICAST_INTERFACE: "nx0"}},
        ),
    )
    assert result["errors"] == {"base": "unknown"}
    assert "nx0" in result["description_placeholders"]["detail"]


# --------------------------------------------------------------------------
# What the form refuses before the daemon is asked


@pytest.mark.parametrize(
    ("protocol", "advanced", "error", "detail"),
    [
        ("tls", {}, "tls_certificate_required", ""),
        ("tcp", {CONF_TLS_CERTIFICATE: "/ssl/fullchain.pem"}, "tls_only", ""),
        ("udp", {CONF_TLS_PASSWORD: "secret"}, "tls_only", ""),
        (
            "tls",
            {CONF_TLS_CERTIFICATE: "fullchain.pem"},
            "tls_path_not_absolute",
            "fullchain.pem",
        ),
        (
            "tls",
            {CONF_TLS_CERTIFICATE: "/ssl/fullchain.pem", CONF_TLS_PRIVATE_KEY: "privkey.pem"},
            "tls_path_not_absolute",
            "privkey.pem",
        ),
        (
            "tcp",
            {CONF_ALLOW_FROM: ["192.168.1.0/24", "192.168.1.1/24"]},
            "invalid_allow_from",
            "192.168.1.1/24",
        ),
        ("tcp", {CONF_ALLOW_FROM: ["a host"]}, "invalid_allow_from", "a host"),
        (
            "tcp",
            {CONF_ALLOW_FROM: [f"10.0.{i // 256}.{i % 256}" for i in range(257)]},
            "too_many_allow_from",
            "256",
        ),
        ("tcp", {CONF_MULTICAST_GROUPS: [GROUP]}, "multicast_udp_only", ""),
        ("tls", {CONF_MULTICAST_INTERFACE: "lo"}, "multicast_udp_only", ""),
        ("udp", {CONF_MULTICAST_GROUPS: ["10.0.0.1"]}, "invalid_multicast_group", "10.0.0.1"),
        ("udp", {CONF_MULTICAST_GROUPS: ["everyone"]}, "invalid_multicast_group", "everyone"),
        (
            "udp",
            {CONF_MULTICAST_GROUPS: [f"239.0.0.{i}" for i in range(21)]},
            "too_many_multicast_groups",
            "20",
        ),
    ],
)
async def test_advanced_form_errors(
    hass: HomeAssistant,
    daemon: Daemon,
    protocol: str,
    advanced: dict[str, Any],
    error: str,
    detail: str,
) -> None:
    """Each wrong advanced option: its error on the section, the wrong entry named."""
    entry = await setup_daemon_entry(hass, daemon.address)
    result = await add_server(
        hass, entry, server_input(0, protocol=protocol, **{SECTION_ADVANCED: advanced})
    )
    assert result["type"] == FlowResultType.FORM
    assert result["errors"] == {SECTION_ADVANCED: error}
    assert result["description_placeholders"]["detail"] == detail
    assert entry.subentries == {}


def test_advanced_defaults_are_the_daemons() -> None:
    """The form's defaults leave every new option at the daemon's default."""
    settings = ServerSettings(port=0)
    assert settings.options().keys() == {"delimiter-bytes", "exit-with-caller"}
    assert not ADVANCED_DEFAULTS[CONF_STRIP_DELIMITER]
