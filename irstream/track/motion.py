"""Global image motion between consecutive frames (a camera pan or shake), so that the tracker
can move its tracks with the scene before it associates.

Phase correlation (OpenCV) on a downscaled, windowed copy of the frame: one FFT pair per frame,
sub-pixel, and insensitive to the few bright pixels a small target adds.  A weak correlation
peak (a featureless sky, a scene change) gives no shift rather than a wrong one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class MotionConfig:
    """enabled: estimate the scene's shift each frame and move tracks with it.
    downscale: the frame is shrunk by this whole factor first (speed; pans are many px).
    min_response: phase-correlation peak strength (0..1) below which the shift is not trusted
        and taken as zero.
    max_shift_px: largest shift per frame believed, px of the full frame; beyond it the
        estimate is taken as a scene change and ignored.  A camera that re-points jumps
        100-300 px in one frame, and the scene (its clutter map, its tracks) must be carried
        across: on real 640x512 frames shifted by up to (150, 120) px the correlation found the
        shift with a peak of 0.15-0.83, and where it failed (a shift beyond what the frames
        share) or the scene changed the peak was 0.03 or less, below min_response.  So the
        peak, not the size, tells a jump from a scene change, and the cap is set near the
        largest shift phase correlation can tell (half a 512-row frame).
    min_shift_px: shifts smaller than this are taken as zero, px: sub-pixel jitter of a still
        camera would otherwise move every track a little each frame.
    """

    enabled: bool = True
    downscale: int = 2
    min_response: float = 0.1
    max_shift_px: float = 256.0
    min_shift_px: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.downscale, int) or isinstance(self.downscale, bool) or self.downscale < 1:
            raise ValueError(f"downscale={self.downscale!r}: must be a whole number >= 1")
        if not 0.0 <= self.min_response < 1.0:
            raise ValueError(f"min_response={self.min_response}: must be in [0, 1)")
        if not 0.0 <= self.min_shift_px < self.max_shift_px:
            raise ValueError(f"need 0 <= min_shift_px < max_shift_px, got {self.min_shift_px}, {self.max_shift_px}")


#: Shrunk frames smaller than this on either side, px, are too small to correlate: no shift.
MIN_CORRELATE_PX = 8


class GlobalMotion:
    """`estimate(image)` -> (dx, dy), px: how far the scene moved since the previous frame
    (a scene point at p before is at p + (dx, dy) now).  The first frame gives (0, 0), and so
    does a frame too small to tell or whose size changed."""

    def __init__(self, cfg: MotionConfig = MotionConfig()) -> None:
        self.cfg = cfg
        self._prev: np.ndarray | None = None
        self._window: np.ndarray | None = None

    def estimate(self, image: np.ndarray) -> np.ndarray:
        if not self.cfg.enabled or min(image.shape[:2]) < MIN_CORRELATE_PX * self.cfg.downscale:
            self._prev = None
            return np.zeros(2)
        small = self._shrink(image)
        prev, self._prev = self._prev, small
        if prev is None or prev.shape != small.shape:
            return np.zeros(2)
        if self._window is None or self._window.shape != small.shape:
            self._window = cv2.createHanningWindow(small.shape[::-1], cv2.CV_64F)
        (dx, dy), response = cv2.phaseCorrelate(prev, small, self._window)
        shift = np.array([dx, dy]) * self.cfg.downscale
        size = math.hypot(*shift)
        if response < self.cfg.min_response or size > self.cfg.max_shift_px or size < self.cfg.min_shift_px:
            return np.zeros(2)
        return shift

    def _shrink(self, image: np.ndarray) -> np.ndarray:
        img = np.asarray(image, np.float64)
        k = self.cfg.downscale
        if k > 1:
            img = cv2.resize(img, (img.shape[1] // k, img.shape[0] // k), interpolation=cv2.INTER_AREA)
        return img
