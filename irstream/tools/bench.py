"""`irstream bench`: how fast each stage runs, measured, not guessed.

Every benchmark warms up first, then times many iterations one by one and reports the median,
the 99th percentile and the rate.  Numbers depend on the machine: the reports name it.
"""

from __future__ import annotations


import os
import platform
import time
from dataclasses import dataclass

import numpy as np

from irstream.errors import UserError
from irstream.tools.loopback import Subscriber, free_port
from irstream.types import Detections


def latency_stats(seconds: list[float] | np.ndarray) -> dict:
    """p50 / p99 / mean in ms and the rate the mean allows, of per-iteration times in seconds."""
    ms = np.asarray(seconds, dtype=float) * 1e3
    return {"p50_ms": float(np.median(ms)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "fps": float(1e3 / ms.mean())}


def machine() -> dict:
    """What the numbers were measured on."""
    import torch

    info = {"cpu": _cpu_name(), "cores_usable": len(_usable_cores()),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _usable_cores() -> set[int]:
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))


def pin_to_cores(n: int) -> list[int]:
    """Run this process on its first n usable cores only (Linux); returns the cores it runs on."""
    cores = sorted(_usable_cores())[:n]
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)
    import torch

    torch.set_num_threads(len(cores))
    return cores


# ---------------------------------------------------------------------------------------------
# Tracker


@dataclass(frozen=True)
class TrackerScene:
    """A scripted scene for the tracker: targets flying straight, seen with probability pd.

    Targets leave at one edge and come back at the other, so tracks are born and die all the
    time as they do in a real scene, and the tracker carries its full load (tentative, confirmed
    and coasting tracks together), not just a steady set of confirmed ones.
    """

    targets: int = 200
    shape: tuple[int, int] = (1024, 1280)  # (H, W) px
    fps: float = 25.0
    pd: float = 0.95
    speed_std_px_frame: float = 2.0
    centroid_noise_px: float = 0.5
    seed: int = 0

    def frames(self, n: int) -> list[Detections]:
        rng = np.random.default_rng(self.seed)
        wh = np.array(self.shape[::-1], dtype=float)
        pos = rng.uniform(0, wh, (self.targets, 2))
        vel = rng.normal(0, self.speed_std_px_frame, (self.targets, 2))
        out = []
        for _ in range(n):
            pos = (pos + vel) % wh
            seen = rng.random(self.targets) < self.pd
            xy = pos[seen] + rng.normal(0, self.centroid_noise_px, (seen.sum(), 2))
            k = len(xy)
            box = np.concatenate([xy - 1, xy + 2], axis=1).astype(np.int64)
            out.append(Detections(xy, box, np.full(k, 4), rng.uniform(0.6, 1.0, k), np.full(k, 0.7), np.full(k, 0.1)))
        return out


def bench_tracker(scene: TrackerScene, frames: int, warmup: int, tracker_cfg=None, on_frame=None) -> dict:
    """Time Tracker.update per frame on a scripted scene, after `warmup` frames to fill it."""
    from irstream.track.tracker import Tracker, TrackerConfig

    dets = scene.frames(warmup + frames)
    tracker = Tracker(tracker_cfg or TrackerConfig())
    times, live = [], []
    for i, d in enumerate(dets):
        t0 = time.perf_counter()
        tracks = tracker.update(d, i / scene.fps)
        dt = time.perf_counter() - t0
        if i >= warmup:
            times.append(dt)
            live.append(len(tracks))
        if on_frame:
            on_frame()
    return {"scene": {"targets": scene.targets, "height": scene.shape[0], "width": scene.shape[1],
                      "fps": scene.fps, "pd": scene.pd}, "frames": frames, "warmup": warmup,
            "tracks_mean": float(np.mean(live)), "tracks_max": int(np.max(live)), **latency_stats(times)}


# ---------------------------------------------------------------------------------------------
# Model


def real_frames(shape: tuple[int, int], count: int, sirst_root=None) -> tuple[list[np.ndarray], str]:
    """Up to `count` real [0, 1] frames resized to shape (H, W), for checking that the fast paths
    find what the reference finds: SIRST v1 test images when the data is there, else frames of
    the shipped sample videos.  Returns (frames, where they came from)."""
    import cv2

    from irstream.data.sirst import load_sample, read_split

    if sirst_root is not None and (sirst_root / "images").is_dir():
        names = read_split(sirst_root, "test")[:count]
        images, origin = [load_sample(sirst_root, n).image for n in names], f"{sirst_root} (test split)"
    else:
        images, origin = _sample_video_frames(count), "sample_videos/*.mkv"
    if not images:
        raise UserError(f"no real frames to check the fast paths on: neither {sirst_root} nor the checkout's "
                        "sample_videos/*.mkv is there; run from a checkout or set IRSTREAM_DATA")
    h, w = shape
    return [cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA) for im in images], origin


def _sample_video_frames(count: int) -> list[np.ndarray]:
    from pathlib import Path

    from irstream.detect.preprocess import to_unit
    from irstream.io.sources import open_source

    images = []
    # The checkout's sample videos (irstream/tools/bench.py -> the repository root).
    for clip in sorted((Path(__file__).resolve().parents[2] / "sample_videos").glob("*.mkv")):
        with open_source(str(clip)) as src:
            for frame in src:
                if len(images) >= count:
                    return images
                images.append(to_unit(frame.image))
    return images


@dataclass(frozen=True)
class ModelBench:
    """What `bench model` times: input size, batch, iterations."""

    shape: tuple[int, int] = (512, 512)
    batch: int = 1
    iters: int = 50
    warmup: int = 5


def time_runtime(rt, bench: ModelBench, device) -> dict:
    """Latency per batch (synchronised each iteration), and throughput with the device kept
    busy (one synchronisation at the end), of one runtime."""
    import torch

    cuda = device.type == "cuda"
    if cuda:
        x = torch.rand(bench.batch, 1, *bench.shape, device=device)
        step = lambda: rt.forward(x)  # noqa: E731
        sync = lambda: torch.cuda.synchronize(device)  # noqa: E731
        torch.cuda.reset_peak_memory_stats(device)
    else:
        x = np.random.default_rng(0).random((bench.batch, 1, *bench.shape), dtype=np.float32)
        step, sync = (lambda: rt(x)), (lambda: None)
    for _ in range(bench.warmup):
        step()
    sync()
    times = []
    for _ in range(bench.iters):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    r = latency_stats(times)
    # A CPU forward is synchronous; the median is steadier than the mean on a shared machine.
    r["fps"] = bench.batch * 1e3 / r["p50_ms"]
    if cuda:
        # Throughput with the GPU kept busy: the host queues the next forward while the last runs.
        t0 = time.perf_counter()
        for _ in range(bench.iters):
            step()
        sync()
        r["fps"] = bench.iters * bench.batch / (time.perf_counter() - t0)
        r["gpu_mem_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return r


def time_copies(bench: ModelBench, device) -> dict:
    """Host-to-device and device-to-host copy of one batch through pinned memory, ms p50/p99."""
    import torch

    if device.type != "cuda":
        return {}
    host = torch.empty((bench.batch, 1, *bench.shape), pin_memory=True)
    dev = torch.empty_like(host, device=device)
    out = {}
    for name, (dst, src) in {"copy_to_device": (dev, host), "copy_back": (host, dev)}.items():
        times = []
        for i in range(bench.warmup + bench.iters):
            t0 = time.perf_counter()
            dst.copy_(src, non_blocking=True)
            torch.cuda.synchronize(device)
            if i >= bench.warmup:
                times.append(time.perf_counter() - t0)
        s = latency_stats(times)
        out[name] = {"p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"]}
    return out


def probabilities(rt, frames: list[np.ndarray], device) -> list[np.ndarray]:
    import torch

    out = []
    for f in frames:
        if device.type == "cuda":
            p = rt.forward(torch.from_numpy(f[None, None]).to(device))[0].cpu().numpy()
        else:
            p = rt(f[None, None])[0]
        out.append(p)
    return out


def cpu_paths(model, onnx: bool) -> list[tuple[str, object]]:
    """(label, runtime factory) on CPU, the reference first: it must run before
    retain_freed_memory() changes malloc for the whole process."""
    import torch

    from irstream.model.openvino import OpenVinoRuntime, cpu_precisions, openvino_available
    from irstream.model.runtime import OnnxRuntime, RuntimeSpec, TorchRuntime, export_onnx
    from irstream.model.segment import retain_freed_memory

    cpu = torch.device("cpu")

    def kept_memory(spec):
        retain_freed_memory()
        return TorchRuntime(model, cpu, spec)

    paths = [("eager-fp32 (reference)", lambda: TorchRuntime(model, cpu)),
             ("eager-fp32, malloc keeps memory", lambda: kept_memory(RuntimeSpec())),
             ("eager-fp32-cl, malloc keeps memory", lambda: kept_memory(RuntimeSpec(channels_last=True)))]
    if onnx:
        paths.append(("onnxruntime-fp32, malloc keeps memory", lambda: OnnxRuntime(export_onnx(model))))
    if openvino_available():
        paths += [(RuntimeSpec(backend="openvino", precision=p).label, lambda p=p: OpenVinoRuntime(model, p))
                  for p in reversed(cpu_precisions())]
    return paths


def cuda_paths(model, device, compile_mode: str) -> list[tuple[str, object]]:
    from irstream.model.runtime import RuntimeSpec, TorchRuntime

    specs = [RuntimeSpec(), RuntimeSpec(cuda_graphs=True)] + [
        RuntimeSpec(precision=p, channels_last=True, cuda_graphs=g) for g in (False, True) for p in ("fp16", "bf16")]
    if compile_mode:
        specs.append(RuntimeSpec(precision="fp16", channels_last=True, compile_mode=compile_mode))
    labels = [s.label + (" (reference)" if i == 0 else "") for i, s in enumerate(specs)]
    return [(lab, (lambda s=s: TorchRuntime(model, device, s))) for lab, s in zip(labels, specs)]


def bench_model(model, device, bench: ModelBench, frames: list[np.ndarray], paths, on_path=None) -> dict:
    """Time each path against the first (the reference) and check its masks on real frames."""
    from irstream.model.runtime import MASK_IOU_MIN, mask_iou

    rows, reference = {}, None
    for label, make in paths:
        if on_path:
            on_path(label)
        rt = make()
        r = time_runtime(rt, bench, device)
        probs = probabilities(rt, frames, device)
        reference = reference if reference is not None else probs
        r["mask_iou"] = mask_iou(probs, reference)
        r["agrees"] = r["mask_iou"] >= MASK_IOU_MIN
        rows[label] = r
        del rt
    ref_fps = next(iter(rows.values()))["fps"]
    for r in rows.values():
        r["speedup"] = r["fps"] / ref_fps
    return rows


def bench_stream(model, device, frames: list[np.ndarray], repeats: int, overlap: bool) -> dict:
    """Frames through the StreamSegmenter (copies, forward, copies back) one after another, as a
    run feeds it: frames/s, with the CUDA double buffering's overlap on or off."""
    from irstream.model.segment import StreamSegmenter

    seg = StreamSegmenter(model, device, overlap=overlap)
    seg.warm_up(frames[0].shape)
    t0 = time.perf_counter()
    done = 0
    for _ in range(repeats):
        for i, f in enumerate(frames):
            done += len(seg.push(i, f))
    done += len(seg.flush())
    return {"frames": done, "fps": done / (time.perf_counter() - t0), "runtime": seg.runtime_label}


# ---------------------------------------------------------------------------------------------
# End to end: source -> ZeroMQ


#: Seconds the publisher waits for the benchmark's own subscriber before the first frame.
SUBSCRIBER_WAIT_S = 5.0


def bench_pipeline(cfg, runtimes: list[str], on_frame=None, on_run=None, coarse: list[int] | None = None,
                   modes: list[str] | None = None, threads: list[int] | None = None,
                   reuse: list[float] | None = None, reuse_cap: list[int] | None = None,
                   tile_px: list[int] | None = None) -> dict:
    """Run the pipeline once per runtime (and per coarse-pass factor, mode, thread count, tile
    reuse level, cap on the tiles run per frame and tile side, when given), publishing to a
    subscriber on loopback; per-stage latency, rate, and frames read / processed / received by
    the subscriber.  A live run plays the clip at its own rate
    (newest frame wins), so its rate is what a live CPU user gets of that camera."""
    import itertools

    from irstream.config import override
    from irstream.pipeline.run import Pipeline

    rows = {}
    for runtime, k, mode, n, lv, cap, tile in itertools.product(runtimes, coarse or [None], modes or [None],
                                                                threads or [None], reuse or [None], reuse_cap or [None],
                                                                tile_px or [None]):
        label = ", ".join([runtime] + ([f"coarse {k or 'off'}"] if k is not None else []) + ([mode] if mode else [])
                          + ([f"{n or 'default'} threads"] if n is not None else [])
                          + ([f"reuse {lv:g} levels" if lv else "reuse off"] if lv is not None else [])
                          + ([f"at most {cap} tiles a frame" if cap else "no cap on tiles"] if cap is not None else [])
                          + ([f"tiles of {tile} px" if tile else "whole frames"] if tile is not None else []))
        if on_run:
            on_run(label)
        port = free_port()
        endpoint = f"tcp://127.0.0.1:{port}"
        c = override(cfg, **{"model.runtime": runtime, "model.coarse": k, "source.mode": mode, "run.threads": n,
                             "model.reuse_levels": lv, "model.reuse_max_tiles": cap, "model.tile_px": tile,
                             "output.publish": endpoint, "output.wait_subscriber_s": SUBSCRIBER_WAIT_S})
        with Subscriber(endpoint, c.output.topic) as sub:
            s = Pipeline(c, on_frame=on_frame).run()
        d = s.to_dict()
        row = {"device": d["device"], "threads": d["model_threads"], "mode": "live" if d["live"] else "file",
               "fps": d["fps"], "frames_read": d["frames_read"], "frames_processed": d["frames_processed"],
               "messages_received": sub.received, "tiles_kept": d["tiles_kept_share"]}
        for name, t in d["timing"].items():
            row[f"{name} p50_ms"], row[f"{name} p99_ms"] = t["p50_ms"], t["p99_ms"]
        rows[label] = row
    return rows


#: Threads of a camera worker whose model runs on Triton: it only reads, tiles, finds targets, tracks.
TRITON_WORKER_THREADS = 1


def bench_sources(clip: str, counts: list[int], frames: int, pipeline: str | None = None, on_run=None,
                  triton_url: str | None = None, device: str = "cpu") -> dict:
    """N cameras two ways, for each N: N separate `irstream run` processes (cores // N threads
    each) against one `irstream run` process with the N sources batched (all cores); with
    triton_url a third: N worker processes whose model runs on that Triton server (started
    apart, `irstream serve`; on the same machine it shares the cores with the workers).  Each
    source is the same clip, run as a file (no frame dropped); aggregate frames/s is all frames
    over the longest run's processing time (each run's own clock, from its first frame: process
    start-up, model loading and warm-up are left out, as a long-running site would).  device:
    where the runs' models run (cpu, cuda, auto); the Triton workers' follows the server.  Memory is
    the sum of the processes' peak resident sets (the Triton server's own is not in it)."""
    import json
    import subprocess
    import sys

    from irstream.host import usable_cores

    cores = usable_cores()
    base = [sys.executable, "-c", "from irstream.cli import main; main()", "run", "--json", "--device", device,
            "--max-frames", str(frames)] + (["--pipeline", pipeline] if pipeline else [])
    rows = {}
    for n in counts:
        ways = [("separate", [[*base, "--threads", str(max(1, cores // n)), clip] for _ in range(n)]),
                ("batched", [[*base, "--threads", str(cores), *[clip] * n]])]
        if triton_url:
            ways.append(("triton", [[*base, "--runtime", "triton", "--triton-url", triton_url,
                                     "--threads", str(TRITON_WORKER_THREADS), clip] for _ in range(n)]))
        for way, cmds in ways:
            if way == "batched" and n == 1:
                continue  # one source in one process: the same run as "separate"
            if on_run:
                on_run(f"{n} source(s), {way}")
            procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds]
            ends = [p.communicate() for p in procs]
            outs = [out for out, _ in ends]
            failed = [err.strip().splitlines()[-1:] for p, (_, err) in zip(procs, ends) if p.returncode]
            if failed:
                raise RuntimeError(f"bench sources: a run failed ({way}, {n} sources): {' '.join(failed[0]) or 'no message'}")
            per_process = [[json.loads(line) for line in o.splitlines() if line.startswith("{")] for o in outs]
            runs = [r for rs in per_process for r in rs]
            done = sum(r["frames_processed"] for r in runs)
            # Each process reports its own peak once per source it ran: count a process once.
            peaks = [max((r.get("process_peak_rss_mib") or 0.0) for r in rs) for rs in per_process if rs]
            wall = max(r["frames_processed"] / r["fps"] for r in runs)
            rows[f"{n} x {way}"] = {
                "sources": n, "processes": len(procs), "frames": done, "aggregate_fps": done / wall,
                "latency p50_ms (mean of sources)": float(np.mean([r["latency"]["p50_ms"] for r in runs])),
                "latency p99_ms (worst source)": float(max(r["latency"]["p99_ms"] for r in runs)),
                "memory_mib (all processes)": float(sum(peaks)) if all(peaks) else None}
    for n in counts:
        for way in ("batched", "triton"):
            if f"{n} x {way}" in rows:
                rows[f"{n} x {way}"]["x separate"] = rows[f"{n} x {way}"]["aggregate_fps"] / rows[f"{n} x separate"]["aggregate_fps"]
    return rows


# ---------------------------------------------------------------------------------------------
# Training step


#: The CPU training settings `bench train` compares; each is (channels_last, autocast dtype, compile).
TRAIN_SETTINGS: dict[str, tuple[bool, str, bool]] = {
    "fp32 eager": (False, "", False),
    "fp32 channels-last": (True, "", False),
    "bf16 autocast": (False, "bf16", False),
    "bf16 autocast + channels-last": (True, "bf16", False),
    "fp32 torch.compile": (False, "", True),
}


def bench_train_step(model_name: str, setting: str, batch: int = 8, crop_px: int = 128, steps: int = 8,
                     warmup: int = 2, seed: int = 0) -> dict:
    """Time whole optimiser steps (forward, SoftIoU + MSE loss, backward, Adam) of one setting.

    The batch is random noise with a few bright blobs as targets: the cost of a step does not
    depend on what the pixels show.  Returns per-step latency and samples/s.
    """
    import torch

    from irstream.model.registry import build_model
    from irstream.train.loop import StepRunner

    torch.manual_seed(seed)
    channels_last, amp, compiled = TRAIN_SETTINGS[setting]
    model = build_model(model_name).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    runner = StepRunner(model, opt, rec_weight=0.1, channels_last=channels_last, amp=amp, compile=compiled)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 1, crop_px, crop_px, generator=gen) * 0.3
    y = torch.zeros_like(x)
    y[:, :, crop_px // 2 - 2:crop_px // 2 + 2, crop_px // 2 - 2:crop_px // 2 + 2] = 1.0
    x = x + 0.5 * y
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        runner.step(x, y)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    stats = latency_stats(times)
    return {"setting": setting, "batch": batch, "crop_px": crop_px, "steps": steps,
            "step_p50_ms": stats["p50_ms"], "step_p99_ms": stats["p99_ms"],
            "samples_per_s": batch * 1e3 / stats["mean_ms"]}


#: Browsers of `bench web`: this many that read the picture and the tracks as they come ...
WEB_READERS = 2
#: ... and one more that asks for the picture and then stops reading (a stalled tab).
WEB_STALLED = 1


def bench_web(cfg, frames: int, repeats: int = 1, on_frame=None, on_run=None) -> dict:
    """The pipeline's rate on a file run with its web view and no browser, and with
    WEB_READERS reading clients (curl, each in its own process as a browser is: the picture
    and the events) and WEB_STALLED that stopped reading; the two alternate `repeats` times in
    one process (so that warm-up and other load fall on both) and each reports its median."""
    import shutil

    if repeats < 1:
        raise ValueError(f"repeats={repeats}: must be >= 1")
    curl = shutil.which("curl")
    if curl is None:
        raise RuntimeError("bench web: needs curl to play the browsers")
    labels = {"no browser": False, f"{WEB_READERS} reading + {WEB_STALLED} stalled": True}
    runs: dict[str, list[dict]] = {label: [] for label in labels}
    for _ in range(repeats):
        for label, browsers in labels.items():
            if on_run:
                on_run(label)
            runs[label].append(_web_run(cfg, frames, browsers, curl, on_frame))
    rows = {}
    for label, done in runs.items():
        fps = [r["fps"] for r in done]
        rows[label] = {"fps": float(np.median(fps)), "fps min-max": f"{min(fps):.2f}-{max(fps):.2f}",
                       "frames per run": min(r["frames"] for r in done),
                       "frames to browsers, all runs": sum(r["frames to browsers"] for r in done),
                       "dropped for browsers, all runs": sum(r["dropped for browsers"] for r in done)}
    base_fps = rows["no browser"]["fps"]
    for r in rows.values():
        r["x no browser"] = r["fps"] / base_fps if base_fps else float("nan")
    return rows


def _web_run(cfg, frames: int, browsers: bool, curl: str, on_frame) -> dict:
    import socket
    import subprocess

    from irstream.config import override
    from irstream.pipeline.run import Pipeline
    from irstream.tools.loopback import free_port

    c = override(cfg, **{"output.web": f"127.0.0.1:{free_port()}", "run.max_frames": frames, "source.mode": "file"})
    pipe = Pipeline(c, on_frame=on_frame)
    clients, stalled = [], []
    if browsers:
        web = pipe.web
        web.open()  # served from before the run starts, so the clients are there from frame 0
        base = f"http://127.0.0.1:{web.port}"
        clients = [subprocess.Popen([curl, "-s", "-N", "-o", "/dev/null", f"{base}{path}"])
                   for _ in range(WEB_READERS) for path in ("/stream.mjpg", "/events")]
        stalled = [socket.create_connection(("127.0.0.1", web.port)) for _ in range(WEB_STALLED)]
        for sock in stalled:
            sock.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: bench\r\n\r\n")
    s = pipe.run()
    for p in clients:
        p.terminate()
        p.wait()
    for sock in stalled:
        sock.close()
    served = pipe.web.clients
    return {"fps": s.fps, "frames": s.frames_processed, "frames to browsers": served["served_frames"],
            "dropped for browsers": served["dropped_frames"]}
