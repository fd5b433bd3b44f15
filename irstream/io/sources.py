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
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from irstream.clock import DEFAULT_FPS
from irstream.errors import UserError
from irstream.io.base import Source, natural_key, redact
from irstream.io.files import IMAGE_EXTS, ImageSequenceSource, VideoFileSource, _image_files
from irstream.io.live import (CameraConfig, ReconnectConfig, _open_camera, _open_gstreamer, _open_stream)
from irstream.io.synthetic import _open_synthetic

#: URL schemes opened as live streams through FFmpeg.
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "rtp", "srt")


def open_source(spec: str, *, fps: float = DEFAULT_FPS, camera: CameraConfig | None = None,
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
            raise UserError(f"{redact(text)}: unsupported URL scheme; use one of {', '.join(STREAM_SCHEMES)}")
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
    camera: [source.camera], how a camera is set up (irstream.io.live.CameraConfig).
    reconnect: [source.reconnect], how a lost camera or stream is reopened, with backoff
        (irstream.io.live.ReconnectConfig).
    """

    uri: str = ""
    mode: str = "auto"
    fps: float = DEFAULT_FPS
    camera: CameraConfig = field(default_factory=CameraConfig)
    reconnect: ReconnectConfig = field(default_factory=ReconnectConfig)

    def __post_init__(self) -> None:
        if self.mode not in ("auto", "file", "live"):
            raise ValueError(f"mode={self.mode!r}: must be 'auto', 'file' or 'live'")
        if not self.fps > 0:
            raise ValueError(f"fps={self.fps}: must be > 0")
