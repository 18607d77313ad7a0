"""The benchmark's meter inside Home Assistant (bench/run, section ha).

Counts sockbridge_data_in events (of the integration or of bench_listener)
and the state_changed events of the sockbridge integration's entities, and
answers the benchmark's driver over HTTP on 127.0.0.1 (no login: bench
only, never installed):

    POST /api/bench_counter/reset    {"progress": FILE|null}: a full garbage
                                     collection, then counts to zero; with
                                     FILE, the running count is kept in it
                                     as sb-bench-sub does (UDP pacing)
    GET  /api/bench_counter/wait?count=N&idle=S&timeout=S
                                     until N events came, none came for S
                                     seconds, or the timeout; the counts
    POST /api/bench_counter/settle   until the recorder committed everything
                                     queued so far; the counts
    POST /api/bench_counter/profile  {"action": "start"} or {"action": "stop",
                                     "frames": N}: cProfile of the event
                                     loop's thread; stop answers the summary
    POST /api/bench_counter/probe    {"action": "start"} or {"action": "stop"}:
                                     timestamps of the round trips' stages
                                     (Probe); stop answers their medians
"""

from __future__ import annotations

import asyncio
import cProfile
from dataclasses import dataclass
import gc
import io
import mmap
import os
import pstats
import statistics
import struct
import threading
import time
from typing import Any

from aiohttp import web
from homeassistant.components.http import HomeAssistantView
from homeassistant.const import EVENT_STATE_CHANGED
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.typing import ConfigType

DOMAIN = "bench_counter"
EVENT_DATA_IN = "sockbridge_data_in"
# Two events further apart than this: the event loop delivered nothing
# for a while (a frame takes some 10 µs, a turn of the recorder's thread
# at the GIL 5 ms).
STALL_NS = 1_000_000
# Round trips whose stages span more than this are a block's last and the
# next block's first, the other paths' blocks between them.
PROBE_MAX_NS = 50_000_000


class Counter:
    """The counts of the current measurement."""

    def __init__(self, hass: HomeAssistant) -> None:
        """Zero."""
        self.hass = hass
        self.count = 0
        self.first_ns = 0
        self.last_ns = 0
        self.states: dict[str, int] = {}
        self.entities: dict[str, dict[str, Any]] = {}
        self.progress: mmap.mmap | None = None
        self.changed = asyncio.Event()
        self.profile: cProfile.Profile | None = None
        # Python's garbage collections since the reset: full ones (count and
        # the CPU time of the thread that ran them) and young ones.
        self.full_gcs = 0
        self.full_gc_s = 0.0
        self.young_gcs = 0
        self._gc_started: dict[int, float] = {}
        # Gaps of at least STALL_NS between events: how many, how long.
        self.stalls = 0
        self.stall_ns = 0
        self.probe: Probe | None = None

    def reset(self, progress: str | None) -> None:
        """Counts to zero; which entities are the integration's, now.

        A full collection first: one of Home Assistant's heap takes some
        170 ms here and comes when the objects moved to the old generation
        since the last one reach a quarter of it, whoever allocated them.
        Collected now, none is due within a row: a row's CPU is then its
        own work and its young collections, not a share of the heap's drawn
        by lot.
        """
        gc.collect()
        self.count = self.first_ns = self.last_ns = 0
        self.stalls = self.stall_ns = 0
        self.full_gcs = self.young_gcs = 0
        self.full_gc_s = 0.0
        registry = er.async_get(self.hass)
        self.entities = {
            e.entity_id: {
                "key": e.translation_key,
                "subentry": e.config_subentry_id,
                "disabled": e.disabled_by is not None,
            }
            for e in registry.entities.values()
            if e.platform == "sockbridge"
        }
        self.states = dict.fromkeys(self.entities, 0)
        if self.progress is not None:
            self.progress.close()
            self.progress = None
        if progress:
            fd = os.open(progress, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.ftruncate(fd, 8)
                self.progress = mmap.mmap(fd, 8)
            finally:
                os.close(fd)

    @callback
    def on_data_in(self, event: Event[dict[str, Any]]) -> None:
        """One frame reached the bus."""
        now = time.monotonic_ns()
        if not self.count:
            self.first_ns = now
        elif now - self.last_ns >= STALL_NS:
            self.stalls += 1
            self.stall_ns += now - self.last_ns
        self.last_ns = now
        self.count += 1
        if self.progress is not None:
            struct.pack_into("=Q", self.progress, 0, self.count)
        self.changed.set()

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        """gc.callbacks: count each collection, time the full ones."""
        thread = threading.get_ident()
        if phase == "start":
            self._gc_started[thread] = time.thread_time()
            return
        took = time.thread_time() - self._gc_started.pop(thread, time.thread_time())
        if info["generation"] == 2:
            self.full_gcs += 1
            self.full_gc_s += took
        else:
            self.young_gcs += 1

    @callback
    def on_state_changed(self, event: Event[EventStateChangedData]) -> None:
        """A state write: counted if it is one of the integration's entities."""
        entity_id = event.data["entity_id"]
        if entity_id in self.states:
            self.states[entity_id] += 1

    def snapshot(self) -> dict[str, Any]:
        """The counts, and the entities they are of."""
        return {
            "count": self.count,
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "states": self.states,
            "entities": self.entities,
            "full_gcs": self.full_gcs,
            "full_gc_s": self.full_gc_s,
            "young_gcs": self.young_gcs,
            "stalls": self.stalls,
            "stall_ms": self.stall_ns / 1e6,
        }

    async def wait(self, count: int, idle: float, timeout: float) -> None:
        """Until count events came, none came for idle seconds, or timeout."""
        deadline = time.monotonic() + timeout
        while self.count < count:
            self.changed.clear()
            left = min(idle, deadline - time.monotonic())
            if left <= 0:
                return
            try:
                async with asyncio.timeout(left):
                    await self.changed.wait()
            except TimeoutError:
                return

    async def settle(self) -> float:
        """Until the recorder committed what was queued so far; seconds it took."""
        start = time.monotonic()
        if "recorder" in self.hass.config.components:
            from homeassistant.components.recorder import get_instance

            await get_instance(self.hass).async_block_till_done()
        return time.monotonic() - start

    def profile_stop(self, frames: int) -> str:
        """The profile's top entries, in µs per frame."""
        assert self.profile is not None
        self.profile.disable()
        out = io.StringIO()
        stats = pstats.Stats(self.profile, stream=out)
        self.profile = None
        total = stats.total_tt  # type: ignore[attr-defined]
        frames = max(frames, 1)
        # cProfile follows every Python thread (sys.monitoring, Python 3.12
        # on): the recorder's thread is in it as well as the event loop's.
        lines = [
            f"cProfile, every Python thread: {total / frames * 1e6:.1f} µs per frame "
            f"({frames} frames)",
            "",
            "Top functions by own time:",
        ]
        entries: list[Any] = list(stats.stats.items())  # type: ignore[attr-defined]
        by_own = sorted(entries, key=lambda item: item[1][2], reverse=True)
        lines += format_entries(by_own[:25], frames)
        ours = [e for e in entries if "custom_components/sockbridge/" in e[0][0]]
        ours.sort(key=lambda item: item[1][3], reverse=True)
        lines += ["", "The integration's functions by cumulative time:"]
        lines += format_entries(ours[:15], frames)
        return "\n".join(lines)


class Probe:
    """Where a round trip's time goes, inside Home Assistant.

    Wraps, for as long as it is installed, the methods that mark a round
    trip's stages: bench_listener's fire (a frame read) and send (the answer
    written); the integration's clients' _on_daemon_signal (a frame's signal
    taken) and server_send (the answer's D-Bus call made, and its reply
    back). One timestamp each, a microsecond or so: installed only for
    round trips of their own, never for the measured ones.
    """

    def __init__(self, hass: HomeAssistant) -> None:
        """Installed."""
        self.marks: list[tuple[str, int]] = []
        self._undo: list[tuple[Any, str]] = []
        if (listener := hass.data.get("bench_listener")) is not None:
            self._wrap(listener, "fire", "read")
            self._wrap(listener, "send", "write")
        for entry in hass.config_entries.async_loaded_entries("sockbridge"):
            for server in entry.runtime_data.servers.values():
                if server.client is not None:
                    self._wrap_client(server.client)

    def _mark(self, stage: str) -> None:
        self.marks.append((stage, time.monotonic_ns()))

    def _wrap(self, obj: Any, name: str, stage: str) -> None:
        method = getattr(obj, name)

        def wrapper(*args: Any) -> Any:
            self._mark(stage)
            return method(*args)

        setattr(obj, name, wrapper)
        self._undo.append((obj, name))

    def _wrap_client(self, client: Any) -> None:
        on_signal = client._on_daemon_signal
        server_send = client.server_send

        def signal(member: str, body: list[Any]) -> None:
            if member.startswith("ServerDataIn"):
                self._mark("signal")
            on_signal(member, body)

        async def send(handle: int, data: bytes) -> None:
            self._mark("call")
            try:
                await server_send(handle, data)
            finally:
                self._mark("reply")

        client._on_daemon_signal = signal
        client.server_send = send
        self._undo += [(client, "_on_daemon_signal"), (client, "server_send")]

    def remove(self) -> dict[str, float | None]:
        """Uninstalled; the stages' medians in µs."""
        for obj, name in self._undo:
            delattr(obj, name)
        self._undo.clear()
        listener = answered(self.marks, "read", "write")
        ours = answered(self.marks, "signal", "call", "reply")
        return {
            "listener_n": len(listener),
            "integration_n": len(ours),
            "read_write_us": median_us([t.answer - t.frame_in for t in listener]),
            "write_read_us": median_us([t.next_in - t.answer for t in listener]),
            "signal_call_us": median_us([t.answer - t.frame_in for t in ours]),
            "call_signal_us": median_us([t.next_in - t.answer for t in ours]),
            "call_reply_us": median_us([t.reply - t.answer for t in ours if t.reply is not None]),
        }


@dataclass(slots=True)
class Trip:
    """One round trip's marks (ns)."""

    frame_in: int
    answer: int
    next_in: int = 0
    reply: int | None = None


def answered(
    marks: list[tuple[str, int]], frame_in: str, answer: str, reply: str | None = None
) -> list[Trip]:
    """A Trip per answer.

    The frame in is the last one before the answer (each round trip waits
    for the previous one), the next frame in the first one after it. The
    reply may come after the next frame: it is taken wherever it comes.
    Round trips longer than PROBE_MAX_NS are left out.
    """
    trips: list[Trip] = []
    last_in: int | None = None
    open_trip: Trip | None = None
    awaiting: Trip | None = None
    for stage, ns in marks:
        if stage == frame_in:
            if open_trip is not None:
                open_trip.next_in = ns
                if ns - open_trip.frame_in <= PROBE_MAX_NS:
                    trips.append(open_trip)
                open_trip = None
            last_in = ns
        elif stage == answer and last_in is not None:
            open_trip = Trip(last_in, ns)
            awaiting = open_trip if reply is not None else None
            last_in = None
        elif stage == reply and awaiting is not None:
            awaiting.reply = ns
            awaiting = None
    return trips


def median_us(spans: list[int]) -> float | None:
    """The median of spans in ns, in µs."""
    return statistics.median(spans) / 1000 if spans else None


def format_entries(entries: list[Any], frames: int) -> list[str]:
    """pstats entries as lines, in µs and calls per frame."""
    lines = [f"{'own µs/frame':>12} {'cum µs/frame':>12} {'calls/frame':>11}  function"]
    for (path, line, name), (_, calls, tottime, cumtime, _) in entries:
        lines.append(
            f"{tottime / frames * 1e6:12.2f} {cumtime / frames * 1e6:12.2f} "
            f"{calls / frames:11.2f}  {name} ({shorten(path)}:{line})"
        )
    return lines


def shorten(path: str) -> str:
    """A module's path from its package on."""
    for marker in ("site-packages/", "custom_components/"):
        if marker in path:
            return path.split(marker, 1)[1]
    if "/lib/python3" in path:
        # The standard library: from the module on.
        return path.split("/lib/python3", 1)[1].split("/", 1)[-1]
    return path


class CounterView(HomeAssistantView):
    """The driver's calls."""

    url = "/api/bench_counter/{action}"
    name = "api:bench_counter"
    requires_auth = False

    def __init__(self, counter: Counter) -> None:
        """Of counter."""
        self.counter = counter

    async def get(self, request: web.Request, action: str) -> web.Response:
        """wait."""
        if action != "wait":
            return web.Response(status=404)
        query = request.query
        await self.counter.wait(int(query["count"]), float(query["idle"]), float(query["timeout"]))
        return self.json(self.counter.snapshot())

    async def post(self, request: web.Request, action: str) -> web.Response:
        """reset, settle, profile."""
        counter = self.counter
        body = await request.json() if request.can_read_body else {}
        if action == "reset":
            counter.reset(body.get("progress"))
            return self.json(counter.snapshot())
        if action == "settle":
            took = await counter.settle()
            return self.json({**counter.snapshot(), "settle_s": took})
        if action == "probe":
            if body["action"] == "start":
                counter.probe = Probe(counter.hass)
                return self.json({})
            assert counter.probe is not None
            stages = counter.probe.remove()
            counter.probe = None
            return self.json(stages)
        if action == "profile":
            if body["action"] == "start":
                counter.profile = cProfile.Profile()
                counter.profile.enable()
                return self.json({})
            return self.json({"summary": counter.profile_stop(int(body["frames"]))})
        return web.Response(status=404)


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Count from now on."""
    counter = Counter(hass)
    hass.bus.async_listen(EVENT_DATA_IN, counter.on_data_in)
    hass.bus.async_listen(EVENT_STATE_CHANGED, counter.on_state_changed)
    hass.http.register_view(CounterView(counter))
    gc.callbacks.append(counter.on_gc)
    return True
