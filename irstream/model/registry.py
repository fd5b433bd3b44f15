"""Models by name.  `build_model("lrrnet")` gives the paper's configuration.

Each entry of MODEL_CFGS is a config; its type says which model class it builds."""

from __future__ import annotations

import copy
from dataclasses import replace

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from irstream.model.lcrnet import LCRNet, LCRNetCfg
from irstream.model.lrrnet import LRRNet, LRRNetCfg, count_parameters
from irstream.model.tophat import TopHat, TopHatCfg

AnyArchCfg = LRRNetCfg | LCRNetCfg | TopHatCfg

MODEL_CFGS: dict[str, AnyArchCfg] = {
    # The paper's configuration (Table VII, best row): 3,454,994 parameters.
    "lrrnet": LRRNetCfg(),
    # Table VII's narrow row, for CPUs: a quarter of the parameters and about a quarter of the cost.
    "lrrnet_light": LRRNetCfg(channels=(8, 16, 32, 64), groups=8),
    # LCRNet (Table I): 1.65M parameters, 59.3 GFLOPs (multiply-accumulates) at 512x512.
    "lcrnet": LCRNetCfg(),
    # Table II's L_i = 1 row: 854.67K parameters, 32.14 GFLOPs at 512x512.
    "lcrnet_light": LCRNetCfg(blocks_per_stage=1),
    # The classical floor (irstream/model/tophat.py): nothing to train; shipped as weights/tophat.
    "tophat": TopHatCfg(),
}

# The model class each config type builds.
MODEL_CLASSES: dict[type, type[nn.Module]] = {LRRNetCfg: LRRNet, LCRNetCfg: LCRNet, TopHatCfg: TopHat}


def model_cfg(name: str, **overrides) -> AnyArchCfg:
    if name not in MODEL_CFGS:
        raise KeyError(f"unknown model '{name}'; known: {', '.join(sorted(MODEL_CFGS))}")
    return replace(MODEL_CFGS[name], **{k: v for k, v in overrides.items() if v is not None})


def build_model(name: str, **overrides) -> nn.Module:
    """Build a registered model; None overrides are dropped so defaults survive."""
    cfg = model_cfg(name, **overrides)
    return MODEL_CLASSES[type(cfg)](cfg)


def trainable(name: str) -> bool:
    """Whether registered model `name` has parameters to learn (the top-hat has none)."""
    return any(True for _ in build_model(name).parameters())


def cfg_type(name: str) -> type:
    """The config class of registered model `name`; LRRNetCfg for names not registered
    (weights written before the registry knew more than one architecture)."""
    return type(MODEL_CFGS[name]) if name in MODEL_CFGS else LRRNetCfg


__all__ = ["LCRNet", "LCRNetCfg", "LRRNet", "LRRNetCfg", "MODEL_CFGS", "MODEL_CLASSES", "TopHat", "TopHatCfg", "build_model",
           "cfg_type", "count_parameters", "model_cfg", "trainable"]


def count_flops(model: nn.Module, height: int = 512, width: int = 512) -> float:
    """Floating-point operations of one forward pass on one height x width frame, counted by
    torch's FlopCounterMode (a multiply-add is 2; the attention's matrix products included) on
    a copy of the model on the meta device: shapes only, no arithmetic, well under a second."""
    meta = copy.deepcopy(model).eval().to("meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        meta(torch.zeros(1, 1, height, width, device="meta"))
    return float(counter.get_total_flops())
