# SPDX-License-Identifier: LGPL-2.1-or-later
"""The options added after the state file's first format survive restarts."""

import asyncio
import json
from pathlib import Path
import signal
from typing import Any

from dbus_fast import Variant
from dbus_fast.errors import DBusError
import pytest

from sbharness import (
    ERR_ADDRESS_IN_USE,
    Client,
    DaemonFactory,
    free_port,
    server_status,
)

# Members of the state file that an older daemon does not know: written
# only when not at their default.
NEWER_MEMBERS = {"strip-delimiter", "allow-from"}
UDP_NEWER_MEMBERS = {"multicast-groups", "multicast-interface"}

# Every option with a value other than its default, per protocol
# (exit-with-caller servers are not kept, so it is not here).
EVERY_OPTION: dict[bool, dict[str, Any]] = {
    False: {
        "allow-from": ["127.0.0.1", "::1"],
        "batch": True,
        "bind-address": "127.0.0.1",
        "delimiter-bytes": b"\x00\xfe",
        "flush-timeout-ms": 250,
        "max-connections": 7,
        "max-message-bytes": 4096,
        "strip-delimiter": True,
        "udp-peer-timeout-ms": 1234,
    },
    True: {
        "allow-from": ["10.0.0.0/8", "fe80::/10"],
        # Joined on the loopback: nothing leaves the machine.
        "multicast-groups": ["239.1.2.3", "ff15::5b"],
        "multicast-interface": "lo",
        "batch": True,
        "delimiter-bytes": b"\n",
        "flush-timeout-ms": 42,
        "max-connections": 9,
        "max-message-bytes": 512,
        "strip-delimiter": True,
        "udp-peer-timeout-ms": 4321,
    },
}


async def get_options(sb: Client, port: int, use_udp: bool) -> dict[str, Any]:
    body = await sb.call("GetServerOptions", "qb", [port, use_udp])
    assert isinstance(body[0], dict)
    return {str(k): (v.signature, v.value) for k, v in body[0].items()}


def variants(options: dict[str, tuple[str, Any]]) -> dict[str, Variant]:
    return {k: Variant(sig, value) for k, (sig, value) in options.items()}


async def read_state(path: Path) -> dict[str, Any]:
    data = json.loads(await asyncio.to_thread(path.read_text))
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
async def test_restart_keeps_every_option(
    daemons: DaemonFactory, client: Client, tmp_path: Path, sig: signal.Signals
) -> None:
    sb = client
    state = tmp_path / "state.json"
    d1 = await daemons.start(f"--state-file={state}")
    start = sb.rec.mark()
    specs = [
        ("every-tcp", "", False, EVERY_OPTION[False]),
        ("every-udp", "", True, EVERY_OPTION[True]),
        ("defaults-tcp", "\r\n", False, None),
        ("defaults-udp", "\n", True, None),
    ]
    servers: dict[tuple[int, bool], str] = {}
    for identifier, delimiter, udp, options in specs:
        port = await sb.create_server(0, delimiter, udp, identifier, options)
        servers[(port, udp)] = identifier
    for port, _ in servers:
        await sb.wait_online(port, start=start)
    before = {(port, udp): await get_options(sb, port, udp) for port, udp in servers}

    written = await read_state(state)
    by_identifier = {s["identifier"]: s for s in written["servers"]}
    assert set(by_identifier["every-tcp"]) >= NEWER_MEMBERS, by_identifier["every-tcp"]
    every_udp = by_identifier["every-udp"]
    assert set(every_udp) >= NEWER_MEMBERS | UDP_NEWER_MEMBERS, every_udp
    assert every_udp["multicast-groups"] == ["239.1.2.3", "ff15::5b"]
    assert every_udp["multicast-interface"] == "lo"
    for name in ("defaults-tcp", "defaults-udp"):
        members = set(by_identifier[name])
        assert not members & (NEWER_MEMBERS | UDP_NEWER_MEMBERS), by_identifier[name]

    await d1.stop(sig)
    mark = sb.rec.mark()
    await daemons.start(f"--state-file={state}")
    for port, _ in servers:
        await sb.wait_online(port, start=mark)
    after = {(port, udp): await get_options(sb, port, udp) for port, udp in servers}
    assert after == before

    # Idempotent create compares every option: the same ones are no-ops,
    # any other value clashes.
    for (port, udp), options in after.items():
        body = await sb.call(
            "CreateServerWithOptions",
            "qsbsa{sv}",
            [port, "", udp, servers[(port, udp)], variants(options)],
        )
        assert body == [port]
    await sb.barrier()
    for port, _ in servers:
        assert len(sb.rec.find(server_status(port, "ONLINE"), mark)) == 1


async def test_older_state_file_loads(
    daemons: DaemonFactory, client: Client, tmp_path: Path
) -> None:
    """A file of the first format, without the newer members, still loads."""
    sb = client
    state = tmp_path / "state.json"
    tcp, udp = free_port(), free_port(use_udp=True)
    common = {
        "flush-timeout-ms": 1000,
        "max-message-bytes": 1048576,
        "max-connections": 256,
        "udp-peer-timeout-ms": 60000,
        "owner-uid": 0,
    }
    old = {
        "version": 1,
        "servers": [
            {"port": tcp, "udp": False, "identifier": "old-tcp", "delimiter": "DQo=", **common},
            {"port": udp, "udp": True, "identifier": "old-udp", "delimiter": "", **common},
        ],
    }
    await asyncio.to_thread(state.write_text, json.dumps(old))
    mark = sb.rec.mark()
    await daemons.start(f"--state-file={state}")
    await sb.wait_online(tcp, "old-tcp", start=mark)
    await sb.wait_online(udp, "old-udp", start=mark)
    tcp_options = await get_options(sb, tcp, False)
    assert tcp_options["strip-delimiter"] == ("b", False)
    assert bytes(tcp_options["delimiter-bytes"][1]) == b"\r\n"
    assert tcp_options["allow-from"] == ("as", [])
    udp_options = await get_options(sb, udp, True)
    assert udp_options["strip-delimiter"] == ("b", False)
    assert udp_options["multicast-groups"] == ("as", [])
    assert "multicast-interface" not in udp_options


@pytest.mark.parametrize(
    ("use_udp", "option", "value", "other"),
    [
        (False, "strip-delimiter", True, False),
        (True, "strip-delimiter", True, False),
        (False, "allow-from", ["127.0.0.1"], ["127.0.0.1", "::1"]),
        (True, "allow-from", ["10.0.0.0/8"], []),
        (True, "multicast-groups", ["239.1.2.3"], ["239.1.2.4"]),
        (True, "multicast-interface", "lo", None),
    ],
)
async def test_idempotent_create_compares_newer_options(
    sb: Client, use_udp: bool, option: str, value: Any, other: Any
) -> None:
    port = free_port(use_udp)
    start = sb.rec.mark()
    await sb.create_server(port, "\n", use_udp, "idem", {option: value})
    await sb.wait_online(port, start=start)
    assert await sb.create_server(port, "\n", use_udp, "idem", {option: value}) == port
    with pytest.raises(DBusError) as exc:
        await sb.create_server(port, "\n", use_udp, "idem", {option: other} if other else None)
    assert exc.value.type == ERR_ADDRESS_IN_USE
    assert "other settings" in exc.value.text
