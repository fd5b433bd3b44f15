"""Per-frame inference: a [0, 1] gray image in, a map of target logits out.

This is the only stage that touches torch; everything downstream gets numpy.
Any H x W works: the frame is padded (edge-replicated) to the model's size multiple
and the output cropped back.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from irstream.errors import UserError
from irstream.models import LRRNet


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is visible to torch; use --device cpu or auto")
    return torch.device(name)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad (B, C, H, W) on the bottom and right so H and W are multiples of `multiple`."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x


def forward_any_size(model: LRRNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """model(x) for any H x W: pad to the size multiple, crop both outputs back."""
    h, w = x.shape[-2:]
    logits, recon = model(pad_to_multiple(x, model.cfg.size_multiple))
    return logits[..., :h, :w], recon[..., :h, :w]


class Segmenter:
    """Wraps a model for inference on numpy frames (eval mode, no autograd)."""

    def __init__(self, model: LRRNet, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)

    @torch.inference_mode()
    def logits(self, image: np.ndarray) -> np.ndarray:
        """(H, W) float32 in [0, 1] -> (H, W) float32 logits; a target where > 0."""
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None].to(self.device)
        logits, _ = forward_any_size(self.model, x)
        return logits[0, 0].float().cpu().numpy()
