"""Where results go: files (annotated video, JSONL, MOTChallenge CSV), each behind its own
thread and bounded queue (`SinkWorker`), so a slow disk never stalls inference.

A sink has `open()`, `write(result)` and `close()`, all called from its worker thread, so a
sink may hold objects that are not thread-safe (a ZeroMQ socket, a GUI window).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections import deque
import time
from pathlib import Path

import cv2

from irstream.annotate import TrackAnnotator
from irstream.errors import UserError
from irstream.message import build_message, encode
from irstream.types import FrameResult

#: Container -> codec for saved video.  mp4v plays everywhere; FFV1 is lossless (for clips
#: meant to be analysed again); MJPG is the safe choice for .avi.
VIDEO_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mkv": "FFV1", ".avi": "MJPG"}
#: Seconds a closing sink waits for its queue to drain before it gives up on what is left.
CLOSE_TIMEOUT_S = 30.0
#: Timings kept per output, most recent frames (about 33 min at 25 frames/s).
TIMING_WINDOW_FRAMES = 50_000
#: Longest gap (s) a live video bridges by repeating a frame; a longer stall shows as a jump.
MAX_REPEAT_S = 2.0
#: Period at which an idle worker lets its sink do housekeeping (a window pumps its events).
IDLE_POLL_S = 0.05


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


class JsonlSink:
    """One JSON message per line, the same message the ZeroMQ publisher sends."""

    def __init__(self, path: str | Path, include_tentative: bool = False) -> None:
        self.path, self.include_tentative = Path(path), include_tentative
        self._fh = None

    def open(self) -> None:
        self._fh = _open_for_writing(self.path, "--jsonl")

    def write(self, res: FrameResult) -> None:
        self._fh.write(encode(build_message(res, self.include_tentative)).decode() + "\n")
        self._fh.flush()  # whole lines for a consumer tailing the file during a live run

    def close(self) -> None:
        if self._fh:
            self._fh.close()


class MotSink:
    """Published tracks in MOTChallenge result format, one row per track per frame:
    frame (1-based), id, left, top, width, height, score, -1, -1, -1.  The box is the last
    matched detection's size centred on the filtered position."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fh = None

    def open(self) -> None:
        self._fh = _open_for_writing(self.path, "--mot")

    def write(self, res: FrameResult) -> None:
        t = res.tracks.published()
        for tid, (x, y), b, s in zip(t.track_id, t.centroid_xy, t.bbox_xyxy, t.score):
            w, h = float(b[2] - b[0]), float(b[3] - b[1])
            self._fh.write(f"{res.frame.index + 1},{tid},{x - w / 2 + 0.5:.2f},{y - h / 2 + 0.5:.2f},"
                           f"{w:.0f},{h:.0f},{s:.4f},-1,-1,-1\n")

    def close(self) -> None:
        if self._fh:
            self._fh.close()


class VideoSink:
    """The annotated video: tracks with ids and trails, raw detections, a HUD line with the
    frame, processing rate and latency.  The writer opens on the first frame (its size).

    real_time (live runs): a live run processes fewer frames than the camera gives, so each
    processed frame is repeated until the next one's capture time, and the video plays at the
    speed of the scene instead of fast-forward.
    """

    def __init__(self, path: str | Path, fps: float, annotator: TrackAnnotator | None = None,
                 real_time: bool = False) -> None:
        self.path, self.fps, self.real_time = Path(path), fps, real_time
        self.annotator = annotator or TrackAnnotator()
        self.hud = HudClock()
        self._writer = None
        self._t0: float | None = None
        self._frames_out = 0
        if self.path.suffix.lower() not in VIDEO_FOURCC:
            raise UserError(f"--save {self.path}: unknown video container; use one of {', '.join(VIDEO_FOURCC)}")

    def open(self) -> None:
        _open_for_writing(self.path, "--save").close()

    def write(self, res: FrameResult) -> None:
        img = self.annotator.annotate(res, self.hud.line(res))
        if self._writer is None:
            fourcc = cv2.VideoWriter_fourcc(*VIDEO_FOURCC[self.path.suffix.lower()])
            self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (img.shape[1], img.shape[0]))
            if not self._writer.isOpened():
                raise UserError(f"--save {self.path}: OpenCV cannot write this video; try a .mp4 or .avi name")
        for _ in range(self._copies(res.frame.timestamp_s)):
            self._writer.write(img)
            self._frames_out += 1

    def _copies(self, t: float) -> int:
        """How many times to write a frame captured at `t` (s) so that video time follows it."""
        if not self.real_time:
            return 1
        if self._t0 is None:
            self._t0 = t
        due = int(round((t - self._t0) * self.fps)) + 1
        return min(max(1, due - self._frames_out), int(MAX_REPEAT_S * self.fps) + 1)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()


class FramesSink:
    """The annotated frames as numbered PNGs (lossless; for stills and for the README)."""

    def __init__(self, folder: str | Path, annotator: TrackAnnotator | None = None) -> None:
        self.folder = Path(folder)
        self.annotator = annotator or TrackAnnotator()
        self.hud = HudClock()

    def open(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"--frames-dir {self.folder}: cannot create ({exc.strerror}); pick a writable folder") from None

    def write(self, res: FrameResult) -> None:
        path = self.folder / f"{res.frame.index:06d}.png"
        if not cv2.imwrite(str(path), self.annotator.annotate(res, self.hud.line(res))):
            raise UserError(f"--frames-dir {self.folder}: cannot write {path.name}")

    def close(self) -> None:
        pass


class HudClock:
    """The HUD's numbers, each labelled: frame, processing rate (smoothed over about 10 frames),
    latency, detections and published tracks.  The latency of a file run is the processing
    time (preprocess to output): read-to-output there is mostly frames queued ahead of the
    model.  A live run shows read-to-output, what a consumer of the feed waits."""

    def __init__(self) -> None:
        self._last: float | None = None
        self._fps = 0.0

    def line(self, res: FrameResult) -> str:
        now = time.perf_counter()
        if self._last is not None and now > self._last:
            inst = 1.0 / (now - self._last)
            self._fps = inst if self._fps == 0 else 0.9 * self._fps + 0.1 * inst
        self._last = now
        f = res.frame
        if res.live:
            latency = f"read->out {(now - f.read_at) * 1e3:5.0f} ms"
        else:
            latency = f"processing {res.timings_ms.get('processing', float('nan')):5.0f} ms"
        n = len(res.tracks.published())
        return f"frame {f.index}  {self._fps:4.1f} fps  {latency}  detections {len(res.detections)}  tracks {n}"


def _open_for_writing(path: Path, flag: str):
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "w")
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot write ({exc.strerror}); pick a writable path") from None
