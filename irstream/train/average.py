"""Weights averaged over checkpoints of one run or of runs continued from one another.

Checkpoints that share a start (a run and its continuation, or epochs of one run) lie in one
basin of the loss, and their mean is usually better than any one of them: the per-epoch swings
of validation (a 20-point swing in clean backgrounds between neighbouring epochs) average out.
The mean is taken over every floating tensor, BatchNorm statistics included; counters (integer
buffers) are taken from the first file.  `irstream train --ema-decay` is the same idea within
one run.
"""

from __future__ import annotations

from pathlib import Path

import torch

from irstream.errors import UserError
from irstream.model.weights import inference_tiles, load_weights, save_weights, stored_model


def average_weights(paths: list[Path]) -> tuple[torch.nn.Module, str, dict]:
    """The mean of the weights in `paths` (same model, same config, same inference tiles), its
    registered model name, and a card that names the files.  Raises UserError for files that
    cannot be averaged."""
    if len(paths) < 2:
        raise UserError("average: give at least two weights files of the same model")
    first, first_card = load_weights(paths[0])
    states, sources = [first.state_dict()], [_source(paths[0], first_card)]
    for p in paths[1:]:
        model, card = load_weights(p)
        if stored_model(p) != stored_model(paths[0]) or model.cfg != first.cfg:
            raise UserError(f"{p}: a different model or architecture from {paths[0]}; only weights of one model average")
        if inference_tiles(card) != inference_tiles(first_card):
            raise UserError(f"{p}: runs in tiles {inference_tiles(card)}, {paths[0]} in {inference_tiles(first_card)}; "
                            "average weights trained for one way of running")
        states.append(model.state_dict())
        sources.append(_source(p, card))
    mean = {k: torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype) if v.is_floating_point() else v
            for k, v in states[0].items()}
    first.load_state_dict(mean)
    card = {"training": {"averaged_from": sources},
            "inference": first_card.get("inference", {})}
    return first, stored_model(paths[0]), card


def _source(path: Path, card: dict) -> dict:
    t = card.get("training", {})
    return {"weights": str(path), "epoch": t.get("epoch"), "step": t.get("step"),
            "init_weights": t.get("recipe", {}).get("init_weights", "")}


def write_average(paths: list[Path], out: Path) -> dict:
    """Average `paths` into `out` (safetensors + card); returns the card."""
    model, name, card = average_weights(paths)
    save_weights(model, out, name, card)
    return card
