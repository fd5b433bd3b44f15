"""The model in OpenVINO, Intel's CPU inference runtime (the `openvino` extra).

On the 2-core development CPUs it runs LRRNet about twice as fast as torch in bf16 and as
fast in fp32 (`irstream bench model`; docs/speed.md).  The torch model is converted once
(`openvino.convert_model`, any batch, height and width) and the converted graph is cached,
keyed by the weights' bytes and the OpenVINO version, so later runs load it in well under a
second.  A frame size that comes again and again (the tiles, the coarse pass) also gets a graph
compiled for that size alone, which runs faster (STATIC_AFTER_CALLS).

Precision follows the CPU: bf16 where OpenVINO reports BF16 among the CPU's capabilities (AMX,
or AVX-512 BF16), fp32 elsewhere (older Intel and AMD CPUs).  Whether bf16 keeps the masks is
checked against eager fp32 before `runtime = "auto"` uses it (irstream.model.segment).

The fp32 graph is converted with its GroupNorms written as per-channel reductions
(`FlatGroupNorm`): the same function, but the converter's form of GroupNorm reshapes the
feature map to (B, groups, rest), which forces OpenVINO to reorder it out of the channels-last
layout its convolutions run in and back, around every norm.  In fp32 that reordering was a
third of the time, and the flat form ran 1.17x faster on the quiet 2-core development CPU
(1.27x with the machine busy; docs/speed.md); in bf16 it bought nothing, so the bf16 graph
keeps the converter's form.
"""

from __future__ import annotations

import copy
import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from irstream.host import cache_root, usable_cores
from irstream.errors import UserError
from irstream.model.registry import LRRNet
from irstream.model.runtime import AnySizeNet, RuntimeSpec

#: OpenVINO's names for the precisions it can be asked to infer in.
OV_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}
#: Bumped when what is converted changes (the wrapper, the input contract), so old caches are not used.
CACHE_FORMAT = "irstream-openvino/2"
#: Precisions whose graph is converted with FlatGroupNorm (measured faster there; see above).
FLAT_NORM_PRECISIONS = ("fp32",)
#: Side of the example frame the converter traces with: any multiple of the size multiple.
TRACE_PX = 64
#: Calls with one frame size before it gets a graph compiled for that size alone.  A graph of
#: fixed size ran 192 px tiles 1.11x faster than the any-size graph (268 against 298 ms for 12
#: tiles on the 2-core development CPU, bf16, 2 threads; docs/speed.md) and has no first-call
#: cost per batch size, but compiling one takes ~0.5 s: a video's tile size earns it after a few
#: frames; a folder of images of many sizes stays on the any-size graph.
STATIC_AFTER_CALLS = 3
#: Frame sizes that keep a fixed-size graph at once (tiles, coarse pass, one whole-frame size).
STATIC_SIZES_KEPT = 4


def import_openvino():
    try:
        import openvino
    except ImportError:
        raise UserError("openvino is not installed; install the extra: pip install 'irstream[openvino]'") from None
    return openvino


def openvino_available() -> bool:
    try:
        import_openvino()
    except UserError:
        return False
    return True


def cpu_precisions(capabilities: list[str] | None = None) -> list[str]:
    """Precisions to try on this CPU, fastest first: bf16 where it has BF16 units, then fp32."""
    if capabilities is None:
        capabilities = import_openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return (["bf16"] if "BF16" in capabilities else []) + ["fp32"]


def cache_dir() -> Path:
    """Where converted graphs are kept."""
    return cache_root() / "openvino"


def weights_key(model: LRRNet) -> str:
    """A digest of the model's configuration and every tensor's bytes: the same weights, the same key."""
    h = hashlib.sha256(repr(model.cfg.to_dict()).encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


class FlatGroupNorm(nn.Module):
    """nn.GroupNorm computed from per-channel means of the map and of its squared deviations,
    grouped as small (B, C) statistics: the map itself is never reshaped (see the module's
    docstring).  Two passes, as GroupNorm's own, so a flat tile's tiny variance is not lost to
    cancellation.  Shares the GroupNorm's weight and bias."""

    def __init__(self, norm: nn.GroupNorm) -> None:
        super().__init__()
        self.groups, self.eps = norm.num_groups, norm.eps
        self.weight, self.bias = norm.weight, norm.bias

    def _group_mean(self, per_channel: torch.Tensor) -> torch.Tensor:
        b, c = per_channel.shape[0], per_channel.shape[1]
        grouped = per_channel.reshape(b, self.groups, -1).mean(-1, keepdim=True)
        return grouped.expand(b, self.groups, c // self.groups).reshape(b, c, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x - self._group_mean(x.mean((2, 3), keepdim=True))
        var = self._group_mean((d * d).mean((2, 3), keepdim=True))
        return d * torch.rsqrt(var + self.eps) * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def with_flat_norms(model: nn.Module) -> nn.Module:
    """A copy of the model with every GroupNorm replaced by its FlatGroupNorm."""
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.GroupNorm):
                setattr(parent, name, FlatGroupNorm(child))
    return model


def converted(model: LRRNet, cache: Path | None = None, flat_norms: bool = False):
    """The model as an OpenVINO graph, from the cache when it holds it, else converted and stored.
    flat_norms: convert with FlatGroupNorm (the fp32 graph)."""
    ov = import_openvino()
    variant = "flat-norms" if flat_norms else "norms"
    key = hashlib.sha256(f"{CACHE_FORMAT} {ov.__version__} {variant} {weights_key(model)}".encode()).hexdigest()[:24]
    path = (cache or cache_dir()) / key / "model.xml"
    core = ov.Core()
    if path.exists():
        try:
            return core.read_model(path)
        except RuntimeError:
            pass  # a half-written or damaged cache entry: convert again below
    # A copy either way: eval() and cpu() act in place.
    net = AnySizeNet(with_flat_norms(model) if flat_norms else copy.deepcopy(model)).eval().cpu()
    m = model.cfg.size_multiple
    with warnings.catch_warnings(), torch.no_grad():
        # The tracer warns that shapes become constants; the padding is written with shape
        # arithmetic (AnySizeNet) so they do not, and the tests run other sizes through it.
        warnings.simplefilter("ignore")
        graph = ov.convert_model(net, example_input=torch.rand(1, 1, TRACE_PX + m, TRACE_PX),
                                 input=[ov.PartialShape([-1, 1, -1, -1])])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"tmp{os.getpid()}.xml")
        ov.save_model(graph, tmp, compress_to_fp16=False)
        tmp.with_suffix(".bin").replace(path.with_suffix(".bin"))
        tmp.replace(path)
    except OSError:
        pass  # an unwritable cache costs the conversion next time, nothing else
    return graph


class OpenVinoRuntime:
    """LRRNet run by OpenVINO on CPU: (B, 1, H, W) numpy frames of any size -> (B, H, W) probabilities."""

    def __init__(self, model: LRRNet, precision: str = "fp32", threads: int = 0, cache: Path | None = None) -> None:
        """threads: 0 = every usable core.  OpenVINO's workers sleep when idle instead of spinning
        as torch's OpenMP threads do, so the reader and outputs still get their share: on the
        2-core development CPU a 640x512 clip ran at 3.1 frames/s with 2 threads against 1.9
        with 1 (file run), 3.5 against 2.0 live, latency p99 440 ms against 685 (docs/speed.md)."""
        if precision not in OV_PRECISIONS:
            raise ValueError(f"precision={precision!r}: OpenVINO runs {', '.join(OV_PRECISIONS)} here")
        ov = import_openvino()
        self.spec = RuntimeSpec(backend="openvino", precision=precision)
        self.threads = threads or usable_cores()
        config = {"INFERENCE_PRECISION_HINT": OV_PRECISIONS[precision], "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_NUM_THREADS": self.threads}
        self._core, self._config, self._graph = ov.Core(), config, converted(model, cache, flat_norms=precision in FLAT_NORM_PRECISIONS)
        self.request = self._core.compile_model(self._graph, "CPU", config).create_infer_request()
        self._calls: dict[tuple[int, int, int], int] = {}
        self._static: dict[tuple[int, int, int], object] = {}  # (C, H, W) -> request, oldest first

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        frames = np.ascontiguousarray(frames, dtype=np.float32)
        static = self._static_request(frames.shape[1:])
        if static is None:
            return self.request.infer({0: frames})[0][:, 0].copy()  # the request's buffer is reused
        # One frame at a time through the fixed-size graph: as fast as a batch, one graph for any count.
        return np.stack([static.infer({0: f[None]})[0][0, 0].copy() for f in frames])

    def _static_request(self, size: tuple[int, int, int]):
        """The fixed-size request of this frame size once it has been asked for often enough."""
        if size in self._static:
            return self._static[size]
        self._calls[size] = self._calls.get(size, 0) + 1
        return self._compile(size) if self._calls[size] >= STATIC_AFTER_CALLS else None

    def fix_seen_sizes(self) -> None:
        """Compile now the fixed-size graph of every frame size run so far (at warm-up: the
        tiles and the coarse pass), so that no frame of the run waits for a compilation."""
        for size in list(self._calls)[-STATIC_SIZES_KEPT:]:
            if size not in self._static:
                self._compile(size)

    def _compile(self, size: tuple[int, int, int]):
        if len(self._static) >= STATIC_SIZES_KEPT:
            self._static.pop(next(iter(self._static)))
        graph = self._graph.clone()
        graph.reshape([1, *size])
        self._static[size] = self._core.compile_model(graph, "CPU", self._config).create_infer_request()
        return self._static[size]
