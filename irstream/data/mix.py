"""One training stream from all the real data: sources mixed with stated weights, plus hard negatives.

Sources (names used in configs and on the weights' card), all read in place from the data root:

    sirst-v1      SIRST v1, real, pixel masks                      (train split)
    nudt-sirst    NUDT-SIRST, synthetic targets on real IR          (train split)
    backgrounds   SIRST v2 target-free images, every pixel negative (train split)
    daub          DAUB sequences, point labels -> masks (data.points) (the fold's sequences)
    antiuav       Anti-UAV thermal clips, box labels -> masks        (the fold's clips)
    drone-ir      drone-detection-ir videos: drones, birds, airplanes, helicopters (train videos)
    cvpr2025      CVPR 2025 Anti-UAV frames: cities, hills, towers, drones up to 128 px (train clips)
    close-drones  Anti-UAV close drones, 40x28 px on average (all: the flights of a training clip)
    reticle       Anti-UAV clips with a burned-in reticle and text (train clips)
    paste         real targets pasted at 6-110 px onto the train backgrounds, half on their edges
                  (irstream.data.paste)
    horizon       the frames of antiuav, drone-ir and cvpr2025 whose target sits on a ridge line,
                  a tree line, a roof or a tower (the ring around its box is not clear sky), so
                  that crops there are drawn as often as the mix says, not as rarely as they occur

The four drone sets and their splits are described in irstream.data.drones.

A crop is drawn by picking a source by weight, an image of it uniformly, then where to crop:
on a target (target_share), on one of the model's own recent false alarms (hard_share, when
the image has any), or anywhere.  Val and test splits, and the held-out sequences and clips,
never enter.  Which clips and DAUB sequences train and which are held out is the run's fold
(FOLDS): "a" for the shipped weights, "b" the other way round, "c" and "d" DAUB's ground
sequences in turn.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from irstream.data.drones import read_mot_boxes
from irstream.data.points import box_mask, point_mask
from irstream.data.sirst import Sample, load_split, read_split
from irstream.io.imageio import read_gray
from irstream.detect.preprocess import to_unit

#: DAUB sequences trained on; the others (sequence2, sequence5, easy3) are held out for evaluation.
DAUB_TRAIN = ("sequence1", "sequence3", "sequence4", "sequence6", "easy1", "easy2")
DAUB_HELD_OUT = ("sequence2", "sequence5", "easy3")
#: Consecutive DAUB frames are near duplicates: every n-th frame is kept.
DAUB_FRAME_STEP = 2

#: Labelled Anti-UAV clips (irstream/data/labels/antiuav-clips): three train, two validate.
ANTIUAV_TRAIN = ("20190925_101846_1_4", "20190925_134301_1_7", "3700000000002_132726_2")
ANTIUAV_VAL = ("02_6319_1500-2999", "20190925_200805_1_9")
#: Every n-th labelled clip frame is kept for training (25 frames/s: neighbours are near duplicates).
ANTIUAV_FRAME_STEP = 3

LABELS_DIR = Path(__file__).resolve().parent / "labels" / "antiuav-clips"


@dataclass(frozen=True)
class Fold:
    """Which labelled clips and DAUB sequences a run trains on and which it holds out.

    Fold "a" trained the shipped weights.  Fold "b" swaps the two groups, so that every clip and
    sequence is scored by some weights that never saw it; the close drones are flights of clip
    101846, so fold "b" leaves them out.  Folds "c" and "d" keep fold "a"'s clips and rotate the
    DAUB sequences.  Only fold "a"'s held-out sets may choose its checkpoint.
    """

    antiuav_train: tuple[str, ...]
    antiuav_held_out: tuple[str, ...]
    daub_train: tuple[str, ...]
    daub_held_out: tuple[str, ...]
    close_drones: bool


#: Folds "c" and "d" hold out two of the four ground sequences that fold "a" trains on, in turn,
#: and train on the other four (fold "b", with two, found none of them, even its own): with "a",
#: every DAUB ground sequence is then scored by weights that trained on four others.
DAUB_C_HELD_OUT = ("sequence4", "sequence6", "easy2")
DAUB_D_HELD_OUT = ("sequence1", "sequence3", "easy1")
ALL_DAUB = DAUB_TRAIN + DAUB_HELD_OUT


def _daub_without(held_out: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(s for s in ALL_DAUB if s not in held_out)


FOLDS = {"a": Fold(ANTIUAV_TRAIN, ANTIUAV_VAL, DAUB_TRAIN, DAUB_HELD_OUT, close_drones=True),
         "b": Fold(ANTIUAV_VAL, ANTIUAV_TRAIN, DAUB_HELD_OUT, DAUB_TRAIN, close_drones=False),
         "c": Fold(ANTIUAV_TRAIN, ANTIUAV_VAL, _daub_without(DAUB_C_HELD_OUT), DAUB_C_HELD_OUT, close_drones=True),
         "d": Fold(ANTIUAV_TRAIN, ANTIUAV_VAL, _daub_without(DAUB_D_HELD_OUT), DAUB_D_HELD_OUT, close_drones=True)}

#: Every n-th frame of the drone-detection-ir videos (30 frames/s) and of the reticle clips is kept.
DRONE_IR_FRAME_STEP = 15
RETICLE_FRAME_STEP = 5
#: Composites made for the paste source, and the cut-outs drawn from each labelled set.
PASTE_COUNT = 1500
PASTE_CUTOUTS_PER_SET = 400

SOURCE_NAMES = ("sirst-v1", "nudt-sirst", "backgrounds", "daub", "antiuav", "drone-ir", "cvpr2025",
                "close-drones", "reticle", "paste", "horizon")
#: A labelled target is on an edge when the ring around its box spreads over at least this much
#: gray ([0, 1]; the detections' `structure`, irstream.detect.targets): a ridge line, a tree
#: line, a roof or a tower's lattice goes above it; at 0.1 half the drone-ir frames passed, many
#: of them a sky whose gradient spans the ring.
HORIZON_MIN_STRUCTURE = 0.2
#: The sets the horizon source reads: scene footage without a burned-in overlay (a reticle's own
#: lines would count as the scene's structure).
HORIZON_SETS = ("antiuav", "drone-ir", "cvpr2025")


def load_backgrounds(root: Path, split: str) -> list[Sample]:
    """Target-free images: the mask is all negative."""
    out = []
    for name in read_split(root, split):
        img = to_unit(read_gray(root / "images" / (name if name.endswith(".png") else f"{name}.png")))
        out.append(Sample(name, img, np.zeros(img.shape, dtype=bool)))
    return out


def daub_rows(root: Path, seq: str) -> list[dict]:
    """The labelled frames of one DAUB sequence: rows of its labels.csv (frame, x, y)."""
    with (root / seq / "labels.csv").open() as f:
        return list(csv.DictReader(f))


def load_daub(root: Path, sequences: tuple[str, ...], step: int = 1) -> list[Sample]:
    out = []
    for seq in sequences:
        for r in daub_rows(root, seq)[::step]:
            img = to_unit(read_gray(root / seq / f"{int(r['frame']):04d}.png"))
            out.append(Sample(f"{seq}/{r['frame']}", img, point_mask(img, float(r["x"]), float(r["y"]))))
    return out


def daub_frames(root: Path, sequences: tuple[str, ...], step: int = 1):
    """(name, [0, 1] image, [1 x 1 box at the labelled point]) of every step-th frame, as
    clip_frames gives them, so one scoring rule serves both."""
    for seq in sequences:
        for r in daub_rows(root, seq)[::step]:
            img = to_unit(read_gray(root / seq / f"{int(r['frame']):04d}.png"))
            yield f"{seq}/{r['frame']}", img, [(round(float(r["x"])), round(float(r["y"])), 1, 1)]


def labelled_frames(clip_dir: Path, clip: str) -> tuple[int, dict]:
    """(number of labelled frames, boxes by frame) of one clip, from its label folder."""
    meta = (LABELS_DIR / f"{clip}.frames").read_text().split()
    return int(meta[0]), read_mot_boxes(LABELS_DIR / f"{clip}.txt")


def clip_frames(clip_dir: Path, clips: tuple[str, ...], step: int = 1):
    """(name, [0, 1] image, boxes) of every step-th labelled frame of the clips."""
    for clip in clips:
        n, boxes = labelled_frames(clip_dir, clip)
        cap = cv2.VideoCapture(str(clip_dir / f"{clip}.mp4"))
        for i in range(1, n + 1):
            ok, bgr = cap.read()
            if not ok:
                break
            if not (i - 1) % step:
                img = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32) / np.float32(255.0)
                yield f"{clip}/{i}", img, boxes.get(i, [])
        cap.release()


def boxed_samples(frames) -> list[Sample]:
    """Samples of (name, image, boxes) frames; a frame without a box is all negative."""
    out = []
    for name, img, boxes in frames:
        mask = np.zeros(img.shape, dtype=bool)
        for b in boxes:
            mask |= box_mask(img, *b)
        out.append(Sample(name, img, mask))
    return out


def labelled_train_frames(name: str, data_root: Path, fold: str = "a"):
    """(name, image, boxes) training frames of one of the box-labelled sources."""
    from irstream.data import drones

    if name == "antiuav":
        return clip_frames(data_root / "antiuav-clips", FOLDS[fold].antiuav_train, ANTIUAV_FRAME_STEP)
    if name == "drone-ir":
        return drones.drone_ir_frames(data_root / drones.DRONE_IR, "train", DRONE_IR_FRAME_STEP)
    if name == "cvpr2025":
        return drones.cvpr_frames(data_root / drones.CVPR, "train")
    if name == "close-drones":
        return drones.close_frames(data_root / drones.CLOSE) if FOLDS[fold].close_drones else iter(())
    if name == "reticle":
        return drones.reticle_frames(data_root / drones.RETICLE, "train", RETICLE_FRAME_STEP)
    raise ValueError(f"'{name}' is not a box-labelled source")


#: Validation frames of the drone sets: every n-th frame (video) or image (clip folders).
DRONE_IR_VAL_STEP = 150
CVPR_VAL_STEP = 4
RETICLE_VAL_STEP = 100


def drone_val_frames(data_root: Path):
    """(name, image, boxes) of the drone sets' validation splits (irstream.data.drones)."""
    from irstream.data import drones

    yield from drones.drone_ir_frames(data_root / drones.DRONE_IR, "val", DRONE_IR_VAL_STEP)
    yield from drones.cvpr_frames(data_root / drones.CVPR, "val", CVPR_VAL_STEP)
    yield from drones.reticle_frames(data_root / drones.RETICLE, "val", RETICLE_VAL_STEP)


def load_paste(data_root: Path, fold: str = "a", seed: int = 0) -> list[Sample]:
    """PASTE_COUNT composites: cut-outs of every box-labelled training set on the train backgrounds."""
    from irstream.data.paste import composites, cutouts

    rng = np.random.default_rng(seed)
    cuts = []
    for name in ("antiuav", "drone-ir", "cvpr2025", "close-drones", "reticle"):
        cuts += cutouts(labelled_train_frames(name, data_root, fold), PASTE_CUTOUTS_PER_SET, rng)
    return composites(load_backgrounds(data_root / "sirst-v2-backgrounds", "train"), cuts, PASTE_COUNT, rng)


def horizon_frames(data_root: Path, fold: str = "a", sets: tuple[str, ...] = HORIZON_SETS, labelled=None):
    """(name, image, boxes) of the sets' training frames with a target on an edge.
    labelled: name -> that set's (name, image, boxes) frames, to reuse frames already read."""
    from irstream.detect.targets import ring_spread

    labelled = labelled or (lambda name: labelled_train_frames(name, data_root, fold))
    for name in sets:
        for frame, img, boxes in labelled(name):
            if any(ring_spread(img, int(x), int(y), max(1, round(w)), max(1, round(h))) >= HORIZON_MIN_STRUCTURE
                   for x, y, w, h in boxes):
                yield frame, img, boxes


def load_source(name: str, data_root: Path, fold: str = "a", labelled=None) -> list[Sample]:
    """The training images of one named source (see the module docstring) in one of FOLDS.
    labelled: name -> a box-labelled set's (name, image, boxes) frames (horizon_frames)."""
    labelled = labelled or (lambda n: labelled_train_frames(n, data_root, fold))
    if name == "sirst-v1":
        return load_split(data_root / "sirst-v1", "train")
    if name == "nudt-sirst":
        return load_split(data_root / "nudt-sirst", "train")
    if name == "backgrounds":
        return load_backgrounds(data_root / "sirst-v2-backgrounds", "train")
    if name == "daub":
        return load_daub(data_root / "daub", FOLDS[fold].daub_train, DAUB_FRAME_STEP)
    if name == "paste":
        return load_paste(data_root, fold)
    if name == "horizon":
        return boxed_samples(horizon_frames(data_root, fold, labelled=labelled))
    if name in ("antiuav", "drone-ir", "cvpr2025", "close-drones", "reticle"):
        return boxed_samples(labelled(name))
    raise ValueError(f"unknown data source '{name}'; known: {', '.join(SOURCE_NAMES)}")


def parse_mix(spec: list[str]) -> dict[str, float]:
    """["sirst-v1:0.3", "backgrounds:0.2", ...] -> {name: weight}, weights normalised to sum 1."""
    out = {}
    for item in spec:
        name, _, w = item.partition(":")
        if name not in SOURCE_NAMES:
            raise ValueError(f"mix entry '{item}': unknown source; known: {', '.join(SOURCE_NAMES)}")
        try:
            out[name] = float(w or 1.0)
        except ValueError:
            raise ValueError(f"mix entry '{item}': weight must be a number, e.g. {name}:0.25") from None
        if out[name] <= 0:
            raise ValueError(f"mix entry '{item}': weight must be > 0")
    total = sum(out.values())
    return {k: v / total for k, v in out.items()}


@dataclass
class Mix:
    """Samples of several sources and where the model recently raised false alarms on them."""

    sources: dict[str, list[Sample]]
    weights: dict[str, float]
    hard: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)  # (source, index) -> (N, 2) rows, cols

    @classmethod
    def load(cls, weights: dict[str, float], data_root: Path, fold: str = "a") -> "Mix":
        # horizon is a subset of the box-labelled sets' frames: each set is decoded once.
        labelled = functools.cache(lambda name: list(labelled_train_frames(name, data_root, fold)))
        sources = {n: load_source(n, data_root, fold, labelled) for n in weights}
        empty = [n for n, s in sources.items() if not s]
        if empty:
            raise ValueError(f"mix source(s) {', '.join(empty)} hold no training image in fold '{fold}'; drop them")
        return cls(sources, weights)

    def sizes(self) -> dict[str, int]:
        return {n: len(s) for n, s in self.sources.items()}

    def pick(self, rng: np.random.Generator) -> tuple[str, int]:
        names = list(self.weights)
        name = names[rng.choice(len(names), p=[self.weights[n] for n in names])]
        return name, int(rng.integers(len(self.sources[name])))

    def hard_share(self) -> float:
        """Share of all images that currently hold a mined false alarm."""
        return len(self.hard) / max(1, sum(self.sizes().values()))
