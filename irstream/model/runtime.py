"""Inference runtimes: one model, run by torch or by ONNX Runtime, in the precision asked for.

A runtime maps a batch of [0, 1] frames (B, 1, H, W) to target probabilities (B, H, W).  Any
H x W works: frames are padded (edge-replicated) to the model's size multiple and the result is
cropped back.

- TorchRuntime runs on CPU or CUDA: fp32, fp16 or bf16, optionally channels-last, CUDA graphs
  (the whole forward replayed as one launch: eager LRRNet is launch-bound on a big GPU, some 300
  kernels a frame) or torch.compile (fused kernels, fewer memory round trips).
- OnnxRuntime runs an exported graph (`irstream export`) on CPU.  onnxruntime is an optional
  extra; nothing else imports it.

`irstream bench model` times these against the eager fp32 reference and checks that their
masks agree with it.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from irstream.errors import UserError
from irstream.model.registry import LRRNet

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
#: ONNX opset of exported graphs.  At 17 GroupNorm exports as InstanceNormalization and
#: reshapes, which every onnxruntime runs; opset 18's GroupNormalization was later deprecated.
ONNX_OPSET = 17
ONNX_FORMAT = "irstream-onnx/1"


class ProbabilityNet(nn.Module):
    """LRRNet's target head as probabilities: (B, 1, H, W) frames -> (B, 1, H, W) in [0, 1].
    The reconstruction head is training-only and is left out of exported graphs."""

    def __init__(self, model: LRRNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model.target_logits(x))


class AnySizeNet(nn.Module):
    """ProbabilityNet for frames of any height and width: pads to the model's size multiple
    (replicating the edge) and crops back, inside the graph.  What `irstream export` writes, so
    the .onnx runs on any frame size without irstream around it."""

    def __init__(self, model: LRRNet) -> None:
        super().__init__()
        self.net, self.multiple = ProbabilityNet(model), model.cfg.size_multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        # Written with shape arithmetic (not Python ints) so the exporter records it in the graph.
        ph = (self.multiple - h % self.multiple) % self.multiple
        pw = (self.multiple - w % self.multiple) % self.multiple
        return self.net(F.pad(x, (0, pw, 0, ph), mode="replicate"))[:, :, :h, :w]


def mask_iou(probs: list[np.ndarray], reference: list[np.ndarray], threshold: float = 0.5) -> float:
    """Pixels both call a target over pixels either does, summed over frames (1.0 when both
    find nothing)."""
    inter = sum(int(((p > threshold) & (r > threshold)).sum()) for p, r in zip(probs, reference))
    union = sum(int(((p > threshold) | (r > threshold)).sum()) for p, r in zip(probs, reference))
    return inter / union if union else 1.0


#: A fast path agrees with eager fp32 when its masks overlap the reference's this much
#: (`irstream bench model`, and what runtime "auto" may pick).  OpenVINO bf16 on a real 640x512
#: frame differs in 1 pixel of 229 (IoU 0.996, largest probability difference 0.06).
MASK_IOU_MIN = 0.99


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad (B, C, H, W) on the bottom and right so H and W are multiples of `multiple`."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


@dataclass(frozen=True)
class RuntimeSpec:
    """How to run the model.

    backend: "torch", "onnxruntime" or "openvino".
    precision: fp32, fp16 or bf16 (torch on CUDA, OpenVINO bf16 on CPUs that have it; torch on CPU runs fp32).
    channels_last: NHWC memory layout for the convolutions (tensor cores prefer it).
    cuda_graphs: capture the forward once per input shape and replay it (CUDA only).
    compile_mode: torch.compile mode ("default", "max-autotune", ...); "" = eager.
    """

    backend: str = "torch"
    precision: str = "fp32"
    channels_last: bool = False
    cuda_graphs: bool = False
    compile_mode: str = ""

    @property
    def label(self) -> str:
        if self.backend == "openvino":
            return f"openvino-{self.precision}"
        if self.backend != "torch":
            return self.backend
        parts = ["compile" if self.compile_mode else "graphs" if self.cuda_graphs else "eager", self.precision]
        return "-".join(parts + (["cl"] if self.channels_last else []))


class TorchRuntime:
    """The model in torch.  `forward` works on device tensors (for the CUDA double buffer);
    calling the runtime works on numpy."""

    def __init__(self, model: LRRNet, device: torch.device, spec: RuntimeSpec = RuntimeSpec()) -> None:
        if spec.backend != "torch":
            raise ValueError(f"TorchRuntime runs backend 'torch', not {spec.backend!r}")
        if device.type != "cuda" and (spec.precision != "fp32" or spec.cuda_graphs):
            raise ValueError(f"{spec.label}: half precision and CUDA graphs need a CUDA device, not {device}")
        self.spec, self.device = spec, device
        self.dtype = PRECISIONS[spec.precision]
        self.multiple = model.cfg.size_multiple
        self.layout = torch.channels_last if spec.channels_last else torch.contiguous_format
        # A copy: .to() converts a module in place, and the caller's model may feed other runtimes.
        net = ProbabilityNet(copy.deepcopy(model)).eval().to(device=device, dtype=self.dtype, memory_format=self.layout)
        self._net = torch.compile(net, mode=spec.compile_mode, dynamic=False) if spec.compile_mode else net
        self._graphs: dict[tuple, tuple] = {}

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) float32 on the device -> (B, H, W) float32 probabilities on the device.
        With CUDA graphs the result lives in the graph's own buffer until the next call."""
        h, w = x.shape[-2:]
        # cuda:N other than the current device: graph capture and its pools follow the current one.
        with torch.cuda.device(self.device) if self.device.type == "cuda" else contextlib.nullcontext():
            x = pad_to_multiple(x, self.multiple).to(dtype=self.dtype, memory_format=self.layout)
            y = self._replay(x) if self.spec.cuda_graphs else self._net(x)
            return y[:, 0, :h, :w].float()

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).to(self.device)
        return self.forward(x).cpu().numpy()

    def _replay(self, x: torch.Tensor) -> torch.Tensor:
        key = (tuple(x.shape), x.dtype)
        if key not in self._graphs:
            self._graphs[key] = self._capture(x)
        graph, static_in, static_out = self._graphs[key]
        static_in.copy_(x)
        graph.replay()
        return static_out

    def _capture(self, x: torch.Tensor) -> tuple:
        static_in = x.clone()
        # Kernels pick their algorithms and allocate workspace on the first calls; that must
        # happen before capture, on a side stream as capture requires.
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self._net(static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: a decoder or sink thread using CUDA meanwhile does not break the capture.
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            static_out = self._net(static_in)
        return graph, static_in, static_out


class OnnxRuntime:
    """An exported graph in ONNX Runtime on CPU: numpy in, numpy out."""

    spec = RuntimeSpec(backend="onnxruntime")

    def __init__(self, graph: bytes | Path, threads: int = 0) -> None:
        ort = import_onnxruntime()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        source = str(graph) if isinstance(graph, Path) else graph
        try:
            self.session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise UserError(f"{graph if isinstance(graph, Path) else 'exported model'}: ONNX Runtime cannot load it "
                            f"({str(exc).splitlines()[0][:200]}); export it again with `irstream export`") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("format") != ONNX_FORMAT:
            raise UserError(f"{graph}: not an irstream ONNX export; write one with `irstream export`")
        self.input = self.session.get_inputs()[0].name

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(B, 1, H, W) frames of any size -> (B, H, W) probabilities (the graph pads and crops)."""
        return self.session.run(None, {self.input: np.ascontiguousarray(frames, dtype=np.float32)})[0][:, 0]


def import_onnxruntime():
    try:
        import onnx  # noqa: F401  (export needs it)
        import onnxruntime
    except ImportError as exc:
        raise UserError(f"{exc.name} is not installed; install the extra: pip install 'irstream[onnx]'") from None
    return onnxruntime


def onnxruntime_available() -> bool:
    """Both halves of the onnx extra: onnx to export, onnxruntime to run."""
    try:
        import_onnxruntime()
    except UserError:
        return False
    return True


def export_onnx(model: LRRNet, dest: Path | None = None, name: str = "lrrnet") -> bytes:
    """The model as an ONNX graph: (batch, 1, H, W) frames in [0, 1] -> (batch, 1, H, W) target
    probabilities, any batch, height and width (the padding to the model's size multiple is in
    the graph); written to dest when given.  Metadata names the format, the architecture and
    this contract, so a loader can check what it got."""
    import_onnxruntime()
    net = AnySizeNet(copy.deepcopy(model)).eval().cpu()  # a copy: eval() and cpu() act in place
    m = model.cfg.size_multiple
    buf = io.BytesIO()
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        # The TorchScript-based exporter is deprecated in favour of the dynamo one, which needs
        # onnxscript; this one needs nothing beyond onnx and is exact for these operators.  An
        # odd example size makes the tracer keep the padding arithmetic general.
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.rand(1, 1, 4 * m + 3, 4 * m + 5),), buf, input_names=["frames"],
                          output_names=["probability"], opset_version=ONNX_OPSET, dynamo=False,
                          dynamic_axes={"frames": axes, "probability": axes})
    data = _with_metadata(buf.getvalue(), {
        "format": ONNX_FORMAT, "model": name, "config": json.dumps(model.cfg.to_dict() | {"size_multiple": m}),
        "input": "frames: float32 (batch, 1, height, width), gray in [0, 1] (8-bit pixels / input_scale), any size",
        "output": "probability: float32 (batch, 1, height, width), target probability per pixel"})
    if dest is not None:
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        Path(dest).write_bytes(data)
    return data


def _with_metadata(graph: bytes, meta: dict[str, str]) -> bytes:
    import onnx

    proto = onnx.load_from_string(graph)
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    return proto.SerializeToString()
