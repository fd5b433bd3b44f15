"""[model]: which weights run, where and how (the model stage's config)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from irstream.shipped import shipped_weights

#: How the model can run ([model] runtime).
RUNTIMES = ("auto", "torch", "openvino", "onnxruntime", "triton")

@dataclass(frozen=True)
class ModelConfig:
    """weights: a .safetensors file written by irstream; "" = the shipped default weights; a bare
        name picks other shipped weights (e.g. "lrrnet_light_sirst").
    device: "auto" (CUDA when torch sees one), "cpu" or "cuda".
    upscale: the model sees the frame enlarged by this whole factor (bicubic) and its map is
        max-pooled back.  2 finds 1 to 3 px targets the model misses at 1, at 4x the compute
        and with more clutter; 1 for targets of about 4 px and more.
    tile_px, tile_overlap_px: run frames larger than tile_px px in tiles of that side sharing
        tile_overlap_px px (irstream.model.segment.tiled); unset = what the weights' card says they
        were validated with ("inference"), 0 = whole frames.
    runtime: "auto", "torch", "openvino" (CPU, needs the openvino extra), "onnxruntime" (CPU,
        needs the onnx extra) or "triton" (a Triton server, needs the triton extra; see
        irstream.model.triton).  auto: on CPU the fastest of torch, OpenVINO (bf16 where the
        CPU has it, fp32) and ONNX Runtime whose masks agree with eager fp32, timed on the
        first frame's size; on CUDA fp32 replayed as CUDA graphs (see
        irstream.model.segment.CUDA_AUTO); "torch" is eager fp32 everywhere.
    coarse: also run the model on the frame shrunk this many times (2 or 4; 0 = off) and lay
        its large targets (irstream.model.segment.COARSE_MIN_AREA_PX and up) over the full map:
        a close drone of 40-130 px is a 10-30 px target there, the size the model learnt,
        at 1/4 or 1/16 of the pixels' cost.
    reuse_levels, reuse_max_frames: a tile whose pixels (lightly blurred) all moved by less than
        reuse_levels grey levels (of 255) since the model last ran on it keeps that run's map,
        for at most reuse_max_frames frames in a row, unless its map holds a target
        (irstream.model.reuse; CPU only); 0 = every tile runs on every frame.  Under a still
        camera most tiles are kept; a pan runs them all.
    reuse_max_tiles: with reuse on, at most this many tiles run on one frame, those holding a
        target always; the others keep their maps one frame more.  It bounds the slowest frame
        (a gain flicker or a pan that changes every tile), which a live run's latency waits on:
        6 is half of a 640x512 frame's 12 tiles of 192 px; 0 = no cap.
    triton_url, triton_model, triton_version: the server (gRPC host:port), the model's name
        there and its version ("" = latest), for runtime "triton".  The weights are still
        read here, for their card (input scale, tiles, threshold): give the ones it serves.
    """

    weights: str = ""
    device: str = "auto"
    upscale: int = 1
    coarse: int = 4
    runtime: str = "auto"
    tile_px: int | None = None
    tile_overlap_px: int | None = None
    reuse_levels: float = 6.0
    reuse_max_frames: int = 12
    reuse_max_tiles: int = 6
    triton_url: str = "127.0.0.1:8001"
    triton_model: str = "irstream"
    triton_version: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.upscale, int) or isinstance(self.upscale, bool) or self.upscale < 1:
            raise ValueError(f"upscale={self.upscale!r}: must be a whole number >= 1")
        if self.device not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:\d+", self.device):
            raise ValueError(f"device={self.device!r}: must be 'auto', 'cpu', 'cuda' or 'cuda:N'")
        if self.coarse not in (0, 2, 4):
            raise ValueError(f"coarse={self.coarse!r}: must be 0 (off), 2 or 4")
        for name in ("tile_px", "tile_overlap_px"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 0):
                raise ValueError(f"{name}={v!r}: must be a whole number >= 0")
        if self.tile_px and self.tile_overlap_px is not None and self.tile_overlap_px >= self.tile_px:
            raise ValueError(f"tile_overlap_px={self.tile_overlap_px} must be smaller than tile_px={self.tile_px}")
        if not isinstance(self.reuse_levels, (int, float)) or self.reuse_levels < 0:
            raise ValueError(f"reuse_levels={self.reuse_levels!r}: must be a number of grey levels >= 0 (0 = off)")
        if not isinstance(self.reuse_max_frames, int) or self.reuse_max_frames < 1:
            raise ValueError(f"reuse_max_frames={self.reuse_max_frames!r}: must be a whole number >= 1")
        if not isinstance(self.reuse_max_tiles, int) or isinstance(self.reuse_max_tiles, bool) or self.reuse_max_tiles < 0:
            raise ValueError(f"reuse_max_tiles={self.reuse_max_tiles!r}: must be a whole number of tiles >= 0 (0 = no cap)")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime={self.runtime!r}: must be one of {', '.join(RUNTIMES)}")

    @property
    def weights_path(self) -> Path:
        """"" = the default shipped weights; a bare name (no folder, no suffix) = those shipped
        weights by name, e.g. "lrrnet_light_sirst"; anything else is a path."""
        if not self.weights:
            return shipped_weights()
        p = Path(self.weights)
        if not p.suffix and p.name == self.weights:
            return shipped_weights(self.weights)
        return p

    def tiles(self, card: dict) -> tuple[int, int]:
        """(tile_px, overlap_px) to run with: these settings where given, else the card's."""
        from irstream.model.weights import inference_tiles

        card_tile, card_overlap = inference_tiles(card)
        tile = card_tile if self.tile_px is None else self.tile_px
        overlap = card_overlap if self.tile_overlap_px is None else self.tile_overlap_px
        return tile, overlap
