# SPDX-License-Identifier: LGPL-2.1-or-later
"""The Python subscriber of the benchmarks: dbus-fast, as Home Assistant runs it.

    sub_dbus_fast.py ADDRESS count N [--progress FILE] [--idle-ms MS] [--timeout-s S]
    sub_dbus_fast.py ADDRESS echo

Same protocol as sb-bench-sub: prints "ready" once the bus has the match
rules. count: counts the frames of io.github.Sockbridge1's ServerDataIn and
ServerDataInBatch signals until N arrived (or none came for MS milliseconds
after the first, or S seconds passed), then prints "count=… bytes=…
first_us=… last_us=…" with CLOCK_MONOTONIC microseconds, and stays until
stdin ends (so the caller can read its CPU time). echo: answers every
ServerDataIn with ServerSend(handle, data) and awaits the reply, as a Home
Assistant action would, until SIGTERM. It uses a plain message handler and
AddMatch rules, the cheapest way dbus-fast offers to receive signals.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
import mmap
import signal
import struct
import sys
import time

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

NAME = "io.github.Sockbridge1"
PATH = "/io/github/Sockbridge1"
MATCHES = [
    f"type='signal',sender='{NAME}',interface='{NAME}',member='{member}',path='{PATH}'"
    for member in ("ServerDataIn", "ServerDataInBatch")
]


def now_us() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Counter:
    def __init__(self, target: int, idle_ms: int, progress: str | None) -> None:
        self.target = target
        self.idle_s = idle_ms / 1000
        self.count = 0
        self.bytes = 0
        self.first_us = 0
        self.last_us = 0
        self.done = asyncio.get_running_loop().create_future()
        self.idle_handle: asyncio.TimerHandle | None = None
        self.rearmed_at = 0
        self.progress: mmap.mmap | None = None
        if progress:
            with open(progress, "w+b") as f:
                f.truncate(8)
                self.progress = mmap.mmap(f.fileno(), 8)

    def finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def on_message(self, message: Message) -> None:
        if message.message_type != MessageType.SIGNAL:
            return
        if message.member == "ServerDataIn" and message.signature == "uaysqs":
            self.count_frames(1, len(message.body[1]))
        elif message.member == "ServerDataInBatch" and message.signature == "a(uaysq)s":
            frames = message.body[0]
            self.count_frames(len(frames), sum(len(frame[1]) for frame in frames))

    def count_frames(self, n: int, size: int) -> None:
        now = now_us()
        if self.count == 0:
            self.first_us = now
        self.last_us = now
        self.count += n
        self.bytes += size
        if self.progress is not None:
            struct.pack_into("=Q", self.progress, 0, self.count)
        if self.idle_s > 0 and (self.idle_handle is None or self.count - self.rearmed_at >= 1024):
            if self.idle_handle is not None:
                self.idle_handle.cancel()
            self.idle_handle = asyncio.get_running_loop().call_later(self.idle_s, self.finish)
            self.rearmed_at = self.count
        if self.count >= self.target:
            self.finish()


class Echo:
    """Sends every frame back to its handle."""

    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus
        self.tasks: set[asyncio.Task[None]] = set()
        self.errors = 0
        self.done = asyncio.get_running_loop().create_future()

    def finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def on_message(self, message: Message) -> None:
        if message.message_type != MessageType.SIGNAL or message.member != "ServerDataIn":
            return
        if message.signature != "uaysqs":
            return
        task = asyncio.get_running_loop().create_task(self.send(*message.body[:2]))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def send(self, handle: int, data: bytes) -> None:
        reply = await self.bus.call(
            Message(
                destination=NAME,
                path=PATH,
                interface=NAME,
                member="ServerSend",
                signature="uay",
                body=[handle, data],
            )
        )
        if reply is None or reply.message_type != MessageType.METHOD_RETURN:
            self.errors += 1


async def add_matches(bus: MessageBus) -> bool:
    for rule in MATCHES:
        reply = await bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="AddMatch",
                signature="s",
                body=[rule],
            )
        )
        if reply is None or reply.message_type != MessageType.METHOD_RETURN:
            print(f"AddMatch failed: {reply and reply.body}", file=sys.stderr)
            return False
    return True


async def listen(
    bus: MessageBus, on_message: Callable[[Message], None], finish: Callable[[], None]
) -> bool:
    """Hands the daemon's signals to on_message until SIGTERM or SIGINT calls finish."""
    bus.add_message_handler(on_message)
    if not await add_matches(bus):
        return False
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, finish)
    return True


async def echo(bus: MessageBus) -> int:
    echoer = Echo(bus)
    if not await listen(bus, echoer.on_message, echoer.finish):
        return 2
    print("ready", flush=True)
    await echoer.done
    print(f"send_errors={echoer.errors}", flush=True)
    bus.disconnect()
    return 0


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("address")
    parser.add_argument("mode", choices=["count", "echo"])
    parser.add_argument("n", type=int, nargs="?", default=0)
    parser.add_argument("--progress")
    parser.add_argument("--idle-ms", type=int, default=0)
    parser.add_argument("--timeout-s", type=int, default=0)
    args = parser.parse_args()

    bus = await MessageBus(bus_address=args.address).connect()
    if args.mode == "echo":
        return await echo(bus)
    counter = Counter(args.n, args.idle_ms, args.progress)
    if not await listen(bus, counter.on_message, counter.finish):
        return 2
    if args.timeout_s > 0:
        asyncio.get_running_loop().call_later(args.timeout_s, counter.finish)
    print("ready", flush=True)
    if args.n > 0:
        await counter.done
    print(
        f"count={counter.count} bytes={counter.bytes} "
        f"first_us={counter.first_us} last_us={counter.last_us}",
        flush=True,
    )
    # Stay until stdin ends, so the caller can read our CPU time first.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    bus.disconnect()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
