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

EVERY_HELP = ("Replay every Nth frame only, timestamps kept: a live run that keeps up with 1/N of the "
              "camera's rate.")


def check_replay_every(every: int) -> None:
    """eval-track's and tune-track's --every, checked alike."""
    if every < 1:
        raise UserError(f"--every {every}: must be 1 (every frame) or more")


REPOINT_HELP = ("Replay each sequence as a camera that re-points every S seconds: a view of 3/4 of the frame "
                "jumping between six places; 0 = off.")


def check_repoint(every_s: float) -> None:
    """eval-track's and tune-track's --repoint-every-s, checked alike."""
    if not (every_s >= 0 and math.isfinite(every_s)):
        raise UserError(f"--repoint-every-s {every_s}: must be 0 (off) or a number of seconds")

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
    from irstream.model.config import ModelConfig
    from irstream.data.sirst import read_split
    from irstream.detect.detector import load_model
    from irstream.eval.images import evaluate_model
    from irstream.model.segment import set_threads
    from irstream.detect.targets import TargetConfig
    from irstream.model.weights import read_card, write_card

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
        write_card(weights, card)
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
    from irstream.model.config import ModelConfig
    from irstream.detect.detector import load_model
    from irstream.model.segment import set_threads
    from irstream.model.weights import read_card, write_card

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
        write_card(weights, card)
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
    match_px: Annotated[Optional[float], typer.Option(help="A detection or track within this distance of a label is a "
                                                           "hit, px; default: 3, the field's rule.")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Also write the Pd against false-alarm curves here (PNG).")] = None,
    cache_dir: Annotated[Optional[Path], typer.Option(help="Keep the model's maps here, so that later runs with other "
                                                           "tracker settings skip the model.")] = None,
    weights: Annotated[Optional[str], typer.Option(help="A .safetensors file written by irstream; default: the pipeline's.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu or cuda.")] = None,
    upscale: Annotated[Optional[int], typer.Option(help="Run the model on frames enlarged by this factor.")] = None,
    coarse: Annotated[Optional[int], typer.Option(help="Also run the model on the frame shrunk 2 or 4 times and merge its large targets (close drones); 0 = off.")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="Target probability threshold of the tracked run.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON instead of a table.")] = False,
    threads: Annotated[Optional[int], typer.Option(help=THREADS_HELP + " Default: the pipeline's \\[run] threads.")] = None,
    frames: Annotated[int, typer.Option(help="Score the first N frames of each sequence only (0 = all).")] = 0,
    every: Annotated[int, typer.Option(help=EVERY_HELP)] = 1,
    repoint_every_s: Annotated[float, typer.Option(help=REPOINT_HELP + " Rows NAME re-pointed, and NAME steady: the "
                                                                       "same views held still.")] = 0.0,
) -> None:
    """Score single-frame detections and published tracks against ground truth, side by side."""
    from irstream.config import load_pipeline, override
    from irstream.model.segment import set_threads
    from irstream.eval.tracks import (evaluate_sequence, every_nth, find_sequences, plot_curves, sequence_maps,
                                      summary_row)

    from irstream.eval.metrics import MATCH_DIST_PX

    match_px = MATCH_DIST_PX if match_px is None else match_px
    if not match_px > 0:
        raise UserError(f"--match-px {match_px}: must be > 0")
    cfg = override(load_pipeline(pipeline), FLAGS, **{"model.device": device, "model.upscale": upscale, "model.coarse": coarse,
                                                      "model.weights": weights, "targets.score_threshold": threshold,
                                                      "run.threads": threads})
    set_threads(cfg.run.threads)
    for p in paths:
        if not p.exists():
            raise UserError(f"{p}: no such file or folder")
    if frames < 0:
        raise UserError(f"--frames {frames}: must be 0 (all) or more")
    check_replay_every(every)
    check_repoint(repoint_every_s)
    seqs = find_sequences(paths, frames)
    results = []
    with progress() as prog:
        task = prog.add_task("frames", total=sum(s.frames for s in seqs))
        for k, s in enumerate(seqs):
            prog.update(task, description=s.name)
            maps = sequence_maps(s, cfg, cache_dir, on_frame=lambda: prog.advance(task))
            seq_maps = every_nth(s, maps, every)
            if repoint_every_s:
                results += _repointed_pair(*seq_maps, cfg, match_px, repoint_every_s)
            else:
                results.append(evaluate_sequence(*seq_maps, cfg, match_px))
            prog.update(task, completed=sum(q.frames for q in seqs[:k + 1]))  # maps from the cache advance nothing
    everything = results + _pooled_rows(results, bool(repoint_every_s))
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


def _pooled_rows(results: list, paired: bool) -> list:
    """The pooled row (all sequences), or with --repoint-every-s one per replay."""
    from dataclasses import replace

    from irstream.eval.tracks import pooled

    if paired:
        return [replace(pooled(results[0::2]), name="all re-pointed"), replace(pooled(results[1::2]), name="all steady")]
    return [pooled(results)] if len(results) > 1 else []


def _repointed_pair(seq, maps, cfg, match_px: float, every_s: float) -> list:
    """The sequence re-pointed every every_s s, and its views held still, pooled."""
    from dataclasses import replace

    from irstream.eval.tracks import REPOINT_PLACES, evaluate_sequence, pooled, repointed

    edge = cfg.targets.border_px
    jumping = evaluate_sequence(*repointed(seq, maps, every_s, margin_px=edge), cfg, match_px)
    still = pooled([evaluate_sequence(*repointed(seq, maps, math.inf, [p], edge), cfg, match_px) for p in REPOINT_PLACES])
    return [replace(jumping, name=f"{seq.name} re-pointed"), replace(still, name=f"{seq.name} steady", frames=seq.frames)]


def _grid_values(spec: str) -> tuple[str, list]:
    """"tracker.static_confirm_s=0.5,1,2" -> ("tracker.static_confirm_s", [0.5, 1, 2])."""
    import tomllib

    key, sep, values = spec.partition("=")
    if not sep or "." not in key or not values:
        raise UserError(f"--grid {spec}: expected SECTION.KEY=V1,V2,..., e.g. tracker.static_confirm_s=0.5,1,2")
    try:
        return key.strip(), [tomllib.loads(f"v = {v.strip()}")["v"] for v in values.split(",")]
    except tomllib.TOMLDecodeError:
        raise UserError(f"--grid {spec}: values must be numbers, true/false or quoted strings") from None


@app.command("tune-track")
@user_errors
def tune_track(
    paths: Annotated[list[Path], typer.Argument(help="Sequences with ground truth, as for eval-track (at least 2).")],
    grid: Annotated[list[str], typer.Option(help="A pipeline key and the values to try, e.g. "
                                                 "tracker.static_confirm_s=0.5,1,2 (repeatable: every combination).")],
    cache_dir: Annotated[Path, typer.Option(help="The model's maps, kept here (as eval-track --cache-dir).")] = Path("runs/cache"),
    pipeline: Annotated[Optional[Path], typer.Option(help="Pipeline TOML the grid changes; default: pipelines/default.toml.")] = None,
    weights: Annotated[Optional[str], typer.Option(help="A .safetensors file written by irstream; default: the pipeline's.")] = None,
    coarse: Annotated[Optional[int], typer.Option(help="The coarse pass: 2, 4, or 0 (off); default: the pipeline's.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    threads: Annotated[Optional[int], typer.Option(help=THREADS_HELP)] = None,
    frames: Annotated[int, typer.Option(help="Score the first N frames of each sequence only (0 = all).")] = 0,
    every: Annotated[int, typer.Option(help=EVERY_HELP)] = 1,
    repoint_every_s: Annotated[float, typer.Option(help=REPOINT_HELP)] = 0.0,
) -> None:
    """Leave one sequence out: choose settings on the others, score the one left out, for each
    in turn (see irstream/eval/loo.py).  The held-out figures are the honest ones."""
    from irstream.config import load_pipeline, override
    from irstream.eval.loo import FA_COST, SWITCH_COST, grid_points, leave_one_out
    from irstream.eval.tracks import every_nth, find_sequences, pooled, repointed, sequence_maps
    from irstream.model.segment import set_threads

    check_replay_every(every)
    check_repoint(repoint_every_s)
    cfg = override(load_pipeline(pipeline), FLAGS, **{"model.weights": weights, "model.coarse": coarse,
                                                      "run.threads": threads})
    set_threads(cfg.run.threads)
    grid_map = dict(_grid_values(g) for g in grid)
    for key, values in grid_map.items():
        for v in values:
            override(cfg, **{key: v})  # a bad key or value fails here, in one line
    seqs = find_sequences(paths, frames)
    if len(seqs) < 2:
        raise UserError("tune-track needs at least 2 sequences (one is left out at a time)")
    with progress() as prog:
        task = prog.add_task("maps", total=sum(s.frames for s in seqs))
        maps = [every_nth(s, sequence_maps(s, cfg, cache_dir, on_frame=lambda: prog.advance(task)), every)
                for s in seqs]
        if repoint_every_s:
            maps = [repointed(*m, repoint_every_s, margin_px=cfg.targets.border_px) for m in maps]
        replay = prog.add_task("replays", total=len(grid_points(grid_map)) * len(seqs))
        rows, best_all = leave_one_out(maps, cfg, grid_map, on_replay=lambda: prog.advance(replay))
    held, dflt = pooled([r.result for r in rows]), pooled([r.default for r in rows])

    def figures(r) -> dict:
        return {"pd": r.tracks.pd, "fa_per_frame": r.tracks.fa_per_frame, "idsw": r.mot["IDSW"]}

    if as_json:
        print(json.dumps({"grid": grid_map, "chosen_on_all": best_all, "fa_cost": FA_COST, "switch_cost": SWITCH_COST,
                          "held_out": [{"sequence": r.sequence, "chosen": r.chosen, **figures(r.result),
                                        "default": figures(r.default)} for r in rows],
                          "pooled_held_out": figures(held), "pooled_default": figures(dflt)}))
        return
    t = Table(title="leave one sequence out: tracks on the sequence left out",
              caption=f"chosen on the others by Pd - {FA_COST} x FA - {SWITCH_COST} x ID switches; "
                      "default: the pipeline as given.  FA: false tracks per frame.")
    for c in ("held out", "chosen on the others", "Pd%", "FA", "IDSW", "default Pd%", "FA", "IDSW"):
        t.add_column(c, justify="left" if c in ("held out", "chosen on the others") else "right")
    for name, chosen, r, d in [(r.sequence, r.chosen, r.result, r.default) for r in rows] + [("pooled", None, held, dflt)]:
        t.add_row(escape(name), escape(", ".join(f"{k.split('.')[-1]}={v}" for k, v in chosen.items())) if chosen else "",
                  f"{100 * r.tracks.pd:.1f}", f"{r.tracks.fa_per_frame:.2f}", str(r.mot["IDSW"]),
                  f"{100 * d.tracks.pd:.1f}", f"{d.tracks.fa_per_frame:.2f}", str(d.mot["IDSW"]))
    out.print(t)
    out.print("chosen on all sequences: " + escape(", ".join(f"{k}={v}" for k, v in best_all.items())))


@app.command("eval-sizes")
@user_errors
def eval_sizes(
    sets: Annotated[list[str], typer.Argument(help="Labelled frames: a clip with shipped labels (e.g. 20190925_200805_1_9), "
                                                   "cvpr-val, drone-ir-val or reticle-val.")],
    zoom: Annotated[Optional[list[float]], typer.Option(help="Also zoomed this many times around the target (repeatable).")] = None,
    every: Annotated[int, typer.Option(help="Every N-th labelled frame.")] = 10,
    pipeline: Annotated[Optional[Path], typer.Option(help="Pipeline TOML whose detection stage is scored.")] = None,
    weights: Annotated[Optional[str], typer.Option(help="A .safetensors file written by irstream; default: the pipeline's.")] = None,
    coarse: Annotated[Optional[int], typer.Option(help="The coarse pass: 2, 4, or 0 (off); default: the pipeline's.")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="Target probability threshold.")] = None,
    data_root: Annotated[Path, typer.Option(help="Where the labelled data lies; default: $IRSTREAM_DATA (../shared/data).")] = DEFAULT_SIRST.parent,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    threads: Annotated[Optional[int], typer.Option(help=THREADS_HELP)] = None,
) -> None:
    """The detection stage on box-labelled frames at their own scale and zoomed (close drones):
    Pd, whole (one box covers the target), false detections per frame."""
    from irstream.config import load_pipeline, override
    from irstream.eval.sizes import WHOLE_COVER, WHOLE_MIN_SIDE_PX, frame_set, score
    from irstream.detect.detector import Detector

    cfg = override(load_pipeline(pipeline), FLAGS, **{"model.weights": weights, "model.coarse": coarse,
                                                      "targets.score_threshold": threshold, "run.threads": threads})
    if every < 1:
        raise UserError(f"--every {every}: must be 1 or more")
    detector = Detector.from_config(cfg)
    rows = []
    for name in sets:
        try:
            frames = frame_set(name, data_root, every)
        except (ValueError, FileNotFoundError) as exc:
            raise UserError(str(exc)) from None
        for z in [1.0, *(zoom or [])]:
            with progress() as prog:
                task = prog.add_task(f"{name} x{z:g}", total=len(frames))
                rows.append({"set": name, "zoom": z, **score(detector, frames, z, lambda: prog.advance(task))})
    if as_json:
        out.print_json(data=json_safe(rows))
        return
    t = Table(title=f"detections on labelled frames (coarse pass {cfg.model.coarse or 'off'})",
              caption=f"whole: of the labels {WHOLE_MIN_SIDE_PX} px and longer, one detection's box covers >= "
                      f"{WHOLE_COVER:.0%} of the label's box; FA: false detections per frame")
    for c in ("set", "zoom", "frames", "side px", "Pd%", "whole%", "FA"):
        t.add_column(c, justify="left" if c == "set" else "right")
    for r in rows:
        t.add_row(escape(r["set"]), f"{r['zoom']:g}", str(r["frames"]), f"{r['median_side_px']:.0f}",
                  f"{100 * r['pd']:.1f}", "-" if r["whole"] is None else f"{100 * r['whole']:.1f}", f"{r['fa_per_frame']:.2f}")
    out.print(t)


def _track_tables(rows: list[dict], match_px: float) -> tuple[Table, Table]:
    from irstream.eval.tracks import REPORT_GOAL_FRAMES

    def num(v, fmt):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        return "inf" if v == float("inf") else format(v, fmt)

    det = Table(title=f"detections against published tracks (hits within {match_px:g} px)",
                caption="FA: false alarms per frame.  need: the detector's FA at the tracks' Pd "
                        "(its threshold swept); ratio: need / trk FA.")
    for c in ("sequence", "frames", "det Pd%", "det FA", "trk Pd%", "trk FA", "need", "ratio"):
        det.add_column(c, justify="left" if c == "sequence" else "right", no_wrap=True)
    goal = f"<={REPORT_GOAL_FRAMES}"
    trk = Table(title="tracking", caption=f"confirm: frames from a target's appearance (its first, and each "
                                          f"re-entry) to its first published track, median / max; {goal}: share "
                                          f"published within {REPORT_GOAL_FRAMES} frames (0.5 s at 25 fps); lost: "
                                          "appearances never published.")
    for c in ("sequence", "HOTA", "MOTA", "IDF1", "IDSW", "Frag", "confirm", goal, "lost"):
        trk.add_column(c, justify="left" if c == "sequence" else "right", no_wrap=True)
    for r in rows:
        name = escape(r["sequence"])
        det.add_row(name, str(r["frames"]), num(100 * r["det_pd"], ".1f"), num(r["det_fa_per_frame"], ".2f"),
                    num(100 * r["trk_pd"], ".1f"), num(r["trk_fa_per_frame"], ".2f"), num(r["det_fa_at_trk_pd"], ".2f"),
                    num(r["fa_ratio"], ".1f"))
        trk.add_row(name, num(r["HOTA"], ".3f"), num(r["MOTA"], ".3f"), num(r["IDF1"], ".3f"), str(r["IDSW"]),
                    str(r["Frag"]), f"{num(r['confirm_frames_median'], '.0f')} / {num(r['confirm_frames_max'], '.0f')}",
                    num(r["confirmed_within_goal"], ".0%"), str(r["targets_never_confirmed"]))
    return det, trk
