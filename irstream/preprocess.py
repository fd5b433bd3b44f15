"""Turning raw sensor pixels into the model's input range, [0, 1] float32.

8-bit images are divided by 255, as LRRNet was trained.  16-bit sensor data has no
fixed white level (14-bit cores, offsets, drift), so it goes through an automatic
gain control (AGC): a percentile stretch, where the `low_pct` and `high_pct`
percentiles of the frame map to 0 and 1.  Percentiles rather than min/max so that
one hot or dead pixel cannot crush the rest of the scene.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PercentileAGC:
    """Percentile stretch for one 16-bit image.

    low_pct, high_pct: percentiles (0..100) mapped to 0 and 1.  Raising high_pct keeps
        more of the bright end (targets) but lets a few hot pixels set the gain.
    min_span_counts: smallest range, in raw counts, that is stretched to full scale, so a
        flat frame (lens cap, shutter) is not blown up into noise.
    """

    low_pct: float = 0.5
    high_pct: float = 99.99
    min_span_counts: float = 64.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.low_pct < self.high_pct <= 100.0:
            raise ValueError(f"AGC percentiles must satisfy 0 <= low < high <= 100, got {self.low_pct}, {self.high_pct}")
        if self.min_span_counts <= 0:
            raise ValueError(f"min_span_counts={self.min_span_counts}: must be > 0")

    def limits(self, img: np.ndarray) -> tuple[float, float]:
        lo, hi = np.percentile(img, (self.low_pct, self.high_pct))
        return float(lo), float(max(hi, lo + self.min_span_counts))


def stretch(img: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map [lo, hi] linearly to [0, 1], clipping outside."""
    out = (img.astype(np.float32) - np.float32(lo)) / np.float32(hi - lo)
    return np.clip(out, 0.0, 1.0, out=out)


def to_unit(img: np.ndarray, agc: PercentileAGC | None = None) -> np.ndarray:
    """(H, W) uint8 or uint16 -> (H, W) float32 in [0, 1]."""
    if img.dtype == np.uint8:
        return img.astype(np.float32) / np.float32(255.0)
    if img.dtype == np.uint16:
        return stretch(img, *(agc or PercentileAGC()).limits(img))
    if np.issubdtype(img.dtype, np.floating):
        return np.clip(img.astype(np.float32), 0.0, 1.0)
    raise ValueError(f"unsupported pixel type {img.dtype}")
