# SPDX-License-Identifier: LGPL-2.1-or-later
"""GetServerOptions: every option a server runs with, defaults included."""

import os
import shutil
from typing import Any

from dbus_fast import Variant
from dbus_fast.errors import DBusError
import pytest

from sbharness import (
    BUS_NAME,
    ERR_INVALID_ARGUMENT,
    ERR_NOT_FOUND,
    ERR_PERMISSION_DENIED,
    INTERFACE,
    OBJECT_PATH,
    Client,
    free_port,
    run_as,
    server_status,
)

# (signature, value) of every option of a server created without options.
DEFAULTS: dict[str, tuple[str, Any]] = {
    "allow-from": ("as", []),
    "batch": ("b", False),
    "delimiter-bytes": ("ay", b""),
    "exit-with-caller": ("b", False),
    "flush-timeout-ms": ("u", 1000),
    "max-connections": ("u", 256),
    "max-message-bytes": ("u", 1048576),
    "strip-delimiter": ("b", False),
    "udp-peer-timeout-ms": ("u", 60000),
}

# UDP servers have these too (TCP servers refuse them).
UDP_DEFAULTS: dict[str, tuple[str, Any]] = {
    "multicast-groups": ("as", []),
}


def defaults(use_udp: bool) -> dict[str, tuple[str, Any]]:
    return {**DEFAULTS, **UDP_DEFAULTS} if use_udp else DEFAULTS


# A value other than the default for every option that has one, but the
# UDP-only ones (test_multicast.py).
EVERY_OPTION: dict[str, Any] = {
    "allow-from": ["127.0.0.0/8", "::1"],
    "batch": True,
    "bind-address": "127.0.0.1",
    "delimiter-bytes": b"\x00\xfe",
    "exit-with-caller": True,
    "flush-timeout-ms": 250,
    "max-connections": 7,
    "max-message-bytes": 4096,
    "strip-delimiter": True,
    "udp-peer-timeout-ms": 1234,
}


async def get_options(sb: Client, port: int, use_udp: bool) -> dict[str, tuple[str, Any]]:
    """GetServerOptions as {key: (signature, value)}."""
    body = await sb.call("GetServerOptions", "qb", [port, use_udp])
    options = body[0]
    assert isinstance(options, dict)
    result: dict[str, tuple[str, Any]] = {}
    for key, variant in options.items():
        assert isinstance(variant, Variant)
        value = bytes(variant.value) if variant.signature == "ay" else variant.value
        result[str(key)] = (variant.signature, value)
    return result


def as_variants(options: dict[str, tuple[str, Any]]) -> dict[str, Variant]:
    return {k: Variant(sig, value) for k, (sig, value) in options.items()}


@pytest.mark.parametrize("use_udp", [False, True], ids=["tcp", "udp"])
async def test_defaults(sb: Client, use_udp: bool) -> None:
    port = await sb.start_server("", use_udp, "defaults")
    assert await get_options(sb, port, use_udp) == defaults(use_udp)

    # The delimiter argument shows as delimiter-bytes.
    other = await sb.start_server("\r\n", use_udp, "crlf")
    assert await get_options(sb, other, use_udp) == {
        **defaults(use_udp),
        "delimiter-bytes": ("ay", b"\r\n"),
    }


@pytest.mark.parametrize("use_udp", [False, True], ids=["tcp", "udp"])
async def test_every_option(sb: Client, use_udp: bool) -> None:
    port = await sb.start_server("ignored", use_udp, "every", EVERY_OPTION)
    got = await get_options(sb, port, use_udp)
    assert set(got) == set(defaults(use_udp)) | {"bind-address"}
    for key, value in EVERY_OPTION.items():
        assert got[key] == (DEFAULTS.get(key, ("s", ""))[0], value), key


@pytest.mark.parametrize(
    ("use_udp", "options"),
    [(False, None), (True, None), (False, EVERY_OPTION), (True, EVERY_OPTION)],
    ids=["tcp-defaults", "udp-defaults", "tcp-every-option", "udp-every-option"],
)
async def test_answer_creates_the_same_server(
    sb: Client, use_udp: bool, options: dict[str, Any] | None
) -> None:
    """Given back to CreateServerWithOptions, the answer is an idempotent create."""
    wanted = free_port(use_udp)
    start = sb.rec.mark()
    port = await sb.create_server(wanted, "\n", use_udp, "again", options)
    await sb.wait_online(port, start=start)
    got = await get_options(sb, port, use_udp)
    body = await sb.call(
        "CreateServerWithOptions",
        "qsbsa{sv}",
        [port, "", use_udp, "again", as_variants(got)],
    )
    assert body == [port]
    await sb.barrier()
    assert len(sb.rec.find(server_status(port, "ONLINE"), start)) == 1
    assert await get_options(sb, port, use_udp) == got


async def test_tcp_and_udp_of_one_port_are_told_apart(sb: Client) -> None:
    port = free_port()
    start = sb.rec.mark()
    await sb.create_server(port, "\n", False, "tcp", {"max-connections": 3})
    await sb.create_server(port, "", True, "udp", {"max-connections": 4})
    await sb.wait_online(port, "tcp", start=start)
    await sb.wait_online(port, "udp", start=start)
    assert (await get_options(sb, port, False))["max-connections"] == ("u", 3)
    assert (await get_options(sb, port, True))["max-connections"] == ("u", 4)


async def test_errors(sb: Client) -> None:
    tcp = await sb.start_server("", False, "only-tcp")
    unserved = free_port()
    cases = [
        (0, False, ERR_INVALID_ARGUMENT, "port must be from 1 to 65535, not 0"),
        (0, True, ERR_INVALID_ARGUMENT, "port must be from 1 to 65535, not 0"),
        (unserved, False, ERR_NOT_FOUND, f"no TCP server on port {unserved}"),
        (tcp, True, ERR_NOT_FOUND, f"no UDP server on port {tcp}"),
    ]
    for port, use_udp, error, message in cases:
        with pytest.raises(DBusError) as exc:
            await sb.call("GetServerOptions", "qb", [port, use_udp])
        assert (exc.value.type, exc.value.text) == (error, message)
    with pytest.raises(DBusError) as exc:
        await sb.call("GetServerOptions", "q", [tcp])
    assert exc.value.type == "org.freedesktop.DBus.Error.InvalidArgs"


NOBODY = 65534


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: calls as nobody (uid 65534)")
@pytest.mark.skipif(shutil.which("gdbus") is None, reason="needs gdbus to call as nobody")
async def test_another_users_server_is_permission_denied(sb: Client, bus_address: str) -> None:
    port = await sb.start_server("", True, "root-owned")
    result = await run_as(
        NOBODY,
        NOBODY,
        [
            "gdbus",
            "call",
            "--address",
            bus_address,
            "--dest",
            BUS_NAME,
            "--object-path",
            OBJECT_PATH,
            "--method",
            f"{INTERFACE}.GetServerOptions",
            "--",
            str(port),
            "true",
        ],
    )
    assert result.returncode != 0, result.stdout
    assert result.error_name == ERR_PERMISSION_DENIED, result.stderr
    assert f"port {port}/udp is served for another user" in result.stderr
