"""The detection stage on box-labelled frames, at their own scale and zoomed: does a drone of
any size come out as one detection whose box covers it?

A frame zoomed `factor` times is the window of 1/factor of its side around the labelled target,
enlarged back to the frame's size (bilinear): a 20x12 px drone becomes 40x24 px at 2x and
80x48 px at 4x, in its own background, as if it had come closer.

Scoring (box_hits): a label is hit by the detections within MATCH_DIST_PX of its box; they all
count for it (rotors and body), none as a false alarm.  A label of WHOLE_MIN_SIDE_PX or more
is hit whole when one detection's box covers at least WHOLE_COVER of the label's box: the
published box and centroid are on the target, not on one rotor of it.  (Smaller labels are
loose boxes around a blob that the mask rightly keeps tighter.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from irstream.eval.metrics import MATCH_DIST_PX, box_distances, box_hits

#: A hit is whole when one detection's box covers this share of the label's box ...
WHOLE_COVER = 0.5
#: ... counted for labels whose longer side is at least this, px.
WHOLE_MIN_SIDE_PX = 30


def zoom_frame(img: np.ndarray, boxes: list, factor: float) -> tuple[np.ndarray, list]:
    """The window of 1/factor of the frame around the first box, enlarged to the frame's size."""
    if factor == 1 or not boxes:
        return img, boxes
    h, w = img.shape
    ww, wh = w / factor, h / factor
    x, y, bw, bh = boxes[0]
    x0 = float(np.clip(x + bw / 2 - ww / 2, 0, w - ww))
    y0 = float(np.clip(y + bh / 2 - wh / 2, 0, h - wh))
    m = np.float32([[factor, 0, -x0 * factor], [0, factor, -y0 * factor]])
    big = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    out = []
    for bx, by, bw_, bh_ in boxes:
        nx, ny, nw, nh = (bx - x0) * factor, (by - y0) * factor, bw_ * factor, bh_ * factor
        if nx >= 0 and ny >= 0 and nx + nw <= w and ny + nh <= h:
            out.append((nx, ny, nw, nh))
    return big, out


def cover(det_xyxy: np.ndarray, box_xywh) -> float:
    """Share of the label box (left, top, width, height) inside a detection box (x0, y0, x1, y1)."""
    x, y, w, h = box_xywh
    ix = max(0.0, min(det_xyxy[2], x + w) - max(det_xyxy[0], x))
    iy = max(0.0, min(det_xyxy[3], y + h) - max(det_xyxy[1], y))
    return ix * iy / max(w * h, 1e-9)


@dataclass
class SizeCounts:
    labels: int = 0
    hits: int = 0
    large: int = 0
    whole: int = 0
    false: int = 0
    frames: int = 0
    label_sides: list[float] = field(default_factory=list)

    def add(self, dets, boxes: list) -> None:
        n, hit, free = box_hits(dets.centroid_xy, boxes, MATCH_DIST_PX)
        self.labels, self.hits, self.false, self.frames = self.labels + n, self.hits + hit, self.false + free, self.frames + 1
        for b in boxes:
            self.label_sides.append(max(b[2], b[3]))
            if max(b[2], b[3]) < WHOLE_MIN_SIDE_PX:
                continue
            self.large += 1
            near = np.flatnonzero(box_distances(dets.centroid_xy, [(b[0], b[1], b[0] + b[2] - 1, b[1] + b[3] - 1)])[:, 0] <= MATCH_DIST_PX)
            if near.size and max(cover(dets.bbox_xyxy[i], b) for i in near) >= WHOLE_COVER:
                self.whole += 1

    def row(self) -> dict:
        sides = self.label_sides or [0.0]
        return {"frames": self.frames, "labels": self.labels, "pd": self.hits / max(1, self.labels),
                "large": self.large, "whole": self.whole / self.large if self.large else None, "fa_per_frame": self.false / max(1, self.frames),
                "median_side_px": float(np.median(sides))}


def score(detector, frames, factor: float = 1.0, on_frame=None) -> dict:
    """The detector on labelled frames (name, [0, 1] image, boxes), each zoomed `factor` times
    and run as a stream of its own (no learnt text mask carried between unrelated frames)."""
    counts = SizeCounts()
    for _, img, boxes in frames:
        big, big_boxes = zoom_frame(img, boxes, factor)
        if boxes and not big_boxes:
            continue  # the zoom cut the target: not a frame of this size
        detector.reset()
        counts.add(detector(np.round(big * 255).astype(np.uint8)).detections, big_boxes)
        if on_frame:
            on_frame()
    return counts.row()


def frame_set(name: str, data_root: Path, every: int):
    """Named labelled frames: a shipped-label clip's name, or cvpr-val, drone-ir-val, reticle-val."""
    from irstream.data import drones
    from irstream.data.mix import LABELS_DIR, clip_frames

    if name == "cvpr-val":
        return list(drones.cvpr_frames(data_root / drones.CVPR, "val", every))
    if name == "drone-ir-val":
        return list(drones.drone_ir_frames(data_root / drones.DRONE_IR, "val", every))
    if name == "reticle-val":
        return list(drones.reticle_frames(data_root / drones.RETICLE, "val", every))
    if (LABELS_DIR / f"{name}.txt").is_file():
        return list(clip_frames(data_root / "antiuav-clips", (name,), every))
    raise ValueError(f"{name}: not a labelled set; use cvpr-val, drone-ir-val, reticle-val or a clip of {LABELS_DIR}")
