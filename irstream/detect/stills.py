"""`irstream detect`: targets in still images, each a stream of one frame."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from irstream.sinks.annotate import draw_detections, to_bgr8
from irstream.detect.detector import Detected, Detector, as_frame
from irstream.io.imageio import read_gray, write_png


@dataclass
class ImageResult:
    path: Path
    detected: Detected

    @property
    def image(self) -> np.ndarray:
        """[0, 1] gray, what the model saw."""
        return self.detected.prepared.unit


def detect_image(detector: Detector, path: Path) -> ImageResult:
    """An image is a stream of its own: no AGC or learnt text carries over from the last one."""
    detector.reset()
    return ImageResult(path, detector(as_frame(read_gray(path), source_id=str(path))))


def write_mask(res: ImageResult, folder: Path, threshold: float) -> Path:
    return write_png(folder / f"{res.path.stem}_mask.png", ((res.detected.prob > threshold) * 255).astype(np.uint8))


def write_overlay(res: ImageResult, folder: Path) -> Path:
    return write_png(folder / f"{res.path.stem}_overlay.png", draw_detections(to_bgr8(res.image), res.detected.detections))
