"""A fault-injecting TCP proxy for RTSP over TCP: the faults a real link has, between irstream
and a real server, where the kernel offers no `tc netem` (this one has no netem qdisc).

RTSP over TCP carries the video as interleaved RTP packets ('$', channel, 2-byte length,
packet) between the RTSP messages.  From server to client the proxy can:

- lose packets: drop each interleaved RTP packet with a probability (what a lossy UDP link
  does to a camera's stream; the RTSP messages themselves always pass);
- delay them, by a base delay plus a uniform jitter, in order (a packet never overtakes the
  one before, as within one TCP connection);
- stall: send no video for a while, the connections kept open and the RTSP messages passing
  (a camera whose encoder hangs: what it would have sent meanwhile never exists, so the
  packets of the stall are dropped, not held back and sent in a burst after it);
- reset every connection at once (RST: a router or the camera dropping the session).

It runs its own asyncio loop on a thread; the fault settings are changed from any thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass

#: Bytes read from a socket at once.
CHUNK_BYTES = 65536
#: An interleaved RTP packet starts with this byte; anything else is an RTSP message.
INTERLEAVED = 0x24
#: Seconds the proxy may take to listen.
START_TIMEOUT_S = 5.0
#: Seconds between looks at a unit's release time while it waits (delay).
WAIT_STEP_S = 0.05
#: Units (packets, messages) on their way to the client at once; beyond, the proxy stops
#: reading from the server until the client takes some, as a TCP window does.
QUEUE_UNITS = 2048


@dataclass
class Faults:
    loss: float = 0.0  # probability that an interleaved packet is dropped
    delay_s: float = 0.0
    jitter_s: float = 0.0  # each packet's delay is delay_s + uniform(-jitter_s, jitter_s), at least 0
    stalled_until: float = 0.0  # time.monotonic() before which no video goes to the client


class FaultProxy:
    """Listens on 127.0.0.1:`port` (0 = any free port: see `.port`) and forwards to
    `upstream` (host, port) with `faults`."""

    def __init__(self, upstream: tuple[str, int], port: int = 0, seed: int = 0) -> None:
        self.upstream, self.faults = upstream, Faults()
        self.dropped = self.stalled = self.forwarded = self.resets = 0
        self._rng = random.Random(seed)
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(port,), name="fault-proxy", daemon=True)
        self._error: BaseException | None = None
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S) or self._error is not None:
            raise RuntimeError(f"fault proxy could not listen on 127.0.0.1:{port}: {self._error}")

    def set(self, **faults) -> None:
        """Change faults by name: loss, delay_s, jitter_s (0 turns each off)."""
        known = {f.name for f in dataclasses.fields(Faults)} - {"stalled_until"}
        if set(faults) - known:
            raise ValueError(f"unknown fault {sorted(set(faults) - known)[0]!r}; known: {', '.join(sorted(known))}")
        for k, v in faults.items():
            setattr(self.faults, k, v)

    def stall(self, seconds: float) -> None:
        self.faults.stalled_until = time.monotonic() + seconds

    def reset(self) -> None:
        """Close every connection with a TCP RST, as a dropped session does."""
        self.resets += 1
        self._loop.call_soon_threadsafe(self._reset_all)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)

    def _run(self, port: int) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", port))
        except OSError as exc:
            self._error = exc
            self._ready.set()
            return
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            self._reset_all()
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.close()

    def _reset_all(self) -> None:
        for w in list(self._writers):
            sock = w.get_extra_info("socket")
            if sock is not None:  # linger 0: the close sends RST instead of FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            w.transport.abort()  # at once, not after the write buffer drains (a stalled peer never drains it)
        self._writers.clear()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.close()  # the server is down: the client sees its connection refused-like close
            return
        self._writers |= {client_w, server_w}
        up = asyncio.ensure_future(self._pipe(client_r, server_w))
        down = asyncio.ensure_future(self._down(server_r, client_w))
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        for task in (up, down):
            task.cancel()
        for w in (client_w, server_w):
            self._writers.discard(w)
            w.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(CHUNK_BYTES):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            return  # a reset: the session ends, as on a real link

    async def _down(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Server -> client, unit by unit (RTSP message or interleaved packet), with the faults."""
        try:
            await self._forward(reader, writer)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError, ValueError):
            return  # the session ended, or the server sent what is not RTSP

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Units are read as they come and queued with their release time, so a delay adds
        latency without cutting the rate (as a long link does)."""
        queue: asyncio.Queue = asyncio.Queue(QUEUE_UNITS)
        sender = asyncio.ensure_future(self._send(queue, writer))
        try:
            release = 0.0  # when the previous unit goes out: order is kept
            async for unit, interleaved in self._units(reader):
                f = self.faults
                if interleaved and time.monotonic() < f.stalled_until:
                    self.stalled += 1
                    continue
                if interleaved and f.loss and self._rng.random() < f.loss:
                    self.dropped += 1
                    continue
                jitter = self._rng.uniform(-f.jitter_s, f.jitter_s) if f.jitter_s else 0.0
                release = max(release, time.monotonic() + max(0.0, f.delay_s + jitter))
                if sender.done():  # the client is gone
                    return
                await queue.put((release, unit))
        finally:
            sender.cancel()

    async def _send(self, queue: asyncio.Queue, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                release, unit = await queue.get()
                while (wait := release - time.monotonic()) > 0:
                    await asyncio.sleep(min(wait, WAIT_STEP_S))
                writer.write(unit)
                await writer.drain()
                self.forwarded += 1
        except (ConnectionError, OSError):
            return

    @staticmethod
    async def _units(reader: asyncio.StreamReader):
        """(bytes, is_interleaved) for each RTSP message or interleaved packet from the server."""
        while True:
            head = await reader.read(1)
            if not head:
                return
            if head[0] == INTERLEAVED:
                rest = await reader.readexactly(3)
                (length,) = struct.unpack(">H", rest[1:])
                yield head + rest + await reader.readexactly(length), True
                continue
            message = head + await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":", 1)[1]) for line in message.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            yield message + (await reader.readexactly(length) if length else b""), False
