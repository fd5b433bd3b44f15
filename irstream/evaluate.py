"""`irstream eval`: a weights file scored on a dataset split, at its operating point.

A dataset with masks (SIRST style) gets the field's IoU, nIoU, Pd and Fa; a target-free set
(images/ and splits/ but no masks/, e.g. sirst-v2-backgrounds) gets what matters there: the
share of images with no detection and the detections per image.
"""

from __future__ import annotations

from pathlib import Path

from irstream.data.mix import load_backgrounds
from irstream.data.sirst import load_split
from irstream.segment import resolve_device
from irstream.targets import operating_threshold
from irstream.train import background_false_alarms, evaluate
from irstream.weights import inference_tiles, load_weights


def is_target_free(data: str | Path) -> bool:
    return (Path(data) / "images").is_dir() and not (Path(data) / "masks").is_dir()


def evaluate_weights(weights: str | Path, data: str | Path, split: str, device: str = "auto",
                     threshold: float | None = None, on_image=None) -> dict:
    """Metrics of the weights on one split; threshold None = the card's operating point."""
    model, card = load_weights(weights)
    return evaluate_model(model, card, data, split, device, threshold, on_image)


def evaluate_model(model, card: dict, data: str | Path, split: str, device: str = "auto",
                   threshold: float | None = None, on_image=None) -> dict:
    t = operating_threshold(card) if threshold is None else threshold
    tiles = inference_tiles(card)
    dev = resolve_device(device)
    model = model.to(dev)
    if is_target_free(data):
        res = background_false_alarms(model, load_backgrounds(Path(data), split), dev, t, on_image, tiles)
    else:
        res = evaluate(model, load_split(data, split), dev, on_image, t, tiles)
    return {**res, "threshold": t, "tile_px": tiles[0]}
