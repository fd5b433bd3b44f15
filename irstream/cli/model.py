"""Models: list, train, detect in still images, export to ONNX."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from irstream.cli.common import out, user_errors, progress, THREADS_HELP, WeightsOpt, weights_path, DEFAULT_SIRST, metrics_table
from irstream.errors import UserError

app = typer.Typer()


@app.command()
@user_errors
def models() -> None:
    """List the registered models with their size and cost (GFLOP per 512x512 frame)."""
    from irstream.model.registry import MODEL_CFGS, build_model, count_flops, count_parameters

    t = Table(title="models (GFLOP: one forward pass on a 512x512 frame)")
    for col in ("name", "channels", "blocks", "groups", "params", "GFLOP", "pad to"):
        t.add_column(col, no_wrap=True)
    for name, cfg in MODEL_CFGS.items():
        model = build_model(name)
        channels = "/".join(map(str, cfg.channels)) if hasattr(cfg, "channels") else "-"
        t.add_row(name, channels, str(getattr(cfg, "blocks_per_stage", "-")), str(getattr(cfg, "groups", "-")),
                  f"{count_parameters(model):,}", f"{count_flops(model) / 1e9:.1f}", str(cfg.size_multiple))
    out.print(t)


@app.command()
@user_errors
def train(
    out_dir: Annotated[Path, typer.Option("--out", help="Run folder: checkpoints, metrics.csv, best.safetensors.")] = Path("runs/train"),
    model: Annotated[str, typer.Option(help="Registered model name (see `irstream models`).")] = "lrrnet",
    data: Annotated[Path, typer.Option(help="SIRST-style dataset root.")] = DEFAULT_SIRST,
    train_split: str = "train",
    val_split: str = "val",
    test_split: Annotated[str, typer.Option(help="Evaluated once with the best weights at the end; '' to skip.")] = "test",
    extra_data: Annotated[Optional[list[Path]], typer.Option(help="More SIRST-style roots (their 'train' split), e.g. NUDT-SIRST.")] = None,
    epochs: int = 400,
    batch: int = 8,
    lr: float = 1e-4,
    rec_weight: Annotated[float, typer.Option(help="Weight of the reconstruction MSE.")] = 0.1,
    crop: Annotated[int, typer.Option(help="Square crop side in px; 0 = whole images resized to --resize.")] = 0,
    crop_sizes: Annotated[Optional[list[int]], typer.Option(help="Mixed crop sides, px, one drawn per batch (repeatable; --mix runs); unset = --crop.")] = None,
    resize: int = 512,
    target_crop_share: float = 0.7,
    flips: bool = True,
    synthetic_share: Annotated[float, typer.Option(help="Share of each batch from the synthetic generator.")] = 0.0,
    half_scale_share: Annotated[float, typer.Option(help="Share of crops shrunk by 2 (1-3 px targets).")] = 0.0,
    val_every: Annotated[int, typer.Option(help="Validate every N epochs.")] = 1,
    max_minutes: Annotated[float, typer.Option(help="Wall-time budget; the lr decays over it. 0 = by epochs.")] = 0.0,
    max_cpu_minutes: Annotated[float, typer.Option(help="Budget in CPU minutes of training, validation not counted (equal-cost model comparisons); the lr decays over it.")] = 0.0,
    seed: int = 0,
    threads: Annotated[int, typer.Option(help="CPU threads for torch; 0 = torch's default.")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue from the run folder's last checkpoint.")] = False,
    init: Annotated[Optional[Path], typer.Option(help="Fine-tune: start from these irstream weights (same model).")] = None,
    mix: Annotated[Optional[list[str]], typer.Option(help="Real-data source and weight, repeatable: sirst-v1:0.3, nudt-sirst, backgrounds, daub, antiuav, drone-ir, cvpr2025, close-drones, reticle, paste (see irstream/data/mix.py).")] = None,
    data_root: Annotated[Path, typer.Option(help="Folder holding the --mix sources.")] = DEFAULT_SIRST.parent,
    hard_share: Annotated[float, typer.Option(help="Share of crops centred on the model's own mined false alarms (--mix runs).")] = 0.0,
    mine_every: Annotated[int, typer.Option(help="Mine false alarms every N steps; 0 = never (nor with --hard-share 0).")] = 0,
    mine_images: Annotated[int, typer.Option(help="Training images run per mining pass.")] = 300,
    steps_per_epoch: Annotated[int, typer.Option(help="Steps between validations; 0 = one pass over the data.")] = 0,
    intensity_jitter: Annotated[float, typer.Option(help="Random gain 1 +- J and offset +- J/2 per crop.")] = 0.0,
    channels_last: Annotated[bool, typer.Option(help="Channels-last memory (faster on most CPUs; see bench train).")] = False,
    amp: Annotated[str, typer.Option(help="'' (fp32) or bf16 autocast.")] = "",
    tile_px: Annotated[int, typer.Option(help="Validate and mine in tiles of this side, px, as the weights will run; 0 = whole images.")] = 0,
    tile_overlap_px: Annotated[int, typer.Option(help="Overlap of those tiles, px.")] = 64,
    target_smooth: Annotated[Optional[float], typer.Option(help="SoftIoU smoothing on images with a target (0.1 keeps 1-px targets worth learning); unset = 1.")] = None,
    negative_weight: Annotated[float, typer.Option(help="Weight of a cross-entropy term on target-free pixels (pushes down confident false alarms); 0 = off.")] = 0.0,
    ema_decay: Annotated[float, typer.Option(help="Validate and keep an exponential moving average of the weights with this per-step decay (0.999 ~ the last 1,000 steps); 0 = off.")] = 0.0,
    unscored: Annotated[Optional[list[str]], typer.Option(help="A validation set (clips, daub, drones) measured but left out of the selection score, so no choice of the run uses it (repeatable).")] = None,
) -> None:
    """Train LRRNet (the paper's recipe by default), keep the best epoch on the validation split."""
    from irstream.model.registry import MODEL_CFGS
    from irstream.train.loop import TrainConfig, train as run_train

    if model not in MODEL_CFGS:
        raise UserError(f"--model {model}: unknown; known: {', '.join(sorted(MODEL_CFGS))}")
    try:
        cfg = TrainConfig(model=model, data=str(data), train_split=train_split, val_split=val_split,
                          extra_data=[str(p) for p in extra_data or []], epochs=epochs, batch=batch, lr=lr,
                          rec_weight=rec_weight, crop_px=crop, crop_sizes=tuple(crop_sizes or ()), resize_px=resize, target_crop_share=target_crop_share,
                          flips=flips, synthetic_share=synthetic_share, half_scale_share=half_scale_share, val_every=val_every, max_minutes=max_minutes,
                          max_cpu_minutes=max_cpu_minutes,
                          seed=seed, threads=threads, init_weights=str(init or ""), mix=list(mix or []),
                          data_root=str(data_root), hard_share=hard_share, mine_every=mine_every,
                          mine_images=mine_images, steps_per_epoch=steps_per_epoch,
                          intensity_jitter=intensity_jitter, channels_last=channels_last, amp=amp,
                          tile_px=tile_px, tile_overlap_px=tile_overlap_px, target_smooth=target_smooth,
                          negative_weight=negative_weight, ema_decay=ema_decay, unscored=list(unscored or []))
    except ValueError as exc:
        raise UserError(f"train options: {exc}") from None
    with progress() as prog:
        state = run_train(cfg, out_dir, resume=resume, progress=prog)
    out.print(f"best epoch {state['best_epoch']} (val score {state['best_score']:.3f}) -> {out_dir / 'best.safetensors'}")
    if test_split:
        _report_test(out_dir / "best.safetensors", data, test_split)


@app.command()
@user_errors
def average(
    weights: Annotated[list[str], typer.Argument(help="Two or more weights of one model that share a start: .safetensors files written by irstream, shipped names, a run's last.safetensors.")],
    out_file: Annotated[Path, typer.Option("--out", help="The averaged .safetensors to write (its card beside it).")],
) -> None:
    """Average the weights of checkpoints that share a start (see irstream/train/average.py)."""
    from irstream.train.average import write_average

    write_average([weights_path(w) for w in weights], out_file)
    out.print(f"wrote {escape(str(out_file))}: the mean of {len(weights)} weights files; "
              f"calibrate it (`irstream calibrate --weights {escape(str(out_file))} --record`) before use")


def _report_test(weights: Path, data: Path, split: str) -> None:
    """The one look at the test split: evaluate the val-selected weights, write it on the card."""
    from irstream.eval.images import evaluate_weights
    from irstream.model.weights import card_path, read_card

    res = evaluate_weights(weights, data, split, device="cpu")
    card = read_card(weights)
    card.setdefault("metrics", {})[split] = {k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()}
    card["metrics"][f"{split}_measured_by"] = f"irstream eval --data {data} --split {split} --weights {weights} --device cpu"
    card_path(weights).write_text(json.dumps(card, indent=2) + "\n")
    out.print(metrics_table(f"{weights.name} on {data.name}/{split}", {split: res}))


def _rect(text: str) -> tuple[int, int, int, int]:
    try:
        x0, y0, x1, y1 = (int(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"--ignore-rect {text}: expected four integers x0,y0,x1,y1") from None
    if x1 <= x0 or y1 <= y0:
        raise UserError(f"--ignore-rect {text}: need x1 > x0 and y1 > y0")
    return x0, y0, x1, y1


@app.command()
@user_errors
def detect(
    images: Annotated[list[Path], typer.Argument(help="Image files (PNG, TIFF, BMP; 8- or 16-bit).")],
    weights: WeightsOpt = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    threshold: Annotated[Optional[float], typer.Option(help="Target probability threshold; default: the weights' calibrated operating point (their card), 0.5 without one.")] = None,
    min_area: Annotated[int, typer.Option(help="Smallest target, pixels.")] = 1,
    max_area: Annotated[int, typer.Option(help="Largest target, pixels.")] = 400,
    mask_dir: Annotated[Optional[Path], typer.Option(help="Write <name>_mask.png here.")] = None,
    overlay_dir: Annotated[Optional[Path], typer.Option(help="Write <name>_overlay.png here.")] = None,
    ignore_rect: Annotated[Optional[list[str]], typer.Option(help="x0,y0,x1,y1 px (end-exclusive) where no target is "
                                                                  "reported, e.g. burned-in text; repeatable.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per image instead of tables.")] = False,
    threads: Annotated[int, typer.Option(help=THREADS_HELP)] = 0,
) -> None:
    """Find targets in still images: centroid, box, area, scores."""
    from irstream.config import ModelConfig
    from irstream.model.detect import detect_image, write_mask, write_overlay
    from irstream.model.detector import Detector
    from irstream.model.preprocess import PreprocessConfig
    from irstream.track.targets import TargetConfig

    try:
        tcfg = TargetConfig(score_threshold=threshold, min_area_px=min_area, max_area_px=max_area)
        mcfg = ModelConfig(weights=weights or "", device=device)
    except ValueError as exc:
        raise UserError(f"detect options: {exc}") from None
    missing = [p for p in images if not p.is_file()]
    if missing:
        raise UserError(f"{missing[0]}: no such image file")
    rects = tuple(_rect(r) for r in ignore_rect or [])
    detector = Detector(mcfg, PreprocessConfig(ignore_rects=rects, ignore_margin_px=0), tcfg, threads=threads)
    for path in images:
        res = detect_image(detector, path)
        dets = res.detected.detections
        extra = {}
        if mask_dir:
            extra["mask"] = str(write_mask(res, mask_dir, detector.threshold))
        if overlay_dir:
            extra["overlay"] = str(write_overlay(res, overlay_dir))
        if as_json:
            print(json.dumps({"image": str(path), "height": res.image.shape[0], "width": res.image.shape[1],
                              "targets": dets.to_records(), **extra}))
            continue
        t = Table(title=f"{path.name}: {len(dets)} target(s)")
        for col in ("#", "x", "y", "box x0,y0,x1,y1", "area px", "peak", "mean", "contrast"):
            t.add_column(col, justify="right")
        for i, r in enumerate(dets.to_records()):
            t.add_row(str(i), f"{r['x']:.1f}", f"{r['y']:.1f}", ",".join(map(str, r["bbox"])), str(r["area_px"]),
                      f"{r['peak_score']:.3f}", f"{r['mean_score']:.3f}", f"{r['contrast']:.3f}")
        out.print(t)
        for k, v in extra.items():
            out.print(f"{k}: {v}")


@app.command()
@user_errors
def export(
    dest: Annotated[Optional[Path], typer.Argument(help="The .onnx file to write.")] = None,
    weights: WeightsOpt = None,
    triton_repo: Annotated[Optional[Path], typer.Option(help="Instead: write a Triton model repository here (ONNX + "
                                                             "config.pbtxt, dynamic batching) for the stock Triton container.")] = None,
    threads: Annotated[int, typer.Option(help=THREADS_HELP)] = 0,
) -> None:
    """Export weights to ONNX (dynamic batch, height and width) and check it against torch."""
    if (dest is None) == (triton_repo is None):
        raise UserError("give the .onnx file to write, or --triton-repo DIR (one of the two)")
    if triton_repo is not None:
        from irstream.model.triton import write_model_repository

        folder = write_model_repository(weights_path(weights), triton_repo)
        dest = folder / "1" / "model.onnx"
        out.print(f"wrote {escape(str(folder))}: config.pbtxt and 1/model.onnx; serve it with the Triton container "
                  f"(README, \"Many cameras\")")
    import numpy as np
    import torch
    from irstream.model.segment import set_threads

    set_threads(threads)

    from irstream.model.runtime import OnnxRuntime, TorchRuntime, export_onnx, import_onnxruntime, mask_iou
    from irstream.tools.bench import real_frames
    from irstream.model.weights import load_weights

    import_onnxruntime()
    weights = weights_path(weights)
    model, _ = load_weights(weights)
    if triton_repo is None:
        export_onnx(model, dest, name=weights.stem)
    frames, origin = real_frames((256, 256), 10, DEFAULT_SIRST)
    ort_rt, torch_rt = OnnxRuntime(dest), TorchRuntime(model, torch.device("cpu"))
    got, want = [ort_rt(f[None, None])[0] for f in frames], [torch_rt(f[None, None])[0] for f in frames]
    diff = max(float(np.abs(g - w).max()) for g, w in zip(got, want))
    out.print(f"wrote {escape(str(dest))} ({dest.stat().st_size / 2**20:.1f} MiB); against torch on {len(frames)} "
              f"frames of {escape(origin)}: max probability difference {diff:.1e}, mask IoU {mask_iou(got, want):.4f}")


@app.command()
@user_errors
def serve(
    weights: WeightsOpt = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda: where the server runs the model.")] = "auto",
    grpc_port: Annotated[int, typer.Option(help="gRPC port (what [model] triton_url points at).")] = 8001,
    http_port: Annotated[int, typer.Option(help="HTTP port (health: /v2/health/ready).")] = 8000,
    metrics_port: Annotated[int, typer.Option(help="Prometheus metrics port.")] = 8002,
    max_batch: Annotated[int, typer.Option(help="Largest batch the dynamic batcher forms.")] = 32,
    threads: Annotated[int, typer.Option(help=THREADS_HELP)] = 0,
) -> None:
    """Serve the weights from Triton Inference Server (PyTriton) with dynamic batching, for
    runs with [model] runtime = "triton"; Ctrl-C stops it."""
    from irstream.model.segment import resolve_device, set_threads

    import importlib.util

    from irstream.model.triton import serve as run_server

    if importlib.util.find_spec("pytriton") is None:
        raise UserError("serve needs the serve extra in an environment of its own: pip install 'irstream[serve]' "
                        "(PyTriton needs numpy < 2)") from None
    set_threads(threads)
    dev = resolve_device(device)
    run_server(weights_path(weights), dev, grpc_port, http_port, metrics_port, max_batch,
               ready=lambda: out.print(f"serving {weights or 'the shipped weights'} on grpc 127.0.0.1:{grpc_port} "
                                       f"(http {http_port}, metrics {metrics_port}); Ctrl-C stops"))
