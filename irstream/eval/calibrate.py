"""The operating point: the score threshold a weights file is used at, chosen on validation data.

The model's own decision (probability > 0.5) is not what a user wants: at 0.5 the detector may
miss faint targets or, more often on real footage, fire on clutter.  `irstream calibrate` runs the
model once over the validation sets (never a test split), sweeps the threshold and picks

    the highest threshold whose pooled Pd >= pd_target (the fewest false alarms at that Pd);
    if no threshold reaches pd_target, the one with the most Pd - FA_COST x false alarms per image.

Pd is pooled over the targets of SIRST v1 val (3 px centroid match, the field's rule), the
drones of the validation clips (a component whose centroid is within 3 px of the box) and the
1-3 px aircraft of the held-out DAUB sequences (within 3 px of the labelled point).  False
alarms are unmatched components per image, pooled over SIRST v1 val, the target-free backgrounds
val split, the validation clips' frames and the DAUB frames.  Without DAUB's aircraft in the
pool, a threshold could be raised for fewer false alarms on the others while it lost the tiny
targets the default must find: mean weights of two runs were calibrated at 0.95, where their
detector found 84% of the held-out aircraft against 92% at 0.5.  The result goes on the card as "operating_point";
`detect`, `run`, `eval` and `eval-track` use it unless given a threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from irstream.data.mix import ANTIUAV_VAL, DAUB_HELD_OUT, clip_frames, daub_frames, daub_rows, load_backgrounds
from irstream.data.sirst import load_split
from irstream.eval.metrics import MATCH_DIST_PX, box_hits, components, match_targets
from irstream.model.segment import image_logits
from irstream.detect.targets import sigmoid
from irstream.eval.tracks import Counts

#: Thresholds swept (probabilities).
CALIBRATION_THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
#: Pd the operating point must keep on the pooled validation targets.
PD_TARGET = 0.95
#: When no threshold reaches PD_TARGET: Pd given up per false alarm per image.
FA_COST = 0.05
#: Every n-th labelled frame of the validation clips.
CLIP_STEP = 5
#: Every n-th labelled frame of the held-out DAUB sequences (250 -> 125).
DAUB_STEP = 2


@dataclass
class Sweep:
    """Per threshold, a tally per validation set."""

    sets: dict[str, dict[float, Counts]] = field(default_factory=dict)

    def add(self, name: str, t: float, targets: int, found: int, false: int) -> None:
        c = self.sets.setdefault(name, {}).setdefault(t, Counts())
        c += Counts(found, targets, false, 1)

    def pooled(self, t: float) -> Counts:
        out = Counts()
        for per_t in self.sets.values():
            out += per_t[t]
        return out


def _prob(model, image: np.ndarray, device, tiles) -> np.ndarray:
    return sigmoid(image_logits(model, image, device, *tiles))


def sweep(model, data_root: Path, device, thresholds=CALIBRATION_THRESHOLDS, on_image=None, tiles=(0, 0)) -> Sweep:
    """Run the model once over each validation set (in tiles as the card says) and count at
    every threshold."""
    model.eval()
    out = Sweep()
    for s in load_split(data_root / "sirst-v1", "val"):
        p = _prob(model, s.image, device, tiles)
        for t in thresholds:
            n_t, found, _ = match_targets(s.mask, p > t)
            out.add("sirst-v1/val", t, n_t, found, len(components(p > t)[0]) - found)
        if on_image:
            on_image()
    for s in load_backgrounds(data_root / "sirst-v2-backgrounds", "val"):
        p = _prob(model, s.image, device, tiles)
        for t in thresholds:
            out.add("sirst-v2-backgrounds/val", t, 0, 0, cv2.connectedComponents((p > t).astype(np.uint8), connectivity=8)[0] - 1)
        if on_image:
            on_image()
    labelled = (("antiuav-clips/val", clip_frames(data_root / "antiuav-clips", ANTIUAV_VAL, CLIP_STEP)),
                 ("daub/held-out", daub_frames(data_root / "daub", DAUB_HELD_OUT, DAUB_STEP)))
    for name, frames in labelled:
        for _, img, boxes in frames:
            p = _prob(model, img, device, tiles)
            for t in thresholds:
                out.add(name, t, *box_hits(components(p > t)[1][:, ::-1], boxes, MATCH_DIST_PX))
            if on_image:
                on_image()
    return out


def count_images(data_root: Path) -> int:
    from irstream.data.mix import labelled_frames
    from irstream.data.sirst import read_split

    n = len(read_split(data_root / "sirst-v1", "val")) + len(read_split(data_root / "sirst-v2-backgrounds", "val"))
    n += sum(-(-labelled_frames(data_root / "antiuav-clips", c)[0] // CLIP_STEP) for c in ANTIUAV_VAL)
    return n + sum(len(daub_rows(data_root / "daub", seq)[::DAUB_STEP]) for seq in DAUB_HELD_OUT)


def choose(sw: Sweep, pd_target: float = PD_TARGET) -> dict:
    """The operating point (see the module docstring) and the sweep behind it."""
    ts = sorted(next(iter(sw.sets.values())))
    pooled = {t: sw.pooled(t) for t in ts}
    ok = [t for t in ts if pooled[t].pd >= pd_target]
    if ok:
        best, rule = max(ok), f"highest threshold with pooled val Pd >= {pd_target:.0%}"
    else:
        best = max(ts, key=lambda t: pooled[t].pd - FA_COST * pooled[t].fa_per_frame)
        rule = f"no threshold reaches Pd {pd_target:.0%}: most Pd - {FA_COST} x false alarms per image"

    def figures(c: Counts) -> dict:
        return {"pd": round(c.pd, 4) if c.truths else None, "fa_per_image": round(c.fa_per_frame, 4)}

    table = [{"threshold": t, **figures(pooled[t]), **{name: figures(v[t]) for name, v in sw.sets.items()}} for t in ts]
    return {"score_threshold": best, "rule": rule, **figures(pooled[best]),
            "validation_sets": {n: {"images": v[best].frames, "targets": v[best].truths} for n, v in sw.sets.items()},
            "sweep": table}
