"""The benchmark's baseline: a minimal in-process listener (bench/run, section ha).

What a custom integration would be without sockbridge: an asyncio TCP
server that frames with readuntil() and a UDP endpoint, each firing one
sockbridge_data_in per frame with the integration's fields, and an action
bench_listener.send that writes to the connection (or UDP peer) of a
handle, for automations to answer with as they answer with sockbridge.send.
On a third port (direct path), a bus listener answers each frame at once.
Bench only: it is never installed.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from homeassistant.const import EVENT_HOMEASSISTANT_STOP
from homeassistant.core import Event, HomeAssistant, ServiceCall, callback
import homeassistant.helpers.config_validation as cv
from homeassistant.helpers.typing import ConfigType
import voluptuous as vol

DOMAIN = "bench_listener"
EVENT_DATA_IN = "sockbridge_data_in"
DELIMITER = b"\r\n"
IDENTIFIER = "bench_listener"
IDENTIFIER_DIRECT = "bench_listener_direct"

CONFIG_SCHEMA: Any = vol.Schema(
    {
        DOMAIN: vol.Schema(
            {
                vol.Required("tcp_port"): cv.port,
                vol.Required("udp_port"): cv.port,
                vol.Required("direct_port"): cv.port,
            }
        )
    },
    extra=vol.ALLOW_EXTRA,
)
# Any: the schema types differ between releases (voluptuous, probatio).
SEND_SCHEMA: Any = vol.Schema(
    {vol.Required("handle"): vol.Coerce(int), vol.Required("hex"): cv.string}
)


class Listener:
    """The servers, their connections and peers by handle."""

    def __init__(self, hass: HomeAssistant) -> None:
        """Nothing listens yet."""
        self.hass = hass
        self.handles = itertools.count(1)
        self.writers: dict[int, asyncio.StreamWriter] = {}
        self.peers: dict[int, tuple[str, int]] = {}
        self.peer_handles: dict[tuple[str, int], int] = {}
        self.servers: list[asyncio.Server] = []
        self.udp: asyncio.DatagramTransport | None = None

    async def start(self, tcp_port: int, udp_port: int, direct_port: int) -> None:
        """Listen on 127.0.0.1."""
        for port, identifier in ((tcp_port, IDENTIFIER), (direct_port, IDENTIFIER_DIRECT)):

            async def serve(
                reader: asyncio.StreamReader,
                writer: asyncio.StreamWriter,
                port: int = port,
                identifier: str = identifier,
            ) -> None:
                await self.serve(reader, writer, port, identifier)

            self.servers.append(await asyncio.start_server(serve, "127.0.0.1", port))
        transport, _ = await self.hass.loop.create_datagram_endpoint(
            lambda: Datagrams(self, udp_port), local_addr=("127.0.0.1", udp_port)
        )
        self.udp = transport

    async def serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        port: int,
        identifier: str,
    ) -> None:
        """One connection: a bus event per frame until it ends."""
        handle = next(self.handles)
        self.writers[handle] = writer
        address, remote_port = writer.get_extra_info("peername")[:2]
        try:
            while True:
                try:
                    frame = await reader.readuntil(DELIMITER)
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
                    break
                self.fire(port, identifier, handle, address, remote_port, frame)
        finally:
            del self.writers[handle]
            writer.close()

    @callback
    def fire(
        self,
        port: int,
        identifier: str,
        handle: int,
        address: str,
        remote_port: int,
        frame: bytes,
    ) -> None:
        """The integration's event, field for field."""
        self.hass.bus.async_fire(
            EVENT_DATA_IN,
            {
                "entry_id": DOMAIN,
                "server_id": identifier,
                "server_port": port,
                "identifier": identifier,
                "handle": handle,
                "address": address,
                "remote_port": remote_port,
                "text": frame.decode("utf-8", errors="replace"),
                "hex": frame.hex(),
            },
        )

    def send(self, handle: int, data: bytes) -> None:
        """Write to the connection or UDP peer of handle."""
        if (writer := self.writers.get(handle)) is not None:
            writer.write(data)
        elif (peer := self.peers.get(handle)) is not None and self.udp is not None:
            self.udp.sendto(data, peer)

    async def stop(self, _: Event | None = None) -> None:
        """Close everything."""
        for server in self.servers:
            server.close()
        for writer in list(self.writers.values()):
            writer.close()
        if self.udp is not None:
            self.udp.close()


class Datagrams(asyncio.DatagramProtocol):
    """The UDP endpoint: a handle per peer, frames split at the delimiter."""

    def __init__(self, listener: Listener, port: int) -> None:
        """Of listener, on port."""
        self.listener = listener
        self.port = port
        self.pending: dict[int, bytes] = {}

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        """Every whole frame of the datagram fires."""
        listener = self.listener
        peer = (addr[0], addr[1])
        handle = listener.peer_handles.get(peer)
        if handle is None:
            handle = listener.peer_handles[peer] = next(listener.handles)
            listener.peers[handle] = peer
        buffer = self.pending.pop(handle, b"") + data
        start = 0
        while (end := buffer.find(DELIMITER, start)) >= 0:
            end += len(DELIMITER)
            listener.fire(self.port, IDENTIFIER, handle, peer[0], peer[1], buffer[start:end])
            start = end
        if start < len(buffer):
            self.pending[handle] = buffer[start:]


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Listen on the ports of configuration.yaml."""
    conf = config[DOMAIN]
    listener = Listener(hass)
    await listener.start(conf["tcp_port"], conf["udp_port"], conf["direct_port"])
    # For bench_counter's probe.
    hass.data[DOMAIN] = listener
    hass.bus.async_listen_once(EVENT_HOMEASSISTANT_STOP, listener.stop)

    async def send(call: ServiceCall) -> None:
        listener.send(call.data["handle"], bytes.fromhex(call.data["hex"]))

    hass.services.async_register(DOMAIN, "send", send, schema=SEND_SCHEMA)

    @callback
    def direct(event: Event[dict[str, Any]]) -> None:
        # The direct path: a callback on the bus event answers at once.
        listener.send(event.data["handle"], bytes.fromhex(event.data["hex"]))

    hass.bus.async_listen(
        EVENT_DATA_IN,
        direct,
        event_filter=callback(lambda data: data.get("identifier") == IDENTIFIER_DIRECT),
    )
    return True
