"""Preprocessing: 8-bit scaling from the model's contract, the 16-bit AGC, ignore regions."""

import numpy as np
import pytest

from irstream.errors import UserError
from irstream.detect.preprocess import PreprocessConfig, Preprocessor
from irstream.types import Frame


def frame16(img, t=0.0, index=0):
    return Frame(img.astype(np.uint16), index, t, "test", 16)


def scene16(rng, level=3000.0, shape=(64, 80)):
    return np.clip(rng.normal(level, 40.0, shape), 0, 65535)


def test_8bit_is_divided_by_the_models_scale():
    img = np.arange(256, dtype=np.uint8).reshape(16, 16)
    out = Preprocessor()(Frame(img, 0, 0.0, "t", 8)).unit
    assert out.dtype == np.float32 and out[0, 1] == pytest.approx(1 / 255) and out.max() == 1.0
    assert Preprocessor(eight_bit_scale=128.0)(Frame(img, 0, 0.0, "t", 8)).unit[8, 0] == 1.0


def test_fixed_range_maps_counts_linearly():
    pre = Preprocessor(PreprocessConfig(agc="fixed", fixed_range_counts=(1000.0, 5000.0)))
    out = pre(frame16(np.array([[500, 1000, 3000, 5000, 9000]]))).unit
    np.testing.assert_allclose(out[0], [0.0, 0.0, 0.5, 1.0, 1.0])


def test_hot_pixels_do_not_crush_the_scene():
    rng = np.random.default_rng(0)
    img = scene16(rng, shape=(256, 320))
    img[10, 10] = img[100, 200] = 65535  # fewer than 1 in 10,000 pixels: above the 99.99th percentile
    out = Preprocessor(PreprocessConfig(agc_time_constant_s=0))(frame16(img)).unit
    # The scene keeps its spread: with min/max the noise would sit in a band 1/100 wide.
    assert np.std(out) > 0.1


def test_agc_is_smoothed_over_time():
    rng = np.random.default_rng(1)
    pre = Preprocessor(PreprocessConfig(agc_time_constant_s=1.0))
    base = scene16(rng)
    first = pre(frame16(base, t=0.0)).unit
    # The scene warms by 400 counts in one frame (0.04 s later): the smoothed gain moves only
    # about 4% of the way, so the picture brightens instead of being re-stretched at once.
    later = pre(frame16(base + 400, t=0.04, index=1)).unit
    assert later.mean() > first.mean() + 0.5
    for i in range(2, 200):  # 8 s later the limits have caught up
        settled = pre(frame16(base + 400, t=0.04 * i, index=i)).unit
    assert settled.mean() == pytest.approx(first.mean(), abs=0.02)


def test_ignore_rects_are_filled_and_masked():
    rng = np.random.default_rng(2)
    img = scene16(rng)
    img[:8, :] = 60000  # burned-in text band
    cfg = PreprocessConfig(agc_time_constant_s=0, ignore_rects=((0, 0, 80, 8),), ignore_margin_px=2)
    pre = Preprocessor(cfg)
    prepared = pre(frame16(img))
    out, valid = prepared.unit, prepared.valid
    assert np.ptp(out[:8]) == 0 and 0.1 < out[0, 0] < 0.9  # filled with the scene's median
    assert np.std(out[8:]) > 0.1  # the text took no part in the gain
    assert not valid[:10].any() and valid[10:].all()


def test_ignore_mask_of_wrong_size_is_one_clear_error(tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "m.png"), np.zeros((10, 10), np.uint8))
    pre = Preprocessor(PreprocessConfig(ignore_mask=str(tmp_path / "m.png")))
    with pytest.raises(UserError, match="10x10 px but frames are 80x64"):
        pre(frame16(scene16(np.random.default_rng(3))))


@pytest.mark.parametrize("kw", [{"agc": "auto"}, {"fixed_range_counts": (10.0, 5.0)}, {"low_pct": 99.0, "high_pct": 1.0},
                                {"agc_time_constant_s": -1.0}, {"ignore_rects": ((5, 5, 1, 1),)}])
def test_bad_config_is_refused(kw):
    with pytest.raises(ValueError):
        PreprocessConfig(**kw)
