"""Targets from a segmentation: 8-connected components of the thresholded score map."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from irstream.types import Detections


#: Where temporal evidence runs (TargetConfig.temporal).
TEMPORAL_MODES = ("off", "lossless", "on")


@dataclass(frozen=True)
class TargetConfig:
    """How a score map becomes targets.

    score_threshold: probability above which a pixel is a target.  None (the default) takes
        the weights' calibrated operating point from their card (see `operating_threshold`),
        and 0.5, the model's own decision (logit > 0), for weights without one; lower finds
        dimmer targets and more clutter.
    min_area_px, max_area_px: components outside this size are dropped, px (a close drone is
        up to about 130x80 px when the coarse pass finds it whole; a larger blob is usually a
        cloud edge or a building).
    ring_px: width of the ring around each box whose median is the local background.
    merge_gap_px: components closer than this are one target, px: a drone that the threshold
        splits into body and rotors, or a close aircraft into nose and engines, is reported once
        (its box covers all parts).  0 keeps every 8-connected component apart; larger values
        also merge two real targets that come this close.
    border_px: targets whose centroid lies closer than this to the frame's edge are dropped, px.
        Sensors and encoders leave dead or bright rows and columns there (one real clip has a
        dashed line along its top rows, a confirmed track on every frame); a target entering
        the picture is found border_px px later.  0 keeps all.
    temporal: where temporal evidence (irstream.detect.temporal) is laid over the model's map,
        for faint points that one frame does not show but that move against the registered
        scene: "lossless" (default) on sources whose frames are stored exactly (image sequences
        in PNG, TIFF or BMP: raw sensor dumps, DAUB's ground sequences), where what is left after
        registration is the sensor's own noise; "on" on every source; "off".  Compressed video
        and streams are left out by "lossless" because their codec leaves residuals of its own:
        on the shared H.264 clips, with a floor of 0.002, false tracks went from 0.26 to 0.82 per
        frame (docs/unseen-footage.md).
    temporal_frames: the past frames whose registered median is the scene (>= 2).
    temporal_min_z: what moved against that median by this many noise spreads or more is
        target evidence.
    temporal_noise_floor: the noise spread is taken as at least this ([0, 1] units).  Half a
        gray level suits lossless frames (chosen leaving one DAUB sequence out); compressed
        video needs about 2/255, or the encoder's one-level flicker over flat sky stands out
        (on a real H.264 clip 300 components a frame at z 24 without a floor).
    """

    score_threshold: float | None = None
    min_area_px: int = 1
    max_area_px: int = 10000
    ring_px: int = 3
    merge_gap_px: int = 3
    border_px: int = 6
    temporal: str = "lossless"
    temporal_frames: int = 5
    temporal_min_z: float = 24.0
    temporal_noise_floor: float = 0.002

    def __post_init__(self) -> None:
        if self.score_threshold is not None and not 0.0 < self.score_threshold < 1.0:
            raise ValueError(f"score_threshold={self.score_threshold}: must be within (0, 1)")
        if not 1 <= self.min_area_px <= self.max_area_px:
            raise ValueError(f"need 1 <= min_area_px <= max_area_px, got {self.min_area_px}, {self.max_area_px}")
        if self.merge_gap_px < 0:
            raise ValueError(f"merge_gap_px={self.merge_gap_px}: must be >= 0")
        if self.border_px < 0:
            raise ValueError(f"border_px={self.border_px}: must be >= 0")
        if self.temporal not in TEMPORAL_MODES:
            raise ValueError(f"temporal={self.temporal!r}: must be one of {', '.join(map(repr, TEMPORAL_MODES))}")
        if self.temporal_frames < 2:
            raise ValueError(f"temporal_frames={self.temporal_frames}: must be >= 2 (turn it off with temporal = \"off\")")
        if not self.temporal_min_z > 0:
            raise ValueError(f"temporal_min_z={self.temporal_min_z}: must be > 0")
        if not 0 <= self.temporal_noise_floor < 1:
            raise ValueError(f"temporal_noise_floor={self.temporal_noise_floor}: must be within [0, 1)")


#: The model's own decision (logit > 0): the threshold of weights whose card has no operating point.
MODEL_THRESHOLD = 0.5


def operating_threshold(card: dict) -> float:
    """The score threshold calibrated for these weights (card["operating_point"]), else 0.5."""
    return float(card.get("operating_point", {}).get("score_threshold", MODEL_THRESHOLD))


def resolve_targets(cfg: TargetConfig, card: dict) -> TargetConfig:
    """cfg with score_threshold filled in from the weights' card when it was left unset."""
    if cfg.score_threshold is not None:
        return cfg
    return dataclasses.replace(cfg, score_threshold=operating_threshold(card))


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0)))).astype(np.float32)


#: The ring whose spread is a detection's `structure`: it starts this many px plus half the
#: box's longer side outside the box (clear of the target's own blur and glow, which grow with
#: it) ...
STRUCTURE_GAP_PX = 2
#: ... and is this wide, px: wide enough to reach the edge a target sits on or beside.
STRUCTURE_RING_PX = 8
#: The spread is the difference of these percentiles of the ring's pixels (robust to a few
#: bright pixels of the target's own glow or a single lit window).
STRUCTURE_PERCENTILES = (10, 90)


def _inside(x: float, y: float, shape: tuple[int, int], border_px: int) -> bool:
    h, w = shape[:2]
    return border_px <= x <= w - 1 - border_px and border_px <= y <= h - 1 - border_px


def extract_targets(score: np.ndarray, image: np.ndarray, cfg: TargetConfig = TargetConfig()) -> Detections:
    """score: (H, W) target probability; image: (H, W) the [0, 1] frame the model saw.

    The centroid is weighted by the image's excess over the local background, which places
    a blurred point target better than the mask's pixel mean does.
    """
    threshold = resolve_targets(cfg, {}).score_threshold  # a bare call: the model's own decision
    binary = (score > threshold).astype(np.uint8)
    labels = _labels(binary, cfg.merge_gap_px)
    rows = []
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        inside = labels[sl] == i
        area = int(inside.sum())
        if not cfg.min_area_px <= area <= cfg.max_area_px:
            continue
        y, x = sl[0].start, sl[1].start
        bh, bw = sl[0].stop - y, sl[1].stop - x
        s, im = score[sl][inside], image[sl]
        bg = _ring_median(image, x, y, bw, bh, cfg.ring_px)
        weight = np.maximum(im - bg, 0.0) * inside + 1e-6 * inside
        yy, xx = np.mgrid[y:y + bh, x:x + bw]
        cx, cy = float((weight * xx).sum() / weight.sum()), float((weight * yy).sum() / weight.sum())
        if not _inside(cx, cy, score.shape, cfg.border_px):
            continue
        rows.append(((cx, cy), (x, y, x + bw, y + bh), area, s.max(), s.mean(), float(im[inside].max() - bg),
                     ring_spread(image, x, y, bw, bh)))
    if not rows:
        return Detections.empty()
    c, b, a, p, m, k, st = zip(*rows)
    return Detections(np.array(c, dtype=np.float64), np.array(b, dtype=np.int64), np.array(a, dtype=np.int64),
                      np.array(p, dtype=np.float64), np.array(m, dtype=np.float64), np.array(k, dtype=np.float64),
                      np.array(st, dtype=np.float64))


def _labels(binary: np.ndarray, merge_gap_px: int) -> np.ndarray:
    """8-connected component labels of binary (0 = background); parts within merge_gap_px of
    each other share a label."""
    if not merge_gap_px:
        return cv2.connectedComponents(binary, connectivity=8)[1]
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * merge_gap_px + 1,) * 2)
    grown = cv2.connectedComponents(cv2.dilate(binary, k), connectivity=8)[1]
    return grown * binary


def ring_spread(image: np.ndarray, x: int, y: int, bw: int, bh: int) -> float:
    """The detection's `structure`: the spread of the ring STRUCTURE_GAP_PX to STRUCTURE_GAP_PX +
    STRUCTURE_RING_PX outside its box (left x, top y, width bw, height bh, px)."""
    h, w = image.shape
    g = STRUCTURE_GAP_PX + max(bw, bh) // 2
    r = g + STRUCTURE_RING_PX
    x0, y0, x1, y1 = max(0, x - r), max(0, y - r), min(w, x + bw + r), min(h, y + bh + r)
    patch = image[y0:y1, x0:x1]
    keep = np.ones(patch.shape, dtype=bool)
    keep[max(0, y - g - y0):max(0, y + bh + g - y0), max(0, x - g - x0):max(0, x + bw + g - x0)] = False
    if not keep.any():
        return 0.0
    lo, hi = np.percentile(patch[keep], STRUCTURE_PERCENTILES)
    return float(hi - lo)


def _ring_median(image: np.ndarray, x: int, y: int, bw: int, bh: int, ring: int) -> float:
    h, w = image.shape
    x0, y0, x1, y1 = max(0, x - ring), max(0, y - ring), min(w, x + bw + ring), min(h, y + bh + ring)
    patch = image[y0:y1, x0:x1]
    keep = np.ones(patch.shape, dtype=bool)
    keep[y - y0:y - y0 + bh, x - x0:x - x0 + bw] = False
    return float(np.median(patch[keep])) if keep.any() else 0.0


class TargetStage:
    """A frame's probability map -> its detections, for one stream: the burned-in text learnt
    so far (irstream.detect.osd) is masked, then the map is thresholded at the weights' calibrated
    operating point (unless the config names one) into components."""

    def __init__(self, cfg: TargetConfig, osd, lossless: bool = False) -> None:
        """cfg: with its score threshold resolved (`resolve_targets`, done once by load_model).
        lossless: the stream's frames are stored exactly (Source.lossless), where cfg.temporal
        "lossless" turns temporal evidence on."""
        from irstream.detect.osd import OsdMask
        from irstream.detect.temporal import TemporalEvidence

        if cfg.score_threshold is None:
            raise ValueError("TargetStage needs a resolved score threshold: resolve_targets(cfg, card)")
        self.cfg = cfg
        self.osd = OsdMask(osd)
        # Its own registration, not the tracking stage's: targets are found before tracking runs.
        on = cfg.temporal == "on" or (cfg.temporal == "lossless" and lossless)
        self.temporal = (TemporalEvidence(cfg.temporal_frames, cfg.temporal_min_z, cfg.temporal_noise_floor)
                         if on else None)
        self.last_map: np.ndarray | None = None  # what the last frame's targets were taken from

    def __call__(self, prob: np.ndarray, unit: np.ndarray, timestamp_s: float) -> Detections:
        """prob and unit: the frame's map and image; timestamp_s: its time, s (the text mask
        learns over seconds)."""
        self.osd.update(unit, timestamp_s)
        if self.temporal is not None:
            prob = np.maximum(prob, self.temporal.update(unit))
        self.last_map = self.masked(prob)
        return extract_targets(self.last_map, unit, self.cfg)

    def masked(self, prob: np.ndarray) -> np.ndarray:
        """The map with the text learnt so far set to 0: what targets are taken from."""
        text = self.osd.mask
        return prob if text is None else np.where(text, 0.0, prob)

    def ignored(self, valid: np.ndarray | None) -> np.ndarray | None:
        """Pixels no target is reported from: outside `valid` (ignore regions) and learnt text."""
        text = self.osd.mask
        if valid is None:
            return text
        return ~valid if text is None else (~valid | text)
