"""`irstream detect`: targets in still images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from irstream.annotate import draw_detections, to_bgr8
from irstream.imageio import read_gray
from irstream.preprocess import to_unit
from irstream.segment import Segmenter
from irstream.targets import TargetConfig, extract_targets, sigmoid
from irstream.types import Detections


@dataclass
class ImageResult:
    path: Path
    image: np.ndarray  # [0, 1] gray, what the model saw
    score: np.ndarray  # target probability
    detections: Detections


def detect_image(segmenter: Segmenter, path: Path, cfg: TargetConfig, ignore_rects=()) -> ImageResult:
    """ignore_rects: (x0, y0, x1, y1) px, end-exclusive, where no target is reported (burned-in
    text, a logo), as the pipeline's [preprocess] ignore_rects."""
    image = to_unit(read_gray(path))
    score = sigmoid(segmenter.logits(image))
    for x0, y0, x1, y1 in ignore_rects:
        score[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = 0.0
    return ImageResult(path, image, score, extract_targets(score, image, cfg))


def write_mask(res: ImageResult, folder: Path, threshold: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f"{res.path.stem}_mask.png"
    cv2.imwrite(str(dest), ((res.score > threshold) * 255).astype(np.uint8))
    return dest


def write_overlay(res: ImageResult, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f"{res.path.stem}_overlay.png"
    cv2.imwrite(str(dest), draw_detections(to_bgr8(res.image), res.detections))
    return dest
