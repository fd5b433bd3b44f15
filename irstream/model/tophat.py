"""The classical floor: a white top-hat filter with an adaptive threshold, as a model.

What a user of this field compares a learnt detector against first.  The top-hat (the frame
less its grey opening by a square of side 2 * radius_px + 1) keeps bright structures narrower
than the square and removes the background under them; a pixel is a target where the response
stands k_sigma standard deviations above the response's mean over the input (one frame, or one
tile).  It has no parameters to learn, so it ships as a weights file without tensors
(`weights/tophat`), and runs wherever a model runs: `irstream eval`, `calibrate`, `run`,
`eval-track`, export.

Its target logit is the response in standard deviations less k_sigma: positive (probability >
0.5) above the threshold, so the score sweeps of `calibrate` move k.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from irstream.model.cfg import ArchCfg

#: Guards the division on a flat input (every pixel the same): no response, no target.
FLAT_STD = 1e-6


@dataclass(frozen=True)
class TopHatCfg(ArchCfg):
    # Both chosen on SIRST v1 val IoU (the shipped weights/tophat is this config).
    radius_px: int = 5  # the opening's square has side 2 * radius_px + 1: wider structures are background
    k_sigma: float = 12.0  # threshold: mean + k_sigma x standard deviation of the response
    in_chans: int = 1
    input_scale: float = 255.0  # what 8-bit frames are divided by before the filter, as for the networks

    def __post_init__(self) -> None:
        if self.radius_px < 1 or self.k_sigma <= 0:
            raise ValueError("TopHatCfg: radius_px >= 1 and k_sigma > 0")

    @property
    def size_multiple(self) -> int:
        return 1


class TopHat(nn.Module):
    """(B, 1, H, W) frames in [0, 1] -> (target logits, the input), like LRRNet's forward (the
    second output stands where LRRNet has its reconstruction)."""

    def __init__(self, cfg: TopHatCfg = TopHatCfg()) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.target_logits(x), x

    def response(self, x: torch.Tensor) -> torch.Tensor:
        """The white top-hat: x less its opening (erosion, then dilation, by the square)."""
        side, r = 2 * self.cfg.radius_px + 1, self.cfg.radius_px
        # Edge pixels replicate outward, so the frame's border is not an edge of bright.
        pad = F.pad(x, (r, r, r, r), mode="replicate")
        eroded = -F.max_pool2d(-pad, side, stride=1)
        opened = F.max_pool2d(F.pad(eroded, (r, r, r, r), mode="replicate"), side, stride=1)
        return x - opened

    def target_logits(self, x: torch.Tensor) -> torch.Tensor:
        th = self.response(x)
        mean = th.mean(dim=(-2, -1), keepdim=True)
        std = th.std(dim=(-2, -1), keepdim=True)
        return torch.where(std > FLAT_STD, (th - mean) / std.clamp_min(FLAT_STD), torch.zeros_like(th)) - self.cfg.k_sigma
