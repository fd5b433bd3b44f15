"""`irstream eval`: a weights file scored on a dataset split."""

from __future__ import annotations

from pathlib import Path

from irstream.data.sirst import load_split
from irstream.segment import resolve_device
from irstream.train import evaluate
from irstream.weights import load_weights


def evaluate_weights(weights: str | Path, data: str | Path, split: str, device: str = "auto") -> dict:
    samples = load_split(data, split)
    model, _ = load_weights(weights)
    dev = resolve_device(device)
    return evaluate(model.to(dev), samples, dev)
