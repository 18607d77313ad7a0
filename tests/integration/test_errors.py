# SPDX-License-Identifier: LGPL-2.1-or-later
"""Errors: names, messages, and that a failed call changes nothing."""

from typing import Any

from dbus_fast import Variant
from dbus_fast.errors import DBusError
import pytest

from sbharness import (
    ERR_ADDRESS_IN_USE,
    ERR_DBUS_INVALID_ARGS,
    ERR_INVALID_ARGUMENT,
    ERR_NOT_FOUND,
    HAVE_IPV6,
    Client,
    ServerInfo,
    free_port,
    held_socket,
    server_status,
)


async def baseline(sb: Client) -> list[ServerInfo]:
    """One server to compare ListServers against after each error."""
    start = sb.rec.mark()
    port = await sb.create_server(0, "\n", False, "baseline")
    await sb.wait_online(port, start=start)
    servers = await sb.list_servers()
    assert [s.port for s in servers] == [port]
    return servers


@pytest.mark.parametrize("use_udp", [False, True], ids=["tcp", "udp"])
async def test_port_held_by_another_process(sb: Client, use_udp: bool) -> None:
    before = await baseline(sb)
    with held_socket(0, use_udp=use_udp) as s:
        port = s.getsockname()[1]
        with pytest.raises(DBusError) as exc:
            await sb.create_server(port, "", use_udp, "clash")
        assert exc.value.type == ERR_ADDRESS_IN_USE
        assert str(port) in exc.value.text, exc.value.text
    assert await sb.list_servers() == before
    assert not sb.rec.find(server_status(port, "ONLINE"))


async def test_same_port_other_settings_is_address_in_use(sb: Client) -> None:
    start = sb.rec.mark()
    port = await sb.create_server(0, "\n", False, "first")
    await sb.wait_online(port, start=start)
    before = await sb.list_servers()

    clashes: list[tuple[str, str, dict[str, Any] | None]] = [
        ("\r\n", "first", None),  # other delimiter
        ("\n", "second", None),  # other identifier
        ("\n", "first", {"flush-timeout-ms": 50}),
        ("\n", "first", {"max-connections": 3}),
        ("\n", "first", {"bind-address": "127.0.0.1"}),
        ("\n", "first", {"exit-with-caller": True}),
    ]
    for delimiter, ident, options in clashes:
        with pytest.raises(DBusError) as exc:
            await sb.create_server(port, delimiter, False, ident, options)
        assert exc.value.type == ERR_ADDRESS_IN_USE, (delimiter, ident, options)
        assert str(port) in exc.value.text, exc.value.text
        assert await sb.list_servers() == before
    assert len(sb.rec.find(server_status(port, "ONLINE"))) == 1


INVALID_OPTIONS: list[tuple[str, dict[str, Any], str]] = [
    ("unknown-key", {"no-such-option": Variant("u", 1)}, "no-such-option"),
    ("flush-timeout-as-string", {"flush-timeout-ms": Variant("s", "300")}, "flush-timeout-ms"),
    ("flush-timeout-as-int32", {"flush-timeout-ms": Variant("i", 300)}, "flush-timeout-ms"),
    ("bind-address-not-an-ip", {"bind-address": "not-an-ip"}, "bind-address"),
    ("bind-address-hostname", {"bind-address": "localhost"}, "bind-address"),
    ("bind-address-as-bytes", {"bind-address": b"127.0.0.1"}, "bind-address"),
    ("delimiter-bytes-65", {"delimiter-bytes": b"\x00" * 65}, "delimiter"),
    ("delimiter-bytes-as-string", {"delimiter-bytes": "\n"}, "delimiter-bytes"),
    ("max-message-bytes-0", {"max-message-bytes": 0}, "max-message-bytes"),
    ("max-message-bytes-too-big", {"max-message-bytes": 16777217}, "max-message-bytes"),
    ("max-connections-0", {"max-connections": 0}, "max-connections"),
    ("exit-with-caller-as-uint", {"exit-with-caller": Variant("u", 1)}, "exit-with-caller"),
    ("udp-peer-timeout-as-string", {"udp-peer-timeout-ms": "1"}, "udp-peer-timeout-ms"),
]


@pytest.mark.parametrize(
    ("options", "named"),
    [(o, n) for _, o, n in INVALID_OPTIONS],
    ids=[i for i, _, _ in INVALID_OPTIONS],
)
async def test_invalid_option(sb: Client, options: dict[str, Any], named: str) -> None:
    before = await baseline(sb)
    for use_udp in (False, True):
        mark = sb.rec.mark()
        with pytest.raises(DBusError) as exc:
            await sb.create_server(0, "", use_udp, "bad", options)
        assert exc.value.type == ERR_INVALID_ARGUMENT
        assert named in exc.value.text, f"message does not name {named!r}: {exc.value.text!r}"
        assert await sb.list_servers() == before
        assert not sb.rec.sb("ServerStatusChanged", mark)


@pytest.mark.parametrize(
    ("delimiter", "identifier", "named"),
    [("x" * 65, "id", "delimiter"), ("\n", "i" * 256, "identifier")],
    ids=["delimiter-65-bytes", "identifier-256-bytes"],
)
async def test_invalid_argument(sb: Client, delimiter: str, identifier: str, named: str) -> None:
    before = await baseline(sb)
    no_options: dict[str, Any] = {}
    for options in (None, no_options):
        with pytest.raises(DBusError) as exc:
            await sb.create_server(0, delimiter, False, identifier, options)
        assert exc.value.type == ERR_INVALID_ARGUMENT
        assert named in exc.value.text, f"message does not name {named!r}: {exc.value.text!r}"
        assert await sb.list_servers() == before


async def test_limits_of_arguments_are_accepted(sb: Client) -> None:
    """64-byte delimiter, 255-byte identifier, option bounds: all fine."""
    start = sb.rec.mark()
    ident = "i" * 255
    delim = "d" * 64
    p1 = await sb.create_server(0, delim, False, ident)
    await sb.wait_online(p1, ident, start=start)
    p2 = await sb.create_server(
        0,
        "",
        False,
        "bounds",
        {
            "delimiter-bytes": b"\xff" * 64,
            "max-message-bytes": 16777216,
            "max-connections": 1,
            "flush-timeout-ms": 0,
            "udp-peer-timeout-ms": 0,
            "exit-with-caller": False,
            "bind-address": "::" if HAVE_IPV6 else "0.0.0.0",
        },
    )
    p3 = await sb.create_server(0, "", True, "udp-bounds", {"max-message-bytes": 1})
    servers = {s.port: s for s in await sb.list_servers()}
    assert servers[p1] == ServerInfo(p1, False, ident, delim.encode(), 0)
    assert servers[p2] == ServerInfo(p2, False, "bounds", b"\xff" * 64, 0)
    assert servers[p3] == ServerInfo(p3, True, "udp-bounds", b"", 0)


async def test_identifier_limit_counts_bytes(sb: Client) -> None:
    # 128 two-byte characters: 256 bytes, but only 128 characters.
    before = await baseline(sb)
    with pytest.raises(DBusError) as exc:
        await sb.create_server(0, "", False, "é" * 128)
    assert exc.value.type == ERR_INVALID_ARGUMENT
    assert await sb.list_servers() == before


async def test_unknown_handle_and_port(sb: Client) -> None:
    before = await baseline(sb)
    unserved = free_port()
    calls: list[tuple[str, str, list[Any]]] = [
        ("ServerSend", "uay", [0xFFFFFFF0, b"x"]),
        ("ServerCloseClient", "u", [0xFFFFFFF0]),
        ("DestroyServer", "q", [unserved]),
    ]
    for method, sig, args in calls:
        with pytest.raises(DBusError) as exc:
            await sb.call(method, sig, args)
        assert exc.value.type == ERR_NOT_FOUND, method
        assert await sb.list_servers() == before


async def test_port_in_use_port_zero_is_invalid(sb: Client) -> None:
    with pytest.raises(DBusError) as exc:
        await sb.port_in_use(0, False)
    assert exc.value.type == ERR_INVALID_ARGUMENT
    assert "port" in exc.value.text


BAD_SIGNATURES: list[tuple[str, str, list[Any]]] = [
    ("CreateServer", "ssbs", ["1", "", False, "x"]),
    ("CreateServer", "qsb", [0, "", False]),
    ("CreateServer", "qsbsa{sv}", [0, "", False, "x", {}]),
    ("CreateServerWithOptions", "qsbsa{ss}", [0, "", False, "x", {"bind-address": "::1"}]),
    ("DestroyServer", "u", [1]),
    ("ServerSend", "us", [1, "text"]),
    ("ServerCloseClient", "q", [1]),
    ("PortInUse", "q", [1]),
    ("ListServers", "u", [1]),
]


@pytest.mark.parametrize(
    ("method", "signature", "args"),
    BAD_SIGNATURES,
    ids=[f"{m}-{s}" for m, s, _ in BAD_SIGNATURES],
)
async def test_wrong_dbus_argument_types(
    sb: Client, method: str, signature: str, args: list[Any]
) -> None:
    before = await baseline(sb)
    with pytest.raises(DBusError) as exc:
        await sb.call(method, signature, args)
    assert exc.value.type == ERR_DBUS_INVALID_ARGS
    assert await sb.list_servers() == before


async def test_daemon_survives_errors(sb: Client) -> None:
    """After a burst of failing calls the daemon still serves."""
    before = await baseline(sb)
    for _ in range(50):
        with pytest.raises(DBusError):
            await sb.create_server(0, "", False, "x", {"nope": 1})
        with pytest.raises(DBusError):
            await sb.send(12345678, b"x")
    assert await sb.list_servers() == before
    start = sb.rec.mark()
    port = await sb.create_server(0, "", True, "after-errors")
    await sb.wait_online(port, start=start)
