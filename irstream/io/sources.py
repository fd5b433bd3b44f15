"""Where frames come from: video files, image sequences, cameras, streams, synthetic scenes.

Every source is an iterable of `Frame`s with the same few attributes, so the pipeline never
asks what kind it has::

    with open_source("clip.mp4") as src:
        for frame in src:
            ...

A source opens its device when it is built, so a bad path or a missing camera fails before
the model loads.  Frames come from a generator that releases the device in `finally`: when
the frames run out, when a loop breaks out early (the generator is closed), or on `close()`
and leaving the `with` block.  A source is iterated once; open it again to start over.

Images arrive exactly as stored: (H, W) uint8 or uint16, no scaling.  Colour (BGR/BGRA)
frames are collapsed with `imageio.to_gray`, which gives a gray image saved as colour back
exactly.

No threads here: the reader thread with its bounded queue lives in the pipeline.
"""

from __future__ import annotations

import glob
import logging
import math
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self
from urllib.parse import parse_qsl, unquote, urlsplit

import cv2
import numpy as np

from irstream.errors import UserError
from irstream.io.imageio import read_gray, to_gray
from irstream.types import Frame

log = logging.getLogger(__name__)

#: Image files an image-sequence folder or glob may hold (compared lower-case).
IMAGE_EXTS = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")
#: URL schemes opened as live streams through FFmpeg.
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "rtp", "srt")
#: Live sources: failed reads in a row before giving up, and the pause between them.
#: More retries ride out longer hiccups but delay the error when a camera is really gone.
LIVE_READ_RETRIES = 5
#: A network stream is not retried before it is reopened: FFmpeg fails a read only once the
#: connection is gone or silent for STREAM_READ_TIMEOUT_MS, and a finished session does not
#: deliver again, so retries would only add a second to every outage.
STREAM_READ_RETRIES = 0
LIVE_RETRY_SLEEP_S = 0.2
#: Video files: failed reads in a row tolerated when the container gives no frame count.
FILE_READ_RETRIES = 5
#: A timestamp gap counts as skipped frames from (2 - this) periods on: 1.75 periods is one
#: late frame of a jittery source, 2 is one frame missing.
SKIP_SLACK_PERIODS = 0.25
#: Streams: how long FFmpeg may take to connect, and to deliver one frame.
STREAM_OPEN_TIMEOUT_MS = 10_000
STREAM_READ_TIMEOUT_MS = 5_000
#: A live source silent this long, s, has had an outage (counted, with its length), whether it
#: came back by reconnecting or by itself (a stream that stalled with its connection open):
#: 40 frames at 25 frames/s, far beyond any jitter.
OUTAGE_MIN_S = 1.6
#: Where OpenCV's FFmpeg backend reads its demuxer options, and what irstream sets for RTSP.
FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
RTSP_OPTIONS = "rtsp_transport;tcp"


@dataclass(frozen=True)
class ReconnectConfig:
    """How a live source that stops delivering is brought back ([source.reconnect]).

    After LIVE_READ_RETRIES quick retries fail, the device is released and opened again: the
    first try after initial_s, then waits doubling up to max_s between tries, for as long as
    it takes, or until give_up_s have passed without a frame (0 = never give up).
    """

    initial_s: float = 0.5
    max_s: float = 10.0
    give_up_s: float = 0.0

    def __post_init__(self) -> None:
        if not (0 < self.initial_s <= self.max_s < math.inf):
            raise ValueError(f"initial_s={self.initial_s}, max_s={self.max_s}: need 0 < initial_s <= max_s, finite")
        if not 0 <= self.give_up_s < math.inf:
            raise ValueError(f"give_up_s={self.give_up_s}: must be >= 0 and finite (0 = never)")

    def delays(self) -> Iterator[float]:
        delay = self.initial_s
        while True:
            yield delay
            delay = min(2 * delay, self.max_s)


# FFmpeg's raw pixel-format tag for little-endian 16-bit gray, as CAP_PROP_CODEC_PIXEL_FORMAT gives it.
_GRAY16LE_TAG = int.from_bytes(b"Y1\x00\x10", "little")


def _bit_depth(img: np.ndarray) -> int:
    return 16 if img.dtype == np.uint16 else 8


#: OpenCV's log level ERROR (its LOG_LEVEL_ERROR, the same number in every version).
OPENCV_LOG_ERROR = 2


@contextmanager
def _quiet_opencv():
    """Hold back OpenCV's own WARN lines while opening; our UserError says what went wrong."""
    api = getattr(cv2.utils, "logging", None)  # OpenCV 4.x wheels have only cv2.setLogLevel
    get, put = (api.getLogLevel, api.setLogLevel) if api else (cv2.getLogLevel, cv2.setLogLevel)
    level = get()
    put(OPENCV_LOG_ERROR)
    try:
        yield
    finally:
        put(level)


def _fourcc_str(value: float) -> str:
    v = int(value) & 0xFFFFFFFF
    return v.to_bytes(4, "little").decode("latin-1").rstrip(" \x00")


def _redact(url: str) -> str:
    """A URL with any password replaced by ***, for ids and messages."""
    return re.sub(r"(//[^/:@]*):[^/@]*@", r"\1:***@", url)


def natural_key(text: str) -> list:
    """Sort key that orders digit runs by value: frame2 < frame10."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


# ---- the common shape of a source ----------------------------------------------------------

class Source:
    """An iterable of Frames that owns a device (a file handle, a camera, a connection).

    source_id:   what the user gave (passwords in URLs masked), also stamped on every Frame.
    live:        True for cameras and streams: timestamps are capture times, frames cannot be
                 re-read, and a stalled read is retried rather than taken as the end.
    fps:         nominal frame rate (the container's, the camera's, or the one given).
    frame_count: frames to expect, or None when unknown (live sources, some containers).  For
                 video files this is the container's figure, which can be an estimate.
    shape:       (H, W) of the frames, known once the source is open.
    bit_depth:   8 or 16, from the first frame.
    """

    source_id: str = ""
    live: bool = False
    fps: float = 25.0
    frame_count: int | None = None
    shape: tuple[int, int] | None = None
    bit_depth: int | None = None

    _closed = False
    _iterated = False

    def __iter__(self) -> Iterator[Frame]:
        if self._iterated:
            raise RuntimeError(f"{self.source_id}: a source is iterated once; open it again to start over")
        if self._closed:
            raise RuntimeError(f"{self.source_id}: source is closed")
        self._iterated = True
        return self._generate()

    def _generate(self) -> Iterator[Frame]:
        try:
            yield from self._frames()
        finally:
            self.close()

    def _frames(self) -> Iterator[Frame]:
        raise NotImplementedError

    def _release(self) -> None:
        """Free the device; called once, by close()."""

    def interrupt(self) -> None:
        """Ask a read that is waiting (a live source reconnecting) to give up at once; from any
        thread.  The source then ends as if it had run out of frames."""

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.source_id!r}, live={self.live}, fps={self.fps:g}, "
                f"frames={self.frame_count})")


# ---- image sequences -----------------------------------------------------------------------

class ImageSequenceSource(Source):
    """Numbered image files, read in natural order, timestamped index / fps.

    Every frame must have the size and bit depth of the first; one that differs, or that
    cannot be read, stops the run with a UserError naming the file.
    """

    def __init__(self, spec: str, paths: list[Path], fps: float):
        self.source_id, self.paths, self.fps = spec, list(paths), float(fps)
        self.frame_count = len(self.paths)
        self._first = read_gray(self.paths[0])
        self.shape, self.bit_depth = self._first.shape, _bit_depth(self._first)

    def _frames(self) -> Iterator[Frame]:
        h, w = self.shape
        for i, path in enumerate(self.paths):
            if self._closed:
                return
            img = self._first if i == 0 else read_gray(path)
            self._first = None
            if img.shape != self.shape:
                raise UserError(f"{path}: {img.shape[1]}x{img.shape[0]} px, but the sequence's first frame "
                                f"{self.paths[0].name} is {w}x{h}; all frames must be the same size")
            if _bit_depth(img) != self.bit_depth:
                raise UserError(f"{path}: {_bit_depth(img)}-bit, but the sequence's first frame "
                                f"{self.paths[0].name} is {self.bit_depth}-bit; save all frames at one depth")
            yield Frame(img, i, i / self.fps, self.source_id, self.bit_depth)

    def _release(self) -> None:
        self._first = None


def _image_files(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir()
             if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")]
    return sorted(files, key=lambda p: natural_key(p.name))


# ---- OpenCV captures: video files, cameras, streams ----------------------------------------

def _capture_to_gray(raw: np.ndarray, source_id: str) -> np.ndarray:
    """An image from VideoCapture.read() as (H, W) uint8/uint16."""
    if raw.dtype not in (np.uint8, np.uint16):
        raise UserError(f"{source_id}: frames arrive as {raw.dtype}; only 8- and 16-bit images are supported")
    if raw.ndim == 2 or (raw.ndim == 3 and raw.shape[2] in (1, 3, 4)):
        return to_gray(raw)
    raise UserError(f"{source_id}: frames arrive with shape {raw.shape}, not as an image")


class VideoFileSource(Source):
    """A video file read through OpenCV's FFmpeg backend, every frame in order.

    Timestamps are the container's presentation times, or index / fps when it gives none.
    16-bit gray video (FFV1 gray16le) is read raw, keeping all 16 bits; everything else is
    decoded to BGR and made gray.

    A read that fails mid-file is retried, while the container says frames remain (or up to
    FILE_READ_RETRIES in a row when it gives no count); each failed read counts in `corrupt_frames` and consumes an
    index, so the indices of the frames after it stay their positions in the file.  A frame the
    demuxer skips without a failed read shows as a jump in the timestamps, and counts too.
    """

    def __init__(self, spec: str, path: Path, fps: float):
        self.source_id = spec
        self.corrupt_frames = 0
        api = cv2.CAP_FFMPEG if cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG) else cv2.CAP_ANY
        with _quiet_opencv():
            cap = cv2.VideoCapture(str(path), api)
        if not cap.isOpened():
            cap.release()
            raise UserError(f"{spec}: OpenCV cannot open this as a video (not a video, or a codec this build lacks); "
                            f"convert it, e.g. `ffmpeg -i IN -c:v ffv1 OUT.mkv`, or give a folder of images")
        self._cap = cap
        if int(cap.get(cv2.CAP_PROP_CODEC_PIXEL_FORMAT)) == _GRAY16LE_TAG:
            cap.set(cv2.CAP_PROP_CONVERT_RGB, 0)  # hand over gray16le as (H, W) uint16, all bits kept
        container_fps = cap.get(cv2.CAP_PROP_FPS)
        self._container_fps = 0 < container_fps < 1000
        self.fps = float(container_fps) if self._container_fps else float(fps)
        self._prev_msec: float | None = None
        n = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(n) if n > 0 else None
        try:
            ok, raw = cap.read()
            if not ok or raw is None or raw.size == 0:
                raise UserError(f"{spec}: the video opens but no frame decodes (empty or damaged); "
                                f"check it with `ffprobe {spec}`")
            self._first = self._image(raw, 0)
            self._skipped()  # the first frame's timestamp, for the first gap
        except BaseException:
            self.close()
            raise
        self.shape, self.bit_depth = self._first[0].shape, _bit_depth(self._first[0])

    def _image(self, raw: np.ndarray, index: int) -> tuple[np.ndarray, float]:
        msec = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        t = msec / 1000.0 if msec > 0 else index / self.fps
        return _capture_to_gray(raw, self.source_id), t

    def _frames(self) -> Iterator[Frame]:
        img, t = self._first
        self._first = None
        index = 0
        while True:
            yield Frame(img, index, t, self.source_id, _bit_depth(img))
            index += 1
            got = self._read(index)
            if got is None:
                return
            index, img, t = got

    def _read(self, index: int) -> tuple[int, np.ndarray, float] | None:
        """The next decodable frame as (index, image, t), or None at the end of the file."""
        failures = 0
        while not self._closed:
            ok, raw = self._cap.read()
            if ok and raw is not None and raw.size:
                # The demuxer can skip a damaged frame without a failed read; the gap in the
                # timestamps still shows it.
                failures = max(failures, self._skipped())
                if failures:
                    log.warning("%s: %d frame(s) before frame %d could not be decoded", self.source_id,
                                failures, index + failures)
                self.corrupt_frames += failures
                return (index + failures, *self._image(raw, index + failures))
            failures += 1
            if self.frame_count is None:
                if failures > FILE_READ_RETRIES:
                    break
            elif index + failures >= self.frame_count:
                break
        if self.frame_count is not None and index < self.frame_count:
            # Announced frames that would not decode, up to the end: counted like those mid-file.
            # (Containers' counts can be estimates; a shortfall is reported, not raised.)
            log.warning("%s: the last %d of the %d frames the container announces could not be decoded "
                        "(or its count was an estimate)", self.source_id, self.frame_count - index, self.frame_count)
            self.corrupt_frames += self.frame_count - index
        return None

    def _skipped(self) -> int:
        """Frames missing between the last frame and this one, from their timestamps: gaps of
        about two periods or more only, so that a jittery or variable frame rate adds nothing.
        0 when the container gives no timestamps or no frame rate of its own."""
        msec = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        prev, self._prev_msec = self._prev_msec, msec
        if not self._container_fps or msec <= 0 or prev is None:
            return 0
        periods = (msec - prev) * self.fps / 1000.0
        return max(0, math.floor(periods + SKIP_SLACK_PERIODS) - 1)

    def _release(self) -> None:
        self._first = None
        cap = getattr(self, "_cap", None)
        if cap is not None:
            cap.release()


@dataclass(frozen=True)
class CameraConfig:
    """What to ask a camera for.  0 and "" keep the camera's own setting.

    width, height: frame size in px.
    fps:           frame rate to request; the source reports what the driver says it got.
    fourcc:        pixel format: "Y16" (raw 16-bit gray, what radiometric thermal cores give),
                   "GREY" (8-bit gray), "YUYV", "MJPG", ...; "" keeps the driver's default.
    convert_rgb:   let OpenCV convert frames to BGR (then made gray here).  None decides from
                   fourcc: off for Y16, since conversion would keep only 8 of the 16 bits, on
                   otherwise.  Turning it off for compressed formats (MJPG) gives undecodable
                   buffers.
    """

    width: int = 0
    height: int = 0
    fps: float = 0.0
    fourcc: str = ""
    convert_rgb: bool | None = None

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"camera {name}={v!r}: a whole number of pixels, or 0 for the camera's default")
        if not (self.fps >= 0 and math.isfinite(self.fps)):
            raise ValueError(f"camera fps={self.fps!r}: frames per second, or 0 for the camera's default")
        if len(self.fourcc) > 4 or not self.fourcc.isascii():
            raise ValueError(f"camera fourcc={self.fourcc!r}: up to 4 ASCII characters, e.g. 'Y16', 'GREY', 'MJPG'")

    @property
    def wants_convert(self) -> bool:
        """Whether OpenCV's conversion to BGR is asked for (convert_rgb, or its default by fourcc)."""
        if self.convert_rgb is not None:
            return self.convert_rgb
        return self.fourcc.strip().upper() != "Y16"


def unpack_y16(buf: np.ndarray, width: int, height: int) -> np.ndarray:
    """A raw Y16 camera buffer as a (height, width) uint16 image.

    With conversion off, OpenCV's V4L2 backend hands Y16 frames over as bytes, (H, W*2) or
    (1, H*W*2) uint8 holding little-endian pairs; some drivers give (H, W) uint16 already.
    Rows padded to a wider stride, (H, stride >= W*2) uint8, are cut back to W pixels.
    Raises ValueError when the buffer cannot hold such an image.
    """
    if buf.dtype == np.uint16 and buf.size == width * height:
        return np.ascontiguousarray(buf).reshape(height, width)
    need = width * height * 2
    if buf.dtype == np.uint8 and buf.size == need:
        flat = np.ascontiguousarray(buf).reshape(-1)
    elif buf.dtype == np.uint8 and buf.ndim == 2 and buf.shape[0] == height and buf.shape[1] > width * 2:
        flat = np.ascontiguousarray(buf[:, : width * 2]).reshape(-1)
    else:
        raise ValueError(f"a {width}x{height} Y16 frame needs {need} bytes; got a {buf.dtype} array of shape "
                         f"{buf.shape}")
    return flat.view("<u2").reshape(height, width).astype(np.uint16, copy=False)


class CaptureSource(Source):
    """A live OpenCV capture: a camera, a stream URL or a GStreamer pipeline.

    Frames are stamped with their capture time (Unix seconds).  A failed read is retried
    read_retries times (LIVE_READ_RETRIES; a stream: STREAM_READ_RETRIES), LIVE_RETRY_SLEEP_S
    apart.  Then, given `reopen` (a function that
    opens the device again), the source reconnects as `reconnect` says, counting `reconnects`;
    without it, or once reconnect gives up, a UserError ends the run.  One frame is read at
    open to check the device delivers; it is not yielded, as it would be stale by the time the
    pipeline starts, and a device that fails then is an error at once, not a reconnect.

    A frame identical to the one before (a camera frozen during its shutter calibration, or a
    stream repeating its last frame) is yielded with frozen=True and counted in `frozen_frames`.
    The silence before every reconnect, and any other of OUTAGE_MIN_S or more, is kept in
    `outages_s`, s.
    """

    live = True

    def __init__(self, spec: str, cap: cv2.VideoCapture, fps: float, what: str, raw_fourcc: str = "",
                 reopen=None, reconnect: ReconnectConfig | None = None, read_retries: int = LIVE_READ_RETRIES):
        # raw_fourcc: the pixel format when OpenCV's conversion is off ("" when it is on).
        self.source_id, self._cap, self._what, self._raw = spec, cap, what, raw_fourcc.strip().upper()
        self._reopen, self._policy, self._retries = reopen, reconnect or ReconnectConfig(), read_retries
        self._interrupted = threading.Event()
        self.reconnects = self.frozen_frames = 0
        self.outages_s: list[float] = []  # each reconnect's silence, and any of OUTAGE_MIN_S or more, s
        self._came_back = False  # reconnected since the last frame
        # Set while the device is lost: when, and the backoff still to come.  Kept across
        # reopens until a frame arrives, so a device that opens but delivers nothing backs off
        # and gives up like one that does not open.
        self._lost_at: float | None = None
        self._delays = None
        reported = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(reported) if 0 < reported < 1000 else float(fps)
        self._size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        try:
            raw = self._try_reads()
            if raw is None:
                raise self._stopped()
            img = self._image(raw)
        except BaseException:
            self.close()
            raise
        self.shape, self.bit_depth = img.shape, _bit_depth(img)

    def _image(self, raw: np.ndarray) -> np.ndarray:
        if not self._raw:
            return _capture_to_gray(raw, self.source_id)
        w, h = self._size
        if self._raw == "Y16":
            try:
                return unpack_y16(raw, w, h)
            except ValueError as exc:
                raise UserError(f"{self.source_id}: Y16 frame does not fit: {exc}; set width/height to a mode "
                                f"the camera lists (`v4l2-ctl --list-formats-ext`)") from None
        if raw.dtype == np.uint8 and raw.size == w * h:  # 8-bit gray (GREY, Y800) as a byte buffer
            return np.ascontiguousarray(raw).reshape(h, w)
        raise UserError(f"{self.source_id}: with conversion off, {self._raw or '?'} frames arrive as a "
                        f"{raw.dtype} array of shape {raw.shape}, not a {w}x{h} gray image; set convert_rgb = "
                        f"true, or fourcc to Y16 or GREY")

    def _try_reads(self) -> np.ndarray | None:
        """A frame, or None after read_retries + 1 failed reads in a row (or an interrupt)."""
        retries = self._retries
        for attempt in range(retries + 1):
            ok, raw = self._cap.read()
            if ok and raw is not None and raw.size:
                return raw
            if self._closed or self._interrupted.wait(LIVE_RETRY_SLEEP_S if attempt < retries else 0):
                return None
        return None

    def _stopped(self) -> UserError:
        return UserError(f"{self.source_id}: {self._what} stopped delivering frames "
                         f"({self._retries + 1} reads failed in a row); check the connection and that no "
                         f"other program holds it")

    def _read(self) -> np.ndarray | None:
        """The next frame; None once interrupted.  Reconnects while `reopen` allows."""
        while True:
            raw = self._try_reads()
            if raw is not None and self._lost_at is not None:
                self.reconnects += 1
                self._came_back = True
                log.warning("%s: back after %.1f s", self.source_id, time.monotonic() - self._lost_at)
                self._lost_at = self._delays = None
            if raw is not None or self._interrupted.is_set() or self._closed:
                return raw
            if self._reopen is None:
                raise self._stopped()
            self._reconnect()

    def _reconnect(self) -> None:
        """Release the device and open it again, after the next backoff delay and as often as
        it takes to open; UserError once give_up_s have passed since the last frame."""
        if self._lost_at is None:
            self._lost_at, self._delays = time.monotonic(), self._policy.delays()
        self._cap.release()
        for delay in self._delays:
            waited = time.monotonic() - self._lost_at
            if self._policy.give_up_s and waited + delay > self._policy.give_up_s:
                raise UserError(f"{self.source_id}: {self._what} gone for {waited:.0f} s, reconnecting failed "
                                f"(give_up_s {self._policy.give_up_s:g}); check the device and its connection")
            log.warning("%s: %s stopped delivering; reopening in %.1f s", self.source_id, self._what, delay)
            if self._interrupted.wait(delay):
                return
            try:
                cap = self._reopen()
            except UserError as exc:
                log.warning("%s", exc)
                continue
            if self._closed:  # closed while it opened: nobody will read it
                cap.release()
                return
            self._cap = cap
            self._size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
            return

    def interrupt(self) -> None:
        self._interrupted.set()

    def _frames(self) -> Iterator[Frame]:
        index, previous, last_at = 0, None, time.monotonic()
        while not self._closed:
            raw = self._read()
            if raw is None:
                return
            t, now = time.time(), time.monotonic()
            if self._came_back or now - last_at >= OUTAGE_MIN_S:
                self.outages_s.append(now - last_at)
            last_at, self._came_back = now, False
            frozen = previous is not None and raw.shape == previous.shape and np.array_equal(raw, previous)
            self.frozen_frames += frozen
            previous = raw
            img = self._image(raw)
            yield Frame(img, index, t, self.source_id, _bit_depth(img), frozen=frozen)
            index += 1

    def _release(self) -> None:
        self._interrupted.set()  # a reconnect in progress ends instead of opening the device again
        self._cap.release()


def _open_camera(spec: str, target: int | str, camera: CameraConfig, fps: float,
                 reconnect: ReconnectConfig | None) -> CaptureSource:
    name = f"camera {target}" if isinstance(target, int) else str(target)
    cap = _camera_capture(target, camera, name)
    raw_fourcc = "" if camera.wants_convert else _fourcc_str(cap.get(cv2.CAP_PROP_FOURCC)) or "?"
    return CaptureSource(spec, cap, camera.fps or fps, "the camera", raw_fourcc=raw_fourcc,
                         reopen=lambda: _camera_capture(target, camera, name), reconnect=reconnect)


def _camera_capture(target: int | str, camera: CameraConfig, name: str) -> cv2.VideoCapture:
    """The camera opened and set up as `camera` says; UserError when it cannot be."""
    api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
    with _quiet_opencv():
        cap = cv2.VideoCapture(target, api)
    if not cap.isOpened():
        cap.release()
        raise UserError(f"{name}: cannot open (no such camera, or another program holds it); "
                        f"check `v4l2-ctl --list-devices`")
    try:
        # Order matters with V4L2: setting FOURCC resets conversion, so it goes first and
        # CONVERT_RGB last, after the size and rate.
        if camera.fourcc:
            code = cv2.VideoWriter_fourcc(*camera.fourcc.ljust(4)[:4])
            cap.set(cv2.CAP_PROP_FOURCC, code)
            got = _fourcc_str(cap.get(cv2.CAP_PROP_FOURCC))
            if got.upper() != camera.fourcc.strip().upper():
                raise UserError(f"{name}: does not take fourcc {camera.fourcc!r} (it gives {got!r}); "
                                f"see `v4l2-ctl --list-formats-ext` for what it offers")
        if camera.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, camera.width)
        if camera.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, camera.height)
        if camera.fps:
            cap.set(cv2.CAP_PROP_FPS, camera.fps)
        cap.set(cv2.CAP_PROP_CONVERT_RGB, 1 if camera.wants_convert else 0)
        got_size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        if (camera.width and got_size[0] != camera.width) or (camera.height and got_size[1] != camera.height):
            log.warning("%s: asked for %dx%d, the camera gives %dx%d", name, camera.width or got_size[0],
                        camera.height or got_size[1], *got_size)
    except BaseException:
        cap.release()
        raise
    return cap


def _open_stream(spec: str, fps: float, reconnect: ReconnectConfig | None) -> CaptureSource:
    return CaptureSource(_redact(spec), _stream_capture(spec), fps, "the stream",
                         reopen=lambda: _stream_capture(spec), reconnect=reconnect, read_retries=STREAM_READ_RETRIES)


def _stream_capture(spec: str) -> cv2.VideoCapture:
    shown = _redact(spec)
    if spec.lower().startswith(("rtsp://", "rtsps://")):
        # RTSP over TCP (interleaved): it passes firewalls and NAT, and a lossy link delays
        # packets instead of tearing frames.  FFmpeg in OpenCV takes its options only from
        # this variable; a user who sets it keeps theirs.
        os.environ.setdefault(FFMPEG_OPTIONS_ENV, RTSP_OPTIONS)
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_OPEN_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC,
              STREAM_READ_TIMEOUT_MS]
    with _quiet_opencv():
        cap = cv2.VideoCapture(spec, cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        cap.release()
        raise UserError(f"{shown}: cannot open the stream; check the address, credentials and that the server "
                        f"is up (try `ffprobe` on it)")
    return cap


def _open_gstreamer(spec: str, fps: float, reconnect: ReconnectConfig | None) -> CaptureSource:
    return CaptureSource(spec, _gstreamer_capture(spec), fps, "the pipeline",
                         reopen=lambda: _gstreamer_capture(spec), reconnect=reconnect)


def _gstreamer_capture(spec: str) -> cv2.VideoCapture:
    if not cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER):
        raise UserError(f"{spec}: this is a GStreamer pipeline, but this OpenCV ({cv2.__version__}) was built "
                        f"without GStreamer; give the camera, URL or file directly, or install an OpenCV built "
                        f"with GStreamer")
    with _quiet_opencv():
        cap = cv2.VideoCapture(spec, cv2.CAP_GSTREAMER)
    if not cap.isOpened():
        cap.release()
        raise UserError(f"{spec}: GStreamer cannot start this pipeline; try it with `gst-launch-1.0` "
                        f"and end it in appsink")
    return cap


# ---- synthetic -----------------------------------------------------------------------------

class SyntheticSource(Source):
    """Moving targets on a procedural background (`data.synthetic.synth_sequence`), for tests and demos.

    live=False, realtime=False: frames as fast as they are made, timestamped index / fps.
    realtime=True: paced at fps with time.sleep, like playing a file at its rate.
    live=True: paced too, and stamped with capture time, like a camera.
    truth: frame index -> ground-truth rows (track_id, x, y, area_px, bbox_xyxy), filled
    as frames are yielded.
    """

    def __init__(self, seed: int = 0, n_frames: int = 100, shape: tuple[int, int] = (256, 320), kind: str = "sky",
                 n_targets: int = 4, bit_depth: int = 8, fps: float = 25.0, live: bool = False,
                 realtime: bool = False, source_id: str | None = None):
        from irstream.data.synthetic import BACKGROUNDS, synth_sequence

        if kind not in BACKGROUNDS:
            raise UserError(f"synthetic background {kind!r}: unknown; known: {', '.join(BACKGROUNDS)}")
        if bit_depth not in (8, 16):
            raise UserError(f"synthetic bit_depth {bit_depth}: must be 8 or 16")
        if n_frames < 1 or fps <= 0:
            raise UserError(f"synthetic source: frames ({n_frames}) and fps ({fps}) must be positive")
        self.source_id = source_id or f"synth:{kind}?seed={seed}&frames={n_frames}"
        self.live, self.realtime = bool(live), bool(realtime or live)
        self.fps, self.frame_count = float(fps), int(n_frames)
        self.shape, self.bit_depth = (int(shape[0]), int(shape[1])), bit_depth
        self.truth: dict[int, list] = {}
        self._gen = synth_sequence(seed, n_frames, self.shape, kind, n_targets, bit_depth)

    def _frames(self) -> Iterator[Frame]:
        start = time.perf_counter()
        for index, (img, rows) in enumerate(self._gen):
            if self.realtime:
                wait = start + index / self.fps - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            self.truth[index] = rows
            t = time.time() if self.live else index / self.fps
            yield Frame(img, index, t, self.source_id, self.bit_depth)

    def _release(self) -> None:
        self._gen.close()


_SYNTH_PARAMS = {"seed": int, "frames": int, "width": int, "height": int, "targets": int, "bits": int,
                 "fps": float, "live": int, "realtime": int}


def _open_synthetic(spec: str, fps: float) -> SyntheticSource:
    """synth:KIND?seed=1&frames=100&width=320&height=256&targets=4&bits=8&fps=25&live=0&realtime=0"""
    kind, _, query = spec[len("synth:"):].partition("?")
    opts: dict = {"fps": fps}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in _SYNTH_PARAMS:
            raise UserError(f"{spec}: unknown option {key!r}; known: {', '.join(_SYNTH_PARAMS)}")
        try:
            opts[key] = _SYNTH_PARAMS[key](value)
        except ValueError:
            raise UserError(f"{spec}: {key}={value!r} is not a number") from None
    return SyntheticSource(seed=opts.get("seed", 0), n_frames=opts.get("frames", 100),
                           shape=(opts.get("height", 256), opts.get("width", 320)), kind=kind or "sky",
                           n_targets=opts.get("targets", 4), bit_depth=opts.get("bits", 8), fps=opts["fps"],
                           live=bool(opts.get("live", 0)), realtime=bool(opts.get("realtime", 0)), source_id=spec)


# ---- choosing a source ---------------------------------------------------------------------

def open_source(spec: str, *, fps: float = 25.0, camera: CameraConfig | None = None,
                reconnect: ReconnectConfig | None = None) -> Source:
    """Open what `spec` names, checked in this order:

    - "synth:sky?seed=1&frames=100": a SyntheticSource (see _open_synthetic for options);
    - contains " ! ": a GStreamer pipeline (needs OpenCV built with GStreamer);
    - "rtsp://", "http(s)://", "udp://", ...: a live stream (STREAM_SCHEMES);
    - all digits ("0"), or a "/dev/..." path: a camera, set up from `camera`;
    - an existing folder: its image files in natural order (2 before 10);
    - an existing image file: a one-frame sequence; any other file: a video;
    - a glob ("frames/*.png"): the image files it matches, in natural order.

    fps: the rate for image sequences, and for videos and cameras that report none.
    reconnect: how cameras, streams and GStreamer pipelines come back after a loss.
    Raises UserError naming `spec` when it cannot be opened.
    """
    spec = str(spec)
    if not (fps > 0 and math.isfinite(fps)):
        raise UserError(f"fps {fps}: must be a positive number")
    text = spec.strip()
    if not text:
        raise UserError("input is empty; give a video file, an image folder or glob, a camera index or a URL")
    if text.startswith("synth:"):
        return _open_synthetic(text, fps)
    if " ! " in text:
        return _open_gstreamer(text, fps, reconnect)
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", text)
    if scheme:
        if scheme.group(1).lower() in STREAM_SCHEMES:
            return _open_stream(text, fps, reconnect)
        if scheme.group(1).lower() != "file":
            raise UserError(f"{_redact(text)}: unsupported URL scheme; use one of {', '.join(STREAM_SCHEMES)}")
        text = unquote(urlsplit(text).path)
    camera = camera or CameraConfig()
    if text.isdigit():
        return _open_camera(spec, int(text), camera, fps, reconnect)
    if text.startswith("/dev/"):
        if not Path(text).exists():
            raise UserError(f"{text}: no such device; check `v4l2-ctl --list-devices`")
        return _open_camera(spec, text, camera, fps, reconnect)

    path = Path(text).expanduser()
    if path.is_dir():
        files = _image_files(path)
        if not files:
            raise UserError(f"{spec}: no images in this folder (looked for {' '.join(IMAGE_EXTS)}); "
                            f"give a folder of frames, a glob like 'dir/*.png', or a video file")
        return ImageSequenceSource(spec, files, fps)
    if path.is_file():
        if path.suffix.lower() in IMAGE_EXTS:
            return ImageSequenceSource(spec, [path], fps)
        return VideoFileSource(spec, path, fps)
    if glob.has_magic(text):
        matches = [Path(p) for p in glob.glob(str(path))]
        files = sorted((p for p in matches if p.is_file() and p.suffix.lower() in IMAGE_EXTS),
                       key=lambda p: natural_key(str(p)))
        if not files:
            raise UserError(f"{spec}: the pattern matches no image files ({' '.join(IMAGE_EXTS)}); check it, "
                            f"and quote it so the shell leaves it alone")
        return ImageSequenceSource(spec, files, fps)
    raise UserError(f"{spec}: no such file or folder; give a video file, an image folder or glob, "
                    f"a camera index (0) or a stream URL")


@dataclass(frozen=True)
class SourceConfig:
    """uri: video file, image folder or glob, camera index or /dev/video path, stream URL or
        GStreamer pipeline; the `irstream run SOURCE` argument replaces it.
    mode: "auto" (files are file runs, cameras and URLs live), "file" (never drop a frame;
        inference sets the pace) or "live" (the newest frame wins; latency stays bounded and
        every skipped frame is counted).
    fps: frame rate of image sequences, and of sources that report none, frames/s.
    camera: [source.camera], how a camera is set up (irstream.io.sources.CameraConfig).
    reconnect: [source.reconnect], how a lost camera or stream is reopened, with backoff
        (irstream.io.sources.ReconnectConfig).
    """

    uri: str = ""
    mode: str = "auto"
    fps: float = 25.0
    camera: CameraConfig = field(default_factory=CameraConfig)
    reconnect: ReconnectConfig = field(default_factory=ReconnectConfig)

    def __post_init__(self) -> None:
        if self.mode not in ("auto", "file", "live"):
            raise ValueError(f"mode={self.mode!r}: must be 'auto', 'file' or 'live'")
        if not self.fps > 0:
            raise ValueError(f"fps={self.fps}: must be > 0")
