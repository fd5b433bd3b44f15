"""Reading images as single-channel arrays, whatever channels and bit depth they come in."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from irstream.errors import UserError


def to_gray(img: np.ndarray) -> np.ndarray:
    """Collapse 1-, 3- or 4-channel (BGR/BGRA, as OpenCV reads) to (H, W), keeping the dtype.

    Alpha is dropped; colour is weighted as ITU-R BT.601 luma, which for the common case of
    a gray image saved as RGB gives the gray value back exactly.
    """
    if img.ndim == 2:
        return img
    if img.ndim == 3 and img.shape[2] == 1:
        return img[:, :, 0]
    if img.ndim == 3 and img.shape[2] in (3, 4):
        bgr = img[:, :, :3]
        if np.array_equal(bgr[:, :, 0], bgr[:, :, 1]) and np.array_equal(bgr[:, :, 1], bgr[:, :, 2]):
            return np.ascontiguousarray(bgr[:, :, 0])
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    raise ValueError(f"cannot make a gray image from an array of shape {img.shape}")


def read_gray(path: str | Path) -> np.ndarray:
    """Read an image file as (H, W) uint8 or uint16, as stored (no rescaling)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such image file")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise UserError(f"{path}: not a readable image (PNG, TIFF, BMP or JPEG expected)")
    if img.dtype not in (np.uint8, np.uint16):
        raise UserError(f"{path}: {img.dtype} pixels are not supported; save as 8- or 16-bit")
    try:
        return to_gray(img)
    except ValueError as exc:
        raise UserError(f"{path}: {exc}") from None


def read_mask(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a binary mask (stored as 0/255, or 0/1) as bool, resized to `shape` if it differs.

    Resizing uses nearest neighbour, as the field's loaders do for SIRST v1's Misc_111.
    """
    mask = read_gray(path) > 0
    if shape is not None and mask.shape != tuple(shape):
        resized = cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
        mask = resized > 0
    return mask


def write_png(path: str | Path, img: np.ndarray, key: str | None = None) -> Path:
    """Write an image (8- or 16-bit), its folder made first; UserError naming the file where
    that fails (cv2.imwrite only returns False).  key: the pipeline key that named the folder,
    so that the message names the setting (and the CLI its flag)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{path.parent}: cannot create ({exc.strerror or exc}); pick a writable folder", key) from None
    try:
        written = cv2.imwrite(str(path), img)
    except cv2.error:  # a suffix OpenCV has no writer for
        written = False
    if not written:
        raise UserError(f"{path}: cannot write the image; give a writable folder and a .png or .tif name", key)
    return path
