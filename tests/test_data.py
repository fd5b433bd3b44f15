import cv2
import numpy as np
import pytest

from irstream.data.sirst import load_sample, load_split, read_split
from irstream.data.synthetic import BACKGROUNDS, synth_image, synth_sequence, write_image_set
from irstream.errors import UserError
from irstream.io.imageio import read_gray, write_png
from irstream.detect.preprocess import PercentileAGC, to_unit

from conftest import SIRST, needs_sirst


@needs_sirst
def test_sirst_v1_splits_have_published_sizes():
    assert len(read_split(SIRST, "trainval")) == 341
    assert len(read_split(SIRST, "test")) == 86
    assert len(read_split(SIRST, "train")) == 256
    assert len(read_split(SIRST, "val")) == 85


@needs_sirst
def test_reads_every_channel_layout_of_real_images():
    layouts = {}
    for name in read_split(SIRST, "trainvaltest"):
        path = SIRST / "images" / f"{name}.png"
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        layouts.setdefault(1 if raw.ndim == 2 else raw.shape[2], name)
    assert set(layouts) == {1, 3, 4}
    for channels, name in layouts.items():
        s = load_sample(SIRST, name)
        assert s.image.ndim == 2 and s.image.dtype == np.float32
        assert 0.0 <= s.image.min() and s.image.max() <= 1.0
        assert s.mask.dtype == bool and s.mask.shape == s.image.shape and s.mask.any()


@needs_sirst
def test_mask_of_other_size_is_resized_to_its_image():
    s = load_sample(SIRST, "Misc_111")
    assert s.image.shape == (220, 325) and s.mask.shape == (220, 325) and s.mask.any()


@needs_sirst
def test_whole_test_split_loads():
    samples = load_split(SIRST, "test")
    assert len(samples) == 86 and all(s.mask.any() for s in samples)


def test_sixteen_bit_round_trip_through_agc(tmp_path):
    raw, mask = synth_image(5, (96, 128), bit_depth=16)
    raw[0, 0] = 65535  # one hot pixel must not set the gain for the scene
    path = tmp_path / "frame16.png"
    cv2.imwrite(str(path), raw)
    back = read_gray(path)
    assert back.dtype == np.uint16 and np.array_equal(back, raw)
    unit = to_unit(back, PercentileAGC())
    assert unit.dtype == np.float32 and unit.min() >= 0 and unit.max() <= 1
    assert np.median(unit) > 0.05  # not crushed to black by the hot pixel


def test_colour_and_alpha_become_gray(tmp_path):
    gray = (np.arange(40 * 30) % 256).astype(np.uint8).reshape(40, 30)
    cv2.imwrite(str(tmp_path / "rgb.png"), cv2.merge([gray, gray, gray]))
    cv2.imwrite(str(tmp_path / "rgba.png"), cv2.merge([gray, gray, gray, np.full_like(gray, 255)]))
    assert np.array_equal(read_gray(tmp_path / "rgb.png"), gray)
    assert np.array_equal(read_gray(tmp_path / "rgba.png"), gray)


def test_unreadable_image_is_a_user_error(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(UserError, match="bad.png"):
        read_gray(bad)
    with pytest.raises(UserError, match="no such image"):
        read_gray(tmp_path / "missing.png")


def test_an_image_that_cannot_be_written_is_a_user_error(tmp_path):
    img = np.full((8, 8), 40000, np.uint16)
    assert read_gray(write_png(tmp_path / "new" / "a.png", img)).max() == 40000  # 16 bits kept, folder made
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="file: cannot create"):
        write_png(tmp_path / "file" / "a.png", img)
    with pytest.raises(UserError, match="cannot write the image"):
        write_png(tmp_path / "a.unknown_format", img)


@pytest.mark.parametrize("kind", BACKGROUNDS)
def test_synthetic_images_are_deterministic_and_small_targets(kind):
    a, ma = synth_image(11, (128, 160), kind=kind)
    b, mb = synth_image(11, (128, 160), kind=kind)
    assert np.array_equal(a, b) and np.array_equal(ma, mb)
    n, _, stats, _ = cv2.connectedComponentsWithStats(ma.astype(np.uint8), connectivity=8)
    assert n >= 2
    assert (stats[1:, cv2.CC_STAT_AREA] <= 150).all()  # 1 to 100 px targets; two may touch
    c, _ = synth_image(12, (128, 160), kind=kind)
    assert not np.array_equal(a, c)


def test_synthetic_sequence_has_ids_entries_and_exits():
    frames = list(synth_sequence(3, 90, (128, 160), "sky", n_targets=4))
    ids_per_frame = [{r[0] for r in rows} for _, rows in frames]
    assert 3 not in ids_per_frame[0] and 3 in ids_per_frame[-1]  # enters later
    assert 4 in ids_per_frame[0] and 4 not in ids_per_frame[-1]  # leaves
    again = list(synth_sequence(3, 90, (128, 160), "sky", n_targets=4))
    assert all(np.array_equal(f[0], g[0]) for f, g in zip(frames, again))


def test_synthetic_set_reads_back_as_sirst_folder(tmp_path):
    write_image_set(tmp_path, 6, seed=1, shape=(64, 64))
    train = load_split(tmp_path, "train")
    assert len(train) == 3 and all(s.mask.any() for s in train)
