"""Speed and synthetic data: bench (tracker, train, model, pipeline, soak) and synth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from irstream.cli.common import out, user_errors, progress, FLAGS, WeightsOpt, weights_path, DEFAULT_SIRST, json_safe
from irstream.errors import UserError
from irstream.data import default_data_root

app = typer.Typer()


synth_app = typer.Typer(no_args_is_help=True, help="Synthetic IR data, deterministic by seed.")


def _shape(height: int, width: int) -> tuple[int, int]:
    if height < 16 or width < 16:
        raise UserError(f"--height/--width {height}x{width}: both must be at least 16 px")
    return height, width


@synth_app.command("images")
@user_errors
def synth_images(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write (SIRST convention: images/, masks/, splits/).")],
    count: int = 200,
    seed: int = 0,
    height: int = 256,
    width: int = 256,
    bit_depth: Annotated[int, typer.Option(help="8 or 16.")] = 8,
    background: Annotated[Optional[str], typer.Option(help="sky, sea or ground; default: drawn per image.")] = None,
) -> None:
    """Write single images with masks, split 50/50 into train and test."""
    from irstream.data.synthetic import BACKGROUNDS, write_image_set

    if bit_depth not in (8, 16):
        raise UserError(f"--bit-depth {bit_depth}: must be 8 or 16")
    if background is not None and background not in BACKGROUNDS:
        raise UserError(f"--background {background}: must be one of {', '.join(BACKGROUNDS)}")
    names = write_image_set(out_dir, count, seed, _shape(height, width), bit_depth, kind=background)
    out.print(f"wrote {len(names)} images and masks to {out_dir}")


@synth_app.command("sequence")
@user_errors
def synth_sequence_cmd(
    dest: Annotated[Path, typer.Argument(help="A folder (numbered frames + gt/gt.txt) or a .mkv file (lossless FFV1 video "
                                             "+ <name>.gt.txt); ground truth in MOTChallenge CSV.")],
    frames: int = 100,
    seed: int = 0,
    height: int = 256,
    width: int = 320,
    background: Annotated[str, typer.Option(help="sky, sea or ground.")] = "sky",
    targets: int = 4,
    bit_depth: Annotated[int, typer.Option(help="8 (PNG) or 16 (TIFF); a .mkv is 8-bit.")] = 8,
    snr_min: Annotated[float, typer.Option(help="Faintest target peak, in noise sigmas.")] = 4.0,
    snr_max: Annotated[float, typer.Option(help="Brightest target peak, in noise sigmas.")] = 15.0,
    fps: Annotated[float, typer.Option(help="Frame rate stored in a .mkv.")] = 25.0,
) -> None:
    """Write moving targets over a background, frame by frame, with their ground truth."""
    from irstream.data.synthetic import BACKGROUNDS, write_clip, write_sequence

    if background not in BACKGROUNDS:
        raise UserError(f"--background {background}: must be one of {', '.join(BACKGROUNDS)}")
    if bit_depth not in (8, 16) or (dest.suffix.lower() == ".mkv" and bit_depth != 8):
        raise UserError(f"--bit-depth {bit_depth}: must be 8 or 16, and 8 for a .mkv video")
    if frames < 1 or fps <= 0 or targets < 0 or not 0 < snr_min <= snr_max:
        raise UserError("--frames and --fps must be positive, --targets >= 0, 0 < --snr-min <= --snr-max")
    shape, snr = _shape(height, width), (snr_min, snr_max)
    if dest.suffix.lower() == ".mkv":
        try:
            n = write_clip(dest, frames, seed, shape, background, targets, fps, snr_range=snr)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    else:
        n = write_sequence(dest, frames, seed, shape, background, targets, bit_depth, snr_range=snr)
    out.print(f"wrote {frames} frames ({n} ground-truth boxes) to {dest}")


bench_app = typer.Typer(no_args_is_help=True, help="Measure the speed of each stage; tables, or JSON with --json.")


def _bench_report(title: str, rows: dict[str, dict], info: dict, as_json: bool, extra: dict | None = None,
                  columns: dict[str, str] | None = None) -> None:
    """rows: {name: {key: value}}; columns: {key: heading} to show (default: every key)."""
    if as_json:
        print(json.dumps(json_safe({"machine": info, **(extra or {}), "results": rows})))
        return
    columns = columns or {k: k.replace("_", " ") for k in next(iter(rows.values()))}
    t = Table(title=escape(title), caption=escape(", ".join(f"{k} {v}" for k, v in info.items())))
    t.add_column("")
    for heading in columns.values():
        t.add_column(heading, justify="right")
    for name, r in rows.items():
        t.add_row(escape(name), *(_cell(r.get(k)) for k in columns))
    out.print(t)


def _cell(v) -> str:
    if v is None:
        return "-"
    return f"{v:.2f}" if isinstance(v, float) else escape(str(v))


@bench_app.command("tracker")
@user_errors
def bench_tracker_cmd(
    targets: Annotated[int, typer.Option(help="Targets in the scene at once.")] = 200,
    frames: Annotated[int, typer.Option(help="Frames timed, after the warm-up.")] = 1000,
    warmup: Annotated[int, typer.Option(help="Frames run first, untimed, to fill the tracker.")] = 100,
    cores: Annotated[int, typer.Option(help="Run on this many CPU cores (the goal is stated for one).")] = 1,
    pipeline: Annotated[Optional[Path], typer.Option(help="Pipeline TOML whose \\[tracker] section is timed.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Tracker update time per frame with many targets (scripted scene, 1280x1024, 25 frames/s)."""
    from irstream.tools.bench import TrackerScene, bench_tracker, machine, pin_to_cores
    from irstream.config import load_pipeline

    if targets < 1 or frames < 1 or warmup < 0 or cores < 1:
        raise UserError("--targets, --frames and --cores must be >= 1, --warmup >= 0")
    cfg = load_pipeline(pipeline)
    info = machine()
    used = pin_to_cores(cores)
    with progress() as prog:
        task = prog.add_task("tracker", total=frames + warmup)
        r = bench_tracker(TrackerScene(targets=targets), frames, warmup, cfg.tracker, on_frame=lambda: prog.advance(task))
    info |= {"cores_used": len(used)}
    row = {k: r[k] for k in ("tracks_mean", "tracks_max", "p50_ms", "p99_ms", "fps")}
    _bench_report(f"tracker, {targets} targets, {frames} frames", {"update": row}, info, as_json, {"tracker": r})


@bench_app.command("train")
@user_errors
def bench_train_cmd(
    model: Annotated[str, typer.Option(help="Registered model name (see `irstream models`).")] = "lrrnet_light",
    batch: Annotated[int, typer.Option(help="Crops per step.")] = 8,
    crop: Annotated[int, typer.Option(help="Crop side, px (a multiple of 8).")] = 128,
    steps: Annotated[int, typer.Option(help="Steps timed per setting, after 2 warm-up steps.")] = 8,
    threads: Annotated[Optional[list[int]], typer.Option(help="torch thread counts to try (repeatable); default: 1 and all usable cores.")] = None,
    compile: Annotated[bool, typer.Option(help="Also time torch.compile (slow to warm up).")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Training speed (samples/s) of each CPU setting: fp32 eager, channels-last, bf16 autocast,
    torch.compile, thread counts.  Measured in one run, so the ratios compare like with like."""
    import torch

    from irstream.tools.bench import TRAIN_SETTINGS, _usable_cores, bench_train_step, machine
    from irstream.model.registry import MODEL_CFGS, trainable

    if model not in MODEL_CFGS:
        raise UserError(f"--model {model}: unknown; known: {', '.join(sorted(MODEL_CFGS))}")
    if not trainable(model):
        raise UserError(f"--model {model}: has no parameters to learn; pick a network")
    if batch < 1 or steps < 1 or crop < 8 or crop % 8:
        raise UserError("--batch and --steps must be >= 1, --crop a multiple of 8")
    counts = sorted(set(threads or [1, len(_usable_cores())]))
    settings = [s for s in TRAIN_SETTINGS if compile or not TRAIN_SETTINGS[s][2]]
    info, rows = machine(), {}
    info["bf16_hardware"] = _cpu_bf16()
    with progress() as prog:
        task = prog.add_task("train steps", total=len(counts) * len(settings))
        for n in counts:
            torch.set_num_threads(n)
            for name in settings:
                r = bench_train_step(model, name, batch=batch, crop_px=crop, steps=steps)
                rows[f"{name}, {n} thread{'s' * (n > 1)}"] = r
                prog.advance(task)
    ref = next(iter(rows.values()))["samples_per_s"]
    for r in rows.values():
        r["speedup"] = r["samples_per_s"] / ref
    _bench_report(f"training step, {model}, batch {batch} of {crop}x{crop}", rows, info, as_json,
                  columns={"step_p50_ms": "step p50 ms", "step_p99_ms": "step p99 ms",
                           "samples_per_s": "samples/s", "speedup": "x first"})


def _cpu_bf16() -> str:
    """Which bf16 instructions the CPU has (Linux); bf16 autocast pays off with AMX, rarely without."""
    try:
        flags = open("/proc/cpuinfo").read().split()
    except OSError:
        return "unknown"
    have = [f for f in ("amx_bf16", "avx512_bf16") if f in flags]
    return ", ".join(have) or "none"


def _bench_model_weights(weights: Optional[Path], model: Optional[str]):
    from irstream.model.registry import build_model
    from irstream.model.weights import load_weights

    if model is not None:
        try:
            return build_model(model).eval(), f"{model} (untrained: timing only)"
        except KeyError as exc:
            raise UserError(f"--model {model}: {exc.args[0]}") from None
    path = weights_path(weights)
    return load_weights(path)[0], str(path)


@bench_app.command("model")
@user_errors
def bench_model_cmd(
    height: Annotated[int, typer.Option(help="Input height, px.")] = 512,
    width: Annotated[int, typer.Option(help="Input width, px.")] = 512,
    batch: Annotated[int, typer.Option(help="Frames per forward pass (one per camera).")] = 1,
    iters: Annotated[int, typer.Option(help="Timed iterations per path, after the warm-up.")] = 50,
    warmup: Annotated[int, typer.Option(help="Untimed iterations first.")] = 5,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    weights: WeightsOpt = None,
    model: Annotated[Optional[str], typer.Option(help="Time an untrained model of this name instead "
                                                      "(see `irstream models`).")] = None,
    compile_mode: Annotated[str, typer.Option("--compile", help="Also time torch.compile in this mode "
                                                                "(e.g. max-autotune; CUDA, takes minutes).")] = "",
    check_frames: Annotated[int, typer.Option(help="Real frames on which each path's masks are checked.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Model-only speed of the reference path (eager fp32) and each optimised path, same run.

    Each path's masks are compared with the reference's on real frames (mask_iou)."""
    from irstream.tools.bench import (ModelBench, bench_model, bench_stream, cpu_paths, cuda_paths, machine, real_frames,
                                time_copies)
    from irstream.model.runtime import onnxruntime_available
    from irstream.model.segment import resolve_device

    if min(height, width) < 8 or batch < 1 or iters < 1 or warmup < 0 or check_frames < 1:
        raise UserError("--height/--width >= 8, --batch, --iters, --check-frames >= 1, --warmup >= 0")
    dev = resolve_device(device)
    net, what = _bench_model_weights(weights, model)
    bench = ModelBench((height, width), batch, iters, warmup)
    frames, origin = real_frames(bench.shape, check_frames, DEFAULT_SIRST)
    paths = cuda_paths(net, dev, compile_mode) if dev.type == "cuda" else cpu_paths(net, onnxruntime_available())
    info = machine()
    with progress() as prog:
        task = prog.add_task("paths", total=len(paths))
        rows = bench_model(net, dev, bench, frames, paths,
                           on_path=lambda label: prog.update(task, description=label, advance=0))
        prog.update(task, completed=len(paths))
    extra = {"weights": what, "height": height, "width": width, "batch": batch, "iters": iters,
             "device": str(dev), "mask_check_frames": f"{len(frames)} from {origin}", "copies": time_copies(bench, dev)}
    if dev.type == "cuda":
        # The double buffering, switched off and on: frames pushed one by one, copies included.
        repeats = max(1, iters // len(frames))
        extra["stream"] = {f"overlap {'on' if o else 'off'}": bench_stream(net, dev, frames, repeats, o) for o in (False, True)}
    title = f"model {what}, {height}x{width}, batch {batch}, {dev}; masks checked on {len(frames)} frames of {origin}"
    cols = {"p50_ms": "p50 ms", "p99_ms": "p99 ms", "fps": "frames/s", "speedup": "x ref", "mask_iou": "mask IoU",
            "agrees": "agrees", "gpu_mem_mib": "GPU MiB"}
    _bench_report(title, rows, info, as_json, extra, cols if dev.type == "cuda" else dict(list(cols.items())[:-1]))
    if not as_json and dev.type == "cuda":
        _bench_report("stream of real frames through the double buffer (pinned copies + auto runtime)", extra["stream"],
                      info, False)
        _bench_report("copies of one batch, pinned memory", extra["copies"], info, False)


@bench_app.command("pipeline")
@user_errors
def bench_pipeline_cmd(
    source: Annotated[Optional[str], typer.Argument(help="Video or image sequence; default: a synthetic clip written "
                                                         "at --height x --width.")] = None,
    height: Annotated[int, typer.Option(help="Size of the synthetic clip, px.")] = 256,
    width: Annotated[int, typer.Option(help="Size of the synthetic clip, px.")] = 256,
    frames: Annotated[int, typer.Option(help="Frames in the synthetic clip (or read from SOURCE).")] = 200,
    pipeline: Annotated[Optional[Path], typer.Option(help="Pipeline TOML; default: pipelines/default.toml.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu or cuda (with --sources: cpu unless given; cuda for the GPU table).")] = None,
    weights: Annotated[Optional[str], typer.Option(help="Weights; default: the pipeline's.")] = None,
    runtime: Annotated[list[str], typer.Option(help="Runtimes to compare, reference first.")] = ["torch", "auto"],
    coarse: Annotated[Optional[list[int]], typer.Option(help="Also compare coarse-pass factors (repeatable: 0 off, 2, 4), each with every runtime.")] = None,
    mode: Annotated[Optional[list[str]], typer.Option(help="Also compare file runs (every frame) and live runs (the clip "
                                                           "played at its own rate, newest frame wins): repeatable.")] = None,
    threads: Annotated[Optional[list[int]], typer.Option(help="Also compare CPU threads for the model (repeatable; 0 = "
                                                              "the default: every core for OpenVINO, all but one for torch).")] = None,
    sources: Annotated[Optional[list[int]], typer.Option(help="Instead: N cameras (repeatable, e.g. --sources 1 --sources 4) as N "
                                                              "processes against one batched process.")] = None,
    triton_url: Annotated[Optional[str], typer.Option(help="With --sources: also N worker processes whose model runs on "
                                                           "this Triton server (host:port; start it with `irstream serve`).")] = None,
    reuse: Annotated[Optional[list[float]], typer.Option(help="Also compare tile reuse levels (repeatable: 0 off, grey "
                                                            "levels otherwise; [model] reuse_levels).")] = None,
    reuse_cap: Annotated[Optional[list[int]], typer.Option(help="Also compare caps on the tiles run on one frame "
                                                                "(repeatable: 0 no cap; [model] reuse_max_tiles).")] = None,
    tile_px: Annotated[Optional[list[int]], typer.Option(help="Also compare tile sides, px (repeatable: 0 whole frames; "
                                                              "[model] tile_px; a frame no larger runs whole).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """End to end, from a video file to a ZeroMQ subscriber on loopback: per-stage p50/p99 and rate.
    With --sources: aggregate frames/s and latency of N sources run apart, batched, and on Triton."""
    import tempfile

    from irstream.tools.bench import bench_pipeline, machine
    from irstream.config import load_pipeline, override
    from irstream.data.synthetic import write_clip

    if frames < 1:
        raise UserError("--frames must be >= 1")
    if triton_url and not sources:
        raise UserError("--triton-url compares N cameras on Triton: give it with --sources N")
    with tempfile.TemporaryDirectory() as tmp:
        if source is None:
            source = str(Path(tmp) / "bench.mkv")
            write_clip(source, frames, 0, _shape(height, width))
        if sources:
            _bench_sources(source, sources, frames, pipeline, as_json, triton_url, device or "cpu")
            return
        for m in mode or []:
            if m not in ("file", "live"):
                raise UserError(f"--mode {m}: use file or live")
        cfg = override(load_pipeline(pipeline), FLAGS, **{"source.uri": source, "source.mode": "file", "model.device": device,
                                                   "model.weights": weights, "run.max_frames": frames})
        runs = (len(runtime) * len(coarse or [None]) * len(mode or [None]) * len(threads or [None]) * len(reuse or [None])
                * len(reuse_cap or [None]) * len(tile_px or [None]))
        with progress() as prog:
            task = prog.add_task("frames", total=frames * runs)
            rows = bench_pipeline(cfg, runtime, on_frame=lambda _res: prog.advance(task),
                                  on_run=lambda rt: prog.update(task, description=rt), coarse=coarse, modes=mode,
                                  threads=threads, reuse=reuse, reuse_cap=reuse_cap, tile_px=tile_px)
    info = machine()
    if as_json:
        _bench_report("", rows, info, True, {"source": source})
        return
    runs = {rt: {k: v for k, v in r.items() if not k.endswith("_ms")} for rt, r in rows.items()}
    _bench_report(f"pipeline {source}, {frames} frames, to a ZeroMQ subscriber on loopback", runs, info, False)
    stages = [k[:-len(" p50_ms")] for k in next(iter(rows.values())) if k.endswith(" p50_ms")]
    per_stage = {st: {f"{rt} {q}": r[f"{st} {q}_ms"] for rt, r in rows.items() for q in ("p50", "p99")} for st in stages}
    _bench_report("per-stage latency, ms (queued: decoded ahead, waiting; read->publish includes it)", per_stage, info, False)


def _bench_sources(clip: str, counts: list[int], frames: int, pipeline, as_json: bool, triton_url: str | None,
                   device: str) -> None:
    from irstream.tools.bench import bench_sources, machine

    if any(n < 1 for n in counts):
        raise UserError("--sources: each count must be >= 1")
    with progress() as prog:
        ways = 3 if triton_url else 2
        task = prog.add_task("runs", total=ways * len(set(counts)) - (1 in counts))
        rows = bench_sources(clip, sorted(set(counts)), frames, str(pipeline) if pipeline else None,
                             on_run=lambda what: prog.update(task, advance=1, description=what), triton_url=triton_url,
                             device=device)
    against = "one batched process" + (f" and N workers on Triton at {triton_url}" if triton_url else "")
    _bench_report(f"{Path(clip).name}, {frames} frames per source: N separate processes against {against}",
                  rows, machine(), as_json)


@bench_app.command("web")
@user_errors
def bench_web_cmd(
    source: Annotated[str, typer.Argument(help="A video file or image folder.")] = "sample_videos/sky_drones.mkv",
    frames: Annotated[int, typer.Option(help="Frames per run.")] = 100,
    repeats: Annotated[int, typer.Option(min=1, help="Runs of each setting, alternating; the median counts.")] = 3,
    pipeline: Annotated[Optional[Path], typer.Option(help="Pipeline TOML; default: pipelines/default.toml.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu or cuda.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """The pipeline's rate with the web view and no browser, against 2 browsers reading and 1 stalled."""
    from irstream.config import load_pipeline, override
    from irstream.tools.bench import bench_web, machine

    cfg = override(load_pipeline(pipeline), FLAGS, **{"source.uri": source, "model.device": device})
    with progress() as prog:
        task = prog.add_task("frames", total=2 * repeats * frames)
        rows = bench_web(cfg, frames, repeats, on_frame=lambda _r: prog.advance(task),
                         on_run=lambda label: prog.update(task, description=label))
    _bench_report(f"web view, {source}, {frames} frames, file run, median of {repeats}", rows, machine(), as_json)


@bench_app.command("soak")
@user_errors
def bench_soak_cmd(
    clips: Annotated[Optional[list[Path]], typer.Argument(help="Real clips to loop; default: the antiuav-clips folder of $IRSTREAM_DATA (../shared/data).")] = None,
    frames: Annotated[int, typer.Option(help="File phase: frames in the damaged file.")] = 10_000,
    live_frames: Annotated[int, typer.Option(help="Live phase: frames processed from the flaky camera.")] = 2_000,
    scale: Annotated[float, typer.Option(help="Resize the clips by this factor.")] = 0.5,
    outage_every: Annotated[int, typer.Option(help="Live: frames between camera losses.")] = 500,
    outage_s: Annotated[float, typer.Option(help="Live: seconds each loss lasts.")] = 2.0,
    pipeline: Annotated[Optional[Path], typer.Option(help="Pipeline TOML; default: pipelines/default.toml.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu or cuda.")] = None,
    weights: WeightsOpt = None,
    rtsp: Annotated[bool, typer.Option(help="Instead: the first clip served by a real RTSP server (GStreamer) behind "
                                            "a faulty link, with a fault every --fault-every s.")] = False,
    duration: Annotated[float, typer.Option(help="--rtsp: seconds to run.")] = 600.0,
    rtsp_frames: Annotated[int, typer.Option(help="--rtsp: stop after this many processed frames instead (0: by --duration).")] = 0,
    fault_every: Annotated[float, typer.Option(help="--rtsp: seconds between faults (loss, delay, reset, stall, "
                                                    "server restart, in turn).")] = 60.0,
    out_dir: Annotated[Path, typer.Option("--out", help="--rtsp: where rss.csv, rss.png and report.json go.")] = Path("runs/soak-rtsp"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Long run with injected faults: a damaged file, a subscriber that stalls, a camera that freezes and vanishes;
    or (--rtsp) a real RTSP stream through packet loss, delay, resets, stalls and server restarts.

    Exits 1 when a file-mode frame was lost, a fault was not recovered from, the run crashed, or memory kept
    growing after the warm-up."""
    import tempfile

    from irstream.tools.bench import machine
    from irstream.config import load_pipeline, override
    from irstream.tools.soak import RtspSoakConfig, SoakConfig, SoakReport, file_phase, live_phase, rtsp_phase

    clips = clips or sorted((default_data_root() / "antiuav-clips").glob("*.mp4"))
    missing = [c for c in clips if not c.is_file()]
    if not clips or missing:
        raise UserError(f"{missing[0] if missing else 'antiuav-clips'}: no clip to soak with; give video files")
    try:
        cfg = SoakConfig(frames=frames, live_frames=live_frames, scale=scale, outage_every=outage_every, outage_s=outage_s)
        rtsp_cfg = RtspSoakConfig(duration_s=duration, frames=rtsp_frames, fault_every_s=fault_every)
    except ValueError as exc:
        raise UserError(f"soak options: {exc}") from None
    pipe_cfg = override(load_pipeline(pipeline), FLAGS, **{"model.device": device, "model.weights": weights})
    report = SoakReport()
    with progress() as prog, tempfile.TemporaryDirectory() as tmp:
        if rtsp:
            task = prog.add_task("rtsp", total=rtsp_frames or None)
            report.phases["rtsp"] = rtsp_phase(pipe_cfg, clips[0], rtsp_cfg, out_dir, on_frame=lambda _r: prog.advance(task))
        else:
            task = prog.add_task("file phase", total=frames)
            report.phases["file"] = file_phase(pipe_cfg, clips, cfg, Path(tmp), on_frame=lambda _r: prog.advance(task))
            task = prog.add_task("live phase", total=live_frames)
            report.phases["live"] = live_phase(pipe_cfg, clips, cfg, on_frame=lambda _r: prog.advance(task))
    info = machine()
    result = json_safe({"machine": info, "passed": report.passed, "phases": report.phases})
    if rtsp:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "report.json").write_text(json.dumps(result, indent=1) + "\n")
    if as_json:
        print(json.dumps(result))
    else:
        for name, r in report.phases.items():
            rows = {k: {"value": v} for k, v in r.items() if k != "fault_log"}
            _bench_report(f"soak, {name} phase: {'passed' if r['passed'] else 'FAILED'}", rows, info, False)
            if r.get("fault_log"):
                _bench_report("faults", {f"{f['at_s']} s": {"fault": f["fault"], "messages back after (s)": f["back_after_s"]}
                                         for f in r["fault_log"]}, info, False)
    if not report.passed:
        raise typer.Exit(1)
