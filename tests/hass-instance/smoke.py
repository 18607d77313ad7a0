# SPDX-License-Identifier: LGPL-2.1-or-later
"""Smoke test: the integration in a real Home Assistant instance, end to end.

    python smoke.py SOCKBRIDGED
    python smoke.py --bus system
    python smoke.py --discovery JSON

Starts a private bus, sockbridged on it, and `python -m homeassistant` on a
fresh configuration directory with the integration in custom_components/;
onboards, then goes through the integration as the frontend would: the
config flow (bus "address", the private bus's) and the server subentry flow
over the REST API, an event on the websocket API for a line a TCP client
sends, the action sockbridge.send back to that client, and the removal of
the entry. Prints TAP, one line per step. tests/hass-instance/run runs it
inside the forky root with the venv of the newest Home Assistant release
(tests/hass/requirements-hass.txt).

With `--bus system` it starts neither a bus nor sockbridged: the daemon
must already be on the system bus (/run/dbus/system_bus_socket), and the
config flow chooses bus "system". tests/hass-container runs it so, as root
in a root that has the system bus of another (the host's /run/dbus, as in
Home Assistant Container).

With `--discovery JSON` it starts neither: JSON is the discovery message
the sockbridge add-on POSTed to the Supervisor ({"service": "sockbridge",
"config": {"address": ...}}), and the add-on's sockbridged must be on that
address. Home Assistant gets the message the way the Supervisor
integration hands it on, through the test-only integration
sockbridge_supervisor_standin beside this file (copied into the
configuration directory); the discovered flow is confirmed in its step
hassio_confirm instead of going through the user step.
tests/addon-discovery runs it so, with the add-on's /share mounted at
/share.

Every wait has a bound (times $SB_TEST_TIMEOUT_FACTOR, or 10 under
$SB_TEST_WRAPPER, which runs sockbridged under e.g. valgrind); nothing
sleeps for a fixed time. Everything started is stopped by its process, also
after a failure, which prints hass's and sockbridged's logs to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable, Sequence
import contextlib
import json
import os
from pathlib import Path
import re
import shlex
import shutil
import signal
import socket
import sys
import tempfile
import traceback
from typing import Any

import aiohttp
from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio.message_bus import MessageBus

REPO = Path(__file__).resolve().parents[2]
BUS_CONF = REPO / "tests" / "hass" / "bus.conf"
INTEGRATION = REPO / "custom_components" / "sockbridge"
STANDIN = Path(__file__).resolve().parent / "sockbridge_supervisor_standin"
# What the Supervisor would say of the add-on: its name and slug (a local
# add-on's slug has the prefix "local_").
ADDON_NAME, ADDON_SLUG = "sockbridge", "local_sockbridge"
BUS_NAME = "io.github.Sockbridge1"

WRAPPER = shlex.split(os.environ.get("SB_TEST_WRAPPER", ""))
FACTOR = float(os.environ.get("SB_TEST_TIMEOUT_FACTOR") or (10 if WRAPPER else 1))
START, EVENT, HASS_START, HASS_STOP = (s * FACTOR for s in (20.0, 15.0, 150.0, 90.0))

# Warnings and errors of hass's log that name the integration fail the test,
# but for the one every custom integration gets.
LOG_LEVEL = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) ")
# "sockbridge", but not as in the venv's path /opt/sockbridge/ (which
# Home Assistant's own warnings may quote).
NAMES_SOCKBRIDGE = re.compile(r"(?<!/opt/)sockbridge")
UNTESTED = re.compile(
    r"custom integration (sockbridge|sockbridge_supervisor_standin) which has not been tested "
    r"by Home Assistant"
)

CONFIGURATION = """\
# The smoke test's instance: loopback only, no recorder, no default_config.
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
config:
onboarding:
websocket_api:
{extra}logger:
  default: info
  logs:
    custom_components.sockbridge: debug
"""
ADVANCED = {
    "bind_address": "",
    "flush_timeout_ms": 1000,
    "max_message_bytes": 1048576,
    "max_connections": 256,
    "udp_peer_timeout_ms": 60000,
}

Process = asyncio.subprocess.Process
Queue = asyncio.Queue[dict[str, Any]]


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def spawn(args: Sequence[str], log: Path, pipe: bool = False, **kwargs: Any) -> Process:
    """A process whose output goes to log (but stdout to a pipe if asked)."""
    with log.open("wb") as out:
        return await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if pipe else out,
            stderr=out,
            **kwargs,
        )


async def stop(proc: Process | None, within: float) -> int | None:
    """SIGTERM, SIGKILL after `within` seconds; the exit status (None: killed)."""
    if proc is None or proc.returncode is not None:
        return None if proc is None else proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(within):
            return await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None


def tail(path: Path, lines: int) -> str:
    if not path.exists():
        return f"(no {path.name})"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class Websocket:
    """Home Assistant's websocket API: commands, and events by subscription."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._last_id = 0
        self._results: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: dict[int, Queue] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self._ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                data = json.loads(msg.data)
                for item in data if isinstance(data, list) else [data]:
                    if item["type"] == "event" and item["id"] in self._events:
                        self._events[item["id"]].put_nowait(item["event"]["data"])
                    elif item["type"] == "result" and (fut := self._results.pop(item["id"], None)):
                        fut.set_result(item)
        for fut in self._results.values():
            fut.set_exception(ConnectionError("the websocket closed"))

    async def call(self, command: str, queue: Queue | None = None, **fields: Any) -> Any:
        """A command's result; AssertionError on an error. Its events go to queue."""
        self._last_id += 1
        msg_id = self._last_id
        result = self._results[msg_id] = asyncio.get_running_loop().create_future()
        if queue is not None:
            self._events[msg_id] = queue
        await self._ws.send_json({"id": msg_id, "type": command, **fields})
        async with asyncio.timeout(EVENT):
            reply = await result
        assert reply["success"], f"{command}: {reply['error']}"
        return reply["result"]

    async def subscribe(self, event_type: str) -> Queue:
        """A queue of the data of the events of this type from now on."""
        queue: Queue = asyncio.Queue()
        await self.call("subscribe_events", queue, event_type=event_type)
        return queue

    async def close(self) -> None:
        await self._ws.close()
        await self._reader


async def next_event(queue: Queue, what: str, match: Callable[[Any], bool] | None = None) -> Any:
    """The data of the next event in queue for which match() holds."""
    try:
        async with asyncio.timeout(EVENT):
            data = await queue.get()
            while match is not None and not match(data):
                data = await queue.get()
    except TimeoutError:
        raise AssertionError(f"no {what} within {EVENT:.0f} s") from None
    return data


class Smoke:
    """The processes, what the steps learn, and the steps."""

    def __init__(
        self, daemon: Path | None, tmp: Path, discovery: dict[str, Any] | None = None
    ) -> None:
        # None: the daemon runs already, on the system bus or, with a
        # discovery message, on the address it announces.
        self.daemon_binary = daemon
        # The smoke test logs every frame; the benchmark does not.
        self.daemon_options: list[str] = ["--no-state", "--verbose"]
        self.discovery = discovery
        self.tmp = tmp
        self.config = tmp / "config"
        self.http_port = free_port()
        self.server_port = free_port()
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.bus: Process | None = None
        self.daemon: Process | None = None
        self.hass: Process | None = None
        self.address = ""
        self.dbus: MessageBus | None = None
        self.http: aiohttp.ClientSession | None = None
        self.ws: Websocket | None = None
        self.headers: dict[str, str] = {}
        self.entry_id = ""
        self.subentry_id = ""
        self.flow_id = ""
        self.handle = 0
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def dbus_call(self, path: str, interface: str, member: str, *args: str) -> Any:
        """A method call on the test's bus (string arguments only); its reply's body."""
        assert self.dbus is not None
        destination = "org.freedesktop.DBus" if interface == "org.freedesktop.DBus" else BUS_NAME
        reply = await self.dbus.call(
            Message(
                destination=destination,
                path=path,
                interface=interface,
                member=member,
                signature="s" * len(args),
                body=list(args),
            )
        )
        assert reply is not None
        assert reply.message_type is MessageType.METHOD_RETURN, (member, reply.body)
        return reply.body

    async def api(self, method: str, path: str, body: Any = None) -> Any:
        """A REST call to hass as the onboarded user; its JSON reply, which must be 200 OK."""
        assert self.http is not None
        async with self.http.request(method, path, json=body, headers=self.headers) as response:
            text = await response.text()
            assert response.status == 200, f"{method} {path}: {response.status} {text}"
            return json.loads(text)

    # -- the steps

    async def system_bus(self) -> None:
        """The system bus answers, and sockbridged is on it."""
        # As in Home Assistant Container: the bus policy admits root.
        assert os.geteuid() == 0, "not root: Home Assistant Container runs hass as root"
        self.dbus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        path, interface = "/org/freedesktop/DBus", "org.freedesktop.DBus"
        (owned,) = await self.dbus_call(path, interface, "NameHasOwner", BUS_NAME)
        assert owned, f"{BUS_NAME} has no owner on the system bus"

    async def announced_bus(self) -> None:
        """The discovery message is the add-on's, and sockbridged is on its address."""
        assert self.discovery is not None
        assert self.discovery.get("service") == "sockbridge", self.discovery
        config = self.discovery.get("config")
        assert isinstance(config, dict), self.discovery
        self.address = str(config.get("address", ""))
        assert self.address.startswith("unix:path=/share/"), self.discovery
        # The add-on's bus admits root only, as Home Assistant Core is.
        assert os.geteuid() == 0, "not root: Home Assistant Core runs as root"
        async with asyncio.timeout(START):
            self.dbus = await MessageBus(bus_address=self.address).connect()
        path, interface = "/org/freedesktop/DBus", "org.freedesktop.DBus"
        (owned,) = await self.dbus_call(path, interface, "NameHasOwner", BUS_NAME)
        assert owned, f"{BUS_NAME} has no owner on {self.address}"

    async def start_daemon(self) -> None:
        assert self.daemon_binary is not None
        args = ["dbus-daemon", f"--config-file={BUS_CONF}", "--nofork", "--print-address=1"]
        self.bus = await spawn(args, self.tmp / "dbus-daemon.log", pipe=True)
        assert self.bus.stdout is not None
        async with asyncio.timeout(START):
            self.address = (await self.bus.stdout.readline()).decode().strip()
        assert self.address, "dbus-daemon printed no address"
        self.dbus = await MessageBus(bus_address=self.address).connect()
        owned = asyncio.Event()

        def on_signal(msg: Message) -> None:
            if msg.member == "NameOwnerChanged" and msg.body[0] == BUS_NAME and msg.body[2]:
                owned.set()

        self.dbus.add_message_handler(on_signal)
        rule = f"type='signal',member='NameOwnerChanged',arg0='{BUS_NAME}'"
        await self.dbus_call("/org/freedesktop/DBus", "org.freedesktop.DBus", "AddMatch", rule)
        args = [str(self.daemon_binary), f"--address={self.address}", *self.daemon_options]
        self.daemon = await spawn([*WRAPPER, *args], self.tmp / "sockbridged.log")
        waits = {asyncio.create_task(self.daemon.wait()), asyncio.create_task(owned.wait())}
        await asyncio.wait(waits, timeout=START, return_when=asyncio.FIRST_COMPLETED)
        for task in waits:
            task.cancel()
        assert owned.is_set(), "sockbridged did not take its name on the bus"

    def custom_integrations(self) -> list[Path]:
        """The custom integrations copied into the configuration directory."""
        return [INTEGRATION, STANDIN] if self.discovery is not None else [INTEGRATION]

    def configuration(self) -> str:
        """configuration.yaml of the instance."""
        # With the stand-in, diagnostics too: what the entry holds.
        extra = f"{STANDIN.name}:\ndiagnostics:\n" if self.discovery is not None else ""
        return CONFIGURATION.format(port=self.http_port, extra=extra)

    async def start_hass(self) -> None:
        for integration in self.custom_integrations():
            shutil.copytree(
                integration,
                self.config / "custom_components" / integration.name,
                ignore=shutil.ignore_patterns("__pycache__"),
            )
        (self.config / "configuration.yaml").write_text(self.configuration())
        # The venv has every requirement: hass must install nothing. And
        # hass-nabucasa's litellm would fetch a price list when imported.
        env = {**os.environ, "UV_OFFLINE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        args = [sys.executable, "-m", "homeassistant", "-c", str(self.config), "--log-no-color"]
        # From the temporary directory: `python -m` puts the current
        # directory first on sys.path, and a work tree's custom_components/
        # there would hide the configuration directory's.
        self.hass = await spawn(args, self.tmp / "hass.out", env=env, cwd=self.tmp)
        self.http = aiohttp.ClientSession(self.base, timeout=aiohttp.ClientTimeout(total=EVENT * 4))
        # Until the HTTP server answers and onboarding is set up: a new try
        # a moment after each failed one, unless hass exited meanwhile.
        exited = asyncio.create_task(self.hass.wait())
        try:
            async with asyncio.timeout(HASS_START):
                while not exited.done():
                    with contextlib.suppress(aiohttp.ClientError):
                        async with self.http.get("/api/onboarding") as response:
                            if response.status == 200:
                                return
                    await asyncio.wait({exited}, timeout=0.2)
        finally:
            exited.cancel()
        raise AssertionError(f"hass exited with {self.hass.returncode}")

    async def onboard(self) -> None:
        assert self.http is not None
        client_id = f"{self.base}/"
        user = {"name": "Smoke", "username": "smoke", "password": "smoke-password"}
        body = {**user, "client_id": client_id, "language": "en"}
        code = (await self.api("POST", "/api/onboarding/users", body))["auth_code"]
        grant = {"grant_type": "authorization_code", "code": code, "client_id": client_id}
        async with self.http.post("/auth/token", data=grant) as response:
            assert response.status == 200, await response.text()
            token = (await response.json())["access_token"]
        self.headers = {"Authorization": f"Bearer {token}"}
        ws = await self.http.ws_connect("/api/websocket")
        assert (await ws.receive_json(timeout=EVENT))["type"] == "auth_required"
        await ws.send_json({"type": "auth", "access_token": token})
        assert (reply := await ws.receive_json(timeout=EVENT))["type"] == "auth_ok", reply
        self.ws = Websocket(ws)
        started = await self.ws.subscribe("homeassistant_started")
        core = await self.ws.call("get_config")
        if core["state"] != "RUNNING":
            await next_event(started, "homeassistant_started")
        assert not core["recovery_mode"], "hass started in recovery mode"
        # The http: section of configuration.yaml became the pending HTTP
        # configuration: unless it is promoted, hass reverts it and restarts
        # itself five minutes after the start.
        http = await self.ws.call("http/config")
        assert http["active_config_type"] == "pending", http
        assert http["pending"]["server_port"] == self.http_port, http
        assert http["revert_at"] is not None, http
        await self.ws.call("http/config/promote")
        http = await self.ws.call("http/config")
        assert (http["pending"], http["revert_at"]) == (None, None), http
        assert http["stable"]["server_port"] == self.http_port, http

    async def add_daemon(self) -> None:
        flow = await self.api("POST", "/api/config/config_entries/flow", {"handler": "sockbridge"})
        assert (flow["type"], flow["step_id"]) == ("form", "user"), flow
        if self.daemon_binary is None:
            body = {"bus": "system"}
        else:
            body = {"bus": "address", "address": self.address}
        result = await self.api("POST", f"/api/config/config_entries/flow/{flow['flow_id']}", body)
        assert result["type"] == "create_entry", result
        entry = result["result"]
        assert (entry["domain"], entry["state"]) == ("sockbridge", "loaded"), entry
        self.entry_id = entry["entry_id"]

    async def discover(self) -> None:
        """The Supervisor's part: the message to Home Assistant, a flow of it."""
        assert self.ws is not None
        assert self.discovery is not None
        uuid = os.urandom(16).hex()  # the Supervisor's id of the message
        await self.ws.call(
            f"{STANDIN.name}/discover",
            service=self.discovery["service"],
            config=self.discovery["config"],
            name=ADDON_NAME,
            slug=ADDON_SLUG,
            uuid=uuid,
        )
        # The flow starts in the background: until it is in progress.
        flows: list[dict[str, Any]] = []
        try:
            async with asyncio.timeout(EVENT):
                while not flows:
                    progress = await self.ws.call("config_entries/flow/progress")
                    flows = [f for f in progress if f["handler"] == "sockbridge"]
                    if not flows:
                        await asyncio.sleep(0.1)
        except TimeoutError:
            raise AssertionError(f"no sockbridge flow in progress within {EVENT:.0f} s") from None
        (flow,) = flows
        assert flow["step_id"] == "hassio_confirm", flow
        context = flow["context"]
        assert context["source"] == "hassio", flow
        assert context["unique_id"] == f"address={self.address}", flow
        assert context["title_placeholders"] == {"addon": ADDON_NAME}, flow
        assert context["discovery_key"]["key"] == uuid, flow
        self.flow_id = flow["flow_id"]
        # The form the frontend shows: which add-on, which address.
        form = await self.api("GET", f"/api/config/config_entries/flow/{self.flow_id}")
        assert (form["type"], form["step_id"]) == ("form", "hassio_confirm"), form
        placeholders = form["description_placeholders"]
        assert (placeholders["addon"], placeholders["address"]) == (ADDON_NAME, self.address), form

    async def confirm_discovery(self) -> None:
        result = await self.api("POST", f"/api/config/config_entries/flow/{self.flow_id}", {})
        assert result["type"] == "create_entry", result
        entry = result["result"]
        assert (entry["domain"], entry["state"]) == ("sockbridge", "loaded"), entry
        assert (entry["source"], entry["title"]) == ("hassio", f"sockbridged ({ADDON_NAME})"), entry
        self.entry_id = entry["entry_id"]
        # What the entry holds (its diagnostics): the announced bus address.
        # Diagnostics answer 404 until they took in the integration's
        # platform, a moment after the entry loaded.
        assert self.http is not None
        path = f"/api/diagnostics/config_entry/{self.entry_id}"
        try:
            async with asyncio.timeout(EVENT):
                while True:
                    async with self.http.get(path, headers=self.headers) as response:
                        if response.status != 404:
                            assert response.status == 200, f"GET {path}: {response.status}"
                            data = (await response.json())["data"]
                            break
                    await asyncio.sleep(0.1)
        except TimeoutError:
            raise AssertionError(f"GET {path}: 404 for {EVENT:.0f} s") from None
        assert data["entry"]["data"] == {"bus": "address", "address": self.address}, data
        assert data["daemon"]["available"] is True, data

    async def add_server(self) -> None:
        self.subentry_id = await self.create_server(self.server_port, "tcp", "smoke")

    async def create_server(self, port: int, protocol: str, identifier: str) -> str:
        """A server subentry through the subentry flow, listening; its id."""
        assert self.ws is not None
        before = await self.ws.call("config_entries/subentries/list", entry_id=self.entry_id)
        status = await self.ws.subscribe("sockbridge_status")
        path = "/api/config/config_entries/subentries/flow"
        flow = await self.api("POST", path, {"handler": [self.entry_id, "server"]})
        assert (flow["type"], flow["step_id"]) == ("form", "user"), flow
        body = {"port": port, "protocol": protocol, "delimiter": "\\r\\n"}
        body |= {"identifier": identifier, "advanced": ADVANCED}
        result = await self.api("POST", f"{path}/{flow['flow_id']}", body)
        assert (result["type"], result["title"]) == ("create_entry", identifier), result
        after = await self.ws.call("config_entries/subentries/list", entry_id=self.entry_id)
        known = {s["subentry_id"] for s in before}
        (subentry,) = (s for s in after if s["subentry_id"] not in known)
        assert subentry["subentry_type"] == "server", subentry
        assert subentry["unique_id"] == f"{protocol}:{port}", subentry
        subentry_id: str = subentry["subentry_id"]
        await next_event(
            status,
            "sockbridge_status ONLINE of the new server",
            lambda data: data["server_id"] == subentry_id and data["status"] == "ONLINE",
        )
        return subentry_id

    async def data_in(self) -> None:
        assert self.ws is not None
        events = await self.ws.subscribe("sockbridge_data_in")
        async with asyncio.timeout(EVENT):
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.server_port)
        self.writer.write(b"hello\r\n")
        await self.writer.drain()
        data = await next_event(events, "sockbridge_data_in")
        assert (data["text"], data["identifier"]) == ("hello\r\n", "smoke"), data
        assert data["server_id"] == self.subentry_id, data
        assert isinstance(data["handle"], int), data
        assert data["handle"] > 0, data
        self.handle = data["handle"]

    async def send(self) -> None:
        assert self.ws is not None
        assert self.reader is not None
        devices = await self.ws.call("config/device_registry/list")
        (device,) = (d for d in devices if ["sockbridge", self.subentry_id] in d["identifiers"])
        body = {"device_id": device["id"], "handle": self.handle, "text": "hi\\r\\n"}
        await self.api("POST", "/api/services/sockbridge/send", body)
        async with asyncio.timeout(EVENT):
            assert await self.reader.readexactly(4) == b"hi\r\n"

    async def remove_entry(self) -> None:
        assert self.reader is not None
        result = await self.api("DELETE", f"/api/config/config_entries/entry/{self.entry_id}")
        assert result == {"require_restart": False}, result
        async with asyncio.timeout(EVENT):
            assert await self.reader.read() == b"", "data instead of the end of the connection"
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", self.server_port)
        except ConnectionRefusedError:
            pass
        else:
            writer.close()
            raise AssertionError(f"port {self.server_port} still accepts connections")
        servers = await self.dbus_call("/io/github/Sockbridge1", BUS_NAME, "ListServers")
        assert servers == [[]], servers

    async def stop_hass(self) -> None:
        assert self.hass is not None, "hass was not started"
        if self.ws is not None:
            await self.ws.close()
        code = await stop(self.hass, HASS_STOP)
        assert code == 0, f"hass ended with {code} (None: killed after {HASS_STOP:.0f} s)"
        log = (self.config / "home-assistant.log").read_text(errors="replace").splitlines()
        bad = [s for s in log if LOG_LEVEL.match(s) and NAMES_SOCKBRIDGE.search(s)]
        bad = [s for s in bad if not UNTESTED.search(s)]
        assert not bad, "\n".join(bad)

    async def stop_daemon(self) -> None:
        assert self.daemon is not None, "sockbridged was not started"
        code = await stop(self.daemon, START)
        assert code == 0, f"sockbridged ended with {code} (None: killed after {START:.0f} s)"
        code = await stop(self.bus, START)
        assert code == 0, f"dbus-daemon ended with {code}"

    async def cleanup(self) -> None:
        """Close and stop whatever is still open or running, after a failure."""
        if self.writer is not None:
            self.writer.close()
        if self.dbus is not None:
            self.dbus.disconnect()
        if self.http is not None:
            await self.http.close()
        await stop(self.hass, HASS_STOP)
        await stop(self.daemon, START)
        await stop(self.bus, START)

    def print_logs(self) -> None:
        # hass's output: its log (as in home-assistant.log), and what Python printed.
        print("--- hass's log (its last 150 lines)", file=sys.stderr)
        print(tail(self.tmp / "hass.out", 150), file=sys.stderr)
        if self.daemon_binary is not None:
            print("--- sockbridged's log", file=sys.stderr)
            print(tail(self.tmp / "sockbridged.log", 10_000), file=sys.stderr)


async def run(daemon: Path | None, discovery: dict[str, Any] | None) -> int:
    number = 0
    failed = False

    async def step(name: str, action: Callable[[], Awaitable[None]], always: bool = False) -> None:
        """Run a step unless one failed (but always the ones that stop), and say how it went."""
        nonlocal number, failed
        number += 1
        if failed and not always:
            print(f"not ok {number} - {name} # not run after an earlier failure", flush=True)
            return
        try:
            await action()
        except asyncio.CancelledError:
            failed = True
            print(f"not ok {number} - {name}\nBail out! Stopped by a signal", flush=True)
            raise
        except Exception:  # noqa: BLE001 - any failure of a step is that step's
            failed = True
            print(f"not ok {number} - {name}", flush=True)
            print("".join(f"# {line}\n" for line in traceback.format_exc().splitlines()), end="")
        else:
            print(f"ok {number} - {name}", flush=True)

    print(f"1..{10 if daemon or discovery else 9}", flush=True)
    with tempfile.TemporaryDirectory(prefix="sb-hass-instance-") as tmp:
        smoke = Smoke(daemon, Path(tmp), discovery)
        try:
            if daemon:
                await step("a private bus, and sockbridged on it", smoke.start_daemon)
            elif discovery:
                await step(
                    "the add-on's announced bus answers, sockbridged is on it", smoke.announced_bus
                )
            else:
                await step("the system bus answers, sockbridged is on it", smoke.system_bus)
            await step("hass starts and its HTTP API answers", smoke.start_hass)
            await step("onboarding, websocket login, http/config/promote", smoke.onboard)
            if discovery:
                await step("the add-on's discovery starts a flow at hassio_confirm", smoke.discover)
                await step(
                    "confirming it adds the entry on the announced address", smoke.confirm_discovery
                )
            else:
                await step("the config flow adds the daemon's entry", smoke.add_daemon)
            await step("the subentry flow adds a TCP server that listens", smoke.add_server)
            await step("a client's line arrives as sockbridge_data_in", smoke.data_in)
            await step("sockbridge.send answers the client", smoke.send)
            await step("removing the entry ends the server and its client", smoke.remove_entry)
            await step("hass stops on SIGTERM, no sockbridge warnings", smoke.stop_hass, True)
            if daemon:
                await step("sockbridged and the bus stop on SIGTERM", smoke.stop_daemon, True)
        finally:
            if failed:
                smoke.print_logs()
            await smoke.cleanup()
    return 1 if failed else 0


async def main(daemon: Path | None, discovery: dict[str, Any] | None) -> int:
    # meson's timeout or ^C cancels the run, which still stops everything.
    task = asyncio.current_task()
    assert task is not None
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, task.cancel)
    try:
        return await run(daemon, discovery)
    except asyncio.CancelledError:
        return 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The integration in a real Home Assistant.")
    parser.add_argument(
        "sockbridged", nargs="?", type=Path, metavar="SOCKBRIDGED", help="the daemon to start"
    )
    parser.add_argument(
        "--bus",
        choices=["private", "system"],
        default="private",
        help="private: a bus of its own with SOCKBRIDGED on it (the default); "
        "system: the system bus, with sockbridged on it already",
    )
    parser.add_argument(
        "--discovery",
        metavar="JSON",
        help="the add-on's discovery message (scripts/run-addon's $SB_ADDON_DISCOVERY): "
        "no bus of its own, the entry through the discovery flow",
    )
    options = parser.parse_args()
    discovery: dict[str, Any] | None = None
    if options.discovery is not None:
        if options.sockbridged is not None or options.bus != "private":
            parser.error("--discovery takes neither SOCKBRIDGED nor --bus")
        try:
            discovery = json.loads(options.discovery)
        except ValueError as err:
            parser.error(f"--discovery: not JSON: {err}")
        if not isinstance(discovery, dict):
            parser.error("--discovery: not a JSON object")
    elif (options.bus == "private") != (options.sockbridged is not None):
        parser.error("SOCKBRIDGED is needed with --bus private, and only then")
    daemon = options.sockbridged.resolve() if options.sockbridged else None
    sys.exit(asyncio.run(main(daemon, discovery)))
