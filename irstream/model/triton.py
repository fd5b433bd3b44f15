"""The model behind Triton Inference Server: a client runtime, and a server to run it with.

`TritonRuntime` is a runtime like TorchRuntime (frames in, probability maps out) whose forward
pass happens on a Triton server over gRPC (`[model] runtime = "triton"`), so the cameras' worker
processes can sit on other machines than the GPUs.  A server that is down, restarting, or has
the model not ready is treated like a lost camera: logged once per outage, retried with backoff,
counted; the frame waits, so a file run loses none (after `give_up_s` of outage the run stops
with one clear line).

`serve()` hosts irstream weights in a real Triton server started by NVIDIA's PyTriton (which
bundles the `tritonserver` binary), with dynamic batching: requests from several workers that
arrive within `max_queue_delay_us` are run as one batch.  `write_model_repository()` writes the
same model as a Triton model repository (ONNX + config.pbtxt) that the stock Triton container
serves unchanged.

Wire contract (both): input "frames" FP32 (batch, 1, H, W) in [0, 1], any H and W; output
"probability" FP32 (batch, H, W).
"""

from __future__ import annotations

import logging
import os
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from irstream.errors import UserError
from irstream.model.runtime import RuntimeSpec

log = logging.getLogger(__name__)

INPUT, OUTPUT = "frames", "probability"
#: Model name the server registers and the runtime asks for.
DEFAULT_MODEL_NAME = "irstream"
#: Retry waits during an outage, s: doubling from the first to the last, then staying there.
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.2, 5.0


@dataclass(frozen=True)
class TritonConfig:
    """url: the server's gRPC address, host:port.
    model, version: what to ask for ("" = the server's latest version).
    timeout_s: one request's limit; a request past it counts as an outage and is retried.
    give_up_s: an outage longer than this stops the run (a file run would otherwise wait for ever).
    """

    url: str = "127.0.0.1:8001"
    model: str = DEFAULT_MODEL_NAME
    version: str = ""
    timeout_s: float = 30.0
    give_up_s: float = 300.0


class TritonRuntime:
    """numpy frames (N, 1, H, W) -> (N, H, W) probabilities, computed on a Triton server."""

    def __init__(self, cfg: TritonConfig = TritonConfig()) -> None:
        try:
            import tritonclient.grpc as grpcclient
        except ImportError:
            raise UserError("= 'triton' needs the triton extra: pip install 'irstream[triton]'", "model.runtime") from None
        self.cfg, self._grpc = cfg, grpcclient
        self.spec = RuntimeSpec(backend="triton")
        self.outages = self.retries = 0
        self._client = grpcclient.InferenceServerClient(cfg.url)

    @property
    def label(self) -> str:
        return f"triton {self.cfg.model}@{self.cfg.url}"

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(frames, dtype=np.float32)
        inp = self._grpc.InferInput(INPUT, list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        out = [self._grpc.InferRequestedOutput(OUTPUT)]
        wait, since = BACKOFF_FIRST_S, None
        while True:
            try:
                res = self._client.infer(self.cfg.model, [inp], model_version=self.cfg.version, outputs=out,
                                         client_timeout=self.cfg.timeout_s)
                if since is not None:
                    log.warning("%s: back after %.1f s", self.label, time.monotonic() - since)
                out = res.as_numpy(OUTPUT)
                return out[:, 0] if out.ndim == 4 else out  # the ONNX repository keeps the channel axis
            except self._exceptions() as exc:
                now = time.monotonic()
                if since is None:
                    since = now
                    self.outages += 1
                    log.warning("%s: %s; retrying with backoff", self.label, _first_line(exc))
                if now - since > self.cfg.give_up_s:
                    raise UserError(f"{self.cfg.url}: the Triton server has not answered for {self.cfg.give_up_s:.0f} s "
                                    f"({_first_line(exc)}); start it (irstream serve) or fix [model] triton_url",
                                    None) from None
                self.retries += 1
                time.sleep(wait)
                wait = min(2 * wait, BACKOFF_MAX_S)

    def _exceptions(self):
        from tritonclient.utils import InferenceServerException

        return (InferenceServerException, ConnectionError, TimeoutError)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


# ---- the server ------------------------------------------------------------------------------

#: Batch sizes the dynamic batcher aims for (tiles of a few cameras' frames).
PREFERRED_BATCHES = (4, 8, 16)


def _libpython_first() -> None:
    """PyTriton's Python backend stub links the system's libpython, and then runs the model
    with this interpreter's standard library; when the two Pythons differ in patch version the
    stub fails to start (pytriton issue #51: '_thread.RLock' has no '_recursion_count').  The
    stub loads the libpython of this interpreter when its folder comes first."""
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir and Path(libdir, sysconfig.get_config_var("INSTSONAME") or "").is_file():
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, os.environ.get("LD_LIBRARY_PATH")) if p)


def serve(weights_path: Path, device, grpc_port: int = 8001, http_port: int = 8000, metrics_port: int = 8002,
          max_batch: int = 32, max_queue_delay_us: int = 2000, model_name: str = DEFAULT_MODEL_NAME, ready=None,
          stop=None) -> None:
    """Serve the weights until `stop` (a threading.Event) is set or the process is interrupted.
    ready: called once the model answers (tests, the CLI's message)."""
    import threading

    import torch
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig as ServerConfig

    from irstream.model.runtime import TorchRuntime
    from irstream.model.weights import load_weights

    model, _ = load_weights(weights_path)
    rt = TorchRuntime(model.eval(), torch.device(device))

    @batch
    def infer(frames: np.ndarray) -> dict:
        return {OUTPUT: rt(frames)}

    _libpython_first()
    stop = stop or threading.Event()
    cfg = ServerConfig(grpc_port=grpc_port, http_port=http_port, metrics_port=metrics_port, exit_on_error=True)
    with Triton(config=cfg) as triton:
        triton.bind(model_name=model_name, infer_func=infer,
                    inputs=[Tensor(name=INPUT, dtype=np.float32, shape=(1, -1, -1))],
                    outputs=[Tensor(name=OUTPUT, dtype=np.float32, shape=(-1, -1))],
                    config=ModelConfig(max_batch_size=max_batch, batcher=DynamicBatcher(
                        preferred_batch_size=[b for b in PREFERRED_BATCHES if b <= max_batch],
                        max_queue_delay_microseconds=max_queue_delay_us)),
                    strict=True)
        triton.run()
        if ready:
            ready()
        while not stop.wait(0.2):
            pass


def write_model_repository(weights_path: Path, folder: Path, model_name: str = DEFAULT_MODEL_NAME,
                           max_batch: int = 32) -> Path:
    """A Triton model repository: <folder>/<model>/1/model.onnx and config.pbtxt (ONNX Runtime
    backend, dynamic batching).  Returns the model's folder."""
    from irstream.model.runtime import export_onnx
    from irstream.model.weights import load_weights

    model, _ = load_weights(weights_path)
    version = folder / model_name / "1"
    version.mkdir(parents=True, exist_ok=True)
    export_onnx(model, version / "model.onnx", name=model_name)
    preferred = ", ".join(str(b) for b in PREFERRED_BATCHES if b <= max_batch)
    (folder / model_name / "config.pbtxt").write_text(f'''name: "{model_name}"
backend: "onnxruntime"
max_batch_size: {max_batch}
input [ {{ name: "{INPUT}" data_type: TYPE_FP32 dims: [ 1, -1, -1 ] }} ]
output [ {{ name: "{OUTPUT}" data_type: TYPE_FP32 dims: [ 1, -1, -1 ] }} ]
dynamic_batching {{ preferred_batch_size: [ {preferred} ] max_queue_delay_microseconds: 2000 }}
instance_group [ {{ kind: KIND_AUTO count: 1 }} ]
''')
    return folder / model_name
