"""Each output runs in its own thread behind a bounded queue (`SinkWorker`), so a slow disk,
window or subscriber never stalls inference.

A sink is any object with `open()`, `write(result)` and `close()` (the `Sink` protocol), all
called from its worker thread, so a sink may hold objects that are not thread-safe (a ZeroMQ
socket, a GUI window).  It may also have `idle()`, called while no result waits.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections import deque
from typing import Protocol

from irstream.errors import UserError
from irstream.types import FrameResult

#: Seconds a closing sink waits for its queue to drain before it gives up on what is left.
CLOSE_TIMEOUT_S = 30.0
#: Timings kept per output, most recent frames (about 33 min at 25 frames/s).
TIMING_WINDOW_FRAMES = 50_000
#: Period at which an idle worker lets its sink do housekeeping (a window pumps its events).
IDLE_POLL_S = 0.05


class Sink(Protocol):
    def open(self) -> None: ...

    def write(self, result: FrameResult) -> None: ...

    def close(self) -> None: ...


class SinkWorker:
    """Runs one sink in a thread behind a queue of `maxsize` results.

    drop_when_full=False (file runs): `put` blocks while the queue is full, so nothing is lost
    and a slow sink paces the run.  True (live runs, windows): the new result is dropped and
    counted, so the camera is read on time.
    """

    def __init__(self, sink, name: str, maxsize: int = 64, drop_when_full: bool = False) -> None:
        self.sink, self.name, self.drop_when_full = sink, name, drop_when_full
        self.queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self.dropped = 0
        self.written = 0
        # Recent frames only, so that a weeks-long run keeps bounded memory.
        self.times_ms: deque = deque(maxlen=TIMING_WINDOW_FRAMES)
        self.latency_ms: deque = deque(maxlen=TIMING_WINDOW_FRAMES)  # frame read -> written
        self.error: BaseException | None = None
        self.timed_out = False
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sink-{name}", daemon=True)

    def start(self) -> "SinkWorker":
        self._thread.start()
        self._ready.wait()
        if self.error is not None:
            raise self.error
        return self

    def put(self, res: FrameResult) -> None:
        if self.error is not None:
            raise UserError(f"{self.name}: {self.error}") from None
        if not self._thread.is_alive():
            raise UserError(f"{self.name}: this output stopped unexpectedly; the run cannot go on")
        if self.drop_when_full:
            try:
                self.queue.put_nowait(res)
            except queue.Full:
                self.dropped += 1
        else:
            self.queue.put(res)

    def close(self) -> None:
        """Let the sink finish what is queued, then close it (in its own thread).  A sink that
        cannot finish within CLOSE_TIMEOUT_S is abandoned and `timed_out` set."""
        if not self._thread.is_alive():
            return
        try:
            self.queue.put(None, timeout=CLOSE_TIMEOUT_S)
        except queue.Full:
            self.timed_out = True
            return
        self._thread.join(CLOSE_TIMEOUT_S)
        self.timed_out = self._thread.is_alive()

    def _run(self) -> None:
        try:
            self.sink.open()
        except BaseException as exc:  # reported to start() in the caller's thread
            self.error = exc if isinstance(exc, UserError) else UserError(f"{self.name}: cannot open ({exc})")
            with contextlib.suppress(Exception):
                self.sink.close()  # what open() made before it failed
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop()
        except BaseException as exc:  # the worker ends; put() and the run report it
            self.error = self.error or exc
        finally:
            try:
                self.sink.close()
            except Exception as exc:
                self.error = self.error or exc

    def _loop(self) -> None:
        idle = getattr(self.sink, "idle", None)
        while True:
            try:
                res = self.queue.get(timeout=IDLE_POLL_S if idle else None)
            except queue.Empty:
                idle()
                continue
            if res is None:
                return
            if self.error is not None:
                continue  # broken sink: keep the queue moving so the run can end and report
            t0 = time.perf_counter()
            try:
                self.sink.write(res)
                self.written += 1
            except Exception as exc:
                self.error = exc
            t1 = time.perf_counter()
            self.times_ms.append((t1 - t0) * 1e3)
            self.latency_ms.append((t1 - res.frame.read_at) * 1e3)


