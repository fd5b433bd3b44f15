"""Models: list, train, detect in still images, export to ONNX."""

from __future__ import annotations

import dataclasses
import inspect
import json
import types
import typing
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from irstream.cli.common import out, user_errors, progress, THREADS_HELP, WeightsOpt, weights_path, DEFAULT_SIRST, metrics_table
from irstream.errors import UserError
from irstream.train.config import TrainConfig

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


def _train(out_dir: Annotated[Path, typer.Option("--out", help="Run folder: checkpoints, metrics.csv, best.safetensors.")] = Path("runs/train"),
           resume: Annotated[bool, typer.Option(help="Continue from the run folder's last checkpoint.")] = False,
           test_split: Annotated[str, typer.Option(help="Evaluated once with the best weights at the end; '' to skip.")] = "test",
           **settings) -> None:
    """Train LRRNet (the paper's recipe by default), keep the best epoch on the validation split."""
    from irstream.model.registry import MODEL_CFGS
    from irstream.train.loop import train as run_train

    given = {k: tuple(v) if isinstance(v, list) and _is_tuple(k) else v for k, v in settings.items() if v is not None}
    if given.get("model", "lrrnet") not in MODEL_CFGS:
        raise UserError(f"--model {given['model']}: unknown; known: {', '.join(sorted(MODEL_CFGS))}")
    try:
        cfg = TrainConfig(**given)
    except ValueError as exc:
        raise UserError(f"train options: {exc}") from None
    with progress() as prog:
        state = run_train(cfg, out_dir, resume=resume, progress=prog)
    out.print(f"best epoch {state['best_epoch']} (val score {state['best_score']:.3f}) -> {out_dir / 'best.safetensors'}")
    if test_split:
        _report_test(out_dir / "best.safetensors", Path(cfg.data), test_split)


def _is_tuple(name: str) -> bool:
    return typing.get_origin(typing.get_type_hints(TrainConfig)[name]) is tuple


def _train_option(f: dataclasses.Field, hint) -> inspect.Parameter:
    """The command-line option of one TrainConfig field: its flag, type, default and help."""
    flag = "--" + (f.metadata["flag"] or f.name).replace("_", "-")
    origin = typing.get_origin(hint)
    if origin in (list, tuple):  # repeatable; unset keeps the field's default
        kind, default = Optional[list[typing.get_args(hint)[0]]], None
    elif origin in (typing.Union, types.UnionType):
        kind, default = Optional[next(a for a in typing.get_args(hint) if a is not type(None))], None
    elif f.default is dataclasses.MISSING:  # a default made at run time (the data folders)
        kind, default = Optional[hint], None
    else:
        kind, default = hint, f.default
    decls = [f"{flag}/--no-{flag[2:]}"] if hint is bool else [flag]
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[kind, typer.Option(*decls, help=f.metadata["help"])])


def _train_command():
    """`irstream train`: its options are TrainConfig's fields, generated, so that every training
    default is defined once (irstream/train/config.py)."""
    hints = typing.get_type_hints(TrainConfig)
    own_hints = typing.get_type_hints(_train, include_extras=True)
    own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=own_hints[p.name])
           for p in inspect.signature(_train).parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    params = own + [_train_option(f, hints[f.name]) for f in dataclasses.fields(TrainConfig)]
    command = user_errors(_train)
    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = {p.name: p.annotation for p in params}
    app.command("train")(command)


_train_command()


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
    min_area: Annotated[Optional[int], typer.Option(help="Smallest target, pixels; default: [targets] min_area_px.")] = None,
    max_area: Annotated[Optional[int], typer.Option(help="Largest target, pixels; default: [targets] max_area_px.")] = None,
    mask_dir: Annotated[Optional[Path], typer.Option(help="Write <name>_mask.png here.")] = None,
    overlay_dir: Annotated[Optional[Path], typer.Option(help="Write <name>_overlay.png here.")] = None,
    ignore_rect: Annotated[Optional[list[str]], typer.Option(help="x0,y0,x1,y1 px (end-exclusive) where no target is "
                                                                  "reported, e.g. burned-in text; repeatable.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per image instead of tables.")] = False,
    threads: Annotated[int, typer.Option(help=THREADS_HELP)] = 0,
) -> None:
    """Find targets in still images: centroid, box, area, scores."""
    from irstream.model.config import ModelConfig
    from irstream.detect.stills import detect_image, write_mask, write_overlay
    from irstream.detect.detector import Detector
    from irstream.detect.preprocess import PreprocessConfig
    from irstream.detect.targets import TargetConfig

    try:
        areas = {k: v for k, v in (("min_area_px", min_area), ("max_area_px", max_area)) if v is not None}
        tcfg = TargetConfig(score_threshold=threshold, **areas)
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
