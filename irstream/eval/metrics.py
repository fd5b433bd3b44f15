"""The field's single-frame metrics, computed the way the field computes them.

IoU    true-positive pixels over union pixels, accumulated over the whole set.
nIoU   mean over images of each image's IoU (an image with empty truth and empty
       prediction scores 0, as in the field's reference code and pyirstdmetrics).
Pd     ground-truth targets (8-connected components) found / all targets.  Greedily,
       each truth component, in label order, takes the first unmatched predicted
       component whose centroid lies closer than `match_dist_px` to its own.
Fa     pixels of predicted components matched to no target / all pixels.  Counted by
       component, not by area (the authors' code misses equal-area false alarms).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: The field's convention for a detection to hit a target (centroid distance, pixels).
MATCH_DIST_PX = 3.0
#: Fa is reported per million pixels.
FA_SCALE = 1e6


def components(binary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8-connected components of a boolean map: (areas (N,), centroids (N, 2) as (row, col))."""
    n, _, stats, cents = cv2.connectedComponentsWithStats(binary.astype(np.uint8), connectivity=8)
    return stats[1:, cv2.CC_STAT_AREA].astype(np.int64), cents[1:, ::-1].astype(np.float64)


def match_targets(truth: np.ndarray, pred: np.ndarray, dist_px: float = MATCH_DIST_PX) -> tuple[int, int, int]:
    """(truth targets, matched targets, pixels of unmatched predicted components) for one image."""
    _, t_cent = components(truth)
    p_area, p_cent = components(pred)
    taken = np.zeros(len(p_area), dtype=bool)
    matched = 0
    for c in t_cent:
        near = np.flatnonzero(~taken & (np.linalg.norm(p_cent - c, axis=1) < dist_px))
        if near.size:
            taken[near[0]] = True
            matched += 1
    return len(t_cent), matched, int(p_area[~taken].sum())


def box_distances(xy: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(points, boxes) distances, px, from points xy (N, 2) as (x, y) to boxes (B, 4) given by
    their pixel edges (left, top, right, bottom, inclusive); 0 inside a box."""
    xy, b = np.asarray(xy, float).reshape(-1, 2)[:, None, :], np.asarray(edges, float).reshape(-1, 4)[None]
    dx = np.maximum(np.maximum(b[..., 0] - xy[..., 0], xy[..., 0] - b[..., 2]), 0.0)
    dy = np.maximum(np.maximum(b[..., 1] - xy[..., 1], xy[..., 1] - b[..., 3]), 0.0)
    return np.hypot(dx, dy)


def box_hits(xy: np.ndarray, boxes_xywh, dist_px: float = MATCH_DIST_PX) -> tuple[int, int, int]:
    """(boxes, boxes hit, points left over) for detections at xy (N, 2) against box labels
    (left, top, width, height): a box is hit by the points within dist_px of it, and all of
    them count for it (the parts of one drone), none as a false alarm."""
    free = np.ones(len(xy), dtype=bool)
    hits = 0
    for x, y, w, h in boxes_xywh:
        near = np.flatnonzero(free & (box_distances(xy, [(x, y, x + w - 1, y + h - 1)])[:, 0] <= dist_px))
        if near.size:
            hits += 1
            free[near] = False
    return len(boxes_xywh), hits, int(free.sum())


@dataclass
class SegMetrics:
    """Accumulates IoU, nIoU, Pd and Fa over a set of (prediction, truth) boolean maps."""

    match_dist_px: float = MATCH_DIST_PX
    inter: int = 0
    union: int = 0
    image_iou_sum: float = 0.0
    images: int = 0
    targets: int = 0
    found: int = 0
    fa_pixels: int = 0
    pixels: int = 0

    def update(self, pred: np.ndarray, truth: np.ndarray) -> None:
        if pred.shape != truth.shape:
            raise ValueError(f"prediction {pred.shape} and truth {truth.shape} differ in shape")
        pred, truth = pred.astype(bool), truth.astype(bool)
        inter = int(np.count_nonzero(pred & truth))
        union = int(np.count_nonzero(pred | truth))
        self.inter += inter
        self.union += union
        self.image_iou_sum += inter / union if union else 0.0
        self.images += 1
        n_t, n_found, fa = match_targets(truth, pred, self.match_dist_px)
        self.targets += n_t
        self.found += n_found
        self.fa_pixels += fa
        self.pixels += pred.size

    def result(self) -> dict[str, float]:
        """IoU, nIoU and Pd in percent, Fa per million pixels (the tables' units)."""
        return {
            "iou": 100.0 * self.inter / self.union if self.union else 0.0,
            "niou": 100.0 * self.image_iou_sum / self.images if self.images else 0.0,
            "pd": 100.0 * self.found / self.targets if self.targets else 0.0,
            "fa": FA_SCALE * self.fa_pixels / self.pixels if self.pixels else 0.0,
            "images": self.images,
            "targets": self.targets,
        }
