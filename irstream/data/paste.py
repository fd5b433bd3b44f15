"""Real targets pasted at many scales onto real target-free backgrounds, often on their edges.

The labelled footage holds few close targets (20-130 px) and few targets right on a ridge line,
tree line or roof edge, which is where a user's footage loses them.  This makes both from real
pixels:

1. Cut-outs: each labelled target of the training footage, with the mask the box rule gives it
   (irstream.data.points.box_mask), as its contrast against the ring around its box.
2. A composite: a background crop (SIRST v2 target-free images, train split), one cut-out
   resized so that its longer side is drawn log-uniformly from PASTE_SIDE_PX, added to the
   background's pixels through its mask, feathered by a 1 px blur.  With EDGE_SHARE of the
   composites the cut-out sits on one of the background's strongest edges (the top
   EDGE_PERCENTILE of its gradient), where the sky meets the ground or a building.

Only the pasted mask is labelled: what is taught is exactly what was added.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from irstream.data.sirst import crop_at
from irstream.data.points import BOX_MARGIN_PX, box_mask
from irstream.data.sirst import Sample

#: Longer side of a pasted target, px (drawn log-uniformly).
PASTE_SIDE_PX = (6.0, 110.0)
#: A cut-out is enlarged at most this many times (a 10 px drone blown up to 100 px is a blur,
#: not a close drone): the large pasted targets come from the large cut-outs.
MAX_UPSCALE = 3.0
#: Share of composites with the target on one of the background's strongest edges.
EDGE_SHARE = 0.5
#: Edges: pixels whose gradient magnitude is in the top (100 - this) % of the crop.
EDGE_PERCENTILE = 98.0
#: A cut-out's contrast is multiplied by a gain drawn from this range (sensor gain, range).
CONTRAST_GAIN = (0.6, 1.3)
#: Cut-outs with fewer mask pixels than this are left out (nothing to learn a shape from).
MIN_CUTOUT_PX = 6
#: Side of a composite, px (training crops of up to half of it are taken from it).
COMPOSITE_PX = 256


@dataclass
class Cutout:
    contrast: np.ndarray  # float32, the target's pixels minus its ring's median, 0 off the mask
    mask: np.ndarray      # bool


def cutouts(frames, limit_per_source: int = 400, rng: np.random.Generator | None = None) -> list[Cutout]:
    """Cut-outs of the labelled targets of frames [(name, image, boxes)]."""
    out = []
    for _, img, boxes in frames:
        for (x, y, w, h) in boxes:
            m = box_mask(img, x, y, w, h)
            if m.sum() < MIN_CUTOUT_PX:
                continue
            ys, xs = np.nonzero(m)
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            ring = img[max(0, y0 - BOX_MARGIN_PX):y1 + BOX_MARGIN_PX, max(0, x0 - BOX_MARGIN_PX):x1 + BOX_MARGIN_PX]
            c = (img[y0:y1, x0:x1] - np.median(ring)) * m[y0:y1, x0:x1]
            out.append(Cutout(c.astype(np.float32), m[y0:y1, x0:x1].copy()))
    if rng is not None and len(out) > limit_per_source:
        out = [out[i] for i in rng.choice(len(out), limit_per_source, replace=False)]
    return out


def _place(bg: np.ndarray, th: int, tw: int, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner of a th x tw target in bg: on a strong edge with EDGE_SHARE, else anywhere."""
    h, w = bg.shape
    if rng.random() < EDGE_SHARE:
        g = np.hypot(cv2.Sobel(bg, cv2.CV_32F, 1, 0), cv2.Sobel(bg, cv2.CV_32F, 0, 1))
        g[:th // 2 + 1], g[h - th // 2 - 1:], g[:, :tw // 2 + 1], g[:, w - tw // 2 - 1:] = 0, 0, 0, 0
        ys, xs = np.nonzero(g >= max(np.percentile(g, EDGE_PERCENTILE), 1e-6))
        if ys.size:
            k = rng.integers(ys.size)
            # Centre on the edge, or just above / below it (a target a few px over the ridge).
            dy = int(rng.integers(-th, th + 1)) // 2
            return int(np.clip(ys[k] + dy - th // 2, 0, h - th)), int(np.clip(xs[k] - tw // 2, 0, w - tw))
    return int(rng.integers(0, h - th + 1)), int(rng.integers(0, w - tw + 1))


def composite(bg_image: np.ndarray, cut: Cutout, rng: np.random.Generator, side: int = COMPOSITE_PX) -> Sample:
    """One background crop with one cut-out pasted into it."""
    bg, _ = crop_at(bg_image, np.zeros(bg_image.shape, bool), side, None, rng, 0)
    bg = np.ascontiguousarray(bg, dtype=np.float32)
    ch, cw = cut.mask.shape
    longer = min(float(np.exp(rng.uniform(*np.log(PASTE_SIDE_PX)))), MAX_UPSCALE * max(ch, cw))
    scale = longer / max(ch, cw)
    th, tw = max(1, round(ch * scale)), max(1, round(cw * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    contrast = cv2.resize(cut.contrast, (tw, th), interpolation=interp)
    alpha = cv2.resize(cut.mask.astype(np.float32), (tw, th), interpolation=interp)
    if rng.random() < 0.5:
        contrast, alpha = contrast[:, ::-1], alpha[:, ::-1]
    y0, x0 = _place(bg, th, tw, rng)
    pad = 2  # room for the feathering blur
    a = np.zeros((th + 2 * pad, tw + 2 * pad), np.float32)
    a[pad:pad + th, pad:pad + tw] = alpha
    a = cv2.GaussianBlur(a, (3, 3), 0.7)
    c = np.zeros_like(a)
    c[pad:pad + th, pad:pad + tw] = contrast / np.maximum(alpha, 1e-3)
    gain = np.float32(rng.uniform(*CONTRAST_GAIN))
    ys, xs = slice(y0 - pad, y0 + th + pad), slice(x0 - pad, x0 + tw + pad)
    # The pasted window can hang over the crop's edge by the feathering pad: clip both.
    yy0, xx0 = max(0, y0 - pad), max(0, x0 - pad)
    yy1, xx1 = min(side, y0 + th + pad), min(side, x0 + tw + pad)
    sub = (slice(yy0 - ys.start, yy1 - ys.start), slice(xx0 - xs.start, xx1 - xs.start))
    out = bg.copy()
    out[yy0:yy1, xx0:xx1] = np.clip(bg[yy0:yy1, xx0:xx1] + gain * a[sub] * c[sub], 0.0, 1.0)
    mask = np.zeros(bg.shape, bool)
    mask[yy0:yy1, xx0:xx1] = a[sub] >= 0.5
    return Sample("paste", out, mask)


def composites(backgrounds: list[Sample], cuts: list[Cutout], count: int, rng: np.random.Generator) -> list[Sample]:
    return [composite(backgrounds[rng.integers(len(backgrounds))].image, cuts[rng.integers(len(cuts))], rng)
            for _ in range(count)]
