"""LRRNet: compression, reconstruction, subtraction (Zhang et al., IEEE TGRS 2025).

A densely connected U-Net of pre-activation residual blocks compresses the input
features F_I into a background estimate F_B.  The target features are what the
background does not explain, y = ResBlock(F_I - F_B); the image is rebuilt from
y + F_B.  Two heads read them: target logits and the reconstructed image.

Where the paper's text and the authors' implementation differ, this follows the
implementation, because that is what produced the published numbers: three
downsamplings (bottleneck at H/8, not H/16), one LayerScale per block, dense
skips taken from the stem, every encoder block and every downsampling.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from irstream.model.cfg import UNetCfg


@dataclass(frozen=True)
class LRRNetCfg(UNetCfg):
    """Architecture of one LRRNet variant.

    channels: feature width of each resolution stage, finest first.  The number
        of stages sets the downsampling factor: 2 ** (len(channels) - 1).
    blocks_per_stage: residual blocks per encoder stage (decoder stages get one
        more, one for each dense skip).
    groups: GroupNorm groups everywhere; must divide every channel width.
    dropout: dropout probability inside each residual block (training only).
    in_chans: input channels; IR frames are single-channel.
    input_scale: the divisor that maps raw 8-bit pixels to the model's range.
    """

    channels: tuple[int, ...] = (16, 32, 64, 128)
    blocks_per_stage: int = 2
    groups: int = 16
    dropout: float = 0.2
    in_chans: int = 1
    input_scale: float = 255.0

    def __post_init__(self) -> None:
        if len(self.channels) < 2:
            raise ValueError(f"channels={self.channels}: LRRNet needs at least two stages")
        bad = [c for c in self.channels if c % self.groups]
        if bad:
            raise ValueError(f"groups={self.groups} does not divide channel widths {bad}")
        if self.blocks_per_stage < 1:
            raise ValueError(f"blocks_per_stage={self.blocks_per_stage}: must be >= 1")


def _conv3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


class ResBlock(nn.Module):
    """Pre-activation residual block: (GN, ReLU, conv) twice, LayerScale, shortcut."""

    def __init__(self, cin: int, cout: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            nn.GroupNorm(groups, cin),
            nn.ReLU(),
            _conv3(cin, cout),
            nn.GroupNorm(groups, cout),
            nn.ReLU(),
            nn.Dropout(dropout),
            _conv3(cout, cout),
        )
        self.scale = nn.Parameter(torch.ones(1, cout, 1, 1))
        self.shortcut = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.scale * self.branch(x)


class SelfAttention(nn.Module):
    """Single-head self-attention over all positions, residual."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
        # (B, HW, C) each; SDPA picks a fused kernel where the device has one.
        out = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1))
        out = out.squeeze(1).transpose(-1, -2).reshape(b, c, h, w)
        return x + self.proj(out)


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = _conv3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _head(channels: int, groups: int) -> nn.Sequential:
    return nn.Sequential(nn.GroupNorm(groups, channels), nn.ReLU(), _conv3(channels, 1))


class LRRNet(nn.Module):
    """LRRNet.  forward(x) takes (B, 1, H, W) in [0, 1], H and W multiples of
    cfg.size_multiple, and returns (target_logits, reconstruction), both (B, 1, H, W).
    No sigmoid inside: a pixel is a target where its logit is > 0."""

    def __init__(self, cfg: LRRNetCfg | None = None, **overrides) -> None:
        super().__init__()
        cfg = replace(cfg or LRRNetCfg(), **overrides)
        self.cfg = cfg
        ch, g, p, n = cfg.channels, cfg.groups, cfg.dropout, cfg.blocks_per_stage

        self.stem_in = _conv3(cfg.in_chans, ch[0])  # F_I
        self.stem_unet = _conv3(ch[0], ch[0])

        self.down = nn.ModuleList()
        skip_ch = [ch[0]]
        cur = ch[0]
        for level, width in enumerate(ch):
            for _ in range(n):
                self.down.append(ResBlock(cur, width, g, p))
                cur = width
                skip_ch.append(cur)
            if level < len(ch) - 1:
                self.down.append(nn.Conv2d(cur, cur, 3, stride=2, padding=1))
                skip_ch.append(cur)

        self.mid = nn.ModuleList(
            [ResBlock(cur, cur, g, p), SelfAttention(cur, g), ResBlock(cur, cur, g, p)]
        )

        self.up = nn.ModuleList()
        for level, width in reversed(list(enumerate(ch))):
            for _ in range(n + 1):
                self.up.append(ResBlock(cur + skip_ch.pop(), width, g, p))
                cur = width
            if level > 0:
                self.up.append(Upsample(cur))

        self.subtract = ResBlock(ch[0], ch[0], g, p)
        self.target_head = _head(ch[0], g)
        self.recon_head = _head(ch[0], g)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, f_b = self._subtract(x)
        return self.target_head(y), self.recon_head(y + f_b)

    def target_logits(self, x: torch.Tensor) -> torch.Tensor:
        """forward()'s first output alone: inference has no use for the reconstruction, whose
        head is a full-resolution GroupNorm, ReLU and conv."""
        return self.target_head(self._subtract(x)[0])

    def _subtract(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(y, F_B): the target features and the background estimate."""
        f_i = self.stem_in(x)
        h = self.stem_unet(f_i)
        skips = [h]
        for layer in self.down:
            h = layer(h)
            skips.append(h)
        for layer in self.mid:
            h = layer(h)
        for layer in self.up:
            if isinstance(layer, ResBlock):
                h = layer(torch.cat([h, skips.pop()], dim=1))
            else:
                h = layer(h)
        f_b = h
        return self.subtract(f_i - f_b), f_b


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
