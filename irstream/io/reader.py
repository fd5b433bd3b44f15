"""The reader thread: a source read on its own thread into a small buffer the main thread
takes from, so decoding overlaps inference."""

from __future__ import annotations

import threading
import time
from collections import deque

from irstream.io.base import Source
from irstream.types import Frame

#: Seconds a waiting reader or taker sleeps before checking for a stop request.
POLL_S = 0.1


class FrameReader:
    """Reads a source on its own thread into a buffer the main thread takes from.

    latest_only=False (files): a buffer of `maxsize` frames; reading waits for room.
    latest_only=True (live): a buffer of one; a new frame replaces an untaken one, counted
    in `dropped`, so the main thread always gets the newest.
    limit: stop after reading this many frames; 0 = until the source ends.
    pace: hand frames on no faster than their timestamps advance, as a camera delivers them: a
        file run live (`--mode live`) then sees what a live run of that camera would, dropping
        the frames it cannot keep up with instead of all but the newest decoded.
    """

    def __init__(self, source: Source, maxsize: int, latest_only: bool, limit: int = 0, pace: bool = False) -> None:
        self.source, self.maxsize, self.latest_only, self.limit = source, maxsize, latest_only, limit
        self.pace = pace
        self.buffer: deque[Frame] = deque()
        self.cond = threading.Condition()
        self.stop_event = threading.Event()
        self.done = False
        self.read = 0
        self.dropped = 0
        self.read_ms: dict[int, float] = {}
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="reader", daemon=True)

    def start(self) -> "FrameReader":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.source.interrupt()  # a live source waiting to reconnect gives up at once
        with self.cond:
            self.cond.notify_all()

    def join(self, timeout: float) -> bool:
        """Wait for the thread to end; True when it has (or never started)."""
        if self.thread.ident is not None:
            self.thread.join(timeout)
        return not self.thread.is_alive()

    @property
    def buffered(self) -> int:
        with self.cond:
            return len(self.buffer)

    def get(self, timeout: float = POLL_S) -> Frame | None:
        """The next frame; None on timeout.  Check `finished` to tell the end from a wait."""
        with self.cond:
            if not self.buffer and not self.done:
                self.cond.wait(timeout)
            if not self.buffer:
                return None
            frame = self.buffer.popleft()
            self.cond.notify_all()
            return frame

    @property
    def finished(self) -> bool:
        with self.cond:
            return self.done and not self.buffer

    def _run(self) -> None:
        it = iter(self.source)
        start = None  # (wall clock, timestamp) of the first frame, when pacing
        try:
            while not self.stop_event.is_set() and not (self.limit and self.read >= self.limit):
                t0 = time.perf_counter()
                frame = next(it, None)
                if frame is None:
                    break
                self.read_ms[frame.index] = (time.perf_counter() - t0) * 1e3
                if self.pace:
                    start = start or (time.perf_counter(), frame.timestamp_s)
                    self.stop_event.wait(max(0.0, start[0] + frame.timestamp_s - start[1] - time.perf_counter()))
                self._put(frame)
        except BaseException as exc:  # handed to the main thread, which reports it
            self.error = exc
        finally:
            it.close()
            with self.cond:
                self.done = True
                self.cond.notify_all()

    def _put(self, frame: Frame) -> None:
        with self.cond:
            self.read += 1
            if self.latest_only:
                self.dropped += len(self.buffer)
                for old in self.buffer:
                    self.read_ms.pop(old.index, None)
                self.buffer.clear()
            else:
                while len(self.buffer) >= self.maxsize and not self.stop_event.is_set():
                    self.cond.wait(POLL_S)
            self.buffer.append(frame)
            self.cond.notify_all()
