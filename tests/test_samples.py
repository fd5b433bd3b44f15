"""The shipped sample clips in sample_videos/ are what their documented commands make.

Each clip is regenerated into tmp_path with the same function the command calls, then compared
frame by frame (decoded frames, not file bytes: the encoder may stamp its version in the file)
and line for line (ground truth, which must be identical).  The parameters below must match
sample_videos/README.md.

Pixels are compared within one count, not bit for bit.  The generator's float arithmetic goes
through numpy's SIMD kernels (exp, sin, power), which pick different instructions on different
CPUs (AVX2, AVX-512, NEON) and may round the last bit differently; a value that lands on a .5
boundary then quantises one count apart (seen on an AVX-512 Xeon: 7481 against 7480 in 5 frames
of the 16-bit sequence).  A real change of the generator moves far more than that: a different
seed, noise level or target moves thousands of pixels by many counts, so the two bounds below
(at most one count anywhere, and at most one pixel in a thousand off at all) keep the test's power.
"""

from pathlib import Path

import cv2
import numpy as np
import pytest

from irstream.data.synthetic import write_clip, write_sequence

SAMPLES = Path(__file__).resolve().parents[1] / "sample_videos"

#: Largest difference between a shipped and a regenerated pixel (counts), and the largest share
#: of pixels of one frame allowed to differ at all (see the module docstring).
MAX_PIXEL_DIFF = 1
MAX_DIFFERING_SHARE = 1e-3


def assert_same_frame(a: np.ndarray, b: np.ndarray, what: str) -> None:
    diff = np.abs(a.astype(np.int64) - b.astype(np.int64))
    differing = int((diff > 0).sum())
    assert diff.max() <= MAX_PIXEL_DIFF, f"{what}: a pixel differs by {int(diff.max())} counts"
    assert differing <= MAX_DIFFERING_SHARE * a.size, f"{what}: {differing} pixels differ"

# name -> keyword arguments of write_clip (8-bit FFV1 .mkv) or write_sequence (16-bit TIFF folder)
CLIPS = {
    "sky_drones.mkv": {"n_frames": 100, "seed": 35, "shape": (256, 320), "kind": "sky", "n_targets": 5, "fps": 25.0},
    "ground_clutter.mkv": {"n_frames": 64, "seed": 89, "shape": (192, 256), "kind": "ground", "n_targets": 4,
                           "fps": 25.0},
}
SEQUENCES = {
    "sea_16bit": {"n_frames": 40, "seed": 219, "shape": (192, 256), "kind": "sea", "n_targets": 4, "bit_depth": 16,
                  "snr_range": (8.0, 20.0)},
}


def read_clip(path: Path) -> list[np.ndarray]:
    """Every frame of a gray video as (H, W) uint8; OpenCV decodes gray to three equal channels."""
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"{path}: cannot open"
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        assert np.array_equal(bgr[:, :, 0], bgr[:, :, 1]) and np.array_equal(bgr[:, :, 0], bgr[:, :, 2])
        frames.append(bgr[:, :, 0].copy())
    cap.release()
    return frames


def read_tiffs(folder: Path) -> list[np.ndarray]:
    return [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(folder.glob("*.tif"))]


def gt_rows(text: str) -> np.ndarray:
    """MOTChallenge lines -> (N, 9) int array: frame, id, left, top, width, height, conf, class, visibility."""
    return np.array([[int(v) for v in ln.split(",")] for ln in text.splitlines()], dtype=np.int64).reshape(-1, 9)


def shipped(name: str) -> tuple[list[np.ndarray], str]:
    if name in CLIPS:
        return read_clip(SAMPLES / name), (SAMPLES / name).with_suffix(".gt.txt").read_text()
    return read_tiffs(SAMPLES / name), (SAMPLES / name / "gt" / "gt.txt").read_text()


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_clip_regenerates(name, tmp_path):
    frames, gt = shipped(name)
    out = tmp_path / name
    write_clip(out, **CLIPS[name])
    again = read_clip(out)
    assert len(frames) == len(again) == CLIPS[name]["n_frames"]
    for t, (a, b) in enumerate(zip(frames, again)):
        assert a.dtype == np.uint8 and a.shape == CLIPS[name]["shape"]
        assert_same_frame(a, b, f"{name} frame {t + 1}")
    assert out.with_suffix(".gt.txt").read_text() == gt


@pytest.mark.parametrize("name", sorted(SEQUENCES))
def test_sequence_regenerates(name, tmp_path):
    frames, gt = shipped(name)
    write_sequence(tmp_path / name, **SEQUENCES[name])
    again = read_tiffs(tmp_path / name)
    assert len(frames) == len(again) == SEQUENCES[name]["n_frames"]
    for t, (a, b) in enumerate(zip(frames, again)):
        assert a.dtype == np.uint16 and a.shape == SEQUENCES[name]["shape"]
        assert_same_frame(a, b, f"{name} frame {t + 1}")
    assert (tmp_path / name / "gt" / "gt.txt").read_text() == gt


@pytest.mark.parametrize("name", sorted(CLIPS) + sorted(SEQUENCES))
def test_ground_truth_matches_frames(name):
    frames, gt = shipped(name)
    rows = gt_rows(gt)
    h, w = frames[0].shape
    assert len(rows) > 0
    assert rows[:, 0].min() >= 1 and rows[:, 0].max() <= len(frames)  # 1-based frames, none past the end
    assert set(rows[:, 0]) == set(range(1, len(frames) + 1))  # every frame has a target
    assert (rows[:, 2] >= 0).all() and (rows[:, 3] >= 0).all()
    assert (rows[:, 2] + rows[:, 4] <= w).all() and (rows[:, 3] + rows[:, 5] <= h).all()
    assert (rows[:, 4] >= 1).all() and (rows[:, 5] >= 1).all()
    assert (rows[:, 6:] == 1).all()
    for f in np.unique(rows[:, 0]):  # one box per track per frame
        ids = rows[rows[:, 0] == f, 1]
        assert len(ids) == len(set(ids))
    assert len(set(rows[:, 1])) >= 4  # crossing pair, entry, exit


@pytest.mark.parametrize("name", sorted(CLIPS) + sorted(SEQUENCES))
def test_one_pixel_targets_survive(name):
    """Lossless storage: wherever the ground truth has a 1x1 box, that pixel still stands out."""
    frames, gt = shipped(name)
    rows = gt_rows(gt)
    ones = rows[(rows[:, 4] == 1) & (rows[:, 5] == 1)]
    assert len(ones) > 0, f"{name}: no 1-pixel target to check"
    h, w = frames[0].shape
    for f, _, x, y, *_ in ones:
        img = frames[f - 1].astype(np.int64)
        y0, y1, x0, x1 = max(0, y - 3), min(h, y + 4), max(0, x - 3), min(w, x + 4)
        patch = img[y0:y1, x0:x1].copy()
        patch[y - y0, x - x0] = np.iinfo(np.int64).min  # the target's own pixel out of the ring
        ring = patch[patch > np.iinfo(np.int64).min]
        assert img[y, x] > np.median(ring), f"{name} frame {f}: 1-pixel target at ({x}, {y}) is gone"


def test_a_changed_generator_is_caught(tmp_path):
    """The tolerance is not so loose that another seed of the same clip would pass."""
    name = "sea_16bit"
    frames, _ = shipped(name)
    write_sequence(tmp_path / name, **{**SEQUENCES[name], "seed": SEQUENCES[name]["seed"] + 1})
    other = read_tiffs(tmp_path / name)
    with pytest.raises(AssertionError):
        assert_same_frame(frames[0], other[0], "another seed")


def test_write_clip_refuses_what_it_cannot_write(tmp_path):
    with pytest.raises(ValueError, match=r"\.mkv"):
        write_clip(tmp_path / "clip.avi", 2, 0, (32, 32))
    (tmp_path / "taken.mkv").mkdir()  # a folder where the file should go: the writer cannot open
    with pytest.raises(ValueError, match="could not open an FFV1 writer"):
        write_clip(tmp_path / "taken.mkv", 2, 0, (32, 32))
