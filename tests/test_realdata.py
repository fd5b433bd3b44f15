"""Training on real data: masks from point and box labels, the shipped clip labels, the source mix,
hard-negative mining, the calibrated operating point, evaluation on target-free images."""

import json

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import SHARED_DATA
from irstream.eval.calibrate import Sweep, choose
from irstream.cli import app
from irstream.data.sirst import crop_at
from irstream.data.mix import (ANTIUAV_TRAIN, ANTIUAV_VAL, DAUB_HELD_OUT, DAUB_TRAIN, FOLDS, LABELS_DIR, Mix,
                               load_daub, parse_mix, read_mot_boxes)
from irstream.data.points import box_mask, point_mask
from irstream.data.sirst import Sample
from irstream.model.registry import build_model
from irstream.detect.targets import TargetConfig, operating_threshold, resolve_targets
from irstream.eval.tracks import Truth, load_mot_gt, match_points
from irstream.train.loop import TrainConfig, make_mix_batch, mine_hard_negatives
from irstream.model.weights import save_weights

CLIPS = sorted(ANTIUAV_TRAIN + ANTIUAV_VAL)
DAUB = SHARED_DATA / "daub"


def blob_image(centre=(20, 30), sigma=1.2, amp=0.5, bg=0.3, shape=(48, 64), seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    img = bg + amp * np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * sigma ** 2))
    return (img + rng.normal(0, 0.005, shape)).astype(np.float32)


def test_point_mask_grows_the_blob_at_half_contrast():
    img = blob_image()
    m = point_mask(img, x=31.0, y=21.0)  # a pixel off the peak, as hand labels are
    assert m[20, 30] and 3 <= m.sum() <= 15
    ys, xs = np.nonzero(m)
    assert abs(ys.mean() - 20) < 1 and abs(xs.mean() - 30) < 1


def test_point_mask_of_a_cold_target_and_of_noise():
    cold = 1.0 - blob_image()
    assert point_mask(cold, 30, 20)[20, 30]
    flat = np.full((48, 64), 0.3, np.float32) + np.random.default_rng(1).normal(0, 0.01, (48, 64)).astype(np.float32)
    m = point_mask(flat, 30, 20)
    assert m.sum() == 9 and m[19:22, 29:32].all()  # no blob: a 3x3 square, never nothing


def test_box_mask_stays_inside_the_box():
    img = blob_image(sigma=3.0)
    m = box_mask(img, 22, 12, 17, 17)
    assert m[20, 30] and m.sum() > 10
    assert not m[:, :22].any() and not m[:, 39:].any() and not m[:12].any() and not m[29:].any()


@pytest.mark.parametrize("clip", CLIPS)
def test_shipped_clip_labels_are_valid_mot(clip):
    n = int((LABELS_DIR / f"{clip}.frames").read_text())
    boxes = read_mot_boxes(LABELS_DIR / f"{clip}.txt")
    assert n >= 300 and set(boxes) <= set(range(1, n + 1))
    assert len(boxes) >= 0.8 * n  # the drone is in view in most labelled frames
    for f, bs in boxes.items():
        assert len(bs) == 1
        x, y, w, h = bs[0]
        assert 0 <= x and 0 <= y and x + w <= 640 and y + h <= 512 and w >= 2 and h >= 2
    assert not set(ANTIUAV_TRAIN) & set(ANTIUAV_VAL) and not set(DAUB_TRAIN) & set(DAUB_HELD_OUT)


def test_box_labels_match_anywhere_on_the_drone():
    truth = load_mot_gt(LABELS_DIR / f"{CLIPS[0]}.txt", 10, boxes=True)[0]
    x0, y0, x1, y1 = truth.boxes[0]
    corner_inside = np.array([[x0 + 0.5, y0 + 0.5]])
    assert len(match_points(corner_inside, truth, 3.0)[0]) == 1
    assert len(match_points(np.array([[x1 + 2.5, y1]]), truth, 3.0)[0]) == 1
    assert len(match_points(np.array([[x1 + 4.0, y1]]), truth, 3.0)[0]) == 0
    as_point = Truth(truth.ids, truth.xy)  # the same label as a point: a corner is too far when the box is big
    assert len(match_points(corner_inside, as_point, 3.0)[0]) == (np.hypot(*(truth.xy[0] - corner_inside[0])) <= 3)


def test_parse_mix_normalises_and_refuses_mistakes():
    assert parse_mix(["sirst-v1:3", "backgrounds:1"]) == {"sirst-v1": 0.75, "backgrounds": 0.25}
    for bad in (["nope:1"], ["sirst-v1:x"], ["daub:0"]):
        with pytest.raises(ValueError):
            parse_mix(bad)
    with pytest.raises(ValueError, match="unknown source"):
        TrainConfig(mix=["imagenet:1"])


def tiny_mix():
    rng = np.random.default_rng(0)
    target = blob_image(shape=(96, 96), centre=(40, 50), sigma=1.0)
    mask = point_mask(target, 50, 40)
    clutter = (0.3 + 0.05 * rng.random((96, 96))).astype(np.float32)
    clutter[10:13, 10:13] = 0.9  # something bright that is not a target
    return Mix({"a": [Sample("t", target, mask)], "b": [Sample("n", clutter, np.zeros((96, 96), bool))]},
               {"a": 0.5, "b": 0.5})


def test_mix_batches_centre_on_targets_and_on_mined_false_alarms():
    mix = tiny_mix()
    cfg = TrainConfig(model="lrrnet_light", crop_px=32, batch=16, target_crop_share=1.0, flips=False, mix=[])
    x, y = make_mix_batch(mix, cfg, np.random.default_rng(0))
    assert x.shape == y.shape == (16, 1, 32, 32)
    on_target = y.flatten(1).any(1)
    assert on_target.sum() >= 4  # every crop of the target image holds it
    mix.hard[("b", 0)] = np.array([[11, 11]])
    cfg = TrainConfig(model="lrrnet_light", crop_px=32, batch=16, target_crop_share=0.0, hard_share=1.0,
                      flips=False, mix=[])
    x, _ = make_mix_batch(mix, cfg, np.random.default_rng(1))
    assert sum(bool((xi[0] > 0.85).any()) for xi in x) >= 4  # crops of "b" hold the bright spot


def test_mining_stores_false_alarms_away_from_targets():
    mix = tiny_mix()
    torch.manual_seed(0)
    model = build_model("lrrnet_light")
    with torch.no_grad():  # a model that calls every pixel a target
        model.target_head[-1].weight.zero_()
        model.target_head[-1].bias.fill_(5.0)
    found = mine_hard_negatives(model, mix, 20, np.random.default_rng(0), torch.device("cpu"))
    assert found["images"] == 2 and found["images_with_fa"] == 1
    # The one big component covers the target in "a": not a false alarm.  In "b" it is one.
    assert list(mix.hard) == [("b", 0)] and mix.hard[("b", 0)].shape == (1, 2)


def test_false_alarm_centres_keep_the_strongest_away_from_truth():
    from irstream.train.loop import MINE_PER_IMAGE, false_alarm_centres

    logits = np.full((60, 200), -1.0, np.float32)
    for k in range(20):  # 20 separate blobs, the k-th scoring k
        logits[10:13, 5 + 9 * k:8 + 9 * k] = float(k + 1)  # centre (11, 6 + 9k)
    truth = np.zeros_like(logits, bool)
    truth[15, 6 + 9 * 19] = True  # 3 px below the strongest blob: it touches the truth
    centres, count = false_alarm_centres(logits, truth)
    assert count == 19 and len(centres) == MINE_PER_IMAGE
    assert centres.tolist() == [[11, 6 + 9 * k] for k in range(18, 18 - MINE_PER_IMAGE, -1)]  # strongest first
    assert false_alarm_centres(np.full((8, 8), -1.0, np.float32), truth[:8, :8])[1] == 0


def test_mining_waits_for_a_model_trained_from_scratch_to_learn():
    from irstream.train.loop import mining_due

    scratch = TrainConfig(model="lrrnet", mine_every=1500, hard_share=0.2, mix=[])
    tuned = TrainConfig(model="lrrnet", mine_every=1500, hard_share=0.2, mix=[], init_weights="w.safetensors")
    assert not mining_due(scratch, 0, None) and not mining_due(scratch, 1000, None)
    assert mining_due(scratch, 1500, None) and not mining_due(scratch, 2000, 1500)
    assert mining_due(scratch, 3000, 1500) and not mining_due(scratch, 3000, 3000)  # once per multiple
    assert mining_due(tuned, 0, None) and mining_due(tuned, 1700, None)  # nothing mined by this process yet
    assert not mining_due(tuned, 1700, 0)  # between multiples, whatever the epoch length
    assert not mining_due(TrainConfig(model="lrrnet", mix=[]), 0, None)  # mining off
    unused = TrainConfig(model="lrrnet", mix=[], mine_every=1000, hard_share=0.0, init_weights="w")
    assert not mining_due(unused, 0, None)  # no crop would use what a pass finds


@pytest.mark.skipif(not (SHARED_DATA / "sirst-v1").is_dir(), reason="../shared/data/sirst-v1 is not present")
def test_training_mines_at_every_multiple_of_mine_every_across_epochs(tmp_path, monkeypatch):
    from irstream.train import loop

    monkeypatch.setattr(loop, "mine_hard_negatives", lambda *a, **k: {"images": 0, "images_with_fa": 0,
                                                                       "fa_components": 0, "hard_images": 0})
    monkeypatch.setattr(loop._TrainData, "validate", lambda self, model, device: {"val_score": 0.0})
    cfg = TrainConfig(model="lrrnet_light", data=str(SHARED_DATA / "sirst-v1"), mix=["sirst-v1:1"],
                      data_root=str(SHARED_DATA), epochs=2, steps_per_epoch=5, batch=2, crop_px=32,
                      mine_every=3, hard_share=0.2, threads=1)
    state = loop.train(cfg, tmp_path / "run")
    # From scratch: first after 3 steps, then at 6 and 9, two of them inside an epoch of 5.
    assert [m["step"] for m in state["mining"]] == [3, 6, 9] and state["step"] == 10


def test_crop_at_pads_small_images_and_clips_to_the_edge():
    img, mask = np.ones((20, 30), np.float32), np.zeros((20, 30), bool)
    c, m = crop_at(img, mask, 32, (0, 0), np.random.default_rng(0), 4)
    assert c.shape == m.shape == (32, 32)


def test_padding_mirrors_the_mask_with_the_image():
    """A target near the edge of an image smaller than the crop is mirrored into the padding;
    its mask goes with it, so the mirror image is not taught as background."""
    img, mask = np.zeros((20, 30), np.float32), np.zeros((20, 30), bool)
    img[17:19, 26:28], mask[17:19, 26:28] = 1.0, True
    c, m = crop_at(img, mask, 40, None, np.random.default_rng(0), 0)
    assert np.array_equal(c > 0.5, m) and m.sum() == 4 * mask.sum()


def test_mixed_crop_sizes_draw_one_side_per_batch():
    cfg = TrainConfig(model="lrrnet_light", crop_px=32, crop_sizes=(32, 64), batch=4, flips=False, mix=[])
    rng = np.random.default_rng(0)
    sides = {make_mix_batch(tiny_mix(), cfg, rng)[0].shape[-1] for _ in range(12)}
    assert sides == {32, 64}
    with pytest.raises(ValueError, match="multiples of 8"):
        TrainConfig(crop_sizes=(36,))


@pytest.mark.skipif(not DAUB.is_dir(), reason="../shared/data/daub is not present")
def test_daub_points_become_small_masks_on_the_label():
    samples = load_daub(DAUB, ("sequence1",), step=25)
    assert len(samples) == 4
    for s in samples:
        assert 1 <= s.mask.sum() <= 49


@pytest.mark.skipif(not all((SHARED_DATA / d).is_dir() for d in ("antiuav-clips", "daub")),
                    reason="../shared/data lacks the clips or DAUB")
def test_fold_b_trains_on_what_fold_a_held_out_and_never_on_what_it_scores():
    a, b = FOLDS["a"], FOLDS["b"]
    assert set(a.antiuav_train) | set(b.antiuav_train) == set(CLIPS)
    assert not set(b.antiuav_train) & set(b.antiuav_held_out) and not set(b.daub_train) & set(b.daub_held_out)
    mix = Mix.load({"antiuav": 0.5, "daub": 0.5}, SHARED_DATA, "b")
    names = {s.name for s in mix.sources["antiuav"] + mix.sources["daub"]}
    for held_out in b.antiuav_held_out + b.daub_held_out:
        assert not any(n.startswith(held_out) for n in names), held_out
    assert any(n.startswith(b.antiuav_train[0]) for n in names) and any(n.startswith("sequence2") for n in names)
    with pytest.raises(ValueError, match="close-drones"):  # flights of fold a's training clip 101846
        Mix.load({"close-drones": 1.0}, SHARED_DATA, "b")
    assert TrainConfig(model="lrrnet_light", fold="b").unscored == ["clips", "daub"]
    with pytest.raises(ValueError, match="fold"):
        TrainConfig(model="lrrnet_light", fold="e")


def test_folds_c_and_d_hold_out_each_ground_sequence_fold_a_trains_on_with_four_others_in_training():
    ground = {f"sequence{i}" for i in range(1, 7)}
    held_out_by = {name: set(f.daub_held_out) for name, f in FOLDS.items()}
    assert held_out_by["c"] | held_out_by["d"] >= set(FOLDS["a"].daub_train)
    for name in "cd":
        fold = FOLDS[name]
        assert not set(fold.daub_train) & set(fold.daub_held_out)
        assert len(set(fold.daub_train) & ground) == 4
        assert set(fold.daub_train) | set(fold.daub_held_out) == set(FOLDS["a"].daub_train) | set(FOLDS["a"].daub_held_out)
        assert fold.antiuav_train == FOLDS["a"].antiuav_train
        assert TrainConfig(model="lrrnet_light", fold=name).unscored == ["clips", "daub"]


def test_calibration_picks_the_highest_threshold_that_keeps_pd():
    sw = Sweep()
    for t, found, false in ((0.3, 20, 30), (0.5, 19, 10), (0.7, 17, 2)):
        sw.add("val", t, 20, found, false)
    op = choose(sw, 0.95)
    assert op["score_threshold"] == 0.5 and op["pd"] == 0.95
    op = choose(sw, 1.0)
    assert op["score_threshold"] == 0.3
    op = choose(sw, 0.99)  # 0.3 reaches 100%: still the only one that keeps 99%
    assert op["score_threshold"] == 0.3


@pytest.mark.skipif(not all((SHARED_DATA / d).is_dir() for d in ("sirst-v1", "sirst-v2-backgrounds", "antiuav-clips", "daub")),
                    reason="../shared/data lacks a validation set")
def test_calibration_pools_the_held_out_daub_aircraft(monkeypatch):
    from irstream.eval import calibrate
    from irstream.model.tophat import TopHat

    monkeypatch.setattr(calibrate, "CLIP_STEP", 100)  # a few clip frames: this test is about the pool
    sw = calibrate.sweep(TopHat(), SHARED_DATA, torch.device("cpu"), thresholds=(0.5,))
    assert set(sw.sets) == {"sirst-v1/val", "sirst-v2-backgrounds/val", "antiuav-clips/val", "daub/held-out"}
    daub = sw.sets["daub/held-out"][0.5]
    assert daub.frames == daub.truths == 125  # every 2nd of the 250 labelled frames, one aircraft each
    assert 0 < daub.hits <= daub.truths  # the top-hat finds some of them
    pooled = sw.pooled(0.5)
    assert pooled.truths == sum(v[0.5].truths for v in sw.sets.values())


def test_operating_point_from_the_card_unless_told():
    card = {"operating_point": {"score_threshold": 0.8}}
    assert operating_threshold(card) == 0.8 and operating_threshold({}) == 0.5
    assert resolve_targets(TargetConfig(), card).score_threshold == 0.8
    assert resolve_targets(TargetConfig(score_threshold=0.3), card).score_threshold == 0.3


def test_eval_on_a_target_free_set_counts_images_without_detections(tmp_path):
    data = tmp_path / "negatives"
    (data / "images").mkdir(parents=True)
    (data / "splits").mkdir()
    for i in range(3):
        cv2.imwrite(str(data / "images" / f"n{i}.png"), np.full((40, 48), 60 + 10 * i, np.uint8))
    (data / "splits" / "val.txt").write_text("n0.png\nn1.png\nn2\n")
    weights = tmp_path / "w.safetensors"
    model = build_model("lrrnet_light")
    with torch.no_grad():
        model.target_head[-1].weight.zero_()
        model.target_head[-1].bias.fill_(-50.0)  # says "nothing" everywhere
    save_weights(model, weights, "lrrnet_light", {"operating_point": {"score_threshold": 0.7}})
    res = CliRunner().invoke(app, ["eval", "--data", str(data), "--split", "val", "--weights", str(weights),
                                   "--json", "--record"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.output.strip().splitlines()[-1])
    assert got["clean_share"] == 1.0 and got["dets_per_image"] == 0.0 and got["images"] == 3
    assert got["threshold"] == 0.7
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["metrics"]["negatives/val"]["clean_share"] == 1.0


def test_bench_train_reports_samples_per_second():
    res = CliRunner().invoke(app, ["bench", "train", "--crop", "32", "--batch", "2", "--steps", "1", "--threads", "1",
                                   "--no-compile", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output.strip().splitlines()[-1])["results"]
    assert {k.split(",")[0] for k in rows} == {"fp32 eager", "fp32 channels-last", "bf16 autocast",
                                                "bf16 autocast + channels-last"}
    assert all(r["samples_per_s"] > 0 for r in rows.values())


def test_parts_of_one_target_are_merged_into_one_detection():
    from irstream.detect.targets import extract_targets

    score = np.zeros((40, 60), np.float32)
    score[10:14, 10:16] = 0.9  # body
    score[15:17, 11:13] = 0.9  # gimbal below, 1 px gap
    score[15:17, 19:21] = 0.9  # rotor, 3 px gap
    score[30:33, 45:48] = 0.9  # another target, far
    image = 0.2 + 0.5 * score
    apart = extract_targets(score, image, TargetConfig(score_threshold=0.5, merge_gap_px=0))
    merged = extract_targets(score, image, TargetConfig(score_threshold=0.5, merge_gap_px=2))
    assert len(apart) == 4 and len(merged) == 2
    big = merged[[int(np.argmax(merged.area_px))]]
    assert big.area_px[0] == 24 + 4 + 4 and big.bbox_xyxy[0].tolist() == [10, 10, 21, 17]


def test_burned_in_text_becomes_an_ignore_mask_and_a_moving_target_does_not():
    from irstream.detect.osd import OsdConfig, OsdMask

    rng = np.random.default_rng(0)
    osd = OsdMask(OsdConfig(learn_s=1.2, first_mask_s=0.4))  # 30 and 10 frames at 25 frames/s
    text = np.zeros((64, 96), bool)
    text[4:12, 6:40:3] = True  # glyph strokes, 1 px wide, 2 px apart
    for k in range(40):
        frame = (0.3 + 0.05 * rng.random((64, 96))).astype(np.float32)
        frame = cv2.GaussianBlur(frame, (0, 0), 3) + 0.02 * k % 0.2  # the scene drifts in brightness
        frame[text] = 1.0
        frame[40:43, 10 + 2 * k:13 + 2 * k] = 0.95  # a bright target crossing
        mask = osd.update(frame, k / 25.0)
        assert (mask is None) == (k < 10)
    assert mask[text].all() and mask[4:12, 6:38].all()  # the gaps between strokes closed
    assert not mask[35:50].any()  # not where the target flew
    assert mask.mean() < 0.15
    assert OsdMask(OsdConfig(enabled=False)).update(frame, 0.0) is None


def test_text_stays_masked_while_the_gain_moves():
    # On a real clip the camera's gain moved for a few seconds: no pixel was "still", the text's
    # share fell below still_share within a dozen frames, and the unmasked clock was tracked as a
    # target for 74 frames.  Text once learnt holds until its share falls below release_share.
    from irstream.detect.osd import OsdConfig, OsdMask

    rng = np.random.default_rng(1)
    osd = OsdMask(OsdConfig(learn_s=2.0))
    text = np.zeros((40, 60), bool)
    text[5:15, 10:12] = text[5:7, 10:18] = True
    held = []
    for k in range(120):
        drift = 0.03 * (k % 2) if 60 <= k < 100 else 0.0  # frames 60-99: the gain flickers
        frame = cv2.GaussianBlur((0.3 + 0.05 * rng.random((40, 60))).astype(np.float32), (0, 0), 2) + drift
        frame[text] = 0.75 + drift
        mask = osd.update(frame, k / 25.0)
        if k >= 50:
            held.append(bool(mask[text].all()))
    assert all(held) and not mask[25:].any()


def test_a_target_still_at_first_is_not_held_as_text_once_it_moves():
    # A drone hovering at the start of a static camera's video is as still as a display for its
    # first frames; once its glint changes, nothing about it is text any more.
    from irstream.detect.osd import OsdConfig, OsdMask

    rng = np.random.default_rng(2)
    osd, held = OsdMask(OsdConfig()), []
    for k in range(40):
        frame = cv2.GaussianBlur((0.3 + 0.05 * rng.random((48, 64))).astype(np.float32), (0, 0), 2)
        frame[20:23, 30:34] = 0.9 if k < 10 else 0.8 + 0.15 * rng.random()  # its glint changes
        mask = osd.update(frame, k / 25.0)
        if k >= 20:
            held.append(bool(mask[20:23, 30:34].any()))
    assert not any(held)


def test_a_readout_that_changes_at_a_quarter_rate_stays_masked():
    # A tilt readout seen at a quarter of the frame rate: the label is still; the digits flicker
    # by a few grey levels (codec noise grows with the step between frames), so they are still in
    # about 60% of the frames, and their strokes move when the reading changes.  The new strokes
    # never reach still_share by themselves.
    from irstream.detect.osd import OsdConfig, OsdMask

    rng = np.random.default_rng(3)
    osd = OsdMask(OsdConfig())
    label, before, after = (np.zeros((40, 120), bool) for _ in range(3))
    label[6:16, 4:24:3] = True
    before[6:16, 28:110:6] = True  # up to 86 px from the label
    after[6:16, 31:110:6] = True
    for k in range(60):
        frame = cv2.GaussianBlur((0.3 + 0.05 * rng.random((40, 120))).astype(np.float32), (0, 0), 2)
        frame[label] = 0.95
        digits = before if k < 30 else after
        frame[digits] = 0.95 + rng.uniform(-4, 4, int(digits.sum())) / 255.0
        mask = osd.update(frame, k * 4 / 25.0)
    assert mask[after].all()
    assert not mask[30:].any()


@pytest.mark.skipif(not (SHARED_DATA / "drone-detection-ir").is_dir(),
                    reason="../shared/data/drone-detection-ir is not present")
def test_a_drone_hovering_at_the_start_of_a_real_video_is_not_masked():
    from irstream.data.drones import _gray, read_mot_boxes
    from irstream.detect.osd import OsdConfig, OsdMask

    root = SHARED_DATA / "drone-detection-ir"
    boxes = read_mot_boxes(root / "labels" / "IR_DRONE_127.txt")
    cap, osd, masked = cv2.VideoCapture(str(root / "videos" / "IR_DRONE_127.mp4")), OsdMask(OsdConfig()), []
    for k in range(1, 61):
        ok, bgr = cap.read()
        assert ok
        mask = osd.update(_gray(bgr), k / 30.0)
        (x, y, w, h), = boxes[k]
        if k > 20:
            masked.append(bool(mask[int(y + h / 2), int(x + w / 2)]))
    cap.release()
    assert not any(masked)  # it was masked in frames 11-55 when early text held on


@pytest.mark.skipif(not (SHARED_DATA / "antiuav-clips").is_dir(), reason="../shared/data/antiuav-clips is not present")
def test_a_real_tilt_readout_stays_masked_at_a_quarter_rate():
    from irstream.data.drones import _gray
    from irstream.detect.osd import OsdConfig, OsdMask

    cap, osd, held = cv2.VideoCapture(str(SHARED_DATA / "antiuav-clips" / "20190925_200805_1_9.mp4")), OsdMask(OsdConfig()), []
    for k in range(300):
        ok, bgr = cap.read()
        assert ok
        if k % 4:
            continue
        mask = osd.update(_gray(bgr), k / 25.0)
        if k >= 40:
            held.append(bool(mask[73, 198] and mask[72, 211]))  # its first digit, which goes 1 -> 2
    cap.release()
    assert all(held)


@pytest.mark.parametrize("field, value", [("first_mask_s", 0), ("first_mask_s", 3.0), ("release_share", 0.9),
                                          ("release_share", -0.1)])
def test_bad_text_mask_settings_name_the_key(field, value):
    from irstream.detect.osd import OsdConfig

    with pytest.raises(ValueError, match=f"{field}={value}"):
        OsdConfig(**{field: value})  # learn_s 2.0, still_share 0.8


def test_ignored_pixels_are_shaded_in_the_video():
    from irstream.sinks.annotate import TrackAnnotator
    from irstream.types import Detections, Frame, FrameResult, Tracks

    ignored = np.zeros((32, 48), bool)
    ignored[:8] = True
    res = FrameResult(Frame(np.zeros((32, 48), np.uint8), 0, 0.0, "x", 8), np.full((32, 48), 0.5, np.float32),
                      Detections.empty(), Tracks.empty(), ignored=ignored)
    img = TrackAnnotator().annotate(res)
    assert (img[:8, :, 0] != img[:8, :, 2]).all() and (img[8:, :, 0] == img[8:, :, 2]).all()


@pytest.mark.parametrize("shape", [(512, 640), (100, 700), (64, 64), (193, 192)])
def test_tiles_cover_the_frame_and_stitch_back(shape):
    from irstream.model.segment import tile_origins, tiled

    image = np.random.default_rng(0).random(shape).astype(np.float32)
    calls = []

    def fn(batch):  # pointwise, so any tiling must give the frame back exactly
        calls.append(batch.shape)
        return batch[:, 0] * 2.0

    out = tiled(fn, image, 192, 48)
    np.testing.assert_array_equal(out, image * 2.0)
    for length in shape:
        starts = tile_origins(length, min(192, length), 48)
        assert starts[0] == 0 and starts[-1] + min(192, length) == length
        assert all(b - a <= 192 - 48 for a, b in zip(starts, starts[1:]))
    assert len(calls) == 1  # one batch per frame



def test_box_hits_give_every_part_of_a_drone_to_its_box():
    from irstream.eval.metrics import box_hits

    parts_and_clutter = np.array([[12.0, 11.0], [19.5, 14.0], [21.5, 12.0], [60.0, 60.0]])  # x, y
    # Box 10..19 x 10..15: two parts inside, one 2.5 px beyond its right edge; clutter far away.
    assert box_hits(parts_and_clutter, [(10, 10, 10, 6)], 3.0) == (1, 1, 1)
    assert box_hits(parts_and_clutter, [(10, 10, 10, 6)], 2.0) == (1, 1, 2)
    assert box_hits(parts_and_clutter[3:], [(10, 10, 10, 6)], 3.0) == (1, 0, 1)


def test_a_border_keeps_the_edge_rows_free_of_targets():
    # A bright dashed line along the top rows, as one real clip has, and a target inside.
    from irstream.detect.targets import TargetConfig, extract_targets

    score = np.zeros((64, 80), np.float32)
    image = np.zeros((64, 80), np.float32)
    score[2:5, 10:30:4] = 0.99
    score[30:32, 40:42] = 0.99
    image[score > 0] = 1.0
    assert len(extract_targets(score, image, TargetConfig(score_threshold=0.5, border_px=0, merge_gap_px=0))) == 6
    kept = extract_targets(score, image, TargetConfig(score_threshold=0.5, border_px=6, merge_gap_px=0))
    np.testing.assert_allclose(kept.centroid_xy, [[40.5, 30.5]])
