"""Scoring single-frame detections and published tracks against point ground truth.

A sequence is a source plus, per frame, the ground-truth target points (id, x, y):
- DAUB: a folder of frames with `labels.csv` (`frame,x,y`, frame 1-based, x and y 0-based
  pixel centres, one target per frame);
- MOTChallenge: a video or folder with `<name>.gt.txt` beside it or `gt/gt.txt` inside it
  (`frame,id,left,top,width,height,...`, frame 1-based; the point is the box centre);
- a video whose labels irstream ships (irstream/data/labels/antiuav-clips/<name>.txt, found by
  the video's name), scored over the labelled frames (<name>.frames) only.

Matching is by distance: a prediction within `match_px` of a ground-truth point (3 px, the
field's convention) is a hit; for a box label, the distance is to the box (0 inside it), so a
detection anywhere on a 30x20 px drone hits it.  A point label that lies inside the predicted
box grown by HIT_BOX_MARGIN_PX on every side is a hit too (distance 0): a 100 px aircraft with
its plume has its centroid 3-5 px from the labelled nose, yet its box holds the nose.  Each
frame is matched one-to-one by least total distance.
Pd = hits / ground-truth points; false alarms per frame = unmatched predictions / frames.

Tracking metrics come from TrackEval (HOTA, CLEAR, Identity), fed a point similarity
max(0, 1 - d / (2 match_px)): similarity 0.5, CLEAR's and IDF1's threshold, falls at exactly
match_px, and HOTA's sweep of thresholds 0.05..0.95 covers distances up to 1.9 match_px.
"""

from __future__ import annotations

import csv
import hashlib
import os
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from irstream.errors import UserError
from irstream.eval.metrics import MATCH_DIST_PX as MATCH_PX, box_distances
from irstream.track.tracker import assign
from irstream.model.weights import read_card
DAUB_LABELS = "labels.csv"
#: A point label inside a predicted box grown by this many px on each side is on the target.
HIT_BOX_MARGIN_PX = 2


@dataclass
class Truth:
    """Ground truth of one frame: ids (n,) and points xy (n, 2), px; for box labels also the
    boxes (n, 4) as left, top, right, bottom pixel edges (inclusive)."""

    ids: np.ndarray
    xy: np.ndarray
    boxes: np.ndarray | None = None

    def distances(self, pred_xy: np.ndarray, pred_boxes: np.ndarray | None = None) -> np.ndarray:
        """(pred, truth) distances, px: to the point, or to the box (0 inside) for box labels.
        With the predictions' boxes (x0, y0, x1, y1, inclusive-exclusive), a point label inside
        a box grown by HIT_BOX_MARGIN_PX is at distance 0 from that prediction."""
        if self.boxes is not None and len(self.boxes):
            return box_distances(pred_xy, self.boxes)
        d = np.linalg.norm(pred_xy[:, None, :] - self.xy[None, :, :], axis=2)
        if pred_boxes is None or not len(pred_boxes):
            return d
        b = np.asarray(pred_boxes, float).reshape(-1, 4)
        m = HIT_BOX_MARGIN_PX
        x, y = self.xy[None, :, 0], self.xy[None, :, 1]
        inside = ((x >= b[:, :1] - m) & (x <= b[:, 2:3] - 1 + m) & (y >= b[:, 1:2] - m) & (y <= b[:, 3:4] - 1 + m))
        return np.where(inside, 0.0, d)


@dataclass
class EvalSequence:
    name: str
    uri: str
    truth: list[Truth]  # one per frame, in source order
    lossless: bool = False  # its frames are stored exactly (Source.lossless)

    @property
    def frames(self) -> int:
        return len(self.truth)


# ---- finding sequences and their ground truth -----------------------------------------------


def find_sequences(paths: list[str | Path], max_frames: int = 0) -> list[EvalSequence]:
    """Each path is a sequence, or a folder whose entries are sequences (e.g. daub/, or
    antiuav-clips/ whose videos have shipped labels).  max_frames > 0 keeps each sequence's
    first max_frames frames (the maps and scores cover those only)."""
    found = _find(paths)
    if max_frames > 0:
        found = [replace(s, truth=s.truth[:max_frames]) for s in found]
    return found


def _find(paths: list[str | Path]) -> list[EvalSequence]:
    found: list[EvalSequence] = []
    for p in map(Path, paths):
        seq = _sequence(p)
        if seq is not None:
            found.append(seq)
            continue
        subs = sorted(p.iterdir()) if p.is_dir() else []  # sequence folders, or videos with labels
        inner = [s for s in map(_sequence, subs) if s is not None]
        if not inner:
            raise UserError(f"{p}: no ground truth found; expected a DAUB folder with {DAUB_LABELS}, "
                            "a video with NAME.gt.txt beside it, a folder with gt/gt.txt, or a folder of those")
        found += inner
    return found


def _sequence(p: Path) -> EvalSequence | None:
    from irstream.data.mix import LABELS_DIR

    if p.is_dir() and (p / DAUB_LABELS).is_file():
        n, lossless = _probe(p)
        return EvalSequence(p.name, str(p), load_daub_labels(p / DAUB_LABELS, n), lossless)
    mot = p.with_name(p.stem + ".gt.txt") if p.is_file() else p / "gt" / "gt.txt"
    if mot.is_file():
        n, lossless = _probe(p)
        return EvalSequence(p.stem if p.is_file() else p.name, str(p), load_mot_gt(mot, n), lossless)
    shipped = LABELS_DIR / f"{p.stem}.txt"
    if p.is_file() and shipped.is_file():
        labelled = int((LABELS_DIR / f"{p.stem}.frames").read_text().split()[0])
        n, lossless = _probe(p)
        return EvalSequence(p.stem, str(p), load_mot_gt(shipped, min(labelled, n), boxes=True), lossless)
    # drone-detection-ir: videos/NAME.mp4 with labels/NAME.txt (MOTChallenge lines) beside the folder.
    beside = p.parent.parent / "labels" / f"{p.stem}.txt"
    if p.is_file() and p.parent.name == "videos" and beside.is_file():
        n, lossless = _probe(p)
        return EvalSequence(p.stem, str(p), load_mot_gt(beside, n, boxes=True), lossless)
    # Anti-UAV tracking examples: NAME.avi with NAME.txt, one "x y w h" line per frame.
    per_frame = p.with_suffix(".txt")
    if p.is_file() and p.suffix in (".avi", ".mp4") and per_frame.is_file():
        from irstream.data.drones import read_reticle_boxes

        n, lossless = _probe(p)
        return EvalSequence(p.stem, str(p), boxes_truth(read_reticle_boxes(per_frame), n), lossless)
    return None


def boxes_truth(boxes: dict[int, list], n_frames: int) -> list[Truth]:
    """Per frame (1-based keys) boxes (left, top, width, height) -> Truth with boxes, ids 1.."""
    return [_box_truth(np.arange(1, len(r) + 1), r, True) for r in (boxes.get(k, []) for k in range(1, n_frames + 1))]


def _box_truth(ids, boxes_xywh: list, with_boxes: bool) -> Truth:
    """One frame's Truth from its boxes (left, top, width, height): their centres as points, and
    the boxes themselves when with_boxes."""
    # The box's pixels are left .. left + w - 1, so its centre is left + (w - 1) / 2.
    xy = np.array([(x + (w - 1) / 2, y + (h - 1) / 2) for x, y, w, h in boxes_xywh]).reshape(-1, 2)
    edges = np.array([(x, y, x + w - 1, y + h - 1) for x, y, w, h in boxes_xywh], float).reshape(-1, 4)
    return Truth(np.asarray(ids, np.int64), xy, edges if with_boxes else None)


def _probe(p: Path) -> tuple[int, bool]:
    """How many frames the sequence at p has, and whether they are stored exactly."""
    from irstream.io.sources import open_source

    with open_source(str(p)) as src:
        n, lossless = src.frame_count, src.lossless
    if not n:
        raise UserError(f"{p}: cannot tell how many frames it has; evaluation needs a file or image folder")
    return int(n), lossless


def load_daub_labels(path: Path, n_frames: int) -> list[Truth]:
    truth = [Truth(np.zeros(0, np.int64), np.zeros((0, 2))) for _ in range(n_frames)]
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            k = int(row["frame"]) - 1
            if 0 <= k < n_frames:
                truth[k] = Truth(np.array([1]), np.array([[float(row["x"]), float(row["y"])]]))
    return truth


def load_mot_gt(path: Path, n_frames: int, boxes: bool = False) -> list[Truth]:
    """Per frame, the boxes' centres as points; with boxes=True the boxes too (matched by
    distance to the box, for targets much larger than match_px)."""
    rows: dict[int, list] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        f, tid, left, top, w, h = (float(v) for v in line.split(",")[:6])
        rows.setdefault(int(f) - 1, []).append((int(tid), left, top, w, h))
    return [_box_truth([t for t, *_ in r], [b for _, *b in r], boxes) for r in (rows.get(k, []) for k in range(n_frames))]


# ---- matching and single-frame counts ---------------------------------------------------------


def match_points(pred_xy: np.ndarray, gt: np.ndarray | Truth, max_px: float = MATCH_PX,
                 pred_boxes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one (pred rows, gt rows) within max_px of the ground-truth points (an (n, 2)
    array) or of a frame's Truth (boxes included), or with the point inside a predicted box
    (Truth.distances): as many pairs as can be made, then the least total distance (the
    tracker's assignment)."""
    truth = gt if isinstance(gt, Truth) else Truth(np.zeros(len(gt), np.int64), np.asarray(gt).reshape(-1, 2))
    if not len(pred_xy) or not len(truth.xy):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    d = truth.distances(np.asarray(pred_xy, float).reshape(-1, 2), pred_boxes)
    return assign(np.where(d <= max_px, d, np.inf))


@dataclass
class Counts:
    """Single-frame counts over some frames: hits, ground-truth points, false alarms, frames."""

    hits: int = 0
    truths: int = 0
    false_alarms: int = 0
    frames: int = 0

    def add(self, pred_xy: np.ndarray, truth: Truth, max_px: float, pred_boxes: np.ndarray | None = None) -> np.ndarray:
        """Count one frame; returns the matched prediction rows."""
        p, _ = match_points(pred_xy, truth, max_px, pred_boxes)
        self.hits += len(p)
        self.truths += len(truth.xy)
        self.false_alarms += len(pred_xy) - len(p)
        self.frames += 1
        return p

    def __iadd__(self, other: "Counts") -> "Counts":
        self.hits += other.hits
        self.truths += other.truths
        self.false_alarms += other.false_alarms
        self.frames += other.frames
        return self

    @property
    def pd(self) -> float:
        return self.hits / self.truths if self.truths else float("nan")

    @property
    def fa_per_frame(self) -> float:
        return self.false_alarms / self.frames if self.frames else float("nan")


def fa_at_pd(curve: list[tuple[float, float]], pd: float) -> float:
    """False alarms per frame the detector needs to reach `pd`, from its (Pd, FA/frame) curve:
    the fewest among operating points with Pd >= pd, linearly interpolated towards the next lower
    point; inf when no threshold reaches it."""
    pts = sorted(curve)
    above = [(p, f) for p, f in pts if p >= pd]
    if not above:
        return float("inf")
    p_hi, f_hi = min(above, key=lambda pf: pf[1])
    below = [(p, f) for p, f in pts if p < pd and f <= f_hi]
    if not below or p_hi == pd:
        return f_hi
    p_lo, f_lo = max(below)
    return f_lo + (f_hi - f_lo) * (pd - p_lo) / (p_hi - p_lo)


# ---- tracking metrics -----------------------------------------------------------------------


@dataclass
class TrackLog:
    """Published tracks per frame, as the evaluation records them: ids (n,) and xy (n, 2)."""

    ids: list[np.ndarray] = field(default_factory=list)
    xy: list[np.ndarray] = field(default_factory=list)
    boxes: list[np.ndarray | None] = field(default_factory=list)

    def add(self, ids: np.ndarray, xy: np.ndarray, boxes: np.ndarray | None = None) -> None:
        self.ids.append(np.asarray(ids, np.int64))
        self.xy.append(np.asarray(xy, np.float64).reshape(-1, 2))
        self.boxes.append(None if boxes is None else np.asarray(boxes).reshape(-1, 4))


def point_similarity(pred_xy: np.ndarray, truth: Truth, max_px: float, pred_boxes: np.ndarray | None = None) -> np.ndarray:
    """(gt, pred) similarities in [0, 1]; 0.5 at exactly max_px from the point (or box); 1 for a
    point inside a predicted box (Truth.distances)."""
    if not len(pred_xy) or not len(truth.xy):
        return np.zeros((len(truth.xy), len(pred_xy)))
    d = truth.distances(np.asarray(pred_xy, float).reshape(-1, 2), pred_boxes).T
    return np.clip(1.0 - d / (2.0 * max_px), 0.0, 1.0)


def mot_metrics(truth: list[Truth], log: TrackLog, max_px: float = MATCH_PX) -> dict:
    """HOTA, MOTA, IDF1, ID switches and fragmentations (TrackEval) of one sequence."""
    from trackeval.metrics import CLEAR, HOTA, Identity

    gt_ids = _dense_ids([t.ids for t in truth])
    tr_ids = _dense_ids(log.ids)
    data = {
        "num_timesteps": len(truth),
        "num_gt_dets": sum(len(t.ids) for t in truth), "num_tracker_dets": sum(len(i) for i in log.ids),
        "num_gt_ids": int(max((i.max() + 1 for i in gt_ids if len(i)), default=0)),
        "num_tracker_ids": int(max((i.max() + 1 for i in tr_ids if len(i)), default=0)),
        "gt_ids": gt_ids, "tracker_ids": tr_ids,
        "similarity_scores": [point_similarity(p, t, max_px, b) for p, t, b in zip(log.xy, truth, _boxes(log))],
    }
    quiet = {"PRINT_CONFIG": False, "THRESHOLD": 0.5}
    hota = HOTA().eval_sequence(data)
    clear = CLEAR(quiet).eval_sequence(data)
    ident = Identity(quiet).eval_sequence(data)
    return {"HOTA": float(np.mean(hota["HOTA"])), "MOTA": float(clear["MOTA"]), "IDF1": float(ident["IDF1"]),
            "IDSW": int(clear["IDSW"]), "Frag": int(clear["Frag"])}


def _dense_ids(per_frame: list[np.ndarray]) -> list[np.ndarray]:
    """TrackEval wants ids 0..n-1 across the sequence."""
    uniq = np.unique(np.concatenate([np.asarray(i, np.int64) for i in per_frame] or [np.zeros(0, np.int64)]))
    return [np.searchsorted(uniq, i).astype(np.int64) for i in per_frame]


def _boxes(log: TrackLog) -> list[np.ndarray | None]:
    return log.boxes if len(log.boxes) == len(log.xy) else [None] * len(log.xy)


#: A target absent from the ground truth for at least this many frames has left the view: its
#: next appearance is a re-entry, timed afresh by frames_to_confirm.
REENTRY_GAP_FRAMES = 10
#: The time-to-first-report goal: published within 0.5 s, 12 frames at 25 frames/s.
REPORT_GOAL_FRAMES = 12


def frames_to_confirm(truth: list[Truth], log: TrackLog, max_px: float = MATCH_PX) -> list[float]:
    """Per appearance of a ground-truth target (its first frame, and every re-entry after
    REENTRY_GAP_FRAMES or more out of view): frames until a published track is on it (0 =
    published in the appearance's first frame); inf when it is not before the target leaves."""
    start: dict[int, int] = {}   # target id -> first frame of its current appearance
    last: dict[int, int] = {}    # target id -> last frame it was in the truth
    found: dict[int, int] = {}   # target id -> frame its current appearance was first published
    delays: list[float] = []

    def close(tid: int) -> None:
        delays.append(float(found[tid] - start[tid]) if tid in found else float("inf"))
        found.pop(tid, None)

    for k, (t, xy, b) in enumerate(zip(truth, log.xy, _boxes(log))):
        for tid in t.ids.tolist():
            if tid in last and k - last[tid] > REENTRY_GAP_FRAMES:
                close(tid)
                start[tid] = k
            start.setdefault(tid, k)
            last[tid] = k
        _, g = match_points(xy, t, max_px, b)
        for tid in t.ids[g].tolist():
            found.setdefault(tid, k)
    for tid in start:
        close(tid)
    return delays


# ---- caching the model's maps ---------------------------------------------------------------


def cache_key(seq: EvalSequence, weights: Path, upscale: int, preprocess_cfg, tiles=(0, 0), coarse: int = 0,
              reuse: tuple[float, int, int] = (0.0, 0, 0)) -> str:
    """Changes with the weights' bytes, the frames' files, the upscale, the coarse pass, the
    tiles' reuse and the preprocessing.
    The files count by their bytes, not their times: a data folder mounted or copied afresh
    keeps its cache (reading a clip costs nothing beside running the model over it)."""
    h = hashlib.sha256(Path(weights).read_bytes())
    src = Path(seq.uri)
    files = sorted(f for f in src.iterdir() if f.is_file()) if src.is_dir() else [src]
    for f in files:
        h.update(f.name.encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    h.update(f"{upscale}:{preprocess_cfg!r}:{seq.frames}".encode())
    if tiles[0]:  # whole frames keep the key they always had
        h.update(f":tiles {tiles[0]} {tiles[1]}".encode())
    if coarse:  # maps without the coarse pass keep the key they always had
        h.update(f":coarse {coarse}".encode())
    if reuse[0]:  # so do maps that ran every tile
        h.update(f":reuse {reuse[0]:g} {reuse[1]}".encode())
        if reuse[2]:  # uncapped maps keep their key
            h.update(f" cap {reuse[2]}".encode())
    return h.hexdigest()[:16]


@dataclass
class SequenceMaps:
    """What the model made of a sequence: per frame the [0, 1] image it saw, its target
    probability map (ignore regions zeroed), and the frame's timestamp, s."""

    units: np.ndarray  # (N, H, W) float16
    probs: np.ndarray  # (N, H, W) float16
    timestamps_s: np.ndarray  # (N,)


def sequence_maps(seq: EvalSequence, cfg, cache_dir: Path | None = None, on_frame=None) -> SequenceMaps:
    """Run preprocessing and the model over a sequence once; with cache_dir, keep the maps there
    so that sweeping thresholds and tracker settings does not run the model again."""
    path = None
    if cache_dir is not None:
        key = cache_key(seq, cfg.model.weights_path, cfg.model.upscale, cfg.preprocess,
                        cfg.model.tiles(read_card(cfg.model.weights_path)), cfg.model.coarse,
                        (cfg.model.reuse_levels, cfg.model.reuse_max_frames, cfg.model.reuse_max_tiles))
        path = Path(cache_dir) / f"{seq.name}-{key}.npz"
        cached = _read_maps(path)
        if cached is not None:
            return cached
    maps = _compute_maps(seq, cfg, on_frame)
    if path is not None:
        _write_maps(path, maps)
    return maps


def _read_maps(path: Path) -> SequenceMaps | None:
    """The cached maps, or None where there are none or the file is unreadable (then they are
    computed again and the file replaced)."""
    try:
        with np.load(path) as z:
            return SequenceMaps(z["units"], z["probs"], z["timestamps_s"])
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def _write_maps(path: Path, maps: SequenceMaps) -> None:
    """Written whole or not at all: an interrupted write leaves no truncated file behind."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"tmp{os.getpid()}-{path.name}")
        np.savez(tmp, units=maps.units, probs=maps.probs, timestamps_s=maps.timestamps_s)
        tmp.replace(path)
    except OSError as exc:
        raise UserError(f"{path.parent}: cannot write the map cache ({exc.strerror or exc}); give a writable "
                        "--cache-dir or leave it out") from None


def _compute_maps(seq: EvalSequence, cfg, on_frame) -> SequenceMaps:
    from irstream.detect.detector import Detector
    from irstream.io.sources import open_source

    detector = Detector.from_config(cfg)
    units, probs, stamps = [], [], []

    def keep(done):
        for prepared, prob in done:
            units.append(prepared.unit.astype(np.float16))
            probs.append(prob.astype(np.float16))
            if on_frame:
                on_frame()

    with open_source(seq.uri, fps=cfg.source.fps) as src:
        for k, frame in enumerate(src):
            if k == seq.frames:  # labels cover the first frames only (shipped clip labels)
                break
            stamps.append(frame.timestamp_s)
            keep(detector.push(detector.prepare(frame)))
    keep(detector.flush())
    if len(units) != seq.frames:
        raise UserError(f"{seq.uri}: read {len(units)} frames, the ground truth has {seq.frames}")
    return SequenceMaps(np.stack(units), np.stack(probs), np.asarray(stamps, np.float64))


def every_nth(seq: EvalSequence, maps: SequenceMaps, n: int) -> tuple[EvalSequence, SequenceMaps]:
    """Every n-th frame only, timestamps kept: what a live run that keeps up with 1/n of the
    camera's frame rate sees of the sequence (the newest frame wins, the rest are dropped)."""
    if n == 1:
        return seq, maps
    return (replace(seq, truth=seq.truth[::n]),
            SequenceMaps(maps.units[::n], maps.probs[::n], maps.timestamps_s[::n]))


#: A re-pointed camera's view: this share of the recorded frame's height and width.
REPOINT_VIEW_SHARE = 0.75
#: Where the view sits in the recorded frame, as shares of the margin left around it (x, y), in
#: the order it visits them.  Consecutive places are 1 to 1.4 margins apart: at 640x512, jumps
#: of 128-205 px, within `[motion] max_shift_px`.
REPOINT_PLACES = ((0.0, 0.0), (1.0, 1.0), (1.0, 0.0), (0.0, 1.0), (0.5, 0.0), (0.5, 1.0))


def repointed(seq: EvalSequence, maps: SequenceMaps, every_s: float, places=REPOINT_PLACES,
              margin_px: int = 0) -> tuple[EvalSequence, SequenceMaps]:
    """The sequence as a camera that re-points every every_s seconds would show it: a view of
    REPOINT_VIEW_SHARE of the frame that jumps to the next of `places` (cycled) at once, as
    a pan-tilt head slewing between presets, and holds there.  Maps and images are cut from
    the recorded ones; labels move with the view, and a target outside it, or within margin_px
    of its edge (where the detection stage drops targets: `[targets] border_px`), is not
    counted.  With one place the view never moves: the same content, steady."""
    n, h, w = maps.units.shape
    vh, vw = round(h * REPOINT_VIEW_SHARE), round(w * REPOINT_VIEW_SHARE)
    t = maps.timestamps_s - maps.timestamps_s[0]
    step = np.floor(t / every_s).astype(np.int64) if np.isfinite(every_s) else np.zeros(n, np.int64)
    corners = [(round(px * (w - vw)), round(py * (h - vh))) for px, py in places]
    units, probs, truth = np.empty((n, vh, vw), maps.units.dtype), np.empty((n, vh, vw), maps.probs.dtype), []
    for k in range(n):
        x0, y0 = corners[step[k] % len(corners)]
        units[k], probs[k] = maps.units[k, y0:y0 + vh, x0:x0 + vw], maps.probs[k, y0:y0 + vh, x0:x0 + vw]
        truth.append(_in_view(seq.truth[k], x0, y0, vw, vh, margin_px))
    return replace(seq, truth=truth), SequenceMaps(units, probs, maps.timestamps_s)


def _in_view(truth: Truth, x0: int, y0: int, vw: int, vh: int, margin: int) -> Truth:
    """The labels whose point lies in the view at (x0, y0) of vw x vh px, margin px or more
    from its edge, in its coordinates."""
    xy = truth.xy - (x0, y0)
    keep = ((xy[:, 0] >= margin) & (xy[:, 0] <= vw - 1 - margin) & (xy[:, 1] >= margin)
            & (xy[:, 1] <= vh - 1 - margin))
    boxes = None
    if truth.boxes is not None:
        boxes = truth.boxes[keep] - (x0, y0, x0, y0)
        boxes = np.clip(boxes, 0, (vw - 1, vh - 1, vw - 1, vh - 1))
    return Truth(truth.ids[keep], xy[keep], boxes)


# ---- one sequence, all of it ----------------------------------------------------------------

#: Detector thresholds swept for the single-frame curve (probabilities).
SWEEP_THRESHOLDS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)


@dataclass
class SequenceResult:
    name: str
    frames: int
    detections: Counts  # at the pipeline's threshold
    tracks: Counts  # published tracks
    sweep: dict[float, Counts]  # detector threshold -> counts
    mot: dict
    confirm_frames: list[float]


def evaluate_sequence(seq: EvalSequence, maps: SequenceMaps, cfg, match_px: float = MATCH_PX,
                      thresholds=SWEEP_THRESHOLDS) -> SequenceResult:
    """Replay the run after the model (targets, motion, tracker) on cached maps, and score it."""
    import dataclasses

    from irstream.track.stage import TrackingStage
    from irstream.detect.targets import TargetStage, extract_targets, resolve_targets

    find = TargetStage(resolve_targets(cfg.targets, read_card(cfg.model.weights_path)), cfg.osd, seq.lossless)
    stage = TrackingStage(cfg)
    det, trk, log = Counts(), Counts(), TrackLog()
    sweep = {t: Counts() for t in thresholds}
    sweep_cfgs = {t: dataclasses.replace(cfg.targets, score_threshold=t) for t in thresholds}
    for k, truth in enumerate(seq.truth):
        unit, prob = maps.units[k].astype(np.float32), maps.probs[k].astype(np.float32)
        t = float(maps.timestamps_s[k])
        dets = find(prob, unit, t)
        prob = find.last_map  # the threshold sweep sees what the detection stage sees
        tracks = stage(dets, unit, t, ignored=find.ignored(None))
        pub = tracks.published()
        det.add(dets.centroid_xy, truth, match_px, dets.bbox_xyxy)
        trk.add(pub.centroid_xy, truth, match_px, pub.bbox_xyxy)
        log.add(pub.track_id, pub.centroid_xy, pub.bbox_xyxy)
        for t, c in sweep.items():
            found = extract_targets(prob, unit, sweep_cfgs[t])
            c.add(found.centroid_xy, truth, match_px, found.bbox_xyxy)
    return SequenceResult(seq.name, seq.frames, det, trk, sweep, mot_metrics(seq.truth, log, match_px),
                          frames_to_confirm(seq.truth, log, match_px))


def pooled(results: list[SequenceResult]) -> SequenceResult:
    """All sequences as one: counts summed, MOT metrics weighted by ground-truth points."""
    def total(get) -> Counts:
        c = Counts()
        for r in results:
            c += get(r)
        return c

    w = np.array([r.tracks.truths for r in results], float)
    w = w / w.sum() if w.sum() else np.full(len(results), 1.0 / max(1, len(results)))
    mot = {k: float(np.dot(w, [r.mot[k] for r in results])) for k in ("HOTA", "MOTA", "IDF1")}
    mot |= {k: int(sum(r.mot[k] for r in results)) for k in ("IDSW", "Frag")}
    thresholds = results[0].sweep.keys() if results else ()
    return SequenceResult("all", sum(r.frames for r in results), total(lambda r: r.detections),
                          total(lambda r: r.tracks), {t: total(lambda r, t=t: r.sweep[t]) for t in thresholds},
                          mot, [f for r in results for f in r.confirm_frames])


def curve(r: SequenceResult) -> list[tuple[float, float]]:
    return [(c.pd, c.fa_per_frame) for c in r.sweep.values()]


def summary_row(r: SequenceResult) -> dict:
    """The numbers of one line of the table (and of --json)."""
    need = fa_at_pd(curve(r), r.tracks.pd)
    best_pd = max(c.pd for c in r.sweep.values())
    finite = [f for f in r.confirm_frames if np.isfinite(f)]
    return {
        "sequence": r.name, "frames": r.frames,
        "det_pd": r.detections.pd, "det_fa_per_frame": r.detections.fa_per_frame,
        "trk_pd": r.tracks.pd, "trk_fa_per_frame": r.tracks.fa_per_frame,
        "det_best_pd": best_pd, "det_fa_at_trk_pd": need,
        "fa_ratio": need / r.tracks.fa_per_frame if r.tracks.fa_per_frame > 0 else float("inf"),
        **r.mot,
        "confirm_frames_median": float(np.median(finite)) if finite else None,
        "confirm_frames_max": max(r.confirm_frames) if r.confirm_frames else None,
        "targets_never_confirmed": sum(1 for f in r.confirm_frames if not np.isfinite(f)),
        "confirmed_within_goal": (sum(1 for f in r.confirm_frames if f <= REPORT_GOAL_FRAMES) / len(r.confirm_frames)
                                  if r.confirm_frames else None),
    }


#: False alarms per frame shown on the curves' x axis (log), lowest and highest.
PLOT_FA_RANGE = (5e-4, 20.0)
#: Where 0 false alarms per frame is drawn on that log axis.
PLOT_FA_ZERO = 1e-3


def plot_curves(results: list[SequenceResult], path: Path) -> None:
    """Pd against false alarms per frame: the detector's threshold sweep as a line, the tracked
    output as a point, per sequence and pooled."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    every = results + ([pooled(results)] if len(results) > 1 else [])
    cols = min(4, len(every))
    rows = -(-len(every) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False)
    for ax, r in zip(axes.ravel(), every):
        pts = sorted((f, p) for p, f in curve(r))
        ax.plot([max(f, PLOT_FA_ZERO) for f, _ in pts], [p for _, p in pts], "o-", ms=3, label="single-frame detector")
        ax.plot([max(r.tracks.fa_per_frame, PLOT_FA_ZERO)], [r.tracks.pd], "r*", ms=12, label="published tracks")
        ax.set_xscale("log")
        # One span for every panel, so that they compare at a glance; more than 20 per frame is off it.
        ax.set_xlim(PLOT_FA_RANGE)
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_ylim(0, 1.02)
        ax.set_title(r.name, fontsize=10)
        ax.set_xlabel("false alarms per frame")
        ax.set_ylabel("Pd")
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(every):]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
