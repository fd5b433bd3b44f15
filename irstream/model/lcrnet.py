"""LCRNet: dynamic local context representations (Zhang et al., "Learning Dynamic Local
Context Representations for Infrared Small Target Detection").

A U-Net of C2FBlocks (Sec. III-A, Fig. 3).  A C2FBlock is a coarse-to-fine pair, eqs. (1)-(2):
a DLC-Attention token mixer with a large, per-pixel chosen receptive field, then a small-kernel
pre-activation conv applied twice, each half behind its own LayerScale.  DLC-Attention
(Sec. III-C) runs each feature-map group at r scales, each through an HLKConv, and fuses the
scales with a residual split attention.  HLKConv (Sec. III-D) is a 3x3 depth-wise conv, a
dilated 3x3 depth-wise conv on its output, both kept and mixed by a 1x1 conv.

The paper gives no code-level detail below that; the choices made are listed on `LCRNet`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from irstream.model.cfg import UNetCfg


@dataclass(frozen=True)
class LCRNetCfg(UNetCfg):
    """Architecture of one LCRNet variant.

    channels: feature width of each resolution stage, finest first (the paper's C_1..C_4).
        The number of stages sets the downsampling factor: 2 ** (len(channels) - 1).
    blocks_per_stage: C2FBlocks per encoder stage (the paper's L_i, equal for every stage).
        The bottleneck and the decoder stages get one more (L_i* = L_i + 1).  3 is the
        paper's model; 1 its lightest ablation row (Table II), about half the cost.
    groups: feature-map groups of DLC-Attention (the paper's K); must divide every width.
        More groups, less channel redundancy (Table II: K = 4 beats 1 and 2).
    radix: scales per group (the paper's r).  Scale j runs at 1 / 2 ** (j - 1) of the
        stage's resolution; more than 4 puts the 7x7-equivalent kernel over a map smaller
        than itself at the bottleneck of a 512-px frame, which the paper advises against.
    norm_groups: GroupNorm groups everywhere; must divide every width.
    layer_scale_init: starting value of the LayerScale weights lambda_1 and lambda_2.  Small
        values start every block near the identity; from 0.1 a one-image overfit under
        Soft-IoU mostly stalled at "all background", from 1 it did not.
    in_chans: input channels; IR frames are single-channel.
    input_scale: the divisor that maps raw 8-bit pixels to the model's range (the paper
        divides by 255).
    """

    channels: tuple[int, ...] = (16, 32, 64, 64)
    blocks_per_stage: int = 3
    groups: int = 4
    radix: int = 4
    norm_groups: int = 4
    layer_scale_init: float = 1.0
    in_chans: int = 1
    input_scale: float = 255.0

    def __post_init__(self) -> None:
        if len(self.channels) < 2:
            raise ValueError(f"channels={self.channels}: LCRNet needs at least two stages")
        for name in ("groups", "norm_groups"):
            bad = [c for c in self.channels if c % getattr(self, name)]
            if bad:
                raise ValueError(f"{name}={getattr(self, name)} does not divide channel widths {bad}")
        if self.blocks_per_stage < 1:
            raise ValueError(f"blocks_per_stage={self.blocks_per_stage}: must be >= 1")
        if self.radix < 1:
            raise ValueError(f"radix={self.radix}: must be >= 1")


def _conv3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


class HLKConv(nn.Module):
    """Hierarchical large-kernel conv, the paper's HLKConv_7x7 {3, 3, 2}, eqs. (8)-(10):
    u = DWConv3x3(x);  y = Conv1x1(Concat(u, DWDConv3x3_dilation2(u))).

    The two depth-wise convs in series see 7x7; keeping u beside its dilated successor
    fills the holes a dilated kernel leaves.  (B, C, H, W) -> (B, cout, H, W).  groups > 1
    splits the 1x1 into independent channel groups, each mixing its own u and v channels.
    """

    def __init__(self, channels: int, cout: int | None = None, groups: int = 1, dilation: int = 2) -> None:
        super().__init__()
        self.groups = groups
        self.dw = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.dwd = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, groups=channels)
        self.pw = nn.Conv2d(2 * channels, cout or channels, 1, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.dw(x)
        v = self.dwd(u)
        b, c, h, w = u.shape
        g = self.groups
        # Channel order [u of group 0, v of group 0, u of group 1, ...], so that each group
        # of the 1x1 reads its own channels (with g = 1 this is the plain concat).
        both = torch.stack([u.reshape(b, g, c // g, h, w), v.reshape(b, g, c // g, h, w)], dim=2)
        return self.pw(both.reshape(b, 2 * c, h, w))


class DLCAttention(nn.Module):
    """Dynamic local context attention, eqs. (3)-(7): Z = SiLU(A) * SiLU(V), V = W_1 X.

    A: a 1x1 conv (the transformations T_1..T_K of eq. 5, one per group, side by side) gives
    each of the K groups r splits, stored radix-major: split j of every group sits in one
    C-wide slab, so one HLKConv with a K-grouped 1x1 serves all groups at that scale (the
    paper's Fig. 5 note on its implementation).  Split j is max-pooled to
    1 / 2 ** (j - 1) of the size, filtered by an HLKConv grouped by K, and brought back by
    nearest upsampling (eq. 7).  Residual split attention then fuses the r scales per pixel
    and channel: an HLKConv over their sum scores each scale, a softmax over the scales with a
    learnt temperature weights them, and the plain sum is added back.
    (B, C, H, W) -> (B, C, H, W); any H, W.
    """

    def __init__(self, channels: int, groups: int, radix: int) -> None:
        super().__init__()
        self.radix = radix
        self.value = nn.Conv2d(channels, channels, 1)
        self.split = nn.Conv2d(channels, radix * channels, 1)
        self.scales = nn.ModuleList([HLKConv(channels, groups=groups) for _ in range(radix)])
        self.score = HLKConv(channels, radix * channels)
        self.log_temperature = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        r = self.radix
        splits = self.split(x).reshape(b, r, c, h, w)
        branches = [self.scales[0](splits[:, 0])]
        for j in range(1, r):
            s = 2 ** j
            small = self.scales[j](F.max_pool2d(splits[:, j], s, s, ceil_mode=True))
            branches.append(F.interpolate(small, size=(h, w), mode="nearest"))
        u = torch.stack(branches, dim=1)  # (B, r, C, H, W)
        total = u.sum(dim=1)
        logits = self.score(total).reshape(b, r, c, h, w)
        weights = torch.softmax(logits * torch.exp(-self.log_temperature), dim=1)
        a = (weights * u).sum(dim=1) + total
        return F.silu(a) * F.silu(self.value(x))


class C2FBlock(nn.Module):
    """Eqs. (1)-(2): X' = X + l1 DLC-Attention(GN(X));  X'' = X' + l2 preBB(preBB(X')),
    with one pre-activation BasicBlock layer preBB = GN, ReLU, 3x3 conv, applied twice
    with the same weights (two smoothing sweeps of one multigrid iteration)."""

    def __init__(self, channels: int, cfg: LCRNetCfg) -> None:
        super().__init__()
        g = cfg.norm_groups
        self.norm = nn.GroupNorm(g, channels)
        self.attn = DLCAttention(channels, cfg.groups, cfg.radix)
        self.scale1 = nn.Parameter(torch.full((1, channels, 1, 1), cfg.layer_scale_init))
        self.smooth = nn.Sequential(nn.GroupNorm(g, channels), nn.ReLU(), _conv3(channels, channels))
        self.scale2 = nn.Parameter(torch.full((1, channels, 1, 1), cfg.layer_scale_init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.scale1 * self.attn(self.norm(x))
        return x + self.scale2 * self.smooth(self.smooth(x))


class Down(nn.Module):
    """3x3 conv to the next width, then 2x2 max-pooling (which keeps a small target's peak)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = _conv3(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(self.conv(x), 2)


class Up(nn.Module):
    """Nearest 2x upsampling, then a 3x3 conv to the finer stage's width."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = _conv3(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class LCRNet(nn.Module):
    """LCRNet.  forward(x) takes (B, 1, H, W) in [0, 1], H and W multiples of
    cfg.size_multiple, and returns (target_logits, reconstruction), both (B, 1, H, W).
    No sigmoid inside: a pixel is a target where its logit is > 0.

    LCRNet has no reconstruction branch and trains on Soft-IoU alone (eq. 13).  The second
    output is the input itself, so the shared training loss's MSE(reconstruction, input)
    term is exactly 0 with no gradient, and what is trained is the paper's loss.

    Layout (Fig. 3): InitConv (3x3, 1 -> C_1); encoder stages 1..n-1, each L C2FBlocks then
    Down; a bottleneck of L + 1 C2FBlocks at C_n; decoder stages n-1..1, each Up, the
    encoder's skip concatenated and fused by a 3x3 conv, then L + 1 C2FBlocks; OutConv
    (3x3, C_1 -> 1).

    Choices where the paper is silent (picked to be literal to its text and equations and to
    land on its Table I / Table II parameter and FLOP counts):
    - C2FBlock, eq. (2): "pre-BasicBlock(pre-BasicBlock(X'))" is read literally as one
      GN-ReLU-conv3x3 layer applied twice with shared weights.
    - HLKConv_7x7 {3, 3, 2}: 3x3 depth-wise, then 3x3 depth-wise with dilation 2, as Table II
      names it (eqs. 8-9 write the kernel sizes the other way round).
    - DLC-Attention: T_i are 1x1 convs of the whole input (eq. 5, X_i = T_i(X)), together
      C -> r * C; the scale branches' HLKConvs keep the K groups apart (grouped 1x1), the
      scoring HLKConv sees all channels and emits the r * C scores directly; scale j is
      pooled by 2 ** (j - 1) (the first runs at full resolution); the residual is the
      unweighted sum of the scales; the temperature is one scalar per block (init 1); no
      projection after Z: Z is the block's attention output, as in eq. (3).
    - Downsampling is a 3x3 conv then max-pooling; upsampling nearest then a 3x3 conv; skips
      are concatenated and fused by a 3x3 conv; the bottleneck counts as a decoder-side stage
      and has L_4* = L_4 + 1 blocks.
    - GroupNorm (Norm_1 is a GroupNorm in the paper; the pre-activation layer's norm is too)
      with cfg.norm_groups groups; LayerScale weights start at cfg.layer_scale_init.
    """

    def __init__(self, cfg: LCRNetCfg | None = None, **overrides) -> None:
        super().__init__()
        cfg = replace(cfg or LCRNetCfg(), **overrides)
        self.cfg = cfg
        ch, n = cfg.channels, cfg.blocks_per_stage

        def stage(width: int, blocks: int) -> nn.Sequential:
            return nn.Sequential(*[C2FBlock(width, cfg) for _ in range(blocks)])

        self.init_conv = _conv3(cfg.in_chans, ch[0])
        self.encoders = nn.ModuleList([stage(c, n) for c in ch[:-1]])
        self.downs = nn.ModuleList([Down(a, b) for a, b in zip(ch[:-1], ch[1:])])
        self.bottleneck = stage(ch[-1], n + 1)
        self.ups = nn.ModuleList([Up(b, a) for a, b in zip(ch[:-1], ch[1:])])
        self.fuses = nn.ModuleList([_conv3(2 * c, c) for c in ch[:-1]])
        self.decoders = nn.ModuleList([stage(c, n + 1) for c in ch[:-1]])
        self.out_conv = _conv3(ch[0], 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.target_logits(x), x

    def target_logits(self, x: torch.Tensor) -> torch.Tensor:
        """forward()'s first output alone."""
        h = self.init_conv(x)
        skips = []
        for enc, down in zip(self.encoders, self.downs):
            h = enc(h)
            skips.append(h)
            h = down(h)
        h = self.bottleneck(h)
        for i in reversed(range(len(self.decoders))):
            h = self.fuses[i](torch.cat([self.ups[i](h), skips[i]], dim=1))
            h = self.decoders[i](h)
        return self.out_conv(h)
