"""Loopback helpers for measuring a run from the outside: a free TCP port, and a ZeroMQ
subscriber that counts what arrives (bench pipeline, the soak, tests)."""

from __future__ import annotations

import time


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Subscriber:
    """Counts the messages on an endpoint from a thread, until closed and drained.  With
    pause_every_s it stops reading for pause_s that often, as a consumer that hangs would."""

    DRAIN_S = 1.0

    def __init__(self, endpoint: str, topic: str, pause_every_s: float = 0.0, pause_s: float = 0.0,
                 gap_s: float = 0.5) -> None:
        """gap_s: silences this long or longer are kept in `gaps`, as (time.monotonic() of the
        message that ended it, its length s): what a consumer saw of an outage."""
        import threading

        import zmq

        self.received = self.pauses = 0
        self.gaps: list[tuple[float, float]] = []
        self.first_at = self.last_at = None
        self._gap_s = gap_s
        self._every, self._pause = pause_every_s, pause_s
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self._sock.connect(endpoint)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="subscriber")

    def __enter__(self) -> "Subscriber":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()
        self._sock.close()
        self._ctx.term()

    def _run(self) -> None:
        idle_since = None
        next_pause = time.monotonic() + self._every if self._every else float("inf")
        while True:
            if time.monotonic() >= next_pause and not self._done.is_set():
                self.pauses += 1
                self._done.wait(self._pause)
                next_pause = time.monotonic() + self._every
            if self._sock.poll(100):
                self._sock.recv_multipart()
                self.received += 1
                now = time.monotonic()
                if self.last_at is not None and now - self.last_at >= self._gap_s:
                    self.gaps.append((now, now - self.last_at))
                self.first_at, self.last_at = self.first_at or now, now
                idle_since = None
            elif self._done.is_set():
                idle_since = idle_since or time.perf_counter()
                if time.perf_counter() - idle_since > self.DRAIN_S:
                    return
