"""Masks from point and box labels: the rule irstream applies to footage labelled by hand.

Real sequences are labelled with a point at the target's centre (DAUB) or a box around it
(the drone clips); a segmentation model needs a mask.  The rule, for one label:

1. Local background: the median of a ring around the label (a window of BACKGROUND_WINDOW_PX
   for a point, the box grown by BOX_MARGIN_PX for a box), and its spread (MAD).
2. Polarity: the target is whichever departs further from the background inside the label's
   core, bright (hot) or dark (cold); IR targets are mostly hot, but not always.
3. The mask is the connected region around the most extreme core pixel whose contrast is at
   least HALF_CONTRAST of the peak contrast and above NOISE_SIGMAS background spreads:
   a half-maximum blob grown from the peak, clipped to the label's window.
4. A label whose peak does not stand out of the noise still gets a mask: a 3x3 square at the
   point (or the box's central third), so a faint target is never taught as background.

Checked by eye on a sample of DAUB frames and clip frames (see labels/README.md).
"""

from __future__ import annotations

import cv2
import numpy as np

#: Side of the window around a point label in which the target is grown (px).
POINT_WINDOW_PX = 11
#: Side of the window around a point label whose border ring gives the local background (px).
BACKGROUND_WINDOW_PX = 21
#: Pixels added around a box label for its background ring (px).
BOX_MARGIN_PX = 4
#: A pixel belongs to the target when its contrast is at least this share of the peak's.
HALF_CONTRAST = 0.5
#: ... and at least this many robust standard deviations of the background.
NOISE_SIGMAS = 3.0
#: Largest mask a point label may grow (px); a bigger region is a bright structure, not the point.
POINT_MAX_AREA_PX = 49


def _ring_stats(img: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> tuple[float, float]:
    """Median and robust std (1.4826 MAD) of the one-pixel border of img[y0:y1, x0:x1]."""
    win = img[y0:y1, x0:x1]
    ring = np.concatenate([win[0], win[-1], win[1:-1, 0], win[1:-1, -1]])
    med = float(np.median(ring))
    return med, 1.4826 * float(np.median(np.abs(ring - med))) + 1e-4


def _grow(img: np.ndarray, core: tuple[slice, slice], region: tuple[slice, slice], bg: float,
          spread: float) -> np.ndarray | None:
    """Half-contrast region around the core's most extreme pixel, or None if it is noise."""
    diff = img[region] - bg
    core_diff = np.zeros_like(diff, dtype=bool)
    cy = slice(core[0].start - region[0].start, core[0].stop - region[0].start)
    cx = slice(core[1].start - region[1].start, core[1].stop - region[1].start)
    core_diff[cy, cx] = True
    bright, dark = diff[core_diff].max(), -diff[core_diff].min()
    sign = 1.0 if bright >= dark else -1.0
    contrast = sign * diff
    peak = float(np.where(core_diff, contrast, -np.inf).max())
    if peak < NOISE_SIGMAS * spread:
        return None
    above = (contrast >= max(HALF_CONTRAST * peak, NOISE_SIGMAS * spread)).astype(np.uint8)
    _, labels = cv2.connectedComponents(above, connectivity=8)
    py, px = np.unravel_index(np.argmax(np.where(core_diff, contrast, -np.inf)), contrast.shape)
    return labels == labels[py, px]


def point_mask(img: np.ndarray, x: float, y: float) -> np.ndarray:
    """Mask (bool, img's shape) of the target labelled by a point at column x, row y."""
    h, w = img.shape
    cx, cy = int(round(x)), int(round(y))
    out = np.zeros((h, w), dtype=bool)
    if not (0 <= cx < w and 0 <= cy < h):
        return out
    half_bg, half = BACKGROUND_WINDOW_PX // 2, POINT_WINDOW_PX // 2
    by0, by1, bx0, bx1 = max(0, cy - half_bg), min(h, cy + half_bg + 1), max(0, cx - half_bg), min(w, cx + half_bg + 1)
    bg, spread = _ring_stats(img, by0, by1, bx0, bx1)
    region = (slice(max(0, cy - half), min(h, cy + half + 1)), slice(max(0, cx - half), min(w, cx + half + 1)))
    core = (slice(max(0, cy - 1), min(h, cy + 2)), slice(max(0, cx - 1), min(w, cx + 2)))
    grown = _grow(img, core, region, bg, spread)
    if grown is None or grown.sum() > POINT_MAX_AREA_PX:
        out[core] = True
    else:
        out[region] = grown
    return out


def box_mask(img: np.ndarray, x0: float, y0: float, bw: float, bh: float) -> np.ndarray:
    """Mask (bool, img's shape) of the target inside a box (left, top, width, height in px)."""
    h, w = img.shape
    bx0, by0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
    bx1, by1 = min(w, int(np.ceil(x0 + bw))), min(h, int(np.ceil(y0 + bh)))
    out = np.zeros((h, w), dtype=bool)
    if bx1 <= bx0 or by1 <= by0:
        return out
    m = BOX_MARGIN_PX
    bg, spread = _ring_stats(img, max(0, by0 - m), min(h, by1 + m), max(0, bx0 - m), min(w, bx1 + m))
    region = (slice(by0, by1), slice(bx0, bx1))
    th, tw = by1 - by0, bx1 - bx0
    core = (slice(by0 + th // 3, by1 - th // 3), slice(bx0 + tw // 3, bx1 - tw // 3))
    if core[0].stop <= core[0].start or core[1].stop <= core[1].start:
        core = region
    grown = _grow(img, core, region, bg, spread)
    if grown is None:
        out[core] = True
    else:
        out[region] = grown
    return out
