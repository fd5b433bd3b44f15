"""Burned-in text found by itself: an ignore mask learnt from the video.

Camera feeds often carry an on-screen display: a clock, azimuth and elevation, a logo, a
reticle.  To the detector these are small, sharp, bright shapes, and to the tracker the best
targets there are: they never miss a frame.  What gives them away is that they stay put, sharp
and bright, frame after frame, which a target, a cloud or a panning scene does not.

Per pixel the learner keeps a running average (over about learn_s seconds) of "still, sharp
and bright in this frame": within still_level of the previous frame, on an edge (3x3 max minus
min above sharp_level), and at least bright_level.  A pixel becomes text when its average
reaches still_share.  Down to release_share, a pixel within grow_px of text is text too: text
stays text, and a readout's changing digits beside its fixed label join it.  From first_mask_s
seconds on, the mask is the text pixels, closed over gaps of grow_px (between glyphs and
strokes) and grown by grow_px.  Both times are counted in the frames the learner actually sees
(irstream.clock): a live run that keeps up with a quarter of the camera's frames learns a
reticle as fast, in seconds, as a file run that sees them all.  A clock's digits change once a
second, i.e. in 1 frame of 25, so the strokes they share stay masked; the mask follows the
display if it changes.

Text holds on only once learn_s has been seen; before that it is what stands at still_share now
and what lies beside it.  The average is then a plain mean of a few frames, and a drone
hovering in a static camera's view is still for its first half-second as a display is: held
from then on, one such drone was hidden for 1.5 s after it began to move.

The limit: in a camera that never moves, a lit window or a lamp that is as sharp and bright as
text, and as still, is masked too.  That is usually wanted (it is the clutter users complain of),
but a target passing in front of it is hidden there (the tracker coasts across).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from irstream.clock import FrameClock


@dataclass(frozen=True)
class OsdConfig:
    """enabled: learn and apply the mask.
    learn_s: the span of the running average, s (50 frames at 25 frames/s).
    first_mask_s: time seen before the mask is first applied, s (its average is then a plain
        mean of the frames seen).  A clock fixed in the image while the camera pans looks to the
        tracker like a target moving against the scene, so it is published from its third frame: with
        the mask first applied at frame 50 (2 s) on real clips such a track was 0.1 false tracks
        per frame and took the drone's id when the drone was lost; from frame 10 (0.4 s) neither
        happened.
        A drone that a camera follows is not still to 3/255 pixel by pixel, so it is not masked.
    still_level: a pixel changing less than this between frames is still ([0, 1] gray).
    sharp_level: a pixel is on an edge when its 3x3 max minus min exceeds this ([0, 1] gray).
    bright_level: text is at least this bright ([0, 1] gray; displays draw white).
    still_share: share of frames a pixel must be still, sharp and bright in to be text (0..1).
    release_share: a text pixel stays text until its share falls below this (0..still_share):
        when a clock's minute digit changes, its old strokes would otherwise leave the mask
        within about 10 frames and the new ones join it only after about 40, and in between
        the new digit is a sharp, bright detection that the tracker takes for a target.  A pixel
        within grow_px of text becomes text at this share too: the digits of a readout that
        change as the camera tilts are still in fewer frames than its label, and at a quarter
        of the frame rate (codec noise grows with the step) they stayed below still_share.
    grow_px: gaps between glyphs this wide are closed, and the mask grows by as much, px.
    """

    enabled: bool = True
    learn_s: float = 2.0
    first_mask_s: float = 0.4
    still_level: float = 3.0 / 255.0
    sharp_level: float = 0.12
    bright_level: float = 0.7
    still_share: float = 0.8
    release_share: float = 0.2
    grow_px: int = 4

    def __post_init__(self) -> None:
        if not self.learn_s > 0:
            raise ValueError(f"learn_s={self.learn_s}: must be > 0 (seconds)")
        if not 0 < self.first_mask_s <= self.learn_s:
            raise ValueError(f"first_mask_s={self.first_mask_s}: must be within (0, learn_s={self.learn_s}] "
                             "(seconds; the default is 0.4)")
        if not 0.0 < self.still_share <= 1.0:
            raise ValueError(f"still_share={self.still_share}: must be within (0, 1]")
        if not 0.0 <= self.release_share <= self.still_share:
            raise ValueError(f"release_share={self.release_share}: must be within [0, still_share={self.still_share}] "
                             "(the default is 0.2)")
        for name in ("still_level", "sharp_level", "bright_level"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name}={getattr(self, name)}: must be within (0, 1)")
        if self.grow_px < 0:
            raise ValueError(f"grow_px={self.grow_px}: must be >= 0")


class OsdMask:
    """update(unit, timestamp_s) per frame; .mask is the (H, W) bool ignore mask once learnt,
    else None."""

    def __init__(self, cfg: OsdConfig = OsdConfig()) -> None:
        self.cfg = cfg
        self._prev: np.ndarray | None = None
        self._share: np.ndarray | None = None
        self._text: np.ndarray | None = None  # text pixels, with hysteresis (release_share)
        self.frames = 0
        self.mask: np.ndarray | None = None
        self._clock = FrameClock()

    def update(self, unit: np.ndarray, timestamp_s: float) -> np.ndarray | None:
        if not self.cfg.enabled:
            return None
        self._clock.tick(timestamp_s)
        if self._prev is None or self._prev.shape != unit.shape:
            self._prev, self._share, self.frames, self.mask = unit.copy(), np.zeros(unit.shape, np.float32), 0, None
            self._text = np.zeros(unit.shape, bool)
            return None
        k = np.ones((3, 3), np.uint8)
        text_like = ((np.abs(unit - self._prev) < self.cfg.still_level)
                     & ((cv2.dilate(unit, k) - cv2.erode(unit, k)) > self.cfg.sharp_level)
                     & (unit >= self.cfg.bright_level))
        self._prev = unit.copy()
        self.frames += 1
        learn = self._clock.frames(self.cfg.learn_s)
        rate = 1.0 / min(self.frames, learn)  # a plain mean at first, then running
        self._share += np.float32(rate) * (text_like.astype(np.float32) - self._share)
        strong = self._share >= self.cfg.still_share
        held = self._text if self.frames >= learn else False
        near = self._grow(strong | held)
        self._text = strong | (near & (self._share >= self.cfg.release_share))
        if self.frames >= self._clock.frames(self.cfg.first_mask_s):
            self.mask = self._grow(self._text)
        return self.mask

    def _grow(self, text: np.ndarray) -> np.ndarray:
        g = self.cfg.grow_px
        if not g:
            return text
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * g + 1,) * 2)
        closed = cv2.morphologyEx(text.astype(np.uint8), cv2.MORPH_CLOSE, k)
        return cv2.dilate(closed, k) > 0
