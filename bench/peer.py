# SPDX-License-Identifier: LGPL-2.1-or-later
"""The in-process baseline: what a custom integration would otherwise write.

    peer.py echo
    peer.py count N [--idle-ms MS] [--timeout-s S]

An asyncio TCP server on 127.0.0.1 (ephemeral port, printed as "port=…")
that frames its input at "\\r\\n" with StreamReader.readuntil(), the way an
asyncio integration reads a line protocol. In echo mode it writes every frame
back (the far end of the latency round trip, without D-Bus). In count mode it
counts frames over all connections until N arrived (or none came for MS
milliseconds after the first, or S seconds passed), then prints
"count=… bytes=… first_us=… last_us=…" as the subscribers do, and stays
until stdin ends.
Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time

DELIMITER = b"\r\n"


def now_us() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Peer:
    def __init__(self, mode: str, target: int, idle_ms: int) -> None:
        self.mode = mode
        self.target = target
        self.idle_s = idle_ms / 1000
        self.count = 0
        self.bytes = 0
        self.first_us = 0
        self.last_us = 0
        self.done = asyncio.get_running_loop().create_future()
        self.idle_handle: asyncio.TimerHandle | None = None

    def finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def on_frame(self, frame: bytes) -> None:
        now = now_us()
        if self.count == 0:
            self.first_us = now
        self.last_us = now
        self.count += 1
        self.bytes += len(frame)
        if self.idle_s > 0 and self.count & 1023 == 1:
            if self.idle_handle is not None:
                self.idle_handle.cancel()
            loop = asyncio.get_running_loop()
            self.idle_handle = loop.call_later(self.idle_s, self.finish)
        if self.count >= self.target:
            self.finish()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    frame = await reader.readuntil(DELIMITER)
                except asyncio.IncompleteReadError:
                    break
                if self.mode == "echo":
                    writer.write(frame)
                    await writer.drain()
                else:
                    self.on_frame(frame)
        except ConnectionError:
            pass
        finally:
            writer.close()


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["echo", "count"])
    parser.add_argument("n", type=int, nargs="?", default=0)
    parser.add_argument("--idle-ms", type=int, default=0)
    parser.add_argument("--timeout-s", type=int, default=0)
    args = parser.parse_args()

    peer = Peer(args.mode, args.n, args.idle_ms)
    server = await asyncio.start_server(peer.handle, "127.0.0.1", 0, backlog=1024)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, peer.finish)
    if args.timeout_s > 0:
        loop.call_later(args.timeout_s, peer.finish)
    print(f"port={server.sockets[0].getsockname()[1]}", flush=True)
    await peer.done
    server.close()
    if args.mode == "count":
        print(
            f"count={peer.count} bytes={peer.bytes} "
            f"first_us={peer.first_us} last_us={peer.last_us}",
            flush=True,
        )
        # Stay until stdin ends, so the caller can read our CPU time first.
        await loop.run_in_executor(None, sys.stdin.read)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
