"""Readers of the labelled drone footage in the data root, with the train / validation split
irstream uses for each (the sets' own held-out parts are kept elsewhere, for acceptance).

    drone-detection-ir        320x256 videos, MOTChallenge boxes of drones, birds, airplanes
                              and helicopters; every 5th video of each class validates
    antiuav-cvpr2025-frames   36 short 640x512 clips, YOLO boxes; every 4th clip validates
    antiuav-close-drones      125 frames of close drones, YOLO boxes; train only (the same
                              flights as the training clip 20190925_101846_1_4)
    antiuav-reticle-clips     four 640x512 clips with a reticle, "x y w h" per frame; clip40
                              validates

Every class of flying target is taught as a target: the product tracks them all (a bird or an
airliner is a real small target for a surveillance user), and the model, a per-pixel
segmenter, does not name the class.  A frame without a box is all negative.

Each reader yields (name, [0, 1] image, [(left, top, width, height), ...]) as
irstream.data.mix.clip_frames does, so one scoring rule and one mask rule serve all.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

DRONE_IR = "drone-detection-ir"
CVPR = "antiuav-cvpr2025-frames"
CLOSE = "antiuav-close-drones"
RETICLE = "antiuav-reticle-clips"

#: Every n-th video of each class (sorted by name, counting from 1) validates.
DRONE_IR_VAL_EVERY = 5
#: Every n-th clip (sorted by name, counting from 1) validates.
CVPR_VAL_EVERY = 4
RETICLE_VAL = ("clip40",)


def read_mot_boxes(path: Path) -> dict[int, list[tuple[float, float, float, float]]]:
    """MOTChallenge ground truth -> {frame (1-based): [(left, top, width, height), ...]}."""
    boxes: dict[int, list] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        v = line.split(",")
        boxes.setdefault(int(v[0]), []).append(tuple(float(t) for t in v[2:6]))
    return boxes



def _gray(bgr: np.ndarray) -> np.ndarray:
    g = bgr if bgr.ndim == 2 else cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    return g.astype(np.float32) / np.float32(255.0)


def _every_nth(names: list[str], n: int, split: str) -> list[str]:
    val = [x for i, x in enumerate(names, 1) if i % n == 0]
    return val if split == "val" else [x for x in names if x not in val]


def drone_ir_videos(root: Path, split: str, classes: tuple[str, ...] = ("DRONE", "BIRD", "AIRPLANE", "HELICOPTER")) -> list[str]:
    """Video stems (IR_DRONE_001, ...) of one split, every class split alike."""
    out = []
    for cls in classes:
        names = sorted(p.stem for p in (root / "videos").glob(f"IR_{cls}_*.mp4"))
        out += _every_nth(names, DRONE_IR_VAL_EVERY, split)
    return out


def _video_frames(path: Path, boxes: dict, step: int, name: str):
    """(name/frame, image, boxes) of every step-th frame (1-based frame numbers, as the labels)."""
    cap = cv2.VideoCapture(str(path))
    i = 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        i += 1
        if not (i - 1) % step:
            yield f"{name}/{i}", _gray(bgr), boxes.get(i, [])
    cap.release()


def drone_ir_frames(root: Path, split: str, step: int):
    for stem in drone_ir_videos(root, split):
        boxes = read_mot_boxes(root / "labels" / f"{stem}.txt")
        yield from _video_frames(root / "videos" / f"{stem}.mp4", boxes, step, stem)


def read_yolo(path: Path, width: int, height: int) -> list[tuple[float, float, float, float]]:
    """YOLO lines (class cx cy w h, normalised) -> [(left, top, width, height)] in px.  Some
    label files of the sets run several boxes into one line: the numbers are read five at a time."""
    v = [float(t) for t in path.read_text().split()] if path.is_file() else []
    out = []
    for k in range(0, len(v) - 4, 5):
        cx, cy, bw, bh = v[k + 1] * width, v[k + 2] * height, v[k + 3] * width, v[k + 4] * height
        out.append((cx - bw / 2, cy - bh / 2, bw, bh))
    return out


def _yolo_images(paths: list[Path], label_of, name_of):
    for p in paths:
        img = _gray(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE))
        yield name_of(p), img, read_yolo(label_of(p), img.shape[1], img.shape[0])


def cvpr_clips(root: Path, split: str) -> list[str]:
    return _every_nth(sorted(p.name for p in root.iterdir() if p.is_dir()), CVPR_VAL_EVERY, split)


def cvpr_frames(root: Path, split: str, step: int = 1):
    for clip in cvpr_clips(root, split):
        paths = sorted((root / clip).glob("*.jpg"))[::step]
        yield from _yolo_images(paths, lambda p: p.with_suffix(".txt"), lambda p: f"{p.parent.name}/{p.stem}")


def close_frames(root: Path, step: int = 1):
    paths = sorted((root / "images").glob("*.jpg"))[::step]
    yield from _yolo_images(paths, lambda p: root / "labels" / f"{p.stem}.txt", lambda p: p.stem)


def read_reticle_boxes(path: Path) -> dict[int, list[tuple[float, float, float, float]]]:
    """One "x y w h" line per frame (1-based by line); a line of zeros: no drone in view."""
    out = {}
    for i, line in enumerate(path.read_text().splitlines(), 1):
        v = [float(t) for t in line.replace(",", " ").split()]
        if len(v) >= 4 and v[2] > 0 and v[3] > 0:
            out[i] = [tuple(v[:4])]
    return out


def reticle_clips(split: str) -> tuple[str, ...]:
    return RETICLE_VAL if split == "val" else tuple(c for c in ("clip4", "clip7", "clip18") if c not in RETICLE_VAL)


def reticle_frames(root: Path, split: str, step: int):
    for clip in reticle_clips(split):
        boxes = read_reticle_boxes(root / f"{clip}.txt")
        yield from _video_frames(root / f"{clip}.avi", boxes, step, clip)
