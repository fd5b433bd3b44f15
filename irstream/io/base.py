"""The common shape of a source, and what every kind shares: an iterable of `Frame`s that
opens its device when built and releases it when its frames run out, a loop breaks, or it is
closed (see irstream.io.sources for how one is chosen)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Self

import cv2
import numpy as np

from irstream.clock import DEFAULT_FPS
from irstream.errors import UserError
from irstream.io.imageio import to_gray
from irstream.types import Frame

log = logging.getLogger("irstream.io.sources")

#: A timestamp gap counts as skipped frames from (2 - this) periods on: 1.75 periods is one
#: late frame of a jittery source, 2 is one frame missing.
SKIP_SLACK_PERIODS = 0.25
#: A frame rate a container or driver reports is believed below this, frames/s; 0, NaN or a
#: stream's 90 kHz clock reported as its rate fall back to the configured rate.
MAX_PLAUSIBLE_FPS = 1000.0


def plausible_fps(reported: float) -> bool:
    return 0 < reported < MAX_PLAUSIBLE_FPS


def bit_depth(img: np.ndarray) -> int:
    return 16 if img.dtype == np.uint16 else 8


#: OpenCV's log level ERROR (its LOG_LEVEL_ERROR, the same number in every version).
OPENCV_LOG_ERROR = 2


@contextmanager
def quiet_opencv():
    """Hold back OpenCV's own WARN lines while opening; our UserError says what went wrong."""
    api = getattr(cv2.utils, "logging", None)  # OpenCV 4.x wheels have only cv2.setLogLevel
    get, put = (api.getLogLevel, api.setLogLevel) if api else (cv2.getLogLevel, cv2.setLogLevel)
    level = get()
    put(OPENCV_LOG_ERROR)
    try:
        yield
    finally:
        put(level)


def fourcc_str(value: float) -> str:
    v = int(value) & 0xFFFFFFFF
    return v.to_bytes(4, "little").decode("latin-1").rstrip(" \x00")


def redact(url: str) -> str:
    """A URL with any password replaced by ***, for ids and messages."""
    return re.sub(r"(//[^/:@]*):[^/@]*@", r"\1:***@", url)


def natural_key(text: str) -> list:
    """Sort key that orders digit runs by value: frame2 < frame10."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def capture_to_gray(raw: np.ndarray, source_id: str) -> np.ndarray:
    """An image from VideoCapture.read() as (H, W) uint8/uint16."""
    if raw.dtype not in (np.uint8, np.uint16):
        raise UserError(f"{source_id}: frames arrive as {raw.dtype}; only 8- and 16-bit images are supported")
    if raw.ndim == 2 or (raw.ndim == 3 and raw.shape[2] in (1, 3, 4)):
        return to_gray(raw)
    raise UserError(f"{source_id}: frames arrive with shape {raw.shape}, not as an image")


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
    lossless:    the frames are stored exactly as recorded (image sequences in PNG, TIFF, BMP),
                 not through a lossy codec (video files, streams, JPEG): what is left of a
                 registered scene is then the sensor's own noise (irstream.detect.temporal).
    """

    source_id: str = ""
    live: bool = False
    fps: float = DEFAULT_FPS
    frame_count: int | None = None
    shape: tuple[int, int] | None = None
    bit_depth: int | None = None
    lossless: bool = False

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


