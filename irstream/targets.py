"""Targets from a segmentation: 8-connected components of the thresholded score map."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from irstream.types import Detections


@dataclass(frozen=True)
class TargetConfig:
    """How a score map becomes targets.

    score_threshold: probability above which a pixel is a target.  0.5 is the model's own
        decision (logit > 0), the convention the metrics use; lower finds dimmer targets and
        more clutter.
    min_area_px, max_area_px: components outside this size are dropped (the field's small
        targets are 1 to about 100 px; a larger blob is usually a cloud edge or a building).
    ring_px: width of the ring around each box whose median is the local background.
    """

    score_threshold: float = 0.5
    min_area_px: int = 1
    max_area_px: int = 400
    ring_px: int = 3

    def __post_init__(self) -> None:
        if not 0.0 < self.score_threshold < 1.0:
            raise ValueError(f"score_threshold={self.score_threshold}: must be within (0, 1)")
        if not 1 <= self.min_area_px <= self.max_area_px:
            raise ValueError(f"need 1 <= min_area_px <= max_area_px, got {self.min_area_px}, {self.max_area_px}")


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0)))).astype(np.float32)


def extract_targets(score: np.ndarray, image: np.ndarray, cfg: TargetConfig = TargetConfig()) -> Detections:
    """score: (H, W) target probability; image: (H, W) the [0, 1] frame the model saw.

    The centroid is weighted by the image's excess over the local background, which places
    a blurred point target better than the mask's pixel mean does.
    """
    binary = (score > cfg.score_threshold).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    rows = []
    h, w = score.shape
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        if not cfg.min_area_px <= area <= cfg.max_area_px:
            continue
        sl = (slice(y, y + bh), slice(x, x + bw))
        inside = labels[sl] == i
        s, im = score[sl][inside], image[sl]
        bg = _ring_median(image, x, y, bw, bh, cfg.ring_px)
        weight = np.maximum(im - bg, 0.0) * inside + 1e-6 * inside
        yy, xx = np.mgrid[y:y + bh, x:x + bw]
        cx, cy = float((weight * xx).sum() / weight.sum()), float((weight * yy).sum() / weight.sum())
        rows.append(((cx, cy), (x, y, x + bw, y + bh), area, s.max(), s.mean(), float(im[inside].max() - bg)))
    if not rows:
        return Detections.empty()
    c, b, a, p, m, k = zip(*rows)
    return Detections(np.array(c, dtype=np.float64), np.array(b, dtype=np.int64), np.array(a, dtype=np.int64),
                      np.array(p, dtype=np.float64), np.array(m, dtype=np.float64), np.array(k, dtype=np.float64))


def _ring_median(image: np.ndarray, x: int, y: int, bw: int, bh: int, ring: int) -> float:
    h, w = image.shape
    x0, y0, x1, y1 = max(0, x - ring), max(0, y - ring), min(w, x + bw + ring), min(h, y + bh + ring)
    patch = image[y0:y1, x0:x1]
    keep = np.ones(patch.shape, dtype=bool)
    keep[y - y0:y - y0 + bh, x - x0:x - x0 + bw] = False
    return float(np.median(patch[keep])) if keep.any() else 0.0
