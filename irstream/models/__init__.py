"""Models by name.  `build_model("lrrnet")` gives the paper's configuration."""

from __future__ import annotations

from dataclasses import replace

from irstream.models.lrrnet import LRRNet, LRRNetCfg, count_parameters

MODEL_CFGS: dict[str, LRRNetCfg] = {
    # The paper's configuration (Table VII, best row): 3,454,994 parameters.
    "lrrnet": LRRNetCfg(),
    # Table VII's narrow row, for CPUs: a quarter of the parameters and about a quarter of the cost.
    "lrrnet_light": LRRNetCfg(channels=(8, 16, 32, 64), groups=8),
}


def model_cfg(name: str, **overrides) -> LRRNetCfg:
    if name not in MODEL_CFGS:
        raise KeyError(f"unknown model '{name}'; known: {', '.join(sorted(MODEL_CFGS))}")
    return replace(MODEL_CFGS[name], **{k: v for k, v in overrides.items() if v is not None})


def build_model(name: str, **overrides) -> LRRNet:
    """Build a registered model; None overrides are dropped so defaults survive."""
    return LRRNet(model_cfg(name, **overrides))


__all__ = ["LRRNet", "LRRNetCfg", "MODEL_CFGS", "build_model", "count_parameters", "model_cfg"]
