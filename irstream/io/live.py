"""Live sources: cameras (V4L2, raw 16-bit), network streams and GStreamer pipelines, read
through OpenCV, reconnected with backoff when they are lost."""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from irstream.errors import UserError
from irstream.io.base import Source, bit_depth, capture_to_gray, fourcc_str, log, plausible_fps, quiet_opencv, redact
from irstream.types import Frame

#: Live sources: failed reads in a row before giving up, and the pause between them.
#: More retries ride out longer hiccups but delay the error when a camera is really gone.
LIVE_READ_RETRIES = 5
#: A network stream is not retried before it is reopened: FFmpeg fails a read only once the
#: connection is gone or silent for STREAM_READ_TIMEOUT_MS, and a finished session does not
#: deliver again, so retries would only add a second to every outage.
STREAM_READ_RETRIES = 0
LIVE_RETRY_SLEEP_S = 0.2
#: Streams: how long FFmpeg may take to connect, and to deliver one frame.
STREAM_OPEN_TIMEOUT_MS = 10_000
STREAM_READ_TIMEOUT_MS = 5_000
#: A live source silent this long, s, has had an outage (counted, with its length), whether it
#: came back by reconnecting or by itself (a stream that stalled with its connection open):
#: 40 frames at 25 frames/s, far beyond any jitter.
OUTAGE_MIN_S = 1.6
#: Where OpenCV's FFmpeg backend reads its demuxer options, and what irstream sets for RTSP:
#: interleaved TCP, and no frames read to guess the rate (fpsprobesize 0: the rate comes from
#: the SDP), which makes every (re)connect about 1 s shorter.
FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
RTSP_OPTIONS = "rtsp_transport;tcp|fpsprobesize;0"


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
        self._last_frame_at = time.monotonic()
        # Set while the device is lost: when, and the backoff still to come.  Kept across
        # reopens until a frame arrives, so a device that opens but delivers nothing backs off
        # and gives up like one that does not open.
        self._lost_at: float | None = None
        self._delays = None
        reported = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(reported) if plausible_fps(reported) else float(fps)
        self._size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        try:
            raw = self._try_reads()
            if raw is None:
                raise self._stopped()
            img = self._image(raw)
        except BaseException:
            self.close()
            raise
        self.shape, self.bit_depth = img.shape, bit_depth(img)

    def _image(self, raw: np.ndarray) -> np.ndarray:
        if not self._raw:
            return capture_to_gray(raw, self.source_id)
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
        index, previous, self._last_frame_at = 0, None, time.monotonic()
        while not self._closed:
            raw = self._read()
            if raw is None:
                return
            t, now = time.time(), time.monotonic()
            if self._came_back or now - self._last_frame_at >= OUTAGE_MIN_S:
                self.outages_s.append(now - self._last_frame_at)
            self._last_frame_at, self._came_back = now, False
            frozen = previous is not None and raw.shape == previous.shape and np.array_equal(raw, previous)
            self.frozen_frames += frozen
            previous = raw
            img = self._image(raw)
            yield Frame(img, index, t, self.source_id, bit_depth(img), frozen=frozen)
            index += 1

    def _release(self) -> None:
        if self._lost_at is not None:  # closed while lost: an outage still going is one too
            self.outages_s.append(time.monotonic() - self._last_frame_at)
        self._interrupted.set()  # a reconnect in progress ends instead of opening the device again
        self._cap.release()


def _open_camera(spec: str, target: int | str, camera: CameraConfig, fps: float,
                 reconnect: ReconnectConfig | None) -> CaptureSource:
    name = f"camera {target}" if isinstance(target, int) else str(target)
    cap = _camera_capture(target, camera, name)
    raw_fourcc = "" if camera.wants_convert else fourcc_str(cap.get(cv2.CAP_PROP_FOURCC)) or "?"
    return CaptureSource(spec, cap, camera.fps or fps, "the camera", raw_fourcc=raw_fourcc,
                         reopen=lambda: _camera_capture(target, camera, name), reconnect=reconnect)


def _camera_capture(target: int | str, camera: CameraConfig, name: str) -> cv2.VideoCapture:
    """The camera opened and set up as `camera` says; UserError when it cannot be."""
    api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
    with quiet_opencv():
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
            got = fourcc_str(cap.get(cv2.CAP_PROP_FOURCC))
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
    return CaptureSource(redact(spec), _stream_capture(spec), fps, "the stream",
                         reopen=lambda: _stream_capture(spec), reconnect=reconnect, read_retries=STREAM_READ_RETRIES)


def _stream_capture(spec: str) -> cv2.VideoCapture:
    shown = redact(spec)
    if spec.lower().startswith(("rtsp://", "rtsps://")):
        # RTSP over TCP (interleaved): it passes firewalls and NAT, and a lossy link delays
        # packets instead of tearing frames.  FFmpeg in OpenCV takes its options only from
        # this variable; a user who sets it keeps theirs.
        os.environ.setdefault(FFMPEG_OPTIONS_ENV, RTSP_OPTIONS)
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_OPEN_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC,
              STREAM_READ_TIMEOUT_MS]
    with quiet_opencv():
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
    with quiet_opencv():
        cap = cv2.VideoCapture(spec, cv2.CAP_GSTREAMER)
    if not cap.isOpened():
        cap.release()
        raise UserError(f"{spec}: GStreamer cannot start this pipeline; try it with `gst-launch-1.0` "
                        f"and end it in appsink")
    return cap


