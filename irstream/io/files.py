"""Files: image sequences (a folder or a glob, natural order) and video files."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from irstream.errors import UserError
from irstream.io.base import (SKIP_SLACK_PERIODS, Source, bit_depth, capture_to_gray, log, natural_key, plausible_fps,
                              quiet_opencv)
from irstream.io.imageio import read_gray
from irstream.types import Frame

# FFmpeg's raw pixel-format tag for little-endian 16-bit gray, as CAP_PROP_CODEC_PIXEL_FORMAT gives it.
_GRAY16LE_TAG = int.from_bytes(b"Y1\x00\x10", "little")
#: Image files an image-sequence folder or glob may hold (compared lower-case).
IMAGE_EXTS = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")
#: Of those, the formats that store a frame exactly (JPEG's codec leaves residuals of its own).
LOSSLESS_EXTS = (".png", ".tif", ".tiff", ".bmp")
#: Video codecs that store a frame exactly (FourCC, upper case; raw video reports none).
LOSSLESS_CODECS = ("FFV1", "HFYU", "FFVH", "Y800", "Y16 ", "GREY", "\0\0\0\0")
#: Video files: failed reads in a row tolerated when the container gives no frame count.
FILE_READ_RETRIES = 5


# ---- image sequences -----------------------------------------------------------------------

class ImageSequenceSource(Source):
    """Numbered image files, read in natural order, timestamped index / fps.

    Every frame must have the size and bit depth of the first; one that differs, or that
    cannot be read, stops the run with a UserError naming the file.  lossless when every file
    is in a format that stores the frame exactly (LOSSLESS_EXTS).
    """

    def __init__(self, spec: str, paths: list[Path], fps: float):
        self.source_id, self.paths, self.fps = spec, list(paths), float(fps)
        self.frame_count = len(self.paths)
        self.lossless = all(p.suffix.lower() in LOSSLESS_EXTS for p in self.paths)
        self._first = read_gray(self.paths[0])
        self.shape, self.bit_depth = self._first.shape, bit_depth(self._first)

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
            if bit_depth(img) != self.bit_depth:
                raise UserError(f"{path}: {bit_depth(img)}-bit, but the sequence's first frame "
                                f"{self.paths[0].name} is {self.bit_depth}-bit; save all frames at one depth")
            yield Frame(img, i, i / self.fps, self.source_id, self.bit_depth)

    def _release(self) -> None:
        self._first = None


def _image_files(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir()
             if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")]
    return sorted(files, key=lambda p: natural_key(p.name))


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
        with quiet_opencv():
            cap = cv2.VideoCapture(str(path), api)
        if not cap.isOpened():
            cap.release()
            raise UserError(f"{spec}: OpenCV cannot open this as a video (not a video, or a codec this build lacks); "
                            f"convert it, e.g. `ffmpeg -i IN -c:v ffv1 OUT.mkv`, or give a folder of images")
        self._cap = cap
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)) & 0xFFFFFFFF
        self.lossless = fourcc.to_bytes(4, "little").decode("latin-1").upper() in LOSSLESS_CODECS
        if int(cap.get(cv2.CAP_PROP_CODEC_PIXEL_FORMAT)) == _GRAY16LE_TAG:
            cap.set(cv2.CAP_PROP_CONVERT_RGB, 0)  # hand over gray16le as (H, W) uint16, all bits kept
        container_fps = cap.get(cv2.CAP_PROP_FPS)
        self._container_fps = plausible_fps(container_fps)
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
        self.shape, self.bit_depth = self._first[0].shape, bit_depth(self._first[0])

    def _image(self, raw: np.ndarray, index: int) -> tuple[np.ndarray, float]:
        msec = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        t = msec / 1000.0 if msec > 0 else index / self.fps
        return capture_to_gray(raw, self.source_id), t

    def _frames(self) -> Iterator[Frame]:
        img, t = self._first
        self._first = None
        index = 0
        while True:
            yield Frame(img, index, t, self.source_id, bit_depth(img))
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


