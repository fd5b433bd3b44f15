"""Pack the training data for a lent GPU machine: what travels with a device call is 64 MiB in
all, the checkout included, and ../shared/data is ~125 MB of PNGs.

Writes DEST (git-ignored; name it in the call's `carry`) as a data root that `irstream train
--data-root DEST` reads like ../shared/data: the train and val splits only, every image
re-encoded as lossless WebP under its .png name (OpenCV reads by content, not by name; each
file is checked to decode to the same pixels), and subsets where the whole would not fit:

    python .ci/gpu-data.py .gpu/data --nudt-step 2 --bg-step 2 --bg-val-step 2

The subsets are named on the run's card by the image counts the loader reports.
"""

import argparse
import csv
import shutil
from pathlib import Path

import cv2
import numpy as np

from irstream.data.mix import DAUB_FRAME_STEP, DAUB_TRAIN
from irstream.io.imageio import read_gray

#: The held-out DAUB frames validation reads (irstream.train.loop.DAUB_VAL_STEP).
DAUB_VAL_STEP = 10


def webp(src: Path, dst: Path) -> None:
    img = read_gray(src)
    ok, enc = cv2.imencode(".webp", img, [cv2.IMWRITE_WEBP_QUALITY, 101])  # > 100: lossless
    if not ok or img.dtype != np.uint8:
        raise SystemExit(f"{src}: cannot re-encode losslessly as 8-bit WebP")
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(enc.tobytes())
    if not np.array_equal(read_gray(dst), img):
        raise SystemExit(f"{dst}: does not decode to the pixels of {src}")


def names(split_file: Path) -> list[str]:
    return [line.strip() for line in split_file.read_text().splitlines() if line.strip()]


def pack_split(src: Path, dst: Path, split: str, step: int, mask_name) -> None:
    kept = names(src / "splits" / f"{split}.txt")[::step]
    (dst / "splits").mkdir(parents=True, exist_ok=True)
    (dst / "splits" / f"{split}.txt").write_text("\n".join(kept) + "\n")
    for n in kept:
        image = n if n.endswith(".png") else f"{n}.png"
        webp(src / "images" / image, dst / "images" / image)
        if mask_name:
            webp(src / "masks" / mask_name(n), dst / "masks" / mask_name(n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dest", type=Path)
    ap.add_argument("--src", type=Path, default=Path("../shared/data"))
    ap.add_argument("--nudt-step", type=int, default=2, help="keep every n-th NUDT-SIRST train image")
    ap.add_argument("--bg-step", type=int, default=2, help="keep every n-th target-free train image")
    ap.add_argument("--bg-val-step", type=int, default=2, help="keep every n-th target-free val image")
    a = ap.parse_args()
    shutil.rmtree(a.dest, ignore_errors=True)
    for split in ("train", "val"):
        pack_split(a.src / "sirst-v1", a.dest / "sirst-v1", split, 1, lambda n: f"{n}_pixels0.png")
    pack_split(a.src / "nudt-sirst", a.dest / "nudt-sirst", "train", a.nudt_step, lambda n: f"{n}.png")
    bg = "sirst-v2-backgrounds"
    pack_split(a.src / bg, a.dest / bg, "train", a.bg_step, None)
    pack_split(a.src / bg, a.dest / bg, "val", a.bg_val_step, None)
    for seq_dir in sorted((a.src / "daub").iterdir()):
        with (seq_dir / "labels.csv").open() as f:
            rows = list(csv.DictReader(f))
        step = DAUB_FRAME_STEP if seq_dir.name in DAUB_TRAIN else DAUB_VAL_STEP
        (a.dest / "daub" / seq_dir.name).mkdir(parents=True)
        shutil.copy(seq_dir / "labels.csv", a.dest / "daub" / seq_dir.name / "labels.csv")
        for r in rows[::step]:
            frame = f"{int(r['frame']):04d}.png"
            webp(seq_dir / frame, a.dest / "daub" / seq_dir.name / frame)
    shutil.copytree(a.src / "antiuav-clips", a.dest / "antiuav-clips")
    size = sum(p.stat().st_size for p in a.dest.rglob("*") if p.is_file())
    print(f"{a.dest}: {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
