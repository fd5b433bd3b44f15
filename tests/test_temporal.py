"""Temporal evidence (irstream.detect.temporal) on a real DAUB ground scene, panned, with a faint
point that moves against it."""

import cv2
import numpy as np
import pytest

from conftest import SHARED_DATA
from irstream.detect.temporal import TemporalEvidence

SCENE = SHARED_DATA / "daub" / "sequence1" / "0001.png"


@pytest.mark.skipif(not SCENE.is_file(), reason="../shared/data/daub is not present")
def test_a_faint_point_moving_over_a_panned_real_scene_stands_out_and_the_trees_do_not():
    scene = cv2.imread(str(SCENE), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0
    h, w = scene.shape
    evidence = TemporalEvidence(frames=5, min_z=6.0)
    for k in range(12):
        pan = np.float32([[1, 0, 2.0 * k], [0, 1, 1.0 * k]])  # the camera pans 2.2 px a frame
        frame = cv2.warpAffine(scene, pan, (w, h), borderMode=cv2.BORDER_REFLECT)
        x, y = 60 + 2 * k, 120  # the point moves 2 px a frame against the scene
        frame[y:y + 2, x:x + 2] += 0.06  # a faint 2x2 px target
        p = evidence.update(np.clip(frame, 0, 1))
        if k < 5:
            assert not p.any()  # no verdict before the stack is full
    assert p[y:y + 2, x:x + 2].max() > 0.7
    far = np.ones_like(p, bool)
    far[y - 4:y + 6, x - 4:x + 6] = False
    far[:8], far[-8:], far[:, :8], far[:, -8:] = False, False, False, False  # the pan's new border
    assert (p[far] > 0.7).sum() <= 5  # the registered trees cancel


def test_the_noise_floor_keeps_an_encoders_one_level_flicker_over_flat_sky_quiet():
    """Flat sky of a compressed clip: a few blocks flicker by one gray level.  Without a floor
    the residual's spread is 0 and they stand out; with two gray levels they do not."""
    rng = np.random.default_rng(0)
    loud, quiet = TemporalEvidence(5, 24.0), TemporalEvidence(5, 24.0, noise_floor=2 / 255)
    for k in range(8):
        sky = np.full((128, 160), 100 / 255, np.float32)
        for _ in range(4):
            y, x = rng.integers(0, 120), rng.integers(0, 152)
            sky[y:y + 8, x:x + 8] += 1 / 255
        p_loud, p_quiet = loud.update(sky), quiet.update(sky)
    assert (p_loud > 0.7).any() and not (p_quiet > 0.7).any()


def _panned_scene_with_a_faint_mover(scene: np.ndarray, frames: int):
    """The real scene panned 2.2 px a frame, a faint 2x2 px point moving 2 px a frame against it."""
    h, w = scene.shape
    for k in range(frames):
        frame = cv2.warpAffine(scene, np.float32([[1, 0, 2.0 * k], [0, 1, 1.0 * k]]), (w, h),
                               borderMode=cv2.BORDER_REFLECT)
        x, y = 60 + 2 * k, 120
        frame[y:y + 2, x:x + 2] += 0.06
        yield np.clip(frame, 0, 1), (x + 0.5, y + 0.5)


@pytest.mark.skipif(not SCENE.is_file(), reason="../shared/data/daub is not present")
def test_the_default_lays_temporal_evidence_over_lossless_streams_only():
    """The model sees nothing (its map is 0): a lossless stream still finds the faint mover
    from its motion against the trees; the same frames from a compressed source find nothing."""
    from irstream.detect.osd import OsdConfig
    from irstream.detect.targets import TargetConfig, TargetStage

    scene = cv2.imread(str(SCENE), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0
    cfg = TargetConfig(score_threshold=0.7, temporal_min_z=6.0)
    assert cfg.temporal == "lossless"
    exact, compressed = TargetStage(cfg, OsdConfig(), lossless=True), TargetStage(cfg, OsdConfig(), lossless=False)
    for k, (unit, (x, y)) in enumerate(_panned_scene_with_a_faint_mover(scene, 12)):
        blind = np.zeros_like(unit)
        found, missed = exact(blind, unit, k / 25.0), compressed(blind, unit, k / 25.0)
    assert len(missed) == 0
    assert np.hypot(*(found.centroid_xy - (x, y)).T).min() < 2.0
    with pytest.raises(ValueError, match="temporal"):
        TargetConfig(temporal="sometimes")


def test_png_tiff_and_ffv1_are_lossless_and_jpeg_sequences_and_mjpeg_videos_are_not(tmp_path):
    from irstream.io.sources import open_source

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (32, 48), np.uint8) for _ in range(3)]
    for ext in ("png", "tif", "jpg"):
        (tmp_path / ext).mkdir()
        for k, f in enumerate(frames):
            cv2.imwrite(str(tmp_path / ext / f"{k}.{ext}"), f)
    for name, codec in (("mjpeg.avi", "MJPG"), ("ffv1.mkv", "FFV1")):
        out = cv2.VideoWriter(str(tmp_path / name), cv2.VideoWriter_fourcc(*codec), 25, (48, 32), isColor=False)
        for f in frames:
            out.write(f)
        out.release()
    kinds = {}
    for name in ("png", "tif", "jpg", "mjpeg.avi", "ffv1.mkv"):
        with open_source(str(tmp_path / name)) as src:
            kinds[name] = src.lossless
    assert kinds == {"png": True, "tif": True, "jpg": False, "mjpeg.avi": False, "ffv1.mkv": True}


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 7])
def test_the_stack_median_is_numpys_median_to_the_bit(n):
    from irstream.detect.temporal import stack_median

    rng = np.random.default_rng(n)
    frames = [rng.random((48, 64), dtype=np.float32) for _ in range(n)]
    frames[0][:8] = frames[-1][:8]  # ties
    frames[1][8:16] = 0.5
    got = stack_median(frames)
    assert got.dtype == np.float32 and np.array_equal(got, np.median(np.stack(frames), axis=0))
