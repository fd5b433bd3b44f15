"""Weights on disk: a safetensors file and, beside it, a JSON card.

The safetensors metadata carries the model name and architecture config, so a weights
file is enough to rebuild its model.  The card (<stem>.json) is for people: training
data and splits, recipe, epochs, measured metrics and the command that measured them.

Nothing here unpickles: a pickle handed to us is refused, never loaded.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from irstream.errors import UserError
from irstream.model.registry import MODEL_CLASSES, LRRNet, cfg_type

FORMAT = "irstream-weights/1"


def card_path(weights: str | Path) -> Path:
    return Path(weights).with_suffix(".json")


def save_weights(model: LRRNet, path: str | Path, name: str, card: dict | None = None) -> None:
    """Write model weights (and, when given, its card) atomically enough for a checkpoint loop."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "model": name, "config": json.dumps(model.cfg.to_dict())}
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)
    if card is not None:
        full = {"model": name, "config": model.cfg.to_dict(), "date": date.today().isoformat(), **card}
        card_path(path).write_text(json.dumps(full, indent=2) + "\n")


def write_card(weights: str | Path, card: dict) -> None:
    """Replace the card of a weights file (`eval --record`, `calibrate --record`)."""
    p = card_path(weights)
    try:
        p.write_text(json.dumps(card, indent=2) + "\n")
    except OSError as exc:
        raise UserError(f"{p}: cannot write the weights card ({exc.strerror or exc}); copy the weights and "
                        "their .json somewhere writable and give that file, or leave out --record") from None


def read_card(weights: str | Path) -> dict:
    p = card_path(weights)
    if not p.is_file():
        return {}
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{p}: weights card is not valid JSON ({exc.msg}, line {exc.lineno})") from None


def _read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not path.is_file():
        raise UserError(f"{path}: no such weights file; give a .safetensors file written by irstream, or a shipped name", "model.weights")
    with path.open("rb") as f:
        head = f.read(9)
    if path.suffix.lower() == ".onnx":
        raise UserError(f"{path}: an ONNX export, which irstream does not run: it runs the .safetensors "
                        "weights the export was made from (the .onnx is for serving without irstream: "
                        "ONNX Runtime, TensorRT, Triton); pass --weights with that .safetensors file")
    # A safetensors file is an 8-byte header length and then the JSON header; that length's first
    # byte may be 0x80, a pickle's first byte, so the JSON is looked for before the pickle marks.
    looks_safetensors = head[8:9] == b"{"
    if not looks_safetensors and (head[:1] == b"\x80" or head[:2] == b"PK"):
        raise UserError(f"{path}: this is a pickle/torch.save file, which irstream never loads; "
                        "convert it to safetensors with a tool you trust")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{path}: not a valid safetensors file (truncated or corrupt?): {exc}") from None
    return tensors, meta


def load_weights(path: str | Path, model_name: str | None = None) -> tuple[LRRNet, dict]:
    """Rebuild the model stored in `path` and load its weights.  Returns (model in eval mode, card).

    model_name, when given, must match what the file says it holds.
    """
    path = Path(path)
    tensors, meta = _read_tensors(path)
    if meta.get("format") != FORMAT or "config" not in meta:
        raise UserError(f"{path}: safetensors file without irstream metadata; "
                        "it was not written by irstream (weights must come from `irstream train`)")
    stored = meta.get("model", "?")
    if model_name is not None and stored != model_name:
        raise UserError(f"{path}: holds '{stored}' weights, not '{model_name}'; pick weights of that model, or that model for these weights")
    try:
        cfg = cfg_type(stored).from_dict(json.loads(meta["config"]))
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: bad architecture config in metadata: {exc}") from None
    model = MODEL_CLASSES[type(cfg)](cfg)
    _load_state(model, tensors, path)
    return model.eval(), read_card(path)


def stored_model(path: str | Path) -> str:
    """The registered model name a weights file written by irstream says it holds (its metadata
    only: call it on a file load_weights has taken)."""
    with safe_open(str(path), "pt") as f:
        return (f.metadata() or {}).get("model", "?")


def _load_state(model: LRRNet, tensors: dict[str, torch.Tensor], path: Path) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    wrong = sorted(k for k in set(own) & set(tensors) if own[k].shape != tensors[k].shape)
    if missing or unexpected or wrong:
        first = (missing or unexpected or wrong)[0]
        raise UserError(f"{path}: weights do not fit the model ({len(missing)} missing, "
                        f"{len(unexpected)} unexpected, {len(wrong)} wrong-shaped tensors, e.g. '{first}')")
    model.load_state_dict(tensors)


def inference_tiles(card: dict) -> tuple[int, int]:
    """(tile_px, overlap_px) the weights are run with (card["inference"]); (0, 0) = whole frames."""
    inf = card.get("inference", {})
    return int(inf.get("tile_px", 0)), int(inf.get("tile_overlap_px", 0))
