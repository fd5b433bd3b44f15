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
    behind_text_margin: burned-in text fixed in the image pins the correlation to no shift while
        the camera pans, so the frame is also correlated with its learnt text (and the pipeline's
        ignore regions) filled in from around it, and that shift is believed when its peak is stronger than the whole frame's
        by this margin (0..1; 1 or more: never).  Not always: a still camera's learnt "text"
        can be the scene's own strongest structure (a row of lit buildings), and without it a
        small pan is misread.  On a reticle clip panning 13 px a frame the whole frame's peak
        was 0.31-0.52 at no shift, the filled frame's 0.83-0.87 at the pan; on a DAUB ground
        scene whose buildings were learnt as text the two peaks were within 0.07.
    """

    enabled: bool = True
    downscale: int = 2
    min_response: float = 0.1
    max_shift_px: float = 256.0
    min_shift_px: float = 0.5
    behind_text_margin: float = 0.15

    def __post_init__(self) -> None:
        if not isinstance(self.downscale, int) or isinstance(self.downscale, bool) or self.downscale < 1:
            raise ValueError(f"downscale={self.downscale!r}: must be a whole number >= 1")
        if not 0.0 <= self.min_response < 1.0:
            raise ValueError(f"min_response={self.min_response}: must be in [0, 1)")
        if not self.behind_text_margin >= 0:  # NaN too
            raise ValueError(f"behind_text_margin={self.behind_text_margin}: must be >= 0 (1 or more: off)")
        if not 0.0 <= self.min_shift_px < self.max_shift_px:
            raise ValueError(f"need 0 <= min_shift_px < max_shift_px, got {self.min_shift_px}, {self.max_shift_px}")


#: Shrunk frames smaller than this on either side, px, are too small to correlate: no shift.
MIN_CORRELATE_PX = 8
#: Ignored pixels (burned-in text, ignore regions) are filled from the picture around them,
#: blurred with this sigma, px of the shrunk frame, so that they carry no edge of their own.
IGNORE_FILL_SIGMA_PX = 4.0
#: ... after the ignored area is grown by this many px of the shrunk frame (text's soft rims).
IGNORE_GROW_PX = 2
#: Below this share of valid pixels under the blur, an ignored pixel takes the picture's mean.
FILL_MIN_WEIGHT = 1e-3


class GlobalMotion:
    """`estimate(image)` -> (dx, dy), px: how far the scene moved since the previous frame
    (a scene point at p before is at p + (dx, dy) now).  The first frame gives (0, 0), and so
    does a frame too small to tell or whose size changed."""

    def __init__(self, cfg: MotionConfig = MotionConfig()) -> None:
        self.cfg = cfg
        self._prev: np.ndarray | None = None
        self._prev_filled: np.ndarray | None = None
        self._window: np.ndarray | None = None

    def estimate(self, image: np.ndarray, ignore: np.ndarray | None = None) -> np.ndarray:
        """ignore: (H, W) bool, pixels that may not be the scene (learnt burned-in text): see
        MotionConfig.behind_text_margin."""
        if not self.cfg.enabled or min(image.shape[:2]) < MIN_CORRELATE_PX * self.cfg.downscale:
            self._prev = self._prev_filled = None
            return np.zeros(2)
        small = self._shrink(image)
        prev, self._prev = self._prev, small
        filled = None
        if ignore is not None and ignore.any() and self.cfg.behind_text_margin < 1:
            filled = _fill_ignored(small, self._shrink(ignore.astype(np.uint8)) > 0)
        prev_filled, self._prev_filled = self._prev_filled, filled
        if prev is None or prev.shape != small.shape:
            return np.zeros(2)
        shift, response = self._correlate(prev, small)
        if filled is not None and prev_filled is not None and prev_filled.shape == filled.shape:
            behind_text, text_response = self._correlate(prev_filled, filled)
            if text_response > response + self.cfg.behind_text_margin:
                return behind_text
        return shift

    def _correlate(self, prev: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, float]:
        """(shift, peak strength); the shift is zero where it is not believed (MotionConfig)."""
        if self._window is None or self._window.shape != cur.shape:
            self._window = cv2.createHanningWindow(cur.shape[::-1], cv2.CV_64F)
        (dx, dy), response = cv2.phaseCorrelate(prev, cur, self._window)
        shift = np.array([dx, dy]) * self.cfg.downscale
        size = math.hypot(*shift)
        if response < self.cfg.min_response or size > self.cfg.max_shift_px or size < self.cfg.min_shift_px:
            return np.zeros(2), response
        return shift, response

    def _shrink(self, image: np.ndarray) -> np.ndarray:
        img = np.asarray(image, np.float64)
        k = self.cfg.downscale
        if k > 1:
            img = cv2.resize(img, (img.shape[1] // k, img.shape[0] // k), interpolation=cv2.INTER_AREA)
        return img


def _fill_ignored(img: np.ndarray, ignore: np.ndarray) -> np.ndarray:
    """img with its ignored pixels replaced by the blurred picture around them (normalised
    convolution): a fill with a constant would leave the ignored area's outline as a fixed edge."""
    grow = 2 * IGNORE_GROW_PX + 1
    valid = (cv2.dilate(ignore.astype(np.uint8), np.ones((grow, grow), np.uint8)) == 0).astype(np.float64)
    if not valid.any():
        return img
    around = cv2.GaussianBlur(img * valid, (0, 0), IGNORE_FILL_SIGMA_PX)
    weight = cv2.GaussianBlur(valid, (0, 0), IGNORE_FILL_SIGMA_PX)
    # Deep inside a wide ignored area (a HUD bar) no valid pixel is within the blur's reach:
    # the picture's mean there, not 0, which would be a dark block with an edge of its own.
    far = float(img[valid > 0].mean())
    return np.where(valid > 0, img, np.where(weight > FILL_MIN_WEIGHT, around / np.maximum(weight, FILL_MIN_WEIGHT), far))
