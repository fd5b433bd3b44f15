"""Per-frame inference: a [0, 1] gray image in, a map of target logits out.

This is the only stage that touches torch; everything downstream gets numpy.
Any H x W works: the frame is padded (edge-replicated) to the model's size multiple
and the output cropped back.

Two ways in: `image_logits` runs a model object on one [0, 1] image (training's validation,
eval, calibration: the weights as they are being trained or scored), and `StreamSegmenter`
runs a stream of frames through the fastest runtime for the device (runs, via the Detector).
"""

from __future__ import annotations

import logging
import os

import cv2
import numpy as np
import torch

from irstream.model.config import RUNTIMES
from irstream.host import cache_root, machine_quiet, usable_cores
from irstream.errors import UserError
from irstream.model.openvino import OpenVinoRuntime, cpu_precisions, openvino_available
from irstream.model.registry import LRRNet
from irstream.model.reuse import TileMemory
from irstream.model.runtime import (MASK_IOU_MIN, OnnxRuntime, RuntimeSpec, TorchRuntime, export_onnx, mask_iou,
                                    onnxruntime_available, pad_to_multiple)

log = logging.getLogger(__name__)

#: What "auto" runs on CUDA: fp32, replayed as a CUDA graph (one launch instead of ~300).
#: Not half precision: on an H200 fp16 moved the masks of the shipped light weights to IoU 0.97
#: against fp32 and bf16 to 0.81 (`irstream bench model`, 512x512; the target map is a
#: difference of two near-equal feature maps, F_I - F_B, which 11 or 8 mantissa bits lose), for
#: 1.19x the speed.  Half precision stays a bench path, not a default.
CUDA_AUTO = RuntimeSpec(precision="fp32", cuda_graphs=True)
#: The runtimes that run here; "triton" comes to the segmenter as a TritonRuntime object.
LOCAL_RUNTIMES = tuple(r for r in RUNTIMES if r != "triton")
#: Forward passes timed per candidate when "auto" picks a CPU runtime at warm-up.
AUTO_PICK_RUNS = 3


def resolve_device(name: str = "auto") -> torch.device:
    """"auto", "cpu", "cuda" or "cuda:N" -> a torch device that exists on this machine."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"= {name!r}: not a device; use auto, cpu, cuda or cuda:N", "model.device") from None
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"= {name!r}: irstream runs on cpu or cuda; use one of those or auto", "model.device")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError(f"= {name!r}: no CUDA GPU is visible to torch; use cpu or auto", "model.device")
        if device.index is not None and device.index >= count:
            raise UserError(f"= {name!r}: torch sees {count} GPU(s), cuda:0 to cuda:{count - 1}", "model.device")
    return device


def forward_any_size(model: LRRNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """model(x) for any H x W: pad to the size multiple, crop both outputs back."""
    h, w = x.shape[-2:]
    logits, recon = model(pad_to_multiple(x, model.cfg.size_multiple))
    return logits[..., :h, :w], recon[..., :h, :w]


def tile_origins(length: int, tile: int, overlap: int) -> list[int]:
    """Starts of tiles of side `tile` covering 0..length with at least `overlap` px shared
    between neighbours; the last tile ends at the edge."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def _cores(starts: list[int], tile: int, length: int) -> list[tuple[int, int]]:
    """The part of each tile that writes the output: tiles meet halfway through their shared
    band, so every pixel comes from the tile where it lies farthest from an edge."""
    bounds = [0] + [(a + tile + b) // 2 for a, b in zip(starts[:-1], starts[1:])] + [length]
    return list(zip(bounds[:-1], bounds[1:]))


def tiled(fn, image: np.ndarray, tile: int, overlap: int, memory: TileMemory | None = None) -> np.ndarray:
    """fn over a large frame in tiles: fn maps (N, 1, t, t) float32 to (N, t, t); returns (H, W).

    Weights trained on crops see a whole 640x512 frame differently from the crops they learnt
    on (GroupNorm statistics and the attention are taken over the whole input); run in tiles of
    the size they learnt at, they see what they were taught.  tile = 0, or a frame no larger
    than a tile, is run whole.  memory: see `tiled_many`."""
    return tiled_many(fn, [image], tile, overlap, memory)[0]


def tiled_many(fn, images: list[np.ndarray], tile: int, overlap: int,
               memory: TileMemory | None = None, slots: list | None = None) -> list[np.ndarray]:
    """`tiled` over several frames (of several cameras) with one call of fn per tile size: the
    tiles of all frames go into one batch, which a model runs far better than one each.  With
    a memory, only the tiles that changed since their last run go; slots[i] names image i's
    stream there (default: its place in the list)."""
    slots = list(range(len(images))) if slots is None else slots
    layouts = [_tile_layout(img.shape, tile, overlap) for img in images]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (th, tw, _, _) in enumerate(layouts):
        groups.setdefault((th, tw), []).append(i)
    outs: list[np.ndarray | None] = [None] * len(images)
    for members in groups.values():
        tiles = [_tiles(images[i], layouts[i]) for i in members]
        runs = [memory.to_run(slots[i], t) for i, t in zip(members, tiles)] if memory else [slice(None)] * len(members)
        batch = np.concatenate([t[r] for t, r in zip(tiles, runs)])
        maps = fn(np.ascontiguousarray(batch)) if len(batch) else batch[:, 0]
        done = np.cumsum([0] + [len(t[r]) for t, r in zip(tiles, runs)])
        for k, i in enumerate(members):
            mine = maps[done[k]:done[k + 1]]
            outs[i] = _untile(iter(memory.maps(slots[i], runs[k], mine) if memory else mine), images[i].shape, layouts[i])
    return outs


def _tile_layout(shape: tuple[int, int], tile: int, overlap: int):
    h, w = shape
    if not tile or (h <= tile and w <= tile):
        return h, w, [0], [0]
    th, tw = min(tile, h), min(tile, w)
    return th, tw, tile_origins(h, th, overlap), tile_origins(w, tw, overlap)


def _tiles(image: np.ndarray, layout) -> np.ndarray:
    th, tw, ys, xs = layout
    return np.stack([image[y:y + th, x:x + tw] for y in ys for x in xs])[:, None].astype(np.float32, copy=False)


def _untile(maps, shape: tuple[int, int], layout) -> np.ndarray:
    h, w = shape
    th, tw, ys, xs = layout
    if len(ys) == len(xs) == 1 and (th, tw) == (h, w):
        return next(maps)
    out = np.empty((h, w), dtype=np.float32)
    for y, (cy0, cy1) in zip(ys, _cores(ys, th, h)):
        for x, (cx0, cx1) in zip(xs, _cores(xs, tw, w)):
            m = next(maps)
            out[cy0:cy1, cx0:cx1] = m[cy0 - y:cy1 - y, cx0 - x:cx1 - x]
    return out


@torch.inference_mode()
def image_logits(model: LRRNet, image: np.ndarray, device, tile_px: int = 0, overlap_px: int = 0) -> np.ndarray:
    """(H, W) [0, 1] frame -> (H, W) target logits, in tiles when tile_px > 0 (see `tiled`)."""
    def run(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).to(device)
        h, w = x.shape[-2:]
        return model.target_logits(pad_to_multiple(x, model.cfg.size_multiple))[:, 0, :h, :w].float().cpu().numpy()

    return tiled(run, np.ascontiguousarray(image, dtype=np.float32), tile_px, overlap_px)


#: Targets of the coarse pass smaller than this (px at full resolution) are left to the full
#: pass: 1-10 px targets are what it finds well, and small coarse blobs are mostly clutter that
#: shrinking made point-like.
COARSE_MIN_AREA_PX = 64
#: The probability at which the coarse map's targets are cut out to be measured.
COARSE_CUT = 0.5


def merge_coarse(prob: np.ndarray, coarse_prob: np.ndarray, factor: int) -> np.ndarray:
    """A full-resolution map merged with the map of the frame shrunk `factor` times: the coarse
    pass's large targets (COARSE_MIN_AREA_PX and more once enlarged back) are laid over the
    full map (pixelwise maximum), so a close drone that the full pass sees as rotors and
    edges, or not at all, is one target whose box covers its body."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats((coarse_prob > COARSE_CUT).astype(np.uint8), connectivity=8)
    large = stats[:, cv2.CC_STAT_AREA] * factor * factor >= COARSE_MIN_AREA_PX
    large[0] = False
    if not large[1:].any():
        return prob
    kept = np.where(large[labels], coarse_prob, 0.0).astype(np.float32)
    h, w = prob.shape
    up = cv2.resize(kept, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.maximum(prob, up)


def default_threads() -> int:
    """Torch's threads: usable cores but one, at least one.  Torch's own default (every core)
    oversubscribes a machine shared with other work, which measured ~20x slower than one
    thread: its OpenMP threads spin.  OpenVINO takes every core (OpenVinoRuntime)."""
    return max(1, usable_cores() - 1)


def set_threads(n: int = 0) -> int:
    """Let torch use n CPU threads (0 = default_threads()); returns the number set."""
    n = n or default_threads()
    torch.set_num_threads(n)
    return n


#: glibc mallopt parameters and the values set by retain_freed_memory.  The forward pass frees
#: and reallocates the same large activations every frame; by default glibc hands them back to
#: the OS and page-faults them in again.  Measured on a 2-core CPU, light model: 0.23 -> 0.15 s
#: per 320x256 frame, 1.07 -> 0.73 s per 640x512 (the facts file saw up to 35%).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_RETAIN_BYTES = {_M_MMAP_THRESHOLD: 1 << 30, _M_TRIM_THRESHOLD: 1 << 30, _M_TOP_PAD: 1 << 28}


def retain_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse (process-wide); False where there is no glibc."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = [libc.mallopt(k, v) == 1 for k, v in _RETAIN_BYTES.items()]  # every one, even after a refusal
        return all(ok)
    except (OSError, AttributeError):
        return False


class StreamSegmenter:
    """Target probabilities for a stream of frames, pipelined where the device allows.

    `push(key, image)` hands in one [0, 1] frame and returns the (key, probability map) pairs
    that are finished; `flush()` returns the rest.  On CPU every push returns its own result.
    On CUDA results come back one frame late: frames go through two pinned host buffers and
    two device buffers, and the host-to-device copy of frame t+1 and the device-to-host copy
    of frame t-1 run on their own streams while frame t computes.  Consumers do not care
    which, they only see keys come back in order.

    runtime: "auto", "torch", "openvino" or "onnxruntime" (the last two CPU only).  "torch" is
    eager fp32, the reference.  "auto" is CUDA_AUTO on CUDA; on CPU it checks CPU_AUTO,
    OpenVINO and ONNX Runtime (those installed) against eager fp32 and times those that agree on
    the first frame's size at warm_up(), keeping the fastest (CPU_AUTO until then).  "openvino"
    is bf16 where the CPU has it and it agrees, else fp32.  A RuntimeSpec picks a torch runtime
    exactly.

    overlap=False (CUDA) waits for each frame before taking the next: the same buffers and
    streams with the overlap switched off, for `irstream bench model` to show what it buys.
    """

    def __init__(self, model: LRRNet, device: str | torch.device = "cpu", upscale: int = 1,
                 runtime: str | RuntimeSpec = "auto", overlap: bool = True, tile_px: int = 0,
                 tile_overlap_px: int = 0, coarse: int = 0, threads: int = 0,
                 reuse: TileMemory | None = None) -> None:
        if not isinstance(upscale, int) or upscale < 1:
            raise ValueError(f"upscale={upscale!r}: must be a whole number >= 1")
        self.tile_px, self.tile_overlap_px = tile_px, tile_overlap_px
        self.coarse = coarse
        self.memory = reuse  # tiles that did not change keep their maps (irstream.model.reuse)
        self._coarse_inputs: list[np.ndarray] = []  # frames pushed, in order, awaiting their coarse pass
        if isinstance(runtime, str) and runtime not in LOCAL_RUNTIMES:
            raise UserError(f"= {runtime!r}: use {', '.join(RUNTIMES)}", "model.runtime")
        self.device = torch.device(device)
        self.upscale = upscale
        self._cuda = None
        self.picked_from_cache = False  # "auto" on CPU: the choice came from an earlier run's timing
        if not isinstance(runtime, (str, RuntimeSpec)):  # a runtime object, e.g. a TritonRuntime
            self.runtime, self._candidates = runtime, []
        elif self.device.type == "cuda":
            if runtime == "onnxruntime":
                raise UserError("= 'onnxruntime' runs on CPU; use device cpu, or runtime auto or torch on CUDA", "model.runtime")
            spec = CUDA_AUTO if runtime == "auto" else RuntimeSpec() if runtime == "torch" else runtime
            self.runtime = TorchRuntime(model, self.device, spec)
            # Tiles go through the runtime as one batch per frame; the double buffer is for whole frames.
            self._cuda = None if tile_px else _CudaDoubleBuffer(self.runtime, self.device, overlap)
            self._candidates = []
        else:
            retain_freed_memory()
            # (label, factory) pairs: only those timed, or the one a cached pick names, are built.
            self._candidates = _cpu_candidates(model, runtime, threads)
            self._threads_asked = threads
            try:
                self.runtime = self._candidates[0][1]()
            except RuntimeError as exc:  # e.g. OpenVINO's CPU plugin on a CPU it does not support
                raise UserError(f"= {self._candidates[0][0]!r} cannot start here ({str(exc).splitlines()[0][:200]}); "
                                "use runtime auto or torch", "model.runtime") from None
            self._model = model if len(self._candidates) > 1 else None

    @property
    def runtime_label(self) -> str:
        return self.runtime.spec.label

    @property
    def threads(self) -> int:
        """CPU threads the model runs on (OpenVINO's own, else torch's); 0 on a GPU or a server."""
        if self.device.type != "cpu" or not isinstance(self.runtime, (TorchRuntime, OnnxRuntime, OpenVinoRuntime)):
            return 0
        return getattr(self.runtime, "threads", torch.get_num_threads())

    def push(self, key, image: np.ndarray) -> list[tuple[object, np.ndarray]]:
        self._pick_once(image.shape[:2])
        if self.coarse:
            self._coarse_inputs.append(image)
        return [(k, self._with_coarse(self._downscale(p))) for k, p in self._push(key, self._upscale(image))]

    def flush(self) -> list[tuple[object, np.ndarray]]:
        with torch.inference_mode():
            done = self._cuda.flush() if self._cuda is not None else []
        return [(k, self._with_coarse(self._downscale(p))) for k, p in done]

    @torch.inference_mode()
    def batch(self, images: list[np.ndarray], slots: list | None = None) -> list[np.ndarray]:
        """Probability maps of several frames at once (one forward per tile size), for runs
        with several sources (slots: each frame's source, for the tiles' memory); synchronous
        on every device."""
        self._pick_once(images[0].shape[:2])
        self._coarse_inputs += images if self.coarse else []
        maps = tiled_many(self.runtime, [self._upscale(im) for im in images], self.tile_px, self.tile_overlap_px,
                          self.memory, slots)
        return [self._with_coarse(self._downscale(p)) for p in maps]

    @torch.inference_mode()
    def _with_coarse(self, prob: np.ndarray) -> np.ndarray:
        """The full-resolution map of the oldest frame awaiting its coarse pass, merged with it."""
        if not self.coarse:
            return prob
        image = self._coarse_inputs.pop(0)
        small = cv2.resize(image, None, fx=1.0 / self.coarse, fy=1.0 / self.coarse, interpolation=cv2.INTER_AREA)
        return merge_coarse(prob, tiled(self.runtime, small, self.tile_px, self.tile_overlap_px), self.coarse)

    @torch.inference_mode()
    def _push(self, key, image: np.ndarray) -> list[tuple[object, np.ndarray]]:
        if self._cuda is not None:
            return self._cuda.push(key, image)
        return [(key, tiled(self.runtime, image, self.tile_px, self.tile_overlap_px, self.memory))]

    def _upscale(self, image: np.ndarray) -> np.ndarray:
        # Targets smaller than the model learnt (1-3 px) are found once the frame is enlarged;
        # bicubic keeps a point target's peak instead of spreading it flat.
        if self.upscale == 1:
            return image
        big = cv2.resize(image, None, fx=self.upscale, fy=self.upscale, interpolation=cv2.INTER_CUBIC)
        return np.clip(big, 0.0, 1.0, out=big)

    def _downscale(self, prob: np.ndarray) -> np.ndarray:
        """Back to the frame's grid; a frame pixel takes the highest probability of its block,
        so a target found at the enlarged scale is not averaged away."""
        k = self.upscale
        if k == 1:
            return prob
        h, w = prob.shape[0] // k, prob.shape[1] // k
        return prob.reshape(h, k, w, k).max(axis=(1, 3))

    def warm_up(self, shape: tuple[int, int]) -> None:
        """Throw-away frames of `shape`: the first forward pass picks kernels and allocates
        buffers, and would otherwise show up as a latency spike on the first real frame.  On
        CPU with more than one candidate runtime this is also where the faster is picked."""
        self.push(None, np.zeros(shape, dtype=np.float32))
        self.flush()
        if hasattr(self.runtime, "fix_seen_sizes"):  # OpenVINO: graphs of fixed size, warmed too
            self.runtime.fix_seen_sizes()
            self.push(None, np.zeros(shape, dtype=np.float32))
            self.flush()
        self.reset()

    def reset(self) -> None:
        """A new stream: no tile keeps a map from before."""
        if self.memory is not None:
            self.memory.reset()

    def _pick_once(self, shape: tuple[int, int]) -> None:
        """Where "auto" has several CPU candidates, pick on the first frame's size (at warm-up
        in a run; on the first frame for a detector used by hand)."""
        if len(self._candidates) > 1:
            self.runtime = self._pick((shape[0] * self.upscale, shape[1] * self.upscale))
            self._candidates, self._model = [], None

    def _pick(self, shape: tuple[int, int]):
        """The fastest candidate whose masks agree with eager fp32, timed on frames of `shape`
        run as they will be (in tiles); the first candidate where none agrees.  The choice is
        kept in the cache folder for this machine, software, weights, frame size and tiles, so
        later runs start at once (`picked_from_cache`)."""
        key = pick_key(self._model, shape, (self.tile_px, self.tile_overlap_px), [lab for lab, _ in self._candidates],
                       self._threads_asked)
        factories = dict(self._candidates)
        label = read_pick(key)
        if label in factories:
            self.picked_from_cache = True
            return self.runtime if label == self._candidates[0][0] else factories[label]()
        built = {self._candidates[0][0]: self.runtime}
        for label, make in self._candidates[1:]:
            try:
                built[label] = make()
            except RuntimeError as exc:  # e.g. OpenVINO's CPU plugin on a CPU it does not support
                log.warning("runtime %s left out: %s", label, str(exc).splitlines()[0][:200])
        check = agreement_image(shape if not self.tile_px else (min(shape[0], self.tile_px), min(shape[1], self.tile_px)))
        want = TorchRuntime(self._model, self.device)(check[None, None])[0]
        agree = [rt for rt in built.values() if mask_iou([rt(check[None, None])[0]], [want]) >= MASK_IOU_MIN]
        frame = np.zeros(shape, dtype=np.float32)
        best = fastest(agree or [self.runtime], lambda rt: tiled(rt, frame, self.tile_px, self.tile_overlap_px),
                       AUTO_PICK_RUNS)
        if machine_quiet():  # a choice timed beside other work would be kept for the quiet machine too
            write_pick(key, next(label for label, rt in built.items() if rt is best))
        return best


#: The runtimes are checked on a synthetic scene (irstream.data.synthetic) of this seed and
#: side (px), in which the shipped weights find targets, mirrored out to the frame's size.
AGREE_SEED = 7
AGREE_SIDE_PX = 192


def agreement_image(shape: tuple[int, int]) -> np.ndarray:
    """A deterministic synthetic IR scene with small targets, (H, W) float32 in [0, 1]."""
    from irstream.data.synthetic import random_scene

    image, _ = random_scene(np.random.default_rng(AGREE_SEED), (AGREE_SIDE_PX, AGREE_SIDE_PX))
    h, w = shape
    image = np.pad(image, ((0, max(0, h - AGREE_SIDE_PX)), (0, max(0, w - AGREE_SIDE_PX))), mode="symmetric")
    return np.ascontiguousarray(image[:h, :w], dtype=np.float32)


#: What "auto" runs on CPU with torch: NHWC convolutions, which oneDNN runs about 1.5 times
#: faster than NCHW for LRRNet on the 2-core development CPU (`irstream bench model`).
CPU_AUTO = RuntimeSpec(channels_last=True)


def _cpu_candidates(model: LRRNet, runtime: str | RuntimeSpec, threads: int = 0) -> list[tuple[str, object]]:
    """(label, factory) of the runtimes "auto" (or "openvino") chooses from on CPU, the one to
    use before any timing first.  threads: OpenVINO's (0 = every core; torch's are set apart)."""
    cpu = torch.device("cpu")
    if isinstance(runtime, RuntimeSpec):
        return [(runtime.label, lambda: TorchRuntime(model, cpu, runtime))]
    if runtime == "torch":
        return [(RuntimeSpec().label, lambda: TorchRuntime(model, cpu))]
    onnx = [(OnnxRuntime.spec.label, lambda: OnnxRuntime(export_onnx(model)))]
    if runtime == "onnxruntime":
        return onnx
    openvino = [(RuntimeSpec(backend="openvino", precision=p).label, lambda p=p: OpenVinoRuntime(model, p, threads))
                for p in (cpu_precisions() if runtime == "openvino" or openvino_available() else [])]
    if runtime == "openvino":
        return openvino
    return ([(CPU_AUTO.label, lambda: TorchRuntime(model, cpu, CPU_AUTO))] + openvino
            + (onnx if onnxruntime_available() else []))


def pick_key(model: LRRNet, shape: tuple[int, int], tiles: tuple[int, int], labels: list[str], threads: int) -> str:
    """What a runtime choice holds for: this CPU and its core count, the software, the weights,
    the frame size, the tiles and the candidates."""
    import hashlib
    import platform

    from irstream.model.openvino import weights_key

    versions = {}
    for name in ("torch", "openvino", "onnxruntime"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    text = repr((_cpu_name(), platform.machine(), usable_cores(), threads, torch.get_num_threads(), versions,
                 weights_key(model), tuple(shape),
                 tuple(tiles), labels))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        import platform

        return platform.processor()


def _picks_file():
    return cache_root() / "runtime-picks.json"


def read_pick(key: str) -> str | None:
    import json

    try:
        return json.loads(_picks_file().read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None


def write_pick(key: str, label: str) -> None:
    import json

    path = _picks_file()
    try:
        picks = json.loads(path.read_text()) if path.exists() else {}
        picks = picks if isinstance(picks, dict) else {}
    except (OSError, ValueError):
        picks = {}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(picks | {key: label}, indent=1))
        tmp.replace(path)
    except OSError:
        pass  # an unwritable cache costs the timing next time, nothing else


def fastest(runtimes: list, run, runs: int):
    """The runtime with the lowest median time of run(runtime), after one untimed call each.
    The runtimes take turns, so that other work that comes and goes slows each alike."""
    import time

    if len(runtimes) == 1:
        return runtimes[0]
    for rt in runtimes:
        run(rt)
    times: list[list[float]] = [[] for _ in runtimes]
    for _ in range(runs):
        for rt, ts in zip(runtimes, times):
            t0 = time.perf_counter()
            run(rt)
            ts.append(time.perf_counter() - t0)
    return runtimes[int(np.argmin([np.median(ts) for ts in times]))]


class _CudaDoubleBuffer:
    """Two slots, each a pinned host input, a device input, a device output and a pinned host
    output, used in turn.  Uploads, compute and downloads run on three streams ordered by CUDA
    events, so the upload of frame t+1 and the download of frame t-1 run beside the compute of
    frame t.  A slot is reused only after the host has waited for its previous download."""

    def __init__(self, runtime: TorchRuntime, device: torch.device, overlap: bool = True) -> None:
        self.runtime, self.device, self.overlap = runtime, device, overlap
        self.upload_stream = torch.cuda.Stream(device)
        self.compute_stream = torch.cuda.Stream(device)
        self.download_stream = torch.cuda.Stream(device)
        self.shape: tuple[int, int] | None = None
        self.pending: list[tuple[int, object]] = []  # (slot, key) in submission order
        self.turn = 0

    def _allocate(self, shape: tuple[int, int]) -> None:
        self.flush()
        h, w = shape
        pin = dict(dtype=torch.float32, pin_memory=True)
        dev = dict(dtype=torch.float32, device=self.device)
        self.host_in = [torch.empty((1, 1, h, w), **pin) for _ in range(2)]
        self.host_out = [torch.empty((h, w), **pin) for _ in range(2)]
        self.dev_in = [torch.empty((1, 1, h, w), **dev) for _ in range(2)]
        self.dev_out = [torch.empty((h, w), **dev) for _ in range(2)]
        # Made on the default stream, used on the others: the allocator must not hand their
        # memory out again while those streams may still use it.
        for t in self.dev_in + self.dev_out:
            for stream in (self.upload_stream, self.compute_stream, self.download_stream):
                t.record_stream(stream)
        self.uploaded = [torch.cuda.Event() for _ in range(2)]
        self.computed = [torch.cuda.Event() for _ in range(2)]
        # blocking: the host sleeps on it instead of spinning a core the reader and outputs need.
        self.downloaded = [torch.cuda.Event(blocking=True) for _ in range(2)]
        self.shape = shape

    def push(self, key, image: np.ndarray) -> list[tuple[object, np.ndarray]]:
        if image.shape != self.shape:
            done = self.flush() if self.shape is not None else []
            self._allocate(image.shape)
        else:
            done = []
        slot = self.turn
        self.turn ^= 1
        # The slot's previous frame must be off the host output buffer before it is reused.
        if any(s == slot for s, _ in self.pending):
            done += self._collect()
        self.host_in[slot][0, 0].numpy()[...] = image
        with torch.cuda.stream(self.upload_stream):
            self.dev_in[slot].copy_(self.host_in[slot], non_blocking=True)
            self.uploaded[slot].record()
        self.compute_stream.wait_event(self.uploaded[slot])
        with torch.cuda.stream(self.compute_stream):
            self.dev_out[slot].copy_(self.runtime.forward(self.dev_in[slot])[0])
            self.computed[slot].record()
        self.download_stream.wait_event(self.computed[slot])
        with torch.cuda.stream(self.download_stream):
            self.host_out[slot].copy_(self.dev_out[slot], non_blocking=True)
            self.downloaded[slot].record()
        self.pending.append((slot, key))
        # Keep one frame in flight: return the older one once the newer is queued behind it.
        if len(self.pending) > (1 if self.overlap else 0):
            done += self._collect()
        return done

    def _collect(self) -> list[tuple[object, np.ndarray]]:
        slot, key = self.pending.pop(0)
        self.downloaded[slot].synchronize()
        return [(key, self.host_out[slot].numpy().copy())]

    def flush(self) -> list[tuple[object, np.ndarray]]:
        done = []
        while self.pending:
            done += self._collect()
        return done
