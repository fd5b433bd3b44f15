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
"""

from __future__ import annotations

import copy
import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from irstream.host import cache_root, usable_cores
from irstream.errors import UserError
from irstream.model.registry import LRRNet
from irstream.model.runtime import AnySizeNet, RuntimeSpec

#: OpenVINO's names for the precisions it can be asked to infer in.
OV_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}
#: Bumped when what is converted changes (the wrapper, the input contract), so old caches are not used.
CACHE_FORMAT = "irstream-openvino/1"
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


def converted(model: LRRNet, cache: Path | None = None):
    """The model as an OpenVINO graph, from the cache when it holds it, else converted and stored."""
    ov = import_openvino()
    key = hashlib.sha256(f"{CACHE_FORMAT} {ov.__version__} {weights_key(model)}".encode()).hexdigest()[:24]
    path = (cache or cache_dir()) / key / "model.xml"
    core = ov.Core()
    if path.exists():
        try:
            return core.read_model(path)
        except RuntimeError:
            pass  # a half-written or damaged cache entry: convert again below
    net = AnySizeNet(copy.deepcopy(model)).eval().cpu()  # a copy: eval() and cpu() act in place
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
        self._core, self._config, self._graph = ov.Core(), config, converted(model, cache)
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
