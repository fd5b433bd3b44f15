"""Semi-automatic labels for a clip with one target: follow the brightest moving blob, flag doubt.

How the Anti-UAV clip labels in irstream/data/labels/antiuav-clips were made (run as
`python -m irstream.tools.autolabel CLIP.mp4 OUT_DIR --frames N [--start X,Y]`):

1. Contrast map per frame: the gray frame minus a large box-blur background (BACKGROUND_PX),
   so sky gradients and vignetting are gone and small warm objects stand out.
2. Fixed bright things are masked: a pixel whose contrast is high in most of STATIC_SAMPLES
   frames spread over the clip (burned-in text, building lights) can never be the drone.
   For a camera that stays put (02_6319: a far drone over trees and lit windows),
   --static-camera subtracts the clip's median frame first, so only what moves remains.
3. Candidates: 8-connected blobs of the contrast above NOISE_SIGMAS x the frame's robust noise.
4. One target is followed: the start is the strongest candidate of the first frame (or --start);
   each later frame takes the candidate nearest the constant-velocity prediction inside a gate
   of GATE_PX, widened after misses.  The box is the bounding box of the blob's pixels above 0.3 of its peak
   contrast, grown by BOX_PAD_PX.
5. A frame is written to the doubt list when no candidate fell in the gate, the pick jumped
   more than JUMP_PX from the prediction, or a second candidate scored close to the pick.  Those
   frames, and a regular sample of the rest, were looked at by eye in crop montages and fixed
   by hand in OUT_DIR/<clip>.fix.txt (frame,x,y,w,h or frame,none); fixes win over the tracker.

Output: <clip>.txt in MOTChallenge form (frame, id 1, left, top, width, height, 1, -1, -1, -1;
1-based frames; no line where the drone is not visible), <clip>.frames (how many frames are
labelled) and <clip>.doubt.txt.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

#: Side of the box blur that estimates the local background (px).
BACKGROUND_PX = 31
#: A candidate blob stands this many robust standard deviations above the background.
NOISE_SIGMAS = 6.0
#: Frames sampled over the clip to find fixed bright pixels; a pixel bright in over
#: STATIC_SHARE of them is masked.
STATIC_SAMPLES = 40
STATIC_SHARE = 0.6
#: Search radius around the prediction (px at 640x512); doubled per missed frame up to GATE_MAX_PX.
GATE_PX = 30.0
GATE_MAX_PX = 160.0
#: A pick further than this from the prediction is put on the doubt list (px).
JUMP_PX = 12.0
#: Jump to the frame's strongest blob when it is this many times brighter than any in the gate.
REACQUIRE_RATIO = 2.5
#: Pixels added on each side of the half-contrast box.
BOX_PAD_PX = 1
#: The box bounds the blob's pixels of at least this share of its peak contrast.
HALF = 0.3
#: Side of the closing that joins the parts of one blob (px).
CLOSE_PX = 5
#: Blobs centred this close to the frame's edge are edge artefacts of the encoder or the blur (px).
EDGE_PX = 3
#: Blobs larger than this are clouds or buildings, not the drone (px).
MAX_BLOB_PX = 2500


def contrast(gray: np.ndarray) -> np.ndarray:
    g = gray.astype(np.float32)
    return g - cv2.blur(g, (BACKGROUND_PX, BACKGROUND_PX))


def robust_sigma(c: np.ndarray) -> float:
    return 1.4826 * float(np.median(np.abs(c - np.median(c)))) + 1e-3


def read_frames(path: Path, count: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < count:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    cap.release()
    return frames


def static_mask(frames: list[np.ndarray]) -> np.ndarray:
    idx = np.linspace(0, len(frames) - 1, min(STATIC_SAMPLES, len(frames))).astype(int)
    hits = np.zeros(frames[0].shape, dtype=np.float32)
    for i in idx:
        c = contrast(frames[i])
        hits += c > NOISE_SIGMAS * robust_sigma(c)
    return cv2.dilate((hits / len(idx) > STATIC_SHARE).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0


def scene_median(frames: list[np.ndarray]) -> np.ndarray:
    """For a camera that does not move: the clip's median frame, the scene without the drone."""
    idx = np.linspace(0, len(frames) - 1, min(STATIC_SAMPLES, len(frames))).astype(int)
    return np.median(np.stack([frames[i] for i in idx]).astype(np.float32), axis=0)


def candidates(gray: np.ndarray, fixed: np.ndarray, max_area: int = MAX_BLOB_PX,
               scene: np.ndarray | None = None) -> list[dict]:
    """Blobs of one frame: centre (x, y), peak contrast, half-contrast box (x0, y0, w, h)."""
    c = contrast(gray) if scene is None else contrast(gray.astype(np.float32) - scene)
    c[fixed] = 0
    sigma = robust_sigma(c)
    # Closing joins the parts of one drone (rotors, body) that the threshold splits.
    above = cv2.morphologyEx((c > NOISE_SIGMAS * sigma).astype(np.uint8), cv2.MORPH_CLOSE, np.ones((CLOSE_PX, CLOSE_PX), np.uint8))
    n, labels, stats, cents = cv2.connectedComponentsWithStats(above, connectivity=8)
    out = []
    for k in range(1, n):
        cx, cy = cents[k]
        if stats[k, cv2.CC_STAT_AREA] > max_area or min(cx, cy, c.shape[1] - 1 - cx, c.shape[0] - 1 - cy) < EDGE_PX:
            continue
        x0, y0, w, h = (int(v) for v in stats[k, :4])
        patch = c[y0:y0 + h, x0:x0 + w]
        peak = float(patch[labels[y0:y0 + h, x0:x0 + w] == k].max())
        ys, xs = np.nonzero((labels[y0:y0 + h, x0:x0 + w] == k) & (patch >= HALF * peak))
        bx0, by0 = max(0, x0 + xs.min() - BOX_PAD_PX), max(0, y0 + ys.min() - BOX_PAD_PX)
        bx1 = min(c.shape[1], x0 + xs.max() + 1 + BOX_PAD_PX)
        by1 = min(c.shape[0], y0 + ys.max() + 1 + BOX_PAD_PX)
        box = (int(bx0), int(by0), int(bx1 - bx0), int(by1 - by0))
        out.append({"xy": np.array(cents[k], dtype=float), "peak": peak / sigma, "box": box})
    return out


def follow(frames: list[np.ndarray], start: tuple[float, float] | None = None,
           ignore_top_px: int = 0, max_area: int = MAX_BLOB_PX, static_camera: bool = False) -> tuple[list, list]:
    """Boxes per frame (None where not found) and the doubt list [(frame, why)], 1-based."""
    scene = scene_median(frames) if static_camera else None
    fixed = static_mask(frames) if scene is None else np.zeros(frames[0].shape, dtype=bool)
    fixed[:ignore_top_px] = True
    boxes, doubt = [], []
    pos = vel = None
    gate = GATE_PX
    for i, gray in enumerate(frames, start=1):
        cands = candidates(gray, fixed, max_area, scene)
        if pos is None:
            if start is not None:
                pos = np.array(start, dtype=float)
            elif cands:
                pos = max(cands, key=lambda c: c["peak"])["xy"]
            vel = np.zeros(2)
        pred = pos + vel if pos is not None else None
        near = [c for c in cands if pred is not None and np.linalg.norm(c["xy"] - pred) < gate]
        strongest = max(cands, key=lambda c: c["peak"], default=None)
        if strongest is not None and strongest["peak"] > REACQUIRE_RATIO * max([c["peak"] for c in near], default=0.0):
            # A blob far brighter than anything near the prediction: the tracker lost the drone.
            near = [strongest]
            doubt.append((i, "re-acquired on the strongest blob"))
        if not near:
            boxes.append(None)
            doubt.append((i, "no candidate in the gate"))
            gate = min(GATE_MAX_PX, gate * 2)
            continue
        # Nearest to the prediction, bright ones preferred: distance in px minus 2 px per sigma of peak.
        score = [np.linalg.norm(c["xy"] - pred) - 2.0 * min(c["peak"], 20.0) for c in near]
        order = np.argsort(score)
        pick = near[order[0]]
        if doubt and doubt[-1][0] == i:
            pass
        elif np.linalg.norm(pick["xy"] - pred) > JUMP_PX:
            doubt.append((i, f"jump {np.linalg.norm(pick['xy'] - pred):.0f} px"))
        elif len(order) > 1 and score[order[1]] - score[order[0]] < 5.0:
            doubt.append((i, "two candidates alike"))
        vel = 0.5 * vel + 0.5 * (pick["xy"] - pos)
        pos = pick["xy"]
        gate = GATE_PX
        boxes.append(pick["box"])
    return boxes, doubt


def apply_fixes(boxes: list, fix_file: Path) -> list:
    if not fix_file.is_file():
        return boxes
    for line in fix_file.read_text().splitlines():
        v = line.split("#")[0].strip().split(",")
        if not v[0]:
            continue
        f = int(v[0])
        boxes[f - 1] = None if v[1].strip() == "none" else tuple(int(float(t)) for t in v[1:5])
    return boxes


def write_mot(path: Path, boxes: list) -> None:
    lines = [f"{i},1,{b[0]},{b[1]},{b[2]},{b[3]},1,-1,-1,-1" for i, b in enumerate(boxes, start=1) if b is not None]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("clip", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--frames", type=int, default=500)
    ap.add_argument("--start", type=str, default="", help="x,y of the drone in frame 1")
    ap.add_argument("--max-area", type=int, default=MAX_BLOB_PX,
                    help="largest blob the drone can be (px); small for a far drone over trees")
    ap.add_argument("--static-camera", action="store_true",
                    help="the camera does not move: subtract the clip's median frame (trees, lights vanish)")
    ap.add_argument("--ignore-top", type=int, default=0,
                    help="rows of burned-in text at the top (px); its digits change, so it is not fixed")
    a = ap.parse_args()
    frames = read_frames(a.clip, a.frames)
    start = tuple(float(v) for v in a.start.split(",")) if a.start else None
    boxes, doubt = follow(frames, start, a.ignore_top, a.max_area, a.static_camera)
    a.out.mkdir(parents=True, exist_ok=True)
    boxes = apply_fixes(boxes, a.out / f"{a.clip.stem}.fix.txt")
    write_mot(a.out / f"{a.clip.stem}.txt", boxes)
    (a.out / f"{a.clip.stem}.frames").write_text(f"{len(frames)}\n")
    (a.out / f"{a.clip.stem}.doubt.txt").write_text("".join(f"{f},{why}\n" for f, why in doubt))
    print(f"{a.clip.stem}: {len(frames)} frames, {sum(b is not None for b in boxes)} boxes, {len(doubt)} in doubt")


if __name__ == "__main__":
    main()
