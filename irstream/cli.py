"""The `irstream` command line.  Commands only parse options and call the package."""

from __future__ import annotations

import contextlib
import functools
import json
import math
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from irstream.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Find and track small targets in infrared video.")
out = Console()
err = Console(stderr=True)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WEIGHTS = REPO_ROOT / "weights" / "lrrnet_light_real.safetensors"
DEFAULT_SIRST = REPO_ROOT.parent / "shared" / "data" / "sirst-v1"


def user_errors(fn):
    """Show a UserError as one line on stderr and exit 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def _progress():
    """A rich progress bar on a terminal; elsewhere (a log file, CI) a plain line now and then,
    so that a long run never looks stuck."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    if not err.is_terminal:
        return LineProgress(err)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=False)


class LineProgress:
    """The part of rich's Progress the commands use, printing one line every PERIOD_S seconds."""

    PERIOD_S = 10.0

    def __init__(self, console) -> None:
        self.console, self.tasks, self._last = console, {}, 0.0

    def __enter__(self):
        self._t0 = self._last = time.monotonic()
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:  # an error says its own one line
            for task in self.tasks:
                self._print(task)

    def add_task(self, description: str, total=None, completed: int = 0, **_) -> int:
        self.tasks[len(self.tasks)] = {"description": description, "total": total, "completed": completed}
        return len(self.tasks) - 1

    def update(self, task: int, advance: int = 0, **fields) -> None:
        t = self.tasks[task]
        t.update({k: v for k, v in fields.items() if k in ("description", "total", "completed")})
        t["completed"] += advance
        if time.monotonic() - self._last >= self.PERIOD_S:
            self._last = time.monotonic()
            self._print(task)

    def advance(self, task: int, advance: int = 1) -> None:
        self.update(task, advance=advance)

    def _print(self, task: int) -> None:
        t = self.tasks[task]
        of = f"/{t['total']}" if t["total"] else ""
        self.console.print(f"{t['description']}: {t['completed']}{of} ({time.monotonic() - self._t0:.0f} s)",
                           markup=False, highlight=False)


THREADS_HELP = "CPU threads for the model; 0 = all usable cores but one."
#: The flag that sets each pipeline key, for error messages about a flag's value.
FLAGS = {"source.uri": "SOURCE", "source.mode": "--mode", "output.preview": "--preview", "output.save": "--save",
         "output.frames_dir": "--frames-dir", "output.jsonl": "--jsonl", "output.mot": "--mot",
         "output.publish": "--publish", "output.curve_dir": "--curve-dir", "model.device": "--device",
         "model.runtime": "--runtime", "model.weights": "--weights", "model.upscale": "--upscale",
         "targets.score_threshold": "--threshold", "run.max_frames": "--max-frames",
         "output.wait_subscriber_s": "--wait-subscriber", "run.threads": "--threads"}


def _metrics_table(title: str, rows: dict[str, dict]) -> Table:
    if all("clean_share" in m for m in rows.values()):
        t = Table(title=title, caption="target-free images: every detection is a false alarm")
        for col in ("set", "threshold", "images with none (%)", "detections / image", "images"):
            t.add_column(col, justify="right" if col != "set" else "left")
        for name, m in rows.items():
            t.add_row(name, f"{m.get('threshold', 0.5):.3g}", f"{100 * m['clean_share']:.1f}",
                      f"{m['dets_per_image']:.2f}", str(m["images"]))
        return t
    t = Table(title=title)
    for col in ("set", "IoU (%)", "nIoU (%)", "Pd (%)", "Fa (x1e-6)", "images", "targets"):
        t.add_column(col, justify="right" if col != "set" else "left")
    for name, m in rows.items():
        t.add_row(name, f"{m['iou']:.2f}", f"{m['niou']:.2f}", f"{m['pd']:.2f}", f"{m['fa']:.2f}",
                  str(m["images"]), str(m["targets"]))
    return t


@app.command()
@user_errors
def models() -> None:
    """List the registered models with their size."""
    from irstream.models import MODEL_CFGS, build_model, count_parameters

    t = Table(title="models")
    for col in ("name", "channels", "blocks", "groups", "params", "pad to"):
        t.add_column(col, no_wrap=True)
    for name, cfg in MODEL_CFGS.items():
        t.add_row(name, "/".join(map(str, cfg.channels)), str(cfg.blocks_per_stage), str(cfg.groups),
                  f"{count_parameters(build_model(name)):,}", str(cfg.size_multiple))
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
    resize: int = 512,
    target_crop_share: float = 0.7,
    flips: bool = True,
    synthetic_share: Annotated[float, typer.Option(help="Share of each batch from the synthetic generator.")] = 0.0,
    half_scale_share: Annotated[float, typer.Option(help="Share of crops shrunk by 2 (1-3 px targets).")] = 0.0,
    val_every: Annotated[int, typer.Option(help="Validate every N epochs.")] = 1,
    max_minutes: Annotated[float, typer.Option(help="Wall-time budget; the lr decays over it. 0 = by epochs.")] = 0.0,
    seed: int = 0,
    threads: Annotated[int, typer.Option(help="CPU threads for torch; 0 = torch's default.")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue from the run folder's last checkpoint.")] = False,
    init: Annotated[Optional[Path], typer.Option(help="Fine-tune: start from these irstream weights (same model).")] = None,
    mix: Annotated[Optional[list[str]], typer.Option(help="Real-data source and weight, repeatable: sirst-v1:0.3, nudt-sirst, backgrounds, daub, antiuav (see irstream/data/mix.py).")] = None,
    data_root: Annotated[Path, typer.Option(help="Folder holding the --mix sources.")] = DEFAULT_SIRST.parent,
    hard_share: Annotated[float, typer.Option(help="Share of crops centred on the model's own mined false alarms (--mix runs).")] = 0.0,
    mine_every: Annotated[int, typer.Option(help="Mine false alarms every N steps; 0 = never.")] = 0,
    mine_images: Annotated[int, typer.Option(help="Training images run per mining pass.")] = 300,
    steps_per_epoch: Annotated[int, typer.Option(help="Steps between validations; 0 = one pass over the data.")] = 0,
    intensity_jitter: Annotated[float, typer.Option(help="Random gain 1 +- J and offset +- J/2 per crop.")] = 0.0,
    channels_last: Annotated[bool, typer.Option(help="Channels-last memory (faster on most CPUs; see bench train).")] = False,
    amp: Annotated[str, typer.Option(help="'' (fp32) or bf16 autocast.")] = "",
) -> None:
    """Train LRRNet (the paper's recipe by default), keep the best epoch on the validation split."""
    from irstream.models import MODEL_CFGS
    from irstream.train import TrainConfig, train as run_train

    if model not in MODEL_CFGS:
        raise UserError(f"--model {model}: unknown; known: {', '.join(sorted(MODEL_CFGS))}")
    try:
        cfg = TrainConfig(model=model, data=str(data), train_split=train_split, val_split=val_split,
                          extra_data=[str(p) for p in extra_data or []], epochs=epochs, batch=batch, lr=lr,
                          rec_weight=rec_weight, crop_px=crop, resize_px=resize, target_crop_share=target_crop_share,
                          flips=flips, synthetic_share=synthetic_share, half_scale_share=half_scale_share, val_every=val_every, max_minutes=max_minutes,
                          seed=seed, threads=threads, init_weights=str(init or ""), mix=list(mix or []),
                          data_root=str(data_root), hard_share=hard_share, mine_every=mine_every,
                          mine_images=mine_images, steps_per_epoch=steps_per_epoch,
                          intensity_jitter=intensity_jitter, channels_last=channels_last, amp=amp)
    except ValueError as exc:
        raise UserError(f"train options: {exc}") from None
    with _progress() as prog:
        state = run_train(cfg, out_dir, resume=resume, progress=prog)
    out.print(f"best epoch {state['best_epoch']} (val score {state['best_score']:.3f}) -> {out_dir / 'best.safetensors'}")
    if test_split:
        _report_test(out_dir / "best.safetensors", data, test_split)


def _report_test(weights: Path, data: Path, split: str) -> None:
    """The one look at the test split: evaluate the val-selected weights, write it on the card."""
    from irstream.evaluate import evaluate_weights
    from irstream.weights import card_path, read_card

    res = evaluate_weights(weights, data, split, device="cpu")
    card = read_card(weights)
    card.setdefault("metrics", {})[split] = {k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()}
    card["metrics"][f"{split}_measured_by"] = f"irstream eval --data {data} --split {split} --weights {weights} --device cpu"
    card_path(weights).write_text(json.dumps(card, indent=2) + "\n")
    out.print(_metrics_table(f"{weights.name} on {data.name}/{split}", {split: res}))


@app.command("eval")
@user_errors
def eval_cmd(
    data: Annotated[Path, typer.Option(help="SIRST-style dataset root.")] = DEFAULT_SIRST,
    split: str = "test",
    weights: Annotated[Path, typer.Option(help="A .safetensors file written by irstream.")] = DEFAULT_WEIGHTS,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    threshold: Annotated[Optional[float], typer.Option(help="Target probability threshold; default: the weights' operating point (their card), 0.5 without one.")] = None,
    record: Annotated[bool, typer.Option(help="Write the result onto the weights' card, with this command.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    threads: Annotated[int, typer.Option(help=THREADS_HELP)] = 0,
) -> None:
    """IoU, nIoU, Pd and Fa of a model on a dataset split (the field's conventions); on a
    target-free set (no masks/ folder) the share of images with no detection."""
    from irstream.data.sirst import read_split
    from irstream.evaluate import evaluate_model
    from irstream.segment import set_threads
    from irstream.weights import card_path, load_weights, read_card

    set_threads(threads)

    if threshold is not None and not 0.0 < threshold < 1.0:
        raise UserError(f"--threshold {threshold}: must be within (0, 1)")
    model, card = load_weights(weights)
    if not (data / "images").is_dir():
        raise UserError(f"--data {data}: not a dataset folder (no images/ in it)")
    n_images = len(read_split(data, split))
    with _progress() as prog:
        task = prog.add_task(f"{data.name}/{split}", total=n_images)
        res = evaluate_model(model, card, data, split, device=device, threshold=threshold,
                             on_image=lambda: prog.advance(task))
    if record:
        card = read_card(weights)
        card.setdefault("metrics", {})[f"{data.name}/{split}"] = {
            **{k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()},
            "measured_by": f"irstream eval --data {data} --split {split} --weights {weights}"
                           + (f" --threshold {threshold}" if threshold is not None else "")}
        card_path(weights).write_text(json.dumps(card, indent=2) + "\n")
    if as_json:
        print(json.dumps({"weights": str(weights), "data": str(data), "split": split, **res}))
    else:
        out.print(_metrics_table(f"{weights.name} on {data.name}/{split}", {split: res}))


@app.command()
@user_errors
def calibrate(
    weights: Annotated[Path, typer.Option(help="A .safetensors file written by irstream.")] = DEFAULT_WEIGHTS,
    data_root: Annotated[Path, typer.Option(help="Folder with sirst-v1, sirst-v2-backgrounds and antiuav-clips.")] = DEFAULT_SIRST.parent,
    pd: Annotated[float, typer.Option(help="Pd the operating point must keep on the pooled validation targets.")] = 0.95,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    record: Annotated[bool, typer.Option(help="Write the operating point onto the weights' card.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    threads: Annotated[int, typer.Option(help=THREADS_HELP)] = 0,
) -> None:
    """Choose the score threshold on validation data (never test) for a stated Pd; see irstream/calibrate.py."""
    from irstream.calibrate import choose, count_images, sweep
    from irstream.segment import resolve_device, set_threads
    from irstream.weights import card_path, inference_tiles, load_weights, read_card

    set_threads(threads)

    if not 0.0 < pd <= 1.0:
        raise UserError(f"--pd {pd}: must be within (0, 1]")
    for sub in ("sirst-v1", "sirst-v2-backgrounds", "antiuav-clips"):
        if not (data_root / sub).is_dir():
            raise UserError(f"--data-root {data_root}: no {sub}/ in it; calibration needs all three validation sets")
    model, card = load_weights(weights)
    dev = resolve_device(device)
    with _progress() as prog:
        task = prog.add_task("validation images", total=count_images(data_root))
        op = choose(sweep(model.to(dev), data_root, dev, on_image=lambda: prog.advance(task),
                          tiles=inference_tiles(card)), pd)
    op["measured_by"] = f"irstream calibrate --weights {weights} --pd {pd}"
    if record:
        card = read_card(weights)
        card["operating_point"] = op
        card_path(weights).write_text(json.dumps(card, indent=2) + "\n")
    if as_json:
        print(json.dumps(op))
        return
    t = Table(title=f"operating point of {weights.name}: threshold {op['score_threshold']:g}", caption=op["rule"])
    names = list(op["validation_sets"])
    for col in ("threshold", "pooled Pd %", "FA / image", *(f"{n} Pd % / FA" for n in names)):
        t.add_column(escape(col), justify="right")
    for row in op["sweep"]:
        mark = " *" if row["threshold"] == op["score_threshold"] else ""
        def pd(v):
            return "-" if v is None else f"{100 * v:.1f}"

        t.add_row(f"{row['threshold']:g}{mark}", pd(row["pd"]), f"{row['fa_per_image']:.2f}",
                  *(f"{pd(row[n]['pd'])} / {row[n]['fa_per_image']:.2f}" for n in names))
    out.print(t)


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
    weights: Annotated[Path, typer.Option(help="A .safetensors file written by irstream.")] = DEFAULT_WEIGHTS,
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
    from irstream.detect import detect_image, write_mask, write_overlay
    from irstream.segment import Segmenter, resolve_device, set_threads
    from irstream.targets import TargetConfig, resolve_targets
    from irstream.weights import inference_tiles, load_weights

    set_threads(threads)

    try:
        tcfg = TargetConfig(score_threshold=threshold, min_area_px=min_area, max_area_px=max_area)
    except ValueError as exc:
        raise UserError(f"detect options: {exc}") from None
    missing = [p for p in images if not p.is_file()]
    if missing:
        raise UserError(f"{missing[0]}: no such image file")
    rects = [_rect(r) for r in ignore_rect or []]
    model, card = load_weights(weights)
    tcfg = resolve_targets(tcfg, card)
    seg = Segmenter(model, resolve_device(device), *inference_tiles(card))
    for path in images:
        res = detect_image(seg, path, tcfg, rects)
        extra = {}
        if mask_dir:
            extra["mask"] = str(write_mask(res, mask_dir, tcfg.score_threshold))
        if overlay_dir:
            extra["overlay"] = str(write_overlay(res, overlay_dir))
        if as_json:
            print(json.dumps({"image": str(path), "height": res.image.shape[0], "width": res.image.shape[1],
                              "targets": res.detections.to_records(), **extra}))
            continue
        t = Table(title=f"{path.name}: {len(res.detections)} target(s)")
        for col in ("#", "x", "y", "box x0,y0,x1,y1", "area px", "peak", "mean", "contrast"):
            t.add_column(col, justify="right")
        for i, r in enumerate(res.detections.to_records()):
            t.add_row(str(i), f"{r['x']:.1f}", f"{r['y']:.1f}", ",".join(map(str, r["bbox"])), str(r["area_px"]),
                      f"{r['peak_score']:.3f}", f"{r['mean_score']:.3f}", f"{r['contrast']:.3f}")
        out.print(t)
        for k, v in extra.items():
            out.print(f"{k}: {v}")


@app.command()
@user_errors
def run(
    source: Annotated[Optional[str], typer.Argument(help="Video file, image folder or glob, camera index or /dev/video path, "
                                                         "rtsp:// or http:// URL, GStreamer pipeline; default: the pipeline's.")] = None,
    pipeline: Annotated[Optional[Path], typer.Option(help="Pipeline TOML (see pipelines/); default: pipelines/default.toml.")] = None,
    preview: Annotated[Optional[bool], typer.Option("--preview/--no-preview", help="Show a window (q/Esc quits, space pauses).")] = None,
    save: Annotated[Optional[str], typer.Option(help="Write the annotated video here (.mp4, .mkv lossless, .avi).")] = None,
    frames_dir: Annotated[Optional[str], typer.Option(help="Write annotated frames as PNGs into this folder.")] = None,
    jsonl: Annotated[Optional[str], typer.Option(help="Write one JSON message per frame here.")] = None,
    mot: Annotated[Optional[str], typer.Option(help="Write confirmed tracks as MOTChallenge CSV here.")] = None,
    publish: Annotated[Optional[str], typer.Option(help="Publish over ZeroMQ, e.g. tcp://127.0.0.1:5556.")] = None,
    curve_dir: Annotated[Optional[str], typer.Option(help="Key folder from `irstream keys`: publish encrypted, to "
                                                          "authorised subscribers only.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu or cuda.")] = None,
    runtime: Annotated[Optional[str], typer.Option(help="auto (fastest measured), torch (eager fp32) or onnxruntime (CPU).")] = None,
    weights: Annotated[Optional[str], typer.Option(help="A .safetensors file written by irstream.")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="Target probability threshold.")] = None,
    upscale: Annotated[Optional[int], typer.Option(help="Run the model on the frame enlarged by this factor (tiny targets).")] = None,
    mode: Annotated[Optional[str], typer.Option(help="auto, file (never drop) or live (newest frame wins).")] = None,
    max_frames: Annotated[Optional[int], typer.Option(help="Stop after this many frames.")] = None,
    wait_subscriber: Annotated[Optional[float], typer.Option(help="Hold the first frame up to this many seconds until a "
                                                                  "ZeroMQ subscriber connects, so it gets every message.")] = None,
    threads: Annotated[Optional[int], typer.Option(help=THREADS_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON instead of tables.")] = False,
) -> None:
    """Detect and track targets in a video, image sequence, camera or stream."""
    import threading

    from irstream.config import load_pipeline, override
    from irstream.pipeline import Pipeline, graceful_interrupt

    cfg = override(load_pipeline(pipeline), FLAGS, **{
        "source.uri": source, "source.mode": mode, "output.preview": preview, "output.save": save,
        "output.frames_dir": frames_dir,
        "output.jsonl": jsonl, "output.mot": mot, "output.publish": publish, "output.curve_dir": curve_dir, "model.device": device,
        "model.runtime": runtime,
        "model.weights": weights, "model.upscale": upscale, "targets.score_threshold": threshold, "run.max_frames": max_frames,
        "output.wait_subscriber_s": wait_subscriber, "run.threads": threads})
    if not cfg.source.uri:
        raise UserError("no source: give one (`irstream run clip.mp4`) or set [source] uri in the pipeline file")
    stop, paused = threading.Event(), threading.Event()
    extra = _preview_sink(stop, paused) if cfg.output.preview else []
    with _progress() as prog:
        task = prog.add_task("frames", total=None)
        pipe = Pipeline(cfg, extra_sinks=extra, stop=stop, paused=paused,
                        on_frame=lambda res: prog.advance(task))
        total = None if pipe.live else pipe.source.frame_count
        if total and cfg.run.max_frames:
            total = min(total, cfg.run.max_frames)
        prog.update(task, total=total, description=pipe.source.source_id[-40:])

        def on_signal(_signum):
            err.print("stopping: finishing the frames in flight and closing outputs (Ctrl-C again to quit now)")

        with graceful_interrupt(stop, on_signal):
            summary = pipe.run()
    _print_summary(summary, cfg, as_json)


@app.command("eval-track")
@user_errors
def eval_track(
    paths: Annotated[list[Path], typer.Argument(help="Sequences with ground truth: DAUB folders (labels.csv), videos with "
                                                     "NAME.gt.txt, folders with gt/gt.txt, or folders of these.")],
    pipeline: Annotated[Optional[Path], typer.Option(help="Pipeline TOML whose model, targets, motion and tracker are "
                                                          "evaluated; default: pipelines/default.toml.")] = None,
    match_px: Annotated[float, typer.Option(help="A detection or track within this distance of a label is a hit, px.")] = 3.0,
    plot: Annotated[Optional[Path], typer.Option(help="Also write the Pd against false-alarm curves here (PNG).")] = None,
    cache_dir: Annotated[Optional[Path], typer.Option(help="Keep the model's maps here, so that later runs with other "
                                                           "tracker settings skip the model.")] = None,
    weights: Annotated[Optional[str], typer.Option(help="A .safetensors file written by irstream; default: the pipeline's.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu or cuda.")] = None,
    upscale: Annotated[Optional[int], typer.Option(help="Run the model on frames enlarged by this factor.")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="Target probability threshold of the tracked run.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON instead of a table.")] = False,
    threads: Annotated[Optional[int], typer.Option(help=THREADS_HELP + " Default: the pipeline's \\[run] threads.")] = None,
) -> None:
    """Score single-frame detections and published tracks against ground truth, side by side."""
    from irstream.config import load_pipeline, override
    from irstream.segment import set_threads
    from irstream.track_eval import evaluate_sequence, find_sequences, plot_curves, pooled, sequence_maps, summary_row

    if not match_px > 0:
        raise UserError(f"--match-px {match_px}: must be > 0")
    cfg = override(load_pipeline(pipeline), FLAGS, **{"model.device": device, "model.upscale": upscale,
                                                      "model.weights": weights, "targets.score_threshold": threshold,
                                                      "run.threads": threads})
    set_threads(cfg.run.threads)
    for p in paths:
        if not p.exists():
            raise UserError(f"{p}: no such file or folder")
    seqs = find_sequences(paths)
    results = []
    with _progress() as prog:
        task = prog.add_task("frames", total=sum(s.frames for s in seqs))
        for s in seqs:
            prog.update(task, description=s.name)
            maps = sequence_maps(s, cfg, cache_dir, on_frame=lambda: prog.advance(task))
            results.append(evaluate_sequence(s, maps, cfg, match_px))
            prog.update(task, completed=sum(r.frames for r in results))  # maps from the cache advance nothing
    everything = results + ([pooled(results)] if len(results) > 1 else [])
    rows = [summary_row(r) for r in everything]
    if plot is not None:
        plot_curves(results, plot)
    if as_json:
        for row, r in zip(rows, everything):
            row["detector_sweep"] = [{"threshold": t, "pd": c.pd, "fa_per_frame": c.fa_per_frame}
                                     for t, c in sorted(r.sweep.items())]
        print(json.dumps({"match_px": match_px, "plot": str(plot) if plot else None,
                          "sequences": [_json_safe(r) for r in rows]}))
        return
    for table in _track_tables(rows, match_px):
        out.print(table)
    if plot is not None:
        out.print(f"curves: {escape(str(plot))}")


def _track_tables(rows: list[dict], match_px: float) -> tuple[Table, Table]:
    def num(v, fmt):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        return "inf" if v == float("inf") else format(v, fmt)

    det = Table(title=f"detections against published tracks (hits within {match_px:g} px)",
                caption="FA: false alarms per frame.  need: the detector's FA at the tracks' Pd "
                        "(its threshold swept); ratio: need / trk FA.")
    for c in ("sequence", "frames", "det Pd%", "det FA", "trk Pd%", "trk FA", "need", "ratio"):
        det.add_column(c, justify="left" if c == "sequence" else "right", no_wrap=True)
    trk = Table(title="tracking", caption="confirm: frames from a target's first appearance to its first "
                                          "published track, median / max; lost: targets never published.")
    for c in ("sequence", "HOTA", "MOTA", "IDF1", "IDSW", "Frag", "confirm", "lost"):
        trk.add_column(c, justify="left" if c == "sequence" else "right", no_wrap=True)
    for r in rows:
        name = escape(r["sequence"])
        det.add_row(name, str(r["frames"]), num(100 * r["det_pd"], ".1f"), num(r["det_fa_per_frame"], ".2f"),
                    num(100 * r["trk_pd"], ".1f"), num(r["trk_fa_per_frame"], ".2f"), num(r["det_fa_at_trk_pd"], ".2f"),
                    num(r["fa_ratio"], ".1f"))
        trk.add_row(name, num(r["HOTA"], ".3f"), num(r["MOTA"], ".3f"), num(r["IDF1"], ".3f"), str(r["IDSW"]),
                    str(r["Frag"]), f"{num(r['confirm_frames_median'], '.0f')} / {num(r['confirm_frames_max'], '.0f')}",
                    str(r["targets_never_confirmed"]))
    return det, trk


def _preview_sink(stop, paused) -> list:
    from irstream.preview import PreviewSink, display_available

    if not display_available():
        err.print("preview: no display here (no DISPLAY, or it cannot be opened); running headless")
        return []
    return [("preview", PreviewSink(stop, paused), True)]


def _json_safe(d):
    """JSON has no NaN (percentiles of no frames) or inf (a Pd never reached): null instead."""
    if isinstance(d, dict):
        return {k: _json_safe(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_json_safe(v) for v in d]
    return None if isinstance(d, float) and not math.isfinite(d) else d


def _print_summary(s, cfg, as_json: bool) -> None:
    from irstream.pipeline import percentiles

    outputs = {name: {k: v for k, v in o.items() if not k.endswith("_ms")} for name, o in s.outputs.items()}
    stages = dict(s.stage_ms) | {f"write {n}": o["write_ms"] for n, o in s.outputs.items()}
    stages |= {"read->tracks": s.latency_ms} | {f"read->{n}": o["latency_ms"] for n, o in s.outputs.items()}
    timing = {k: dict(zip(("p50_ms", "p99_ms"), percentiles(v))) for k, v in stages.items()}
    lat = timing["read->tracks"]
    if as_json:
        print(json.dumps({"source": s.source, "device": s.device, "live": s.live, "frames_read": s.frames_read,
                          "frames_processed": s.frames_processed, "frames_dropped": s.frames_dropped,
                          "frames_frozen": s.frames_frozen, "frames_corrupt": s.frames_corrupt,
                          "frames_expected": s.frames_expected, "reconnects": s.reconnects, "stalls": s.stalls,
                          "fps": round(s.fps, 3), "detections": s.detections,
                          "confirmed_tracks": s.confirmed_tracks,
                          "published_tracks_per_frame": s.published_track_frames / max(1, s.frames_processed),
                          "stopped_early": s.stopped_early,
                          "timing": _json_safe(timing), "latency": _json_safe(lat), "outputs": outputs}))
        return
    t = Table(title=escape(f"run: {s.source}"), show_header=False)
    t.add_column("what", no_wrap=True)
    t.add_column("value")
    rows = [("device", s.device + (" (live)" if s.live else " (file)")),
            ("frames", f"{s.frames_processed} processed, {s.frames_read} read, {s.frames_dropped} dropped"
                       + (f", {s.frames_frozen} frozen (skipped)" if s.frames_frozen else "")),
            ("rate", f"{s.fps:.1f} frames/s over {s.wall_s:.1f} s"),
            ("detections", f"{s.detections} ({s.detections / max(1, s.frames_processed):.2f} per frame)"),
            ("tracks ever confirmed", f"{s.confirmed_tracks} ids; {s.published_track_frames / max(1, s.frames_processed):.2f} "
                                      "published per frame on average"),
            ("latency read->tracks", f"p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms")]
    for name, o in outputs.items():
        target = "window" if name == "preview" else getattr(cfg.output, name, "")
        unfinished = ", gave up closing it (still busy)" if o["timed_out"] else ""
        rows.append((f"output {name}", f"{target}  {o['written']} written, {o['dropped']} dropped{unfinished}"))
    if s.reconnects:
        rows.append(("reconnects", f"{s.reconnects} (the source was lost and reopened)"))
    if s.stalls:
        rows.append(("stalls", f"{s.stalls} (a stage held a frame over watchdog_s; see the log)"))
    if s.frames_corrupt:
        rows.append(("corrupt", f"{s.frames_corrupt} of the {s.frames_expected or '?'} frames the file announces "
                                "could not be decoded and were skipped (damaged or truncated file)"))
    if s.stopped_early:
        rows.append(("stopped", "early, on request; outputs flushed and closed"))
    for name, value in rows:
        t.add_row(name, escape(value))
    out.print(t)
    st = Table(title="timing", caption="read->X: from frame read to X")
    for col in ("stage", "p50 ms", "p99 ms"):
        st.add_column(col, justify="left" if col == "stage" else "right", no_wrap=True)
    for k, v in timing.items():
        st.add_row(k, f"{v['p50_ms']:.2f}", f"{v['p99_ms']:.2f}")
    out.print(st)


@app.command()
@user_errors
def listen(
    endpoint: Annotated[str, typer.Argument(help="Where a run publishes, e.g. tcp://127.0.0.1:5556.")] = "tcp://127.0.0.1:5556",
    topic: Annotated[str, typer.Option(help="Topic to subscribe to.")] = "irstream",
    as_json: Annotated[bool, typer.Option("--json", help="Print each message as one JSON line.")] = False,
    timeout: Annotated[float, typer.Option(help="Stop after this many seconds without a message; 0 = never.")] = 0.0,
    count: Annotated[int, typer.Option(help="Stop after this many messages; 0 = never.")] = 0,
    curve_dir: Annotated[str, typer.Option(help="Key folder holding client.key_secret and the publisher's "
                                                "server.key (see `irstream keys`).")] = "",
) -> None:
    """Subscribe to a run's ZeroMQ messages: a live table of tracks, or JSON lines."""
    from rich.live import Live

    from irstream.message import validate
    from irstream.publish import Connection, subscribe

    if count < 0 or timeout < 0:
        raise UserError(f"--count {count} --timeout {timeout}: both must be >= 0 (0 = never stop)")
    seen = bad = 0
    conn = Connection()
    live = None if as_json else Live(_tracks_table(None), console=out, auto_refresh=False)
    with live or contextlib.nullcontext():
        try:
            for _topic, payload in subscribe(endpoint, topic, timeout or None, curve_dir, conn):
                try:
                    msg = json.loads(payload)
                except ValueError:
                    msg = None
                problem = "not JSON" if msg is None else validate(msg)
                if problem:
                    bad += 1
                    err.print(escape(f"{endpoint}: skipped a message: {problem}"))
                    continue
                seen += 1
                if as_json:
                    print(payload.decode(), flush=True)
                else:
                    live.update(_tracks_table(msg), refresh=True)
                if count and seen >= count:
                    break
        except KeyboardInterrupt:
            pass
    if not as_json:
        err.print(f"{seen} messages, {bad} skipped")
    if count and seen >= count:
        return
    if not conn.connected:
        raise UserError(f"{endpoint}: no publisher came within {timeout:g} s; start the run with "
                        f"--publish {endpoint} (and --wait-subscriber S to hold its first frame for this listener)")
    if timeout and seen:
        err.print(escape(f"{endpoint}: the publisher {'went away' if conn.gone else 'went quiet'} after {seen} messages "
                         f"({timeout:g} s without one)"))
    elif timeout:
        err.print(escape(f"{endpoint}: a publisher is there but sent nothing on topic '{topic}' for {timeout:g} s"))


@app.command()
@user_errors
def keys(
    folder: Annotated[Path, typer.Argument(help="Folder to create the key pairs in.")],
) -> None:
    """Create CurveZMQ key pairs for an encrypted, authenticated feed (`run --curve-dir`, `listen --curve-dir`)."""
    from irstream.publish import create_keys

    paths = create_keys(folder)
    out.print(f"publisher: {escape(str(paths['server_secret']))} (keep here) and {escape(str(folder / 'authorized_clients'))}/")
    out.print(f"subscriber: copy {escape(str(paths['client_secret']))} and {escape(str(paths['server_public']))} "
              "to the subscribing machine, and pass that folder as --curve-dir")


def _tracks_table(msg: dict | None) -> Table:
    title = "waiting for messages..." if msg is None else (
        f"{msg['source']}  frame {msg['frame']}  t={msg['timestamp_s']:.3f}s  latency {msg['latency_ms']:.1f} ms  "
        f"detections {len(msg['detections'])}")
    t = Table(title=title)
    for col in ("id", "state", "x", "y", "vx px/s", "vy px/s", "age", "hits", "score"):
        t.add_column(col, justify="right", no_wrap=True)
    for tr in (msg or {}).get("tracks", []):
        t.add_row(str(tr["id"]), tr["state"], f"{tr['x']:.1f}", f"{tr['y']:.1f}", f"{tr['vx']:.1f}", f"{tr['vy']:.1f}",
                  str(tr["age"]), str(tr["hits"]), f"{tr['score']:.2f}")
    return t


synth_app = typer.Typer(no_args_is_help=True, help="Synthetic IR data, deterministic by seed.")
app.add_typer(synth_app, name="synth")


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
app.add_typer(bench_app, name="bench")


def _bench_report(title: str, rows: dict[str, dict], info: dict, as_json: bool, extra: dict | None = None,
                  columns: dict[str, str] | None = None) -> None:
    """rows: {name: {key: value}}; columns: {key: heading} to show (default: every key)."""
    if as_json:
        print(json.dumps(_json_safe({"machine": info, **(extra or {}), "results": rows})))
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
    from irstream.bench import TrackerScene, bench_tracker, machine, pin_to_cores
    from irstream.config import load_pipeline

    if targets < 1 or frames < 1 or warmup < 0 or cores < 1:
        raise UserError("--targets, --frames and --cores must be >= 1, --warmup >= 0")
    cfg = load_pipeline(pipeline)
    info = machine()
    used = pin_to_cores(cores)
    with _progress() as prog:
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

    from irstream.bench import TRAIN_SETTINGS, _usable_cores, bench_train_step, machine
    from irstream.models import MODEL_CFGS

    if model not in MODEL_CFGS:
        raise UserError(f"--model {model}: unknown; known: {', '.join(sorted(MODEL_CFGS))}")
    if batch < 1 or steps < 1 or crop < 8 or crop % 8:
        raise UserError("--batch and --steps must be >= 1, --crop a multiple of 8")
    counts = sorted(set(threads or [1, len(_usable_cores())]))
    settings = [s for s in TRAIN_SETTINGS if compile or not TRAIN_SETTINGS[s][2]]
    info, rows = machine(), {}
    info["bf16_hardware"] = _cpu_bf16()
    with _progress() as prog:
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
    from irstream.models import build_model
    from irstream.weights import load_weights

    if model is not None:
        try:
            return build_model(model).eval(), f"{model} (untrained: timing only)"
        except KeyError as exc:
            raise UserError(f"--model {model}: {exc.args[0]}") from None
    path = weights or DEFAULT_WEIGHTS
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
    weights: Annotated[Optional[Path], typer.Option(help="Weights to time; default: the shipped ones.")] = None,
    model: Annotated[Optional[str], typer.Option(help="Time an untrained model of this name instead "
                                                      "(lrrnet, lrrnet_light).")] = None,
    compile_mode: Annotated[str, typer.Option("--compile", help="Also time torch.compile in this mode "
                                                                "(e.g. max-autotune; CUDA, takes minutes).")] = "",
    check_frames: Annotated[int, typer.Option(help="Real frames on which each path's masks are checked.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Model-only speed of the reference path (eager fp32) and each optimised path, same run.

    Each path's masks are compared with the reference's on real frames (mask_iou)."""
    from irstream.bench import (ModelBench, bench_model, bench_stream, cpu_paths, cuda_paths, machine, real_frames,
                                time_copies)
    from irstream.runtime import onnxruntime_available
    from irstream.segment import resolve_device

    if min(height, width) < 8 or batch < 1 or iters < 1 or warmup < 0 or check_frames < 1:
        raise UserError("--height/--width >= 8, --batch, --iters, --check-frames >= 1, --warmup >= 0")
    dev = resolve_device(device)
    net, what = _bench_model_weights(weights, model)
    bench = ModelBench((height, width), batch, iters, warmup)
    frames, origin = real_frames(bench.shape, check_frames, DEFAULT_SIRST)
    paths = cuda_paths(net, dev, compile_mode) if dev.type == "cuda" else cpu_paths(net, onnxruntime_available())
    info = machine()
    with _progress() as prog:
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
    device: Annotated[Optional[str], typer.Option(help="auto, cpu or cuda.")] = None,
    weights: Annotated[Optional[str], typer.Option(help="Weights; default: the pipeline's.")] = None,
    runtime: Annotated[list[str], typer.Option(help="Runtimes to compare, reference first.")] = ["torch", "auto"],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """End to end, from a video file to a ZeroMQ subscriber on loopback: per-stage p50/p99 and rate."""
    import tempfile

    from irstream.bench import bench_pipeline, machine
    from irstream.config import load_pipeline, override
    from irstream.data.synthetic import write_clip

    if frames < 1:
        raise UserError("--frames must be >= 1")
    with tempfile.TemporaryDirectory() as tmp:
        if source is None:
            source = str(Path(tmp) / "bench.mkv")
            write_clip(source, frames, 0, _shape(height, width))
        cfg = override(load_pipeline(pipeline), FLAGS, **{"source.uri": source, "source.mode": "file", "model.device": device,
                                                   "model.weights": weights, "run.max_frames": frames})
        with _progress() as prog:
            task = prog.add_task("frames", total=frames * len(runtime))
            rows = bench_pipeline(cfg, runtime, on_frame=lambda _res: prog.advance(task),
                                  on_run=lambda rt: prog.update(task, description=f"runtime {rt}"))
    info = machine()
    if as_json:
        _bench_report("", rows, info, True, {"source": source})
        return
    runs = {rt: {k: v for k, v in r.items() if not k.endswith("_ms")} for rt, r in rows.items()}
    _bench_report(f"pipeline {source}, {frames} frames, to a ZeroMQ subscriber on loopback", runs, info, False)
    stages = [k[:-len(" p50_ms")] for k in next(iter(rows.values())) if k.endswith(" p50_ms")]
    per_stage = {st: {f"{rt} {q}": r[f"{st} {q}_ms"] for rt, r in rows.items() for q in ("p50", "p99")} for st in stages}
    _bench_report("per-stage latency, ms (queued: decoded ahead, waiting; read->publish includes it)", per_stage, info, False)


@bench_app.command("soak")
@user_errors
def bench_soak_cmd(
    clips: Annotated[Optional[list[Path]], typer.Argument(help="Real clips to loop; default: ../shared/data/antiuav-clips.")] = None,
    frames: Annotated[int, typer.Option(help="File phase: frames in the damaged file.")] = 10_000,
    live_frames: Annotated[int, typer.Option(help="Live phase: frames processed from the flaky camera.")] = 2_000,
    scale: Annotated[float, typer.Option(help="Resize the clips by this factor.")] = 0.5,
    outage_every: Annotated[int, typer.Option(help="Live: frames between camera losses.")] = 500,
    outage_s: Annotated[float, typer.Option(help="Live: seconds each loss lasts.")] = 2.0,
    pipeline: Annotated[Optional[Path], typer.Option(help="Pipeline TOML; default: pipelines/default.toml.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu or cuda.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Long run with injected faults: a damaged file, a subscriber that stalls, a camera that freezes and vanishes.

    Exits 1 when a file-mode frame was lost or memory kept growing after the warm-up."""
    import tempfile

    from irstream.bench import machine
    from irstream.config import load_pipeline, override
    from irstream.soak import SoakConfig, SoakReport, file_phase, live_phase

    clips = clips or sorted((REPO_ROOT.parent / "shared" / "data" / "antiuav-clips").glob("*.mp4"))
    missing = [c for c in clips if not c.is_file()]
    if not clips or missing:
        raise UserError(f"{missing[0] if missing else 'antiuav-clips'}: no clip to soak with; give video files")
    try:
        cfg = SoakConfig(frames=frames, live_frames=live_frames, scale=scale, outage_every=outage_every, outage_s=outage_s)
    except ValueError as exc:
        raise UserError(f"soak options: {exc}") from None
    pipe_cfg = override(load_pipeline(pipeline), FLAGS, **{"model.device": device})
    report = SoakReport()
    with _progress() as prog, tempfile.TemporaryDirectory() as tmp:
        task = prog.add_task("file phase", total=frames)
        report.phases["file"] = file_phase(pipe_cfg, clips, cfg, Path(tmp), on_frame=lambda _r: prog.advance(task))
        task = prog.add_task("live phase", total=live_frames)
        report.phases["live"] = live_phase(pipe_cfg, clips, cfg, on_frame=lambda _r: prog.advance(task))
    info = machine()
    if as_json:
        print(json.dumps(_json_safe({"machine": info, "passed": report.passed, "phases": report.phases})))
    else:
        for name, r in report.phases.items():
            _bench_report(f"soak, {name} phase: {'passed' if r['passed'] else 'FAILED'}", {k: {"value": v} for k, v in r.items()},
                          info, False)
    if not report.passed:
        raise typer.Exit(1)


@app.command()
@user_errors
def export(
    dest: Annotated[Path, typer.Argument(help="The .onnx file to write.")],
    weights: Annotated[Path, typer.Option(help="A .safetensors file written by irstream.")] = DEFAULT_WEIGHTS,
    threads: Annotated[int, typer.Option(help=THREADS_HELP)] = 0,
) -> None:
    """Export weights to ONNX (dynamic batch, height and width) and check it against torch."""
    import numpy as np
    import torch
    from irstream.segment import set_threads

    set_threads(threads)

    from irstream.bench import mask_iou, real_frames
    from irstream.runtime import OnnxRuntime, TorchRuntime, export_onnx, import_onnxruntime
    from irstream.weights import load_weights

    import_onnxruntime()
    model, _ = load_weights(weights)
    export_onnx(model, dest, name=weights.stem)
    frames, origin = real_frames((256, 256), 10, DEFAULT_SIRST)
    ort_rt, torch_rt = OnnxRuntime(dest), TorchRuntime(model, torch.device("cpu"))
    got, want = [ort_rt(f[None, None])[0] for f in frames], [torch_rt(f[None, None])[0] for f in frames]
    diff = max(float(np.abs(g - w).max()) for g, w in zip(got, want))
    out.print(f"wrote {escape(str(dest))} ({dest.stat().st_size / 2**20:.1f} MiB); against torch on {len(frames)} "
              f"frames of {escape(origin)}: max probability difference {diff:.1e}, mask IoU {mask_iou(got, want):.4f}")


def main() -> None:
    import logging

    from rich.logging import RichHandler

    # Warnings (a camera reconnecting, a stalled stage) go to stderr beside the progress bar.
    logging.basicConfig(level=logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err, show_path=False, markup=False)])
    app()


if __name__ == "__main__":
    main()
