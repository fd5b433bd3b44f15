"""Single-frame IR small-target datasets in the SIRST folder convention.

    root/images/<name>.png
    root/masks/<name>_pixels0.png   (SIRST v1)  or  root/masks/<name>.png  (NUDT-SIRST, IRSTD-1k)
    root/splits/<split>.txt         one name per line (also accepted: root/<split>.txt,
                                    root/idx_*/<split>.txt)

Images may be 1-, 3- or 4-channel, 8- or 16-bit, any size; masks 0/255.  A mask whose
size differs from its image is resized to it (nearest neighbour).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from irstream.errors import UserError
from irstream.io.imageio import read_gray, read_mask
from irstream.detect.preprocess import to_unit

_MASK_PATTERNS = ("{name}_pixels0.png", "{name}.png", "{name}.bmp", "{name}.tif")
_IMAGE_EXTS = (".png", ".bmp", ".tif", ".tiff", ".jpg")


@dataclass
class Sample:
    name: str
    image: np.ndarray  # (H, W) float32 in [0, 1]
    mask: np.ndarray  # (H, W) bool


def split_file(root: Path, split: str) -> Path:
    for cand in (root / "splits" / f"{split}.txt", root / f"{split}.txt", *root.glob(f"idx_*/{split}.txt")):
        if cand.is_file():
            return cand
    raise UserError(f"{root}: no split list '{split}' (looked for splits/{split}.txt); check the split name")


def read_split(root: str | Path, split: str) -> list[str]:
    names = [ln.strip() for ln in split_file(Path(root), split).read_text().splitlines()]
    return [n for n in names if n]


def _find(folder: Path, patterns: tuple[str, ...], name: str) -> Path | None:
    for pat in patterns:
        p = folder / pat.format(name=name)
        if p.is_file():
            return p
    return None


def load_sample(root: Path, name: str) -> Sample:
    img_path = _find(root / "images", tuple("{name}" + e for e in _IMAGE_EXTS), name)
    if img_path is None:
        raise UserError(f"{root}/images: no image named {name} (listed in the split)")
    mask_path = _find(root / "masks", _MASK_PATTERNS, name)
    if mask_path is None:
        raise UserError(f"{root}/masks: no mask for {name}")
    raw = read_gray(img_path)
    return Sample(name, to_unit(raw), read_mask(mask_path, raw.shape))


def load_split(root: str | Path, split: str) -> list[Sample]:
    """Every sample of one split, in memory (these sets are a few hundred small images)."""
    root = Path(root)
    if not (root / "images").is_dir():
        raise UserError(f"{root}: not a SIRST-style dataset (no images/ folder)")
    return [load_sample(root, n) for n in read_split(root, split)]


def crop_at(img: np.ndarray, mask: np.ndarray, size: int, centre: tuple[int, int] | None,
            rng: np.random.Generator, jitter_px: int) -> tuple[np.ndarray, np.ndarray]:
    """A size x size crop around centre (row, col) with uniform jitter, or anywhere when None."""
    ph, pw = max(0, size - img.shape[0]), max(0, size - img.shape[1])
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw)), mode="reflect")
        # The mask is mirrored with the image: a zero-padded mask would teach that a target's
        # mirror image is background.
        mask = np.pad(mask, ((0, ph), (0, pw)), mode="reflect")
    h, w = img.shape
    if centre is None:
        y0, x0 = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    else:
        j = rng.integers(-jitter_px, jitter_px + 1, size=2)
        y0, x0 = centre[0] - size // 2 + j[0], centre[1] - size // 2 + j[1]
    y0, x0 = int(np.clip(y0, 0, h - size)), int(np.clip(x0, 0, w - size))
    return img[y0:y0 + size, x0:x0 + size], mask[y0:y0 + size, x0:x0 + size]
