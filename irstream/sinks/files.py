"""Outputs to files: annotated video, annotated frames, JSONL messages, MOTChallenge CSV.
Each runs behind a SinkWorker (irstream.sinks.worker)."""

from __future__ import annotations

import time
from pathlib import Path

import cv2

from irstream.errors import UserError
from irstream.io.imageio import write_png
from irstream.sinks.message import build_message, encode
from irstream.sinks.annotate import TrackAnnotator
from irstream.types import FrameResult

#: Container -> codec for saved video.  mp4v plays everywhere; FFV1 is lossless (for clips
#: meant to be analysed again); MJPG is the safe choice for .avi.
VIDEO_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mkv": "FFV1", ".avi": "MJPG"}
#: Longest gap (s) a live video bridges by repeating a frame; a longer stall shows as a jump.
MAX_REPEAT_S = 2.0


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
    matched detection's size centred on the track's position (see Tracks.centroid_xy)."""

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
            raise UserError(f"{self.path}: unknown video container; use one of {', '.join(VIDEO_FOURCC)}", "output.save")

    def open(self) -> None:
        _open_for_writing(self.path, "--save").close()

    def write(self, res: FrameResult) -> None:
        img = self.annotator.annotate(res, self.hud.line(res))
        if self._writer is None:
            fourcc = cv2.VideoWriter_fourcc(*VIDEO_FOURCC[self.path.suffix.lower()])
            self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (img.shape[1], img.shape[0]))
            if not self._writer.isOpened():
                raise UserError(f"{self.path}: OpenCV cannot write this video; try a .mp4 or .avi name", "output.save")
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
        # made here so that an unwritable folder stops the run before its first frame
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{self.folder}: cannot create ({exc.strerror}); pick a writable folder", "output.frames_dir") from None

    def write(self, res: FrameResult) -> None:
        path = self.folder / f"{res.frame.index:06d}.png"
        write_png(path, self.annotator.annotate(res, self.hud.line(res)), key="output.frames_dir")

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
