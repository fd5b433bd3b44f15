"""Weights averaged over checkpoints that share a start: a run's best weights, its last
checkpoint (last.safetensors), the runs continued from it.

Such checkpoints lie in one basin of the loss, and their mean is usually better than any one of
them: the per-epoch swings of validation (clean backgrounds 74%, 38%, 62% in three neighbouring
epochs of one run) average out.  The mean is taken over every floating tensor; a tensor of
another type (none of the registered models has one) is taken from the first file.
`irstream train --ema-decay` is the same idea within one run.
"""

from __future__ import annotations

from pathlib import Path

import torch

from irstream.errors import UserError
from irstream.model.weights import inference_tiles, load_weights, save_weights, stored_model


def average_weights(paths: list[Path]) -> tuple[torch.nn.Module, str, dict]:
    """The mean of the weights in `paths` (same model, same config, same inference tile size), its
    registered model name, and a card that names the files.  Raises UserError for files that
    cannot be averaged."""
    if len(paths) < 2:
        raise UserError("average: give at least two weights files of the same model")
    first, first_name, first_card = _load(paths[0])
    states, sources = [first.state_dict()], [_source(paths[0], first_card)]
    for p in paths[1:]:
        model, name, card = _load(p)
        if name != first_name or model.cfg != first.cfg:
            raise UserError(f"{p}: a different model or architecture from {paths[0]}; only weights of one model average")
        # The tile's size is what the weights learnt at; the overlap is only how much of it is run twice.
        if inference_tiles(card)[0] != inference_tiles(first_card)[0]:
            raise UserError(f"{p}: runs in {inference_tiles(card)[0]} px tiles, {paths[0]} in "
                            f"{inference_tiles(first_card)[0]} px; average weights trained for one way of running")
        states.append(model.state_dict())
        sources.append(_source(p, card))
    mean = {k: torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype) if v.is_floating_point() else v
            for k, v in states[0].items()}
    first.load_state_dict(mean)
    card = {"training": {"averaged_from": sources},
            "inference": first_card.get("inference", {})}
    return first, first_name, card


def _load(path: Path) -> tuple[torch.nn.Module, str, dict]:
    """(model, registered name, card) of a weights file or of a run's last checkpoint."""
    if not path.is_file():
        raise UserError(f"{path}: no such file; give weights written by irstream, shipped names, or a run's last.safetensors")
    if path.name == "last.safetensors" and (path.parent / "state.json").is_file():
        from irstream.train.loop import checkpoint_weights

        return checkpoint_weights(path)
    model, card = load_weights(path)
    return model, stored_model(path), card


def _source(path: Path, card: dict) -> dict:
    t = card.get("training", {})
    shown = path.relative_to(Path.cwd()) if path.is_absolute() and path.is_relative_to(Path.cwd()) else path
    return {"weights": str(shown), "epoch": t.get("epoch"), "step": t.get("step"),
            "init_weights": t.get("recipe", {}).get("init_weights", "")}


def write_average(paths: list[Path], out: Path) -> dict:
    """Average `paths` into `out` (safetensors + card); returns the card."""
    if out.suffix != ".safetensors" or any(out.resolve() == p.resolve() for p in paths):
        raise UserError(f"--out {out}: give a new .safetensors file, not one of the inputs")
    model, name, card = average_weights(paths)
    save_weights(model, out, name, card)
    return card
