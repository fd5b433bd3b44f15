"""Quality: eval on still images, the calibrated operating point, eval-track on sequences."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from irstream.cli.common import out, user_errors, progress, THREADS_HELP, FLAGS, WeightsOpt, DEFAULT_SIRST, metrics_table, json_safe
from irstream.errors import UserError

app = typer.Typer()


@app.command("eval")
@user_errors
def eval_cmd(
    data: Annotated[Path, typer.Option(help="SIRST-style dataset root.")] = DEFAULT_SIRST,
    split: str = "test",
    weights: WeightsOpt = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    threshold: Annotated[Optional[float], typer.Option(help="Target probability threshold; default: the weights' operating point (their card), 0.5 without one.")] = None,
    record: Annotated[bool, typer.Option(help="Write the result onto the weights' card, with this command.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    threads: Annotated[int, typer.Option(help=THREADS_HELP)] = 0,
    every: Annotated[int, typer.Option(help="Every N-th image of the split only (a quicker estimate for slow models); recorded under its own name.")] = 1,
) -> None:
    """IoU, nIoU, Pd and Fa of a model on a dataset split (the field's conventions); on a
    target-free set (no masks/ folder) the share of images with no detection."""
    from irstream.config import ModelConfig
    from irstream.data.sirst import read_split
    from irstream.model.detector import load_model
    from irstream.eval.images import evaluate_model
    from irstream.model.segment import set_threads
    from irstream.track.targets import TargetConfig
    from irstream.model.weights import card_path, read_card

    set_threads(threads)

    if threshold is not None and not 0.0 < threshold < 1.0:
        raise UserError(f"--threshold {threshold}: must be within (0, 1)")
    loaded = load_model(ModelConfig(weights=weights or "", device=device), TargetConfig(score_threshold=threshold))
    given, weights = weights or loaded.path.stem, loaded.path
    if not (data / "images").is_dir():
        raise UserError(f"--data {data}: not a dataset folder (no images/ in it)")
    if every < 1:
        raise UserError(f"--every {every}: must be 1 or more")
    n_images = len(read_split(data, split)[::every])
    name = f"{data.name}/{split}" + (f" every {every}" if every > 1 else "")
    with progress() as prog:
        task = prog.add_task(name, total=n_images)
        res = evaluate_model(loaded, data, split, on_image=lambda: prog.advance(task), every=every)
    if record:
        card = read_card(weights)
        card.setdefault("metrics", {})[name] = {
            **{k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()},
            "measured_by": f"irstream eval --data {data} --split {split} --weights {given}"
                           + (f" --threshold {threshold}" if threshold is not None else "")
                           + (f" --every {every}" if every > 1 else "")}
        card_path(weights).write_text(json.dumps(card, indent=2) + "\n")
    if as_json:
        print(json.dumps({"weights": str(weights), "data": str(data), "split": split, **res}))
    else:
        out.print(metrics_table(f"{weights.name} on {name}", {split: res}))


@app.command()
@user_errors
def calibrate(
    weights: WeightsOpt = None,
    data_root: Annotated[Path, typer.Option(help="Folder with sirst-v1, sirst-v2-backgrounds, antiuav-clips and daub.")] = DEFAULT_SIRST.parent,
    pd: Annotated[float, typer.Option(help="Pd the operating point must keep on the pooled validation targets.")] = 0.95,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    record: Annotated[bool, typer.Option(help="Write the operating point onto the weights' card.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    threads: Annotated[int, typer.Option(help=THREADS_HELP)] = 0,
) -> None:
    """Choose the score threshold on validation data (never test) for a stated Pd; see irstream/eval/calibrate.py."""
    from irstream.eval.calibrate import choose, count_images, sweep
    from irstream.config import ModelConfig
    from irstream.model.detector import load_model
    from irstream.model.segment import set_threads
    from irstream.model.weights import card_path, read_card

    set_threads(threads)

    if not 0.0 < pd <= 1.0:
        raise UserError(f"--pd {pd}: must be within (0, 1]")
    for sub in ("sirst-v1", "sirst-v2-backgrounds", "antiuav-clips", "daub"):
        if not (data_root / sub).is_dir():
            raise UserError(f"--data-root {data_root}: no {sub}/ in it; calibration needs all four validation sets")
    loaded = load_model(ModelConfig(weights=weights or "", device=device))
    given, weights = weights or loaded.path.stem, loaded.path
    with progress() as prog:
        task = prog.add_task("validation images", total=count_images(data_root))
        op = choose(sweep(loaded.model, data_root, loaded.device, on_image=lambda: prog.advance(task),
                          tiles=loaded.tiles), pd)
    op["measured_by"] = f"irstream calibrate --weights {given} --pd {pd}"
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
    from irstream.model.segment import set_threads
    from irstream.eval.tracks import evaluate_sequence, find_sequences, plot_curves, pooled, sequence_maps, summary_row

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
    with progress() as prog:
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
                          "sequences": [json_safe(r) for r in rows]}))
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
