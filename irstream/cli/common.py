"""What every command module shares: consoles, one-line errors, progress, common options."""

from __future__ import annotations

import functools
import math
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from irstream.data import default_data_root
from irstream.errors import UserError

out = Console()
err = Console(stderr=True)

DEFAULT_SIRST = default_data_root() / "sirst-v1"
#: --weights: a path, or the name of shipped weights; None = the shipped default.
WeightsOpt = Annotated[Optional[str], typer.Option(help="A .safetensors file written by irstream, or the name of shipped "
                                                        "weights (e.g. lrrnet_light_sirst); default: the shipped default.")]


def weights_path(weights: Optional[str]) -> Path:
    from irstream.model.config import ModelConfig

    return ModelConfig(weights=weights or "").weights_path


def user_errors(fn):
    """Show a UserError as one line on stderr and exit 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            flag = f" (set by {FLAGS[exc.key]} or the pipeline's key)" if exc.key in FLAGS else ""
            err.print(f"[bold red]error:[/] {escape(str(exc))}{flag}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except OSError as exc:
            if exc.filename is None:
                raise
            # A file a command reads or writes (an unwritable --out, a full disk): the path and the
            # reason on one line, where a check of its own was not written for it.
            err.print(f"[bold red]error:[/] {escape(str(exc.filename))}: {escape(exc.strerror or str(exc))}; check the "
                      "path, its permissions and the free space", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def progress():
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


THREADS_HELP = "CPU threads for the model; 0 = every usable core for OpenVINO, all but one for torch."
#: The flag that sets each pipeline key, for error messages about a flag's value.
FLAGS = {"source.uri": "SOURCE", "source.mode": "--mode", "output.preview": "--preview", "output.save": "--save",
         "output.frames_dir": "--frames-dir", "output.jsonl": "--jsonl", "output.mot": "--mot",
         "output.publish": "--publish", "output.web": "--web", "output.web_token": "--web-token", "output.curve_dir": "--curve-dir", "model.device": "--device",
         "model.runtime": "--runtime", "model.triton_url": "--triton-url", "model.weights": "--weights",
         "model.upscale": "--upscale", "model.coarse": "--coarse",
         "targets.score_threshold": "--threshold", "run.max_frames": "--max-frames",
         "output.wait_subscriber_s": "--wait-subscriber", "run.threads": "--threads"}


def metrics_table(title: str, rows: dict[str, dict]) -> Table:
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


def json_safe(d):
    """JSON has no NaN (percentiles of no frames) or inf (a Pd never reached): null instead."""
    if isinstance(d, dict):
        return {k: json_safe(v) for k, v in d.items()}
    if isinstance(d, list):
        return [json_safe(v) for v in d]
    return None if isinstance(d, float) and not math.isfinite(d) else d
