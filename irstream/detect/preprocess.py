"""Turning raw sensor pixels into the model's input range, [0, 1] float32.

8-bit images are divided by the model's `input_scale` (255: LRRNet was trained on 8-bit
images divided by 255).  16-bit sensor data has no fixed white level (14-bit cores, offsets,
drift), so it goes through an automatic gain control (AGC), one of:

- `fixed`: a linear range in raw counts from the pipeline config, `fixed_range_counts`
  (lo, hi) -> (0, 1).  Use it when the camera's radiometry is stable and known.
- `percentile`: the `low_pct` and `high_pct` percentiles of each frame map to 0 and 1.
  Percentiles rather than min/max so that a few hot or dead pixels (fewer than 1 in
  10,000 at the default high_pct) cannot crush the scene.
  On video the limits are smoothed over time with an exponential moving average of time
  constant `agc_time_constant_s`, so the image does not flicker when a bright target or a
  cloud enters the frame.

Ignore regions (rectangles, or a mask image whose non-zero pixels are ignored) cover
burned-in on-screen text.  Ignored pixels are filled with the median of the rest of the frame
before inference, take no part in the AGC, and no target is reported within
`ignore_margin_px` of them (`Prepared.valid`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from irstream.types import Frame, Prepared

#: AGC percentiles are estimated on every Nth row and column: with N = 2, a quarter of the
#: pixels, which on a 640x512 frame still leaves 82k samples for a 99.99th percentile.
AGC_SUBSAMPLE = 2
#: Share of the new AGC limits taken per frame when the timestamps do not advance (bare arrays,
#: all stamped 0 s): about a 10-frame time constant, in frames since there is no time to use.
AGC_BLEND_PER_UNTIMED_FRAME = 0.1


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
    """(H, W) uint8 or uint16 -> (H, W) float32 in [0, 1], one still image at a time."""
    if img.dtype == np.uint8:
        return img.astype(np.float32) / np.float32(255.0)
    if img.dtype == np.uint16:
        return stretch(img, *(agc or PercentileAGC()).limits(img))
    if np.issubdtype(img.dtype, np.floating):
        return np.clip(img.astype(np.float32), 0.0, 1.0)
    raise ValueError(f"unsupported pixel type {img.dtype}")


@dataclass(frozen=True)
class PreprocessConfig:
    """How raw frames become model input (see the module docstring).

    agc: "percentile" or "fixed"; applies to 16-bit frames only.
    fixed_range_counts: (lo, hi) raw counts mapped to (0, 1) by the fixed AGC.
    low_pct, high_pct, min_span_counts: the percentile AGC (see PercentileAGC).
    agc_time_constant_s: smoothing of the percentile limits, seconds.  Longer is steadier
        but follows a real change of scene (sun, shutter calibration) more slowly; 0 turns
        smoothing off and stretches every frame on its own.
    ignore_rects: rectangles (x0, y0, x1, y1), px, end-exclusive, to ignore.
    ignore_mask: path of an image of the frame's size; non-zero pixels are ignored.
    ignore_margin_px: no target is reported this close to an ignored pixel, px; the border
        between real image and filled pixels can look like a small target.
    """

    agc: str = "percentile"
    fixed_range_counts: tuple[float, float] = (0.0, 65535.0)
    low_pct: float = 0.5
    high_pct: float = 99.99
    min_span_counts: float = 64.0
    agc_time_constant_s: float = 1.0
    ignore_rects: tuple[tuple[int, int, int, int], ...] = ()
    ignore_mask: str = ""
    ignore_margin_px: int = 4

    def __post_init__(self) -> None:
        if self.agc not in ("percentile", "fixed"):
            raise ValueError(f"agc={self.agc!r}: must be 'percentile' or 'fixed'")
        lo, hi = self.fixed_range_counts
        if not hi > lo:
            raise ValueError(f"fixed_range_counts={list(self.fixed_range_counts)}: need lo < hi")
        PercentileAGC(self.low_pct, self.high_pct, self.min_span_counts)
        if self.agc_time_constant_s < 0:
            raise ValueError(f"agc_time_constant_s={self.agc_time_constant_s}: must be >= 0")
        for r in self.ignore_rects:
            if len(r) != 4 or r[2] <= r[0] or r[3] <= r[1]:
                raise ValueError(f"ignore_rects entry {list(r)}: need [x0, y0, x1, y1] with x1 > x0 and y1 > y0")
        if self.ignore_margin_px < 0:
            raise ValueError(f"ignore_margin_px={self.ignore_margin_px}: must be >= 0")


class Preprocessor:
    """Stateful per-stream preprocessing: the AGC remembers its smoothed limits.

    eight_bit_scale: the model's input contract for 8-bit data (LRRNetCfg.input_scale).
    """

    def __init__(self, cfg: PreprocessConfig = PreprocessConfig(), eight_bit_scale: float = 255.0) -> None:
        self.cfg = cfg
        self.scale = np.float32(eight_bit_scale)
        self.agc = PercentileAGC(cfg.low_pct, cfg.high_pct, cfg.min_span_counts)
        self._limits: tuple[float, float] | None = None
        self._last_t: float | None = None
        self._ignore: np.ndarray | None = None
        self._valid: np.ndarray | None = None  # (H, W) bool where targets may be reported, None = everywhere

    def __call__(self, frame: Frame) -> Prepared:
        img = frame.image
        if self._ignore is None or self._ignore.shape != img.shape:
            self._build_masks(img.shape)
        keep = None if self._valid is None else ~self._ignore
        if frame.bit_depth == 8 or img.dtype == np.uint8:
            unit = img.astype(np.float32) / self.scale
            np.clip(unit, 0.0, 1.0, out=unit)
        else:
            unit = stretch(img, *self._agc_limits(img, keep, frame.timestamp_s))
        if keep is not None and self._ignore.any():
            unit[self._ignore] = np.median(unit[keep]) if keep.any() else 0.0
        return Prepared(frame, unit, self._valid)

    def _agc_limits(self, img: np.ndarray, keep: np.ndarray | None, t: float) -> tuple[float, float]:
        if self.cfg.agc == "fixed":
            return self.cfg.fixed_range_counts
        s = AGC_SUBSAMPLE
        sample = img[::s, ::s] if keep is None else img[::s, ::s][keep[::s, ::s]]
        lo, hi = self.agc.limits(sample if sample.size else img)
        if self._limits is not None and self.cfg.agc_time_constant_s > 0:
            dt = t - self._last_t if self._last_t is not None else 0.0
            # dt from timestamps, so a live source that drops frames catches up at the same rate.
            a = 1.0 - math.exp(-dt / self.cfg.agc_time_constant_s) if dt > 0 else AGC_BLEND_PER_UNTIMED_FRAME
            plo, phi = self._limits
            lo, hi = plo + a * (lo - plo), phi + a * (hi - phi)
        self._limits, self._last_t = (lo, max(hi, lo + self.cfg.min_span_counts)), t
        return self._limits

    def _build_masks(self, shape: tuple[int, int]) -> None:
        ignore = np.zeros(shape, dtype=bool)
        for x0, y0, x1, y1 in self.cfg.ignore_rects:
            ignore[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = True
        if self.cfg.ignore_mask:
            ignore |= _read_ignore_mask(self.cfg.ignore_mask, shape)
        self._ignore = ignore
        if not ignore.any():
            self._valid = None
            return
        m = self.cfg.ignore_margin_px
        grown = cv2.dilate(ignore.astype(np.uint8), np.ones((2 * m + 1, 2 * m + 1), np.uint8)) if m else ignore
        self._valid = ~grown.astype(bool)


def _read_ignore_mask(path: str, shape: tuple[int, int]) -> np.ndarray:
    from irstream.errors import UserError
    from irstream.io.imageio import read_gray

    if not Path(path).is_file():
        raise UserError(f"ignore_mask {path}: no such image; give a mask image of the frame's size or drop the key")
    mask = read_gray(path) > 0
    if mask.shape != tuple(shape):
        raise UserError(f"ignore_mask {path}: {mask.shape[1]}x{mask.shape[0]} px but frames are {shape[1]}x{shape[0]}; "
                        "draw the mask at the frame's size")
    return mask
