"""Scoring a model on still images: `irstream eval`, and training's validation.

`irstream eval` scores a weights file on a dataset split, at its operating point.

A dataset with masks (SIRST style) gets the field's IoU, nIoU, Pd and Fa; a target-free set
(images/ and splits/ but no masks/, e.g. sirst-v2-backgrounds) gets what matters there: the
share of images with no detection and the detections per image.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from irstream.model.config import ModelConfig
from irstream.data.mix import load_backgrounds
from irstream.data.sirst import Sample, load_split
from irstream.eval.metrics import MATCH_DIST_PX, SegMetrics, box_hits, components
from irstream.detect.detector import LoadedModel, load_model
from irstream.model.segment import image_logits
from irstream.detect.targets import TargetConfig


def is_target_free(data: str | Path) -> bool:
    return (Path(data) / "images").is_dir() and not (Path(data) / "masks").is_dir()


def evaluate_weights(weights: str | Path, data: str | Path, split: str, device: str = "auto",
                     threshold: float | None = None, on_image=None) -> dict:
    """Metrics of the weights on one split; threshold None = the card's operating point."""
    loaded = load_model(ModelConfig(weights=str(weights), device=device), TargetConfig(score_threshold=threshold))
    return evaluate_model(loaded, data, split, on_image)


def evaluate_model(loaded: LoadedModel, data: str | Path, split: str, on_image=None, every: int = 1) -> dict:
    """Figures of a loaded model on a split (every `every`-th image of it, in split order)."""
    t, tiles, dev = loaded.threshold, loaded.tiles, loaded.device
    if is_target_free(data):
        res = background_false_alarms(loaded.model, load_backgrounds(Path(data), split)[::every], dev, t, on_image, tiles)
    else:
        res = evaluate(loaded.model, load_split(data, split)[::every], dev, on_image, t, tiles)
    return {**res, "threshold": t, "tile_px": tiles[0], "tile_overlap_px": tiles[1]}


@torch.inference_mode()
def clip_detections(model, frames: list, device, threshold: float = 0.5, match_px: float = MATCH_DIST_PX,
                    tiles=(0, 0)) -> dict:
    """On labelled clip frames [(name, image, boxes)]: the share of drones hit (a component whose
    centroid is within match_px of the box) and unmatched components per frame."""
    was_training = model.training
    model.eval()
    hits = truths = false = 0
    for _, img, boxes in frames:
        logits = image_logits(model, img, device, *tiles)
        _, cents = components(logits > logit(threshold))
        n_boxes, n_hit, n_free = box_hits(cents[:, ::-1], boxes, match_px)
        truths, hits, false = truths + n_boxes, hits + n_hit, false + n_free
    model.train(was_training)
    frames_n = max(1, len(frames))
    return {"pd": hits / truths if truths else 0.0, "fa_per_frame": false / frames_n, "frames": len(frames)}


def logit(p: float) -> float:
    """The logit at which sigmoid reaches p: thresholding logits there equals thresholding p."""
    return float(np.log(p / (1.0 - p)))


@torch.inference_mode()
def background_false_alarms(model, samples: list[Sample], device, threshold: float = 0.5,
                            on_image=None, tiles=(0, 0)) -> dict:
    """On target-free images: share of images with no detection, detections per image."""
    was_training = model.training
    model.eval()
    counts = []
    for s in samples:
        logits = image_logits(model, s.image, device, *tiles)
        counts.append(cv2.connectedComponents((logits > logit(threshold)).astype(np.uint8), connectivity=8)[0] - 1)
        if on_image:
            on_image()
    model.train(was_training)
    counts = np.asarray(counts)
    return {"clean_share": float((counts == 0).mean()) if counts.size else 0.0,
            "dets_per_image": float(counts.mean()) if counts.size else 0.0, "images": int(counts.size)}


@torch.inference_mode()
def evaluate(model, samples: list[Sample], device: torch.device, on_image=None, threshold: float = 0.5,
             tiles=(0, 0)) -> dict:
    """Metrics of `model` on whole images (no resizing): a pixel is a target where its
    probability > threshold (0.5: logit > 0, the field's convention).  tiles: (tile_px,
    overlap_px) to run large images in tiles (irstream.model.segment.tiled), (0, 0) whole."""
    was_training = model.training
    model.eval()
    m = SegMetrics()
    for s in samples:
        m.update(image_logits(model, s.image, device, *tiles) > logit(threshold), s.mask)
        if on_image:
            on_image()
    model.train(was_training)
    return m.result()
