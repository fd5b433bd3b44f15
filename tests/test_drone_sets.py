"""The labelled drone sets (irstream.data.drones), the pasted targets (irstream.data.paste), the
coarse pass (irstream.model.segment.merge_coarse) and the zoomed scoring (irstream.eval.sizes)."""

import numpy as np
import pytest
from scipy import ndimage

from conftest import SHARED_DATA
from irstream.data import drones
from irstream.data.paste import Cutout, composite
from irstream.eval.sizes import SizeCounts, cover, zoom_frame
from irstream.model.segment import COARSE_MIN_AREA_PX, merge_coarse
from irstream.types import Detections

needs = lambda name: pytest.mark.skipif(not (SHARED_DATA / name).is_dir(), reason=f"../shared/data/{name} is not present")


def test_yolo_lines_run_together_are_read_five_numbers_at_a_time(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("0 0.5 0.5 0.1 0.2 0 0.25 0.25 0.05 0.05")  # two boxes on one line, as some files of the sets are
    boxes = drones.read_yolo(p, 640, 512)
    np.testing.assert_allclose(boxes, [(288.0, 204.8, 64.0, 102.4), (144.0, 115.2, 32.0, 25.6)])
    assert drones.read_yolo(tmp_path / "missing.txt", 640, 512) == []


def test_reticle_lines_of_zeros_mean_no_drone(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("10\t20\t5\t4\n0\t0\t0\t0\n11 21 5 4\n")
    assert drones.read_reticle_boxes(p) == {1: [(10.0, 20.0, 5.0, 4.0)], 3: [(11.0, 21.0, 5.0, 4.0)]}


@needs(drones.DRONE_IR)
def test_drone_ir_splits_are_disjoint_and_cover_every_class():
    root = SHARED_DATA / drones.DRONE_IR
    train, val = set(drones.drone_ir_videos(root, "train")), set(drones.drone_ir_videos(root, "val"))
    assert not train & val and len(train) + len(val) == 245
    assert {v.split("_")[1] for v in val} == {"DRONE", "BIRD", "AIRPLANE", "HELICOPTER"}
    name, img, boxes = next(drones.drone_ir_frames(root, "val", 100))
    assert img.shape == (256, 320) and img.dtype == np.float32 and 0 <= img.min() <= img.max() <= 1 and boxes


@needs(drones.CVPR)
def test_cvpr_clips_split_by_clip_and_boxes_lie_in_the_frame():
    root = SHARED_DATA / drones.CVPR
    train, val = drones.cvpr_clips(root, "train"), drones.cvpr_clips(root, "val")
    assert len(train) + len(val) == 36 and not set(train) & set(val) and len(val) == 9
    for _, img, boxes in drones.cvpr_frames(root, "val", 5):
        assert img.shape == (512, 640)
        for x, y, w, h in boxes:
            assert -1 <= x and x + w <= 641 and -1 <= y and y + h <= 513 and w > 0 and h > 0


def _cutout() -> Cutout:
    m = np.zeros((10, 16), bool)
    m[2:8, 3:13] = True
    return Cutout(np.where(m, 0.3, 0.0).astype(np.float32), m)


def test_a_pasted_cutout_is_labelled_where_it_was_added_and_nowhere_else():
    rng = np.random.default_rng(0)
    bg = np.full((300, 300), 0.3, np.float32)
    for _ in range(20):
        s = composite(bg, _cutout(), rng, side=128)
        assert s.image.shape == s.mask.shape == (128, 128) and s.mask.any()
        assert (s.image[s.mask] - 0.3 > 0.05).mean() > 0.9  # the label is where the contrast was added
        far = ~ndimage.binary_dilation(s.mask, iterations=3)  # beyond the 1 px feathering
        assert (s.image[far] == np.float32(0.3)).all()


def test_pasted_cutouts_go_onto_the_strongest_edges_often():
    rng = np.random.default_rng(0)
    bg = np.full((128, 128), 0.3, np.float32)
    bg[64:] = 0.6  # a horizon at row 64
    rows = [ndimage.center_of_mass(composite(bg, _cutout(), rng, side=128).mask)[0] for _ in range(60)]
    near = np.mean(np.abs(np.array(rows) - 64) <= 12)
    assert near > 0.4  # anywhere uniform would give about 0.2


@needs(drones.CVPR)
def test_the_horizon_source_keeps_the_training_frames_whose_target_sits_on_an_edge():
    """Of the CVPR 2025 training frames (cities, hills, towers) it keeps a part, and every kept
    frame's drone has the scene's structure (a roof, a ridge, trees) around its box; the rest,
    drones against open sky, are left out."""
    from irstream.data.mix import HORIZON_MIN_STRUCTURE, horizon_frames, labelled_train_frames
    from irstream.detect.targets import ring_spread

    def spread(img, box):
        x, y, w, h = box
        return ring_spread(img, int(x), int(y), max(1, round(w)), max(1, round(h)))

    every = {name: (img, boxes) for name, img, boxes in labelled_train_frames("cvpr2025", SHARED_DATA)}
    kept = [name for name, _, _ in horizon_frames(SHARED_DATA, sets=("cvpr2025",))]
    assert 0 < len(kept) < len(every) / 2 and set(kept) <= set(every)
    for name in kept:
        img, boxes = every[name]
        assert max(spread(img, b) for b in boxes) >= HORIZON_MIN_STRUCTURE
    left_out = [every[n] for n in set(every) - set(kept) if every[n][1]]
    assert all(spread(img, b) < HORIZON_MIN_STRUCTURE for img, boxes in left_out for b in boxes)


def test_a_mix_with_the_horizon_source_reads_each_labelled_set_once(monkeypatch, tmp_path):
    """horizon is a subset of frames the mix reads anyway: the same images, not a second decode."""
    from irstream.data import mix

    reads = []

    def frames(name, data_root, fold="a"):
        reads.append(name)
        for k in range(4):
            img = np.full((64, 64), 0.2, np.float32)
            if k % 2:
                img[:32] = 0.8  # a ridge line through the target's ring
            img[30:33, 30:33] = 1.0
            yield f"{name}/{k}", img, [(29.0, 29.0, 5.0, 5.0)]

    monkeypatch.setattr(mix, "labelled_train_frames", frames)
    loaded = mix.Mix.load({"cvpr2025": 0.5, "horizon": 0.5}, tmp_path)
    assert sorted(reads) == sorted(mix.HORIZON_SETS)
    assert [s.name for s in loaded.sources["horizon"]] == [f"{n}/{k}" for n in mix.HORIZON_SETS for k in (1, 3)]
    by_name = {s.name: s.image for s in loaded.sources["cvpr2025"]}
    assert all(s.image is by_name[s.name] for s in loaded.sources["horizon"] if s.name in by_name)


def test_merge_coarse_keeps_only_large_coarse_targets():
    full = np.zeros((64, 64), np.float32)
    full[10, 10] = 0.9  # a point the full pass found
    coarse = np.zeros((16, 16), np.float32)  # factor 4
    coarse[8:12, 8:12] = 0.9  # 16 coarse px = 256 full px: a close drone
    coarse[2, 13] = 0.9  # 1 coarse px = 16 full px: clutter the shrink made point-like
    merged = merge_coarse(full, coarse, 4)
    assert merged[10, 10] == pytest.approx(0.9)
    assert (merged[34:46, 34:46] > 0.5).all()  # the large target covers its whole body
    assert merged[:16, 48:].max() == 0.0  # the small coarse blob is left out
    assert 16 < COARSE_MIN_AREA_PX <= 256


def test_zoom_keeps_the_target_in_view_and_scales_its_box():
    img = np.random.default_rng(1).random((512, 640)).astype(np.float32)
    big, boxes = zoom_frame(img, [(600.0, 20.0, 20.0, 12.0)], 4)
    assert big.shape == img.shape
    (x, y, w, h), = boxes
    assert (w, h) == (80.0, 48.0) and 0 <= x and x + w <= 640 and 0 <= y and y + h <= 512


def test_a_hit_on_one_rotor_is_a_hit_but_not_whole():
    box = (100.0, 100.0, 60.0, 40.0)
    rotor = Detections(centroid_xy=np.array([[102.0, 102.0]]), bbox_xyxy=np.array([[100, 100, 105, 105]]),
                       area_px=np.array([20]), peak_score=np.array([0.9]), mean_score=np.array([0.9]),
                       contrast=np.array([0.1]))
    body = Detections(centroid_xy=np.array([[130.0, 120.0]]), bbox_xyxy=np.array([[98, 99, 158, 141]]),
                      area_px=np.array([2000]), peak_score=np.array([0.9]), mean_score=np.array([0.9]),
                      contrast=np.array([0.1]))
    assert cover(body.bbox_xyxy[0], box) > 0.9
    for dets, whole in ((rotor, 0.0), (body, 1.0)):
        c = SizeCounts()
        c.add(dets, [box])
        assert c.row()["pd"] == 1.0 and c.row()["whole"] == whole
    small = SizeCounts()
    small.add(rotor, [(100.0, 100.0, 12.0, 8.0)])
    assert small.row()["pd"] == 1.0 and small.row()["whole"] is None  # too small to judge


@pytest.mark.slow
@needs("antiuav-clips")
def test_eval_sizes_cli_scores_a_clip_and_its_zoom():
    import json

    from typer.testing import CliRunner

    from irstream.cli import app

    res = CliRunner().invoke(app, ["eval-sizes", "20190925_200805_1_9", "--zoom", "2", "--every", "100",
                                   "--coarse", "4", "--data-root", str(SHARED_DATA), "--json", "--threads", "1"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output[res.output.index("["):])
    assert [r["zoom"] for r in rows] == [1.0, 2.0] and all(r["frames"] == 5 for r in rows)
    assert rows[1]["median_side_px"] == pytest.approx(2 * rows[0]["median_side_px"], rel=0.05)
    assert rows[0]["pd"] >= 0.8  # the drone of this clip is found at its own scale


def test_eval_sizes_names_an_unknown_set_in_one_line():
    from typer.testing import CliRunner

    from irstream.cli import app

    res = CliRunner().invoke(app, ["eval-sizes", "no-such-set", "--data-root", str(SHARED_DATA)])
    assert res.exit_code != 0 and "no-such-set" in res.output and "Traceback" not in res.output
