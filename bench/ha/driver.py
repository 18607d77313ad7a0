# SPDX-License-Identifier: LGPL-2.1-or-later
"""bench/run's section ha, inside the forky root with the hass venv's Python.

    python driver.py --daemon SOCKBRIDGED --load SB_BENCH_LOAD [--quick] [--frames N]
                     [--repeat N] [--profile] [--rows ROWS] [--unrecorded]

Starts a private bus, sockbridged on it and a real Home Assistant with the
recorder on, the sockbridge integration, bench_listener (the in-process
baseline) and bench_counter (the meter) from beside this file, through
tests/hass-instance/smoke.py's steps (onboarding, http/config/promote, the
config flow, server subentries). Then measures frames into the event bus,
Home Assistant's CPU per frame until the recorder committed them, state
writes per frame, and round trips through automations. With --unrecorded,
the throughput rows alone, with sockbridge_data_in excluded from the recorder
as docs/HOME-ASSISTANT.md advises for high frame rates. Prints "log …" lines
as it goes and one "result {json}" line at the end; bench/run reads them.
Every wait is bounded; everything started is stopped by its process, also
on failure or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
import signal
import sys
import tempfile
import time
import traceback
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "hass-instance"))

import smoke  # noqa: E402

START = time.monotonic()
# UDP frames in flight at most (as bench/run's section 1 paces UDP): 128 of
# 32 B, but fewer of 1 KiB, or the socket buffer (208 KiB, charged at some
# 2 KiB a datagram) drops some, for the listener as for the daemon.
UDP_WINDOW = {32: 128, 1024: 32}
IDENTIFIER_TCP, IDENTIFIER_UDP = "bench_tcp", "bench_udp"

CONFIGURATION = """\
# bench/run's instance: loopback only, the recorder on with its defaults (as
# default_config sets it up), automations from automations.yaml.
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
config:
onboarding:
websocket_api:
recorder:{recorder}
automation: !include automations.yaml
bench_counter:
bench_listener:
  tcp_port: {tcp}
  udp_port: {udp}
  direct_port: {direct}
logger:
  default: warning
"""

# --unrecorded: what a user who needs no history of the frames writes (the
# event still fires on the bus for every frame).
RECORDER_EXCLUDE = """
  exclude:
    event_types:
      - sockbridge_data_in"""

# Turned on only for the round trips: otherwise every throughput frame
# would run them.
AUTOMATIONS = """\
- id: bench_sockbridge_echo
  alias: bench sockbridge echo
  initial_state: false
  mode: parallel
  max: 1000
  triggers:
    - trigger: event
      event_type: sockbridge_data_in
      event_data:
        identifier: {tcp_identifier}
  actions:
    - action: sockbridge.send
      data:
        device_id: {device}
        handle: "{{{{ trigger.event.data.handle }}}}"
        hex: "{{{{ trigger.event.data.hex }}}}"
- id: bench_listener_echo
  alias: bench listener echo
  initial_state: false
  mode: parallel
  max: 1000
  triggers:
    - trigger: event
      event_type: sockbridge_data_in
      event_data:
        identifier: bench_listener
  actions:
    - action: bench_listener.send
      data:
        handle: "{{{{ trigger.event.data.handle }}}}"
        hex: "{{{{ trigger.event.data.hex }}}}"
"""
AUTOMATION_IDS = {
    "integration": "automation.bench_sockbridge_echo",
    "listener": "automation.bench_listener_echo",
}


def log(message: str) -> None:
    print(f"log {message}", flush=True)


def task_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread name (Python 3.14 names the OS threads), from
    the scheduler's nanosecond count: utime and stime come in 10 ms ticks,
    as coarse as a whole row's cost at some 100 µs a frame."""
    out: dict[str, float] = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                ns = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        out[name] = out.get(name, 0.0) + ns / 1e9
    return out


def cpu_s(pid: int) -> float:
    """CPU seconds of the whole process, every live thread (a thread that
    ends takes its count along; hass's worker threads live on)."""
    return sum(task_cpu(pid).values())


class BenchHass(smoke.Smoke):
    """smoke.py's instance, configured for the benchmark."""

    def __init__(self, daemon: Path, tmp: Path, *, unrecorded: bool) -> None:
        super().__init__(daemon, tmp)
        self.unrecorded = unrecorded
        self.daemon_options = ["--no-state"]
        self.ports = {k: smoke.free_port() for k in ("tcp", "udp", "direct")}

    def custom_integrations(self) -> list[Path]:
        return [*super().custom_integrations(), HERE / "bench_listener", HERE / "bench_counter"]

    def configuration(self) -> str:
        (self.config / "automations.yaml").write_text("[]\n")
        recorder = RECORDER_EXCLUDE if self.unrecorded else ""
        return CONFIGURATION.format(port=self.http_port, recorder=recorder, **self.ports)


class Driver:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.hass = BenchHass(args.daemon, tmp, unrecorded=args.unrecorded)
        self.ports: dict[str, int] = {}
        self.loads: list[asyncio.subprocess.Process] = []
        self.result: dict[str, Any] = {
            "rows": [],
            "rtts": [],
            "errors": [],
            "unrecorded": args.unrecorded,
        }

    @property
    def hass_pid(self) -> int:
        assert self.hass.hass is not None
        return self.hass.hass.pid

    @property
    def daemon_pid(self) -> int:
        assert self.hass.daemon is not None
        return self.hass.daemon.pid

    async def counter(self, method: str, call: str, **kwargs: Any) -> dict[str, Any]:
        """A call to bench_counter's view; its JSON answer."""
        http = self.hass.http
        assert http is not None
        timeout = aiohttp.ClientTimeout(total=float(kwargs.pop("timeout_s", 60)))
        if method == "GET":
            request = http.get(f"/api/bench_counter/{call}", params=kwargs, timeout=timeout)
        else:
            request = http.post(f"/api/bench_counter/{call}", json=kwargs, timeout=timeout)
        async with request as response:
            assert response.status == 200, f"bench_counter/{call}: {response.status}"
            result: dict[str, Any] = await response.json()
            return result

    # -- set-up

    async def setup(self) -> None:
        t0 = time.monotonic()
        await self.hass.start_daemon()
        await self.hass.start_hass()
        await self.hass.onboard()
        await self.hass.add_daemon()
        tcp_port, udp_port = smoke.free_port(), smoke.free_port()
        self.tcp_server = await self.hass.create_server(tcp_port, "tcp", IDENTIFIER_TCP)
        await self.hass.create_server(udp_port, "udp", IDENTIFIER_UDP)
        self.ports = {
            "integration-tcp": tcp_port,
            "integration-udp": udp_port,
            "listener-tcp": self.hass.ports["tcp"],
            "listener-udp": self.hass.ports["udp"],
            "listener-direct": self.hass.ports["direct"],
        }
        assert self.hass.ws is not None
        devices = await self.hass.ws.call("config/device_registry/list")
        (device,) = (d for d in devices if ["sockbridge", self.tcp_server] in d["identifiers"])
        automations = AUTOMATIONS.format(tcp_identifier=IDENTIFIER_TCP, device=device["id"])
        (self.hass.config / "automations.yaml").write_text(automations)
        await self.hass.api("POST", "/api/services/automation/reload", {})
        states = await self.hass.api("GET", "/api/states")
        found = {s["entity_id"] for s in states}
        missing = set(AUTOMATION_IDS.values()) - found
        assert not missing, f"automations not loaded: {missing}"
        log(f"Home Assistant ready in {time.monotonic() - t0:.0f} s")

    # -- throughput

    async def start_load(self, argv: list[str]) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=(self.tmp / "load.log").open("ab"),
        )
        self.loads.append(proc)
        return proc

    async def stop_load(self, proc: asyncio.subprocess.Process) -> None:
        # End of input: it closes its sockets and exits.
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            async with asyncio.timeout(5):
                await proc.wait()
        except TimeoutError:
            await smoke.stop(proc, 5)
        self.loads.remove(proc)

    async def row(self, side: str, source: str, clients: int, size: int) -> dict[str, Any]:
        frames = self.args.frames
        port = self.ports[f"{side}-{source}"]
        progress = self.tmp / "progress" if source == "udp" else None
        await self.counter("POST", "reset", progress=str(progress) if progress else None)
        # One read of hass's threads: the process's CPU is their sum.
        threads0 = task_cpu(self.hass_pid)
        hass0, daemon0 = sum(threads0.values()), cpu_s(self.daemon_pid)
        load = str(self.args.load)
        if source == "tcp":
            argv = [load, "tcp", str(port), str(clients), str(frames), str(size)]
        else:
            argv = [load, "udp", str(port), str(frames), str(size)]
            window = UDP_WINDOW.get(size, 32)
            argv += ["--progress", str(progress), "--window", str(window)]
        proc = await self.start_load(argv)
        timeout = frames / 200 + 60
        counts = await self.counter(
            "GET", "wait", count=frames, idle=10, timeout=timeout, timeout_s=timeout + 30
        )
        await self.stop_load(proc)
        # The recorder's catch-up belongs to the frames' cost.
        settled = await self.counter("POST", "settle", timeout_s=600)
        threads1 = task_cpu(self.hass_pid)
        hass1, daemon1 = sum(threads1.values()), cpu_s(self.daemon_pid)
        n = counts["count"]
        span = (counts["last_ns"] - counts["first_ns"]) / 1e9
        writes = sum(settled["states"].values())
        row: dict[str, Any] = {
            "side": side,
            "source": source,
            "clients": clients,
            "size": size,
            "frames": frames,
            "count": n,
            "rate": (n - 1) / span if n > 1 and span > 0 else None,
            # A full collection that still comes within the row is the
            # heap's, not the row's (bench_counter's reset): left out, and
            # counted.
            "cpu_us": (hass1 - hass0 - settled["full_gc_s"]) / n * 1e6 if n else None,
            "full_gcs": settled["full_gcs"],
            "young_gcs": settled["young_gcs"] / n * 1000 if n else None,
            # The event loop's CPU alone, and its stalls while the frames
            # came (bench_counter.STALL_NS).
            "loop_cpu_us": (threads1.get("python", 0.0) - threads0.get("python", 0.0)) / n * 1e6
            if n
            else None,
            "stalls": counts["stalls"],
            "stall_ms": counts["stall_ms"],
            "daemon_cpu_us": (daemon1 - daemon0) / n * 1e6 if n and side == "integration" else None,
            "state_writes": writes / n if n else None,
            "settle_s": settled["settle_s"],
            "threads_us": {
                name: (threads1.get(name, 0.0) - t) / n * 1e6
                for name, t in threads0.items()
                if n and threads1.get(name, 0.0) - t > 0
            },
        }
        rate = row["rate"] or 0.0
        log(
            f"{side}, {source} {clients if source == 'tcp' else ''} {size} B: {n}/{frames} frames, "
            f"{rate:,.0f} frames/s, hass {row['cpu_us'] or 0:.0f} µs/frame, "
            f"{row['state_writes'] or 0:.2f} state writes/frame, recorder settled in "
            f"{settled['settle_s']:.1f} s, {row['young_gcs'] or 0:.1f} young collections per "
            f"1000 frames, {row['full_gcs']} full ones ({settled['full_gc_s'] * 1000:.0f} ms, "
            f"left out), loop {row['loop_cpu_us'] or 0:.1f} µs/frame, {row['stalls']} stalls "
            f"({row['stall_ms']:.0f} ms)"
        )
        return row

    def matrix(self) -> list[tuple[str, int, int]]:
        if self.args.rows:
            return [
                (source, int(clients), int(size))
                for source, clients, size in (r.split(":") for r in self.args.rows.split(","))
            ]
        if self.args.quick:
            return [("tcp", 1, 32), ("tcp", 10, 32), ("tcp", 1, 1024), ("udp", 1, 32)]
        return [("tcp", c, s) for s in (32, 1024) for c in (1, 10)] + [
            ("udp", 1, 32),
            ("udp", 1, 1024),
        ]

    async def throughput(self) -> None:
        for rep in range(self.args.repeat):
            for source, clients, size in self.matrix():
                # Both sides row by row, their order swapped every run
                # (ABBA): drifts and the previous row's after-effects
                # touch both alike.
                sides = ("listener", "integration")
                for side in sides if rep % 2 == 0 else sides[::-1]:
                    try:
                        row = await self.row(side, source, clients, size)
                    except (AssertionError, TimeoutError, aiohttp.ClientError) as e:
                        row = {
                            "side": side,
                            "source": source,
                            "clients": clients,
                            "size": size,
                            "frames": self.args.frames,
                            "count": 0,
                            "note": f"FAILED: {e!r}",
                        }
                        self.result["errors"].append(f"{side} {source} {size} B: {e!r}")
                        log(f"{side} {source} {size} B: FAILED: {e!r}")
                    row["rep"] = rep
                    self.result["rows"].append(row)

    async def low_rate(self) -> None:
        """A frame a second: every one still updates the data event entity."""
        frames = 3 if self.args.quick else 5
        await self.counter("POST", "reset", progress=None)
        _, writer = await asyncio.open_connection("127.0.0.1", self.ports["integration-tcp"])
        try:
            for _ in range(frames):
                writer.write(b"low rate\r\n")
                await writer.drain()
                await asyncio.sleep(1.0)
            counts = await self.counter("GET", "wait", count=frames, idle=5, timeout=10)
        finally:
            writer.close()
        entities = counts["entities"]
        data_entities = [
            e
            for e, info in entities.items()
            if info["key"] == "data_received" and info["subentry"] == self.tcp_server
        ]
        updates = [counts["states"][e] for e in data_entities]
        self.result["low_rate"] = {
            "frames": frames,
            "events": counts["count"],
            "entity_updates": min(updates) if updates else None,
            "entities": data_entities,
        }
        log(
            f"low rate: {frames} frames 1 s apart, {counts['count']} events, "
            f"data event entity updated {updates} times"
        )

    # -- round trips

    async def rtt(self, ports: list[int], count: int, block: int) -> list[dict[str, float]]:
        """Round trips to each port in turn, BLOCK at a time, COUNT each: one
        report per port."""
        proc = await asyncio.create_subprocess_exec(
            str(self.args.load),
            "rtt",
            ",".join(map(str, ports)),
            str(count),
            "32",
            str(block),
            stdout=asyncio.subprocess.PIPE,
            stderr=(self.tmp / "load.log").open("ab"),
        )
        self.loads.append(proc)
        try:
            async with asyncio.timeout(count * len(ports) / 20 + 60):
                out, _ = await proc.communicate()
        finally:
            if proc.returncode is None:
                await smoke.stop(proc, 5)
            self.loads.remove(proc)
        assert proc.returncode == 0, f"sb-bench-load rtt exited with {proc.returncode}"
        reports = [
            {k: float(v) for k, v in (i.split("=", 1) for i in line.split())}
            for line in out.decode().splitlines()
        ]
        assert len(reports) == len(ports), f"sb-bench-load rtt printed {out!r}"
        return reports

    async def round_trips(self) -> None:
        """Both automations on, and the three paths taken in turn, a block of
        round trips each: a recorder commit or a collection in hass lands on
        all of them alike, and each path runs as when it alone is used."""
        count, block = (500, 50) if self.args.quick else (2000, 100)
        paths = [
            ("listener", "automation", self.ports["listener-tcp"]),
            ("integration", "automation", self.ports["integration-tcp"]),
            ("listener", "direct", self.ports["listener-direct"]),
        ]
        for automation in AUTOMATION_IDS.values():
            await self.hass.api(
                "POST", "/api/services/automation/turn_on", {"entity_id": automation}
            )
        try:
            reports = await self.rtt([port for _, _, port in paths], count, block)
            # Kept before the probe's round trips, which may fail on their own.
            for (side, path, _), r in zip(paths, reports, strict=True):
                r.pop("port", None)
                self.result["rtts"].append({"side": side, "path": path, **r})
                log(f"{side}, {path}: p50 {r['p50_us']:.0f} µs, p99 {r['p99_us']:.0f} µs")
            await self.probe_round_trips(paths[:2], count // 4, block)
        except (AssertionError, TimeoutError) as e:
            self.result["errors"].append(f"round trips: {e!r}")
            log(f"round trips: FAILED: {e!r}")
        finally:
            for automation in AUTOMATION_IDS.values():
                await self.hass.api(
                    "POST", "/api/services/automation/turn_off", {"entity_id": automation}
                )

    async def probe_round_trips(
        self, paths: list[tuple[str, str, int]], count: int, block: int
    ) -> None:
        """Round trips of their own with bench_counter's probe in: the median
        of each stage inside Home Assistant. The recorder first commits what
        the measured round trips left queued: its commit of some 20 000
        events, landing in these, put milliseconds into every stage."""
        await self.counter("POST", "settle", timeout_s=600)
        await self.counter("POST", "probe", action="start")
        try:
            await self.rtt([port for _, _, port in paths], count, block)
        finally:
            stages = await self.counter("POST", "probe", action="stop")
        self.result["rtt_stages"] = stages
        log(f"round trip stages (median µs): {stages}")

    # -- profile

    async def profile(self) -> None:
        """Where Home Assistant's time goes: cProfile of the loop's thread
        during one integration row, and every thread's CPU."""
        await self.counter("POST", "profile", action="start")
        try:
            row = await self.row("integration", "tcp", 10, 32)
        finally:
            stop = await self.counter(
                "POST", "profile", action="stop", frames=max(self.args.frames, 1)
            )
        threads = sorted(row["threads_us"].items(), key=lambda kv: -kv[1])
        lines = [
            f"Home Assistant's CPU per frame by thread (integration, TCP 10 clients, 32 B, "
            f"{row['count']} frames, recorder catch-up included, under cProfile, which slows "
            'every Python thread; "python" is the event loop\'s thread):',
            "",
            *(f"{us:10.1f} µs  {name}" for name, us in threads),
            "",
            stop["summary"],
        ]
        self.result["profile"] = "\n".join(lines)
        log("profile taken")

    def log_warnings(self) -> None:
        """Warnings and errors of hass's log that name what is measured: a
        failing automation or action would not fail a round trip at once."""
        log_path = self.hass.config / "home-assistant.log"
        if not log_path.exists():
            return
        names = ("sockbridge", "bench_listener", "bench_counter", "automation")
        bad = [
            line
            for line in log_path.read_text(errors="replace").splitlines()
            if smoke.LOG_LEVEL.match(line)
            and any(n in line for n in names)
            and not smoke.UNTESTED.search(line)
            and "which has not been tested" not in line
        ]
        self.result["log_warnings"] = bad[:20]

    async def run(self) -> None:
        try:
            await self.setup()
            await self.throughput()
            if not self.args.unrecorded:
                await self.low_rate()
                await self.round_trips()
                if self.args.profile:
                    await self.profile()
        except Exception as e:  # noqa: BLE001 - reported, and the run ends
            self.result["errors"].append(f"{type(e).__name__}: {e}")
            for line in traceback.format_exc().splitlines():
                log(line)
            self.result["hass_log_tail"] = smoke.tail(self.tmp / "hass.out", 40)
        finally:
            self.log_warnings()
            for proc in list(self.loads):
                await smoke.stop(proc, 5)
            if self.hass.ws is not None:
                await self.hass.ws.close()
                self.hass.ws = None
            await self.hass.cleanup()


async def main(args: argparse.Namespace) -> int:
    task = asyncio.current_task()
    assert task is not None
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, task.cancel)
    with tempfile.TemporaryDirectory(prefix="sb-bench-ha-") as tmp:
        driver = Driver(args, Path(tmp))
        try:
            await driver.run()
        except asyncio.CancelledError:
            driver.result["errors"].append("stopped by a signal")
            await driver.hass.cleanup()
        print("result " + json.dumps(driver.result), flush=True)
    return 1 if driver.result["errors"] else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--daemon", type=Path, required=True)
    parser.add_argument("--load", type=Path, required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--frames", type=int)
    parser.add_argument("--repeat", type=int)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--rows", help="SOURCE:CLIENTS:SIZE,... instead of the usual rows, e.g. udp:1:1024"
    )
    parser.add_argument(
        "--unrecorded",
        action="store_true",
        help="sockbridge_data_in excluded from the recorder; the throughput rows alone",
    )
    options = parser.parse_args()
    # A row of 32 B frames at 100 000 frames/s: 0.1 s, some twenty of the
    # 5 ms turns that the event loop and the recorder's thread take at the
    # GIL; with 3 000 frames a turn more or less moved the rate by a third.
    options.frames = options.frames or (5000 if options.quick else 10000)
    # Several runs: a row lasts a tenth of a second, the host's scheduling
    # and the GIL's turns show through (single runs' ratios spread 0.5-1.6),
    # and the verdict takes the median of the runs' ratios. With 7 runs
    # that median moved by 0.1 from one full run to the next.
    options.repeat = options.repeat or (5 if options.quick else 15)
    sys.exit(asyncio.run(main(options)))
