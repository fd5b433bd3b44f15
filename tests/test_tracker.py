"""The tracker on scripted synthetic detections: lifecycles, identities, timing, scale."""

import re

import numpy as np
import pytest

from irstream.track.kalman import cv_model
from irstream.track.tracker import Tracker, TrackerConfig, assign
from irstream.types import COASTING, CONFIRMED, TENTATIVE, TRACK_STATES, Detections, Tracks

FPS = 25.0
DT = 1.0 / FPS


#: The rules tuned on real footage that act on a target by its history (a wait for one that never
#: moved, id handover, long jumps, the pan rule), off: each test here drives one mechanism alone.
#: test_the_tuned_rules_are_the_defaults checks that they are the defaults.
TUNED_OFF = dict(static_confirm_s=0.0, faint_contrast=0.0, handover_s=0.0, jump_min_area_px=0.0, reacquire_body_lengths=0.0,
                 static_clutter_shift_px=0.0, static_clutter_max_area_px=0.0, motion_ref_px=3.0)


def plain(**changes) -> TrackerConfig:
    return TrackerConfig(**{**TUNED_OFF, **changes})


def test_the_tuned_rules_are_the_defaults():
    cfg = TrackerConfig()
    assert all(getattr(cfg, k) != v for k, v in TUNED_OFF.items())


def dets(xy, score=0.9, side: int = 3, structure: float = 0.0, contrast: float = 0.2) -> Detections:
    """Detections at centroids xy (N, 2) px, each a side x side box around it, with peak_score
    score, and the given contrast and structure around it."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    n = len(xy)
    corner = np.floor(xy).astype(np.int64) - side // 2
    peak = np.broadcast_to(np.asarray(score, dtype=np.float64), (n,)).copy()
    return Detections(xy, np.concatenate([corner, corner + side], axis=1), np.full(n, side * side, dtype=np.int64),
                      peak, 0.8 * peak, np.full(n, contrast), np.full(n, structure))


def by_id(tracks: Tracks, track_id: int) -> Tracks:
    return tracks[tracks.track_id == track_id]


def test_constant_velocity_target_is_confirmed_with_stable_id_and_true_velocity():
    cfg = plain()
    rng = np.random.default_rng(0)
    start, vel = np.array([100.0, 80.0]), np.array([60.0, -30.0])
    tracker = Tracker(cfg)
    for k in range(50):
        truth = start + vel * k * DT
        out = tracker.update(dets(truth + rng.normal(0, 0.3, 2)), k * DT)
        assert list(out.track_id) == [1]
        assert out.detection[0] == 0 and out.misses[0] == 0 and out.hits[0] == k + 1 == out.age_frames[0]
        if k + 1 < cfg.confirm_hits:
            assert out.state[0] == TENTATIVE and len(out.published()) == 0
        else:
            assert out.state[0] == CONFIRMED and list(out.published().track_id) == [1]
    np.testing.assert_allclose(out.velocity_xy[0], vel, atol=5.0)
    np.testing.assert_allclose(out.centroid_xy[0], truth, atol=0.5)
    cov = out.covariance_xy[0]
    assert np.allclose(cov, cov.T) and np.all(np.linalg.eigvalsh(cov) > 0) and cov[0, 0] < 1.0


def test_confirm_hits_one_confirms_at_birth():
    out = Tracker(plain(confirm_hits=1, confirm_window_s=1 * DT, confirm_llr_nats=0.0)).update(dets([[5.0, 5.0]]), 0.0)
    assert list(out.state) == [CONFIRMED] and len(out.published()) == 1


def test_two_crossing_targets_keep_their_ids():
    # X-shaped paths that meet at (80, 50) on frame 10, where the two detections coincide.
    starts = np.array([[40.0, 40.0], [120.0, 60.0]])
    vels = np.array([[100.0, 25.0], [-100.0, -25.0]])
    rng = np.random.default_rng(1)
    tracker = Tracker(plain())
    owner = {}
    for k in range(25):
        truth = starts + vels * k * DT
        order = rng.permutation(2)  # detection rows in no particular order
        out = tracker.update(dets(truth[order] + rng.normal(0, 0.2, (2, 2))), k * DT)
        assert len(out) == 2
        if k == 0:
            owner = {int(t): int(order[d]) for t, d in zip(out.track_id, out.detection)}
        if k != 10:
            for t, d in zip(out.track_id, out.detection):
                assert order[d] == owner[int(t)], f"frame {k}: track {t} took the other target"
    for t in out.track_id:
        np.testing.assert_allclose(by_id(out, t).velocity_xy[0], vels[owner[int(t)]], atol=10.0)
    assert sorted(owner) == [1, 2]


def test_a_missed_target_coasts_with_its_id_and_is_deleted_after_max_coast_s():
    cfg = plain(max_coast_s=5 * DT, publish_coast_s=5 * DT)
    vel = np.array([80.0, 40.0])
    tracker = Tracker(cfg)

    def pos(k):
        return np.array([50.0, 60.0]) + vel * k * DT

    k = 0
    for k in range(10):
        out = tracker.update(dets(pos(k), score=0.7), k * DT)
    assert list(out.state) == [CONFIRMED]
    last_box = out.bbox_xyxy[0].copy()

    variance = out.covariance_xy[0, 0, 0]
    for gap in range(1, 4):  # fewer than max_coast_s misses
        k += 1
        out = tracker.update(Detections.empty(), k * DT)
        assert list(out.track_id) == [1] and list(out.state) == [COASTING]
        assert out.misses[0] == gap and out.detection[0] == -1 and out.hits[0] == 10
        assert out.score[0] == pytest.approx(0.7) and np.array_equal(out.bbox_xyxy[0], last_box)
        assert out.covariance_xy[0, 0, 0] > variance  # doubt grows while predicting blind
        variance = out.covariance_xy[0, 0, 0]
        np.testing.assert_allclose(out.centroid_xy[0], pos(k), atol=0.5)  # extrapolated along the path
        assert list(out.published().track_id) == [1]  # coasting tracks are published

    k += 1
    out = tracker.update(dets(pos(k), score=0.95), k * DT)
    assert list(out.track_id) == [1] and list(out.state) == [CONFIRMED]
    assert out.misses[0] == 0 and out.score[0] == pytest.approx(0.95)

    for gap in range(1, tracker.frames(cfg.max_coast_s) + 1):
        k += 1
        out = tracker.update(Detections.empty(), k * DT)
        assert list(out.track_id) == [1] and list(out.state) == [COASTING] and out.misses[0] == gap
    k += 1
    out = tracker.update(Detections.empty(), k * DT)
    assert len(out) == 0 and len(out.published()) == 0


def test_a_track_coasts_on_screen_briefly_then_waits_unpublished_for_its_target():
    tracker = Tracker(plain(publish_coast_s=2 * DT, max_coast_s=6 * DT))
    k = 0
    for k in range(8):
        tracker.update(dets([[20.0 + 2.0 * k, 30.0]]), k * DT)
    states = []
    for _ in range(4):
        k += 1
        out = tracker.update(Detections.empty(), k * DT)
        states.append(TRACK_STATES[int(out.state[0])])
        assert len(out.published()) == (1 if out.state[0] == COASTING else 0)
    assert states == ["coasting", "coasting", "lost", "lost"]
    k += 1
    out = tracker.update(dets([[20.0 + 2.0 * k, 30.0]]), k * DT)
    assert list(out.track_id) == [1] and list(out.state) == [CONFIRMED]
    assert list(out.published().track_id) == [1]


def test_a_track_is_reported_where_its_target_was_seen_and_coasts_on_its_prediction():
    # Camera shake jerks a 1-3 px target 2 px each way: the filter's smoothed position would
    # sit off the target by about the target's size, the detection does not.
    tracker = Tracker(plain())
    rng = np.random.default_rng(3)
    k = 0
    for k in range(30):
        seen = np.array([40.0 + 2.0 * k, 50.0]) + rng.choice([-2.0, 2.0], 2)
        out = tracker.update(dets(seen), k * DT)
        assert list(out.track_id) == [1]
        np.testing.assert_array_equal(out.centroid_xy[0], seen)
    velocity = out.velocity_xy[0].copy()
    np.testing.assert_allclose(velocity, [50.0, 0.0], atol=15.0)
    estimate = tracker._x[0, :2].copy()  # the filter's own position, not the detection's
    out = tracker.update(Detections.empty(), (k + 1) * DT)
    assert out.state[0] == COASTING and out.detection[0] == -1
    np.testing.assert_allclose(out.centroid_xy[0], estimate + velocity * DT, atol=1e-6)


def test_a_fixed_point_waits_static_confirm_s_and_a_mover_does_not():
    cfg = plain(static_confirm_s=20 * DT, motion_ref_px=1.5)
    fixed, mover = Tracker(cfg), Tracker(cfg)
    first = {}
    for k in range(30):
        for name, tracker, xy in (("fixed", fixed, [40.0, 40.0]), ("mover", mover, [40.0 + 1.0 * k, 40.0])):
            out = tracker.update(dets([xy], score=0.99), k * DT)
            if len(out.published()) and name not in first:
                first[name] = k
    assert first == {"mover": 2, "fixed": 19}  # confirmed at 3 hits; at age 20
    assert list(fixed.update(dets([[40.0, 40.0]], score=0.99), 30 * DT).track_id) == [1]  # one id throughout


def test_a_faint_track_waits_faint_confirm_s_unless_it_brightens():
    cfg = plain(faint_contrast=0.1, faint_confirm_s=10 * DT)
    first = {}
    for name, contrasts in (("bright", [0.3] * 20), ("faint", [0.05] * 20), ("brightens", [0.05] * 4 + [0.3] * 16)):
        tracker = Tracker(cfg)
        for k, c in enumerate(contrasts):
            if len(tracker.update(dets([[40.0 + k, 40.0]], score=0.99, contrast=c), k * DT).published()):
                first.setdefault(name, k)
    assert first == {"bright": 2, "faint": 9, "brightens": 4}  # 3 hits; at age 10; at its bright hit


def test_a_faint_target_that_comes_back_to_its_published_id_does_not_wait_again():
    cfg = plain(faint_contrast=0.1, faint_confirm_s=10 * DT, handover_s=2.0)
    tracker, published = Tracker(cfg), []
    for k in range(60):
        seen = k < 20 or k >= 35  # out of view for 15 frames, longer than max_coast_s
        frame = dets([[40.0 + k, 40.0]], score=0.99, contrast=0.05) if seen else Detections.empty()
        out = tracker.update(frame, k * DT).published()
        published.append(list(out.track_id))
    assert published[9] == [1] and published[8] == []  # first time: waits 10 frames
    assert published[37] == [1] and published[36] == []  # back: 3 hits, the same id


def test_fixed_clutter_in_structure_is_never_published_and_a_drone_that_flew_there_is():
    """A building's corner (structured surroundings, never moves) stays unpublished for 20 s; a
    drone that flies 40 px and then hovers beside it is published and stays published, its
    `moving` flag falling to False a second after it stopped; a fixed point in clear sky (a
    drone the camera holds still) is published after static_confirm_s."""
    cfg = plain(static_confirm_s=10 * DT, static_max_structure=0.1, motion_ref_px=1.5, moving_window_s=1.0)
    corner, drone, sky = Tracker(cfg), Tracker(cfg), Tracker(cfg)
    first, moving = {}, []
    for k in range(500):
        t = k * DT
        for name, tracker, xy, st in (("corner", corner, [40.0, 40.0], 0.3),
                                      ("drone", drone, [40.0 + min(k, 40), 40.0], 0.3),
                                      ("sky", sky, [40.0, 40.0], 0.01)):
            pub = tracker.update(dets([xy], score=0.99, structure=st), t).published()
            if len(pub) and name not in first:
                first[name] = k
            if name == "drone" and len(pub):
                moving.append((k, bool(pub.moving[0])))
    assert "corner" not in first
    assert first["drone"] == 2 and first["sky"] == 9
    assert all(m for k, m in moving if k <= 40) and not any(m for k, m in moving if k >= 40 + FPS + 1)
    assert len(moving) == 500 - 2  # published from its 3rd frame to the end, hovering included


def _jump_and_come_back(cfg: TrackerConfig, gap_frames: int, others=()) -> list[int]:
    """One target tracked 20 frames, gone gap_frames frames, then seen 150 px away (a pan-tilt
    camera re-pointed) and tracked 20 more; `others` are fixed points of a second target seen
    throughout.  Returns the ids of the published tracks on the target after the jump."""
    tracker, ids, k = Tracker(cfg), [], 0
    for phase, frames in (("before", 20), ("gap", gap_frames), ("after", 20)):
        for _ in range(frames):
            xy = [] if phase == "gap" else [[50.0 + k * 0.5 + (150.0 if phase == "after" else 0.0), 60.0]]
            out = tracker.update(dets(xy + list(others)), k * DT)
            k += 1
            if phase == "after":
                pub = out.published()
                ids += [int(i) for i, c in zip(pub.track_id, pub.centroid_xy) if c[0] > 150.0]
    return ids


def test_a_lone_target_that_jumps_keeps_its_id_within_handover_s():
    for gap in (4, 15):  # the old track still kept (LOST), and already deleted
        ids = _jump_and_come_back(plain(handover_s=30 * DT), gap_frames=gap)
        assert ids and set(ids) == {1}
    assert set(_jump_and_come_back(plain(handover_s=0 * DT), gap_frames=15)) == {2}
    # Past the window the next track is a new target.
    assert 1 not in _jump_and_come_back(plain(handover_s=30 * DT), gap_frames=40)
    # Another target in view: whose id it would be is not clear, so nothing is handed over.
    assert 1 not in _jump_and_come_back(plain(handover_s=30 * DT), gap_frames=15, others=[[20.0, 200.0]])


def _re_pointed(cfg: TrackerConfig, side: int, second_side: int | None = None, other=None,
                gone=None) -> list[list[int]]:
    """A lone target tracked 10 frames, then 200 px away in the next frame (the camera re-pointed)
    as a box of second_side px; `other` is a second detection of that size in that frame, `gone`
    a second target seen in frames 0-5 only (its track lost, not yet deleted, at the jump).
    Returns the ids published on the target in each frame after the jump."""
    tracker, out_ids = Tracker(cfg), []
    for k in range(14):
        jumped = k >= 10
        xy = [[60.0 + k + (200.0 if jumped else 0.0), 80.0]]
        if k == 10 and other is not None:
            xy.append(other)
        if k < 6 and gone is not None:
            xy.append(gone)
        det = dets(xy, score=0.99, side=second_side if jumped and second_side else side)
        pub = tracker.update(det, k * DT).published()
        if jumped:
            out_ids.append([int(i) for i, c in zip(pub.track_id, pub.centroid_xy) if c[0] > 200.0])
    return out_ids


def test_a_lone_large_target_that_jumps_is_followed_at_once():
    cfg = plain(jump_min_area_px=25)
    assert _re_pointed(cfg, side=12) == [[1]] * 4  # no frame lost, same id
    assert _re_pointed(cfg, side=12, second_side=16) == [[1]] * 4  # 144 -> 256 px^2: within 2x
    assert _re_pointed(cfg, side=12, gone=[30.0, 30.0]) == [[1]] * 4  # a lost track does not count
    # Not the same object by size, too small for size to say, or not the only candidate:
    # a new track, published after confirm_hits frames.
    for kwargs in ({"second_side": 20}, {"side": 3}, {"other": [30.0, 30.0]}):
        assert _re_pointed(cfg, **{"side": 12, **kwargs})[0] == []
    assert _re_pointed(plain(jump_min_area_px=0), side=12)[0] == []
    # The restart is not travel against the scene: the track still counts as not having moved.
    tracker = Tracker(plain(jump_min_area_px=25))
    for k in range(8):
        tracker.update(dets([[60.0 + (200.0 if k >= 4 else 0.0), 80.0]], score=0.99, side=12), k * DT)
    assert np.hypot(*tracker._tracks[0].scene_travel_xy) < 1.0


def test_a_small_track_of_clutter_elsewhere_does_not_stop_a_large_target_from_jumping():
    """A 2-px point confirmed far away (clutter, or a bird) is no second object of the drone's
    size: the drone's track still follows the camera's re-pointing, keeping its id."""
    def both(k: int) -> Detections:
        drone = dets([[60.0 + k + (200.0 if k >= 10 else 0.0), 80.0]], score=0.99, side=12)
        speck = dets([[30.0 + 0.5 * k, 200.0]], score=0.99, side=2)
        return Detections(*(np.concatenate([getattr(drone, f), getattr(speck, f)])
                            for f in ("centroid_xy", "bbox_xyxy", "area_px", "peak_score", "mean_score",
                                      "contrast", "structure")))

    tracker = Tracker(plain(jump_min_area_px=25))
    for k in range(14):
        pub = tracker.update(both(k), k * DT).published()
        if k == 9:
            assert len(pub) == 2  # the drone and the speck both confirmed before the jump
        if k >= 10:
            assert [int(i) for i, c in zip(pub.track_id, pub.centroid_xy) if c[0] > 200.0] == [1]


def test_a_large_target_is_taken_back_within_body_lengths_of_its_prediction():
    def ids_after_jerk(side: int) -> list[int]:
        tracker = Tracker(plain(reacquire_gate_px_s=15.0 * FPS, reacquire_body_lengths=2.0))
        for k in range(10):
            tracker.update(dets([[60.0 + k, 80.0]], score=0.99, side=side), k * DT)
        # the camera jerks: the target moves 22 px in a frame, past the 15 px gate
        out = tracker.update(dets([[91.0, 80.0]], score=0.99, side=side), 10 * DT)
        return [int(i) for i in out.track_id[out.detection >= 0]]

    assert ids_after_jerk(12) == [1]  # 24 px gate for a 12 px target
    assert ids_after_jerk(3) == [2]  # a new track: 15 px for a 3 px target


def test_zero_coast_frames_deletes_at_the_first_miss():
    tracker = Tracker(plain(max_coast_s=0 * DT))
    for k in range(4):
        out = tracker.update(dets([[10.0 + k, 10.0]]), k * DT)
    assert list(out.state) == [CONFIRMED]
    assert len(tracker.update(Detections.empty(), 4 * DT)) == 0


def test_one_frame_false_alarm_is_never_published_and_dies_once_it_cannot_confirm():
    cfg = plain()  # M=3 of N=5: one hit plus at most one more by age 4 cannot make 3
    tracker = Tracker(cfg)
    alarm_id = None
    for k in range(20):
        rows = [[30.0 + 2.0 * k, 40.0]]
        if k == 6:
            rows.append([150.0, 120.0])
        out = tracker.update(dets(rows), k * DT)
        if k == 6:
            alarm_id = int(out.track_id[out.detection == 1][0])
            assert by_id(out, alarm_id).state[0] == TENTATIVE
        alive = alarm_id is not None and alarm_id in out.track_id
        assert alive == (6 <= k <= 6 + tracker.frames(cfg.confirm_window_s) - cfg.confirm_hits)
        assert alarm_id not in out.published().track_id
        assert list(out.published().track_id) == ([1] if k >= 2 else [])


def test_weak_detections_do_not_start_tracks_but_feed_existing_ones():
    tracker = Tracker(plain(min_start_score=0.5))
    assert len(tracker.update(dets([[20.0, 20.0]], score=0.3), 0.0)) == 0
    tracker.update(dets([[20.0, 20.0]], score=0.6), DT)
    out = tracker.update(dets([[20.5, 20.0]], score=0.3), 2 * DT)
    assert list(out.track_id) == [1] and out.detection[0] == 0 and out.score[0] == pytest.approx(0.3)


def test_ids_are_never_reused_and_reset_restarts_them():
    # Without the clutter map: a target that keeps reappearing at one spot is what the map
    # learns to distrust (tested below), and this test is about ids.
    cfg = plain(max_coast_s=2 * DT, clutter_cell_px=0.0)
    tracker = Tracker(cfg)
    seen = []
    t = 0.0
    for life in range(4):  # a target lives, is deleted, and a new one appears in the same place
        for _ in range(5):
            out = tracker.update(dets([[64.0, 64.0]]), t)
            t += DT
        seen.append(int(out.track_id[0]))
        for _ in range(tracker.frames(cfg.max_coast_s) + 1):
            out = tracker.update(Detections.empty(), t)
            t += DT
        assert len(out) == 0
    assert seen == [1, 2, 3, 4]
    tracker.reset()
    assert list(tracker.update(dets([[5.0, 5.0]]), 0.0).track_id) == [1]


def test_ids_are_per_instance():
    a, b = Tracker(plain()), Tracker(plain())
    a.update(dets([[1.0, 1.0], [50.0, 50.0]]), 0.0)
    assert list(b.update(dets([[9.0, 9.0]]), 0.0).track_id) == [1]


def test_empty_frames():
    tracker = Tracker(plain())
    for k in range(3):
        out = tracker.update(Detections.empty(), k * DT)
        assert isinstance(out, Tracks) and len(out) == 0 and len(out.published()) == 0
        assert out.covariance_xy.shape == (0, 2, 2) and out.to_records() == []
    out = tracker.update(dets([[10.0, 10.0]]), 3 * DT)
    assert list(out.track_id) == [1]
    out = tracker.update(Detections.empty(), 4 * DT)
    assert list(out.track_id) == [1] and out.detection[0] == -1 and out.misses[0] == 1


@pytest.mark.parametrize("field, value", [
    ("meas_noise_px", 0.0), ("meas_noise_px", -1.0), ("meas_noise_px", float("nan")),
    ("accel_noise_px_s2", 0.0), ("init_velocity_std_px_s", -5.0), ("max_gate_px_s", float("inf")),
    ("gate_prob", 0.0), ("gate_prob", 1.0), ("gate_prob", 1.5),
    ("confirm_hits", 0), ("confirm_hits", 2.5), ("confirm_window_s", 0.0), ("max_coast_s", -1.0),
    ("max_coast_s", True), ("handover_s", float("inf")), ("min_start_score", 1.2), ("min_start_score", -0.1), ("meas_noise_px", "1"),
    ("jump_area_ratio", 0.5), ("jump_min_area_px", -1.0), ("reacquire_body_lengths", -2.0),
    ("faint_contrast", 1.5), ("faint_confirm_s", -0.1), ("static_clutter_travel_ratio", 0.0), ("static_clutter_travel_ratio", 1.5), ("static_clutter_max_area_px", -1.0), ("static_clutter_max_step_px", -1.0),
])
def test_bad_config_raises_quoting_the_value(field, value):
    with pytest.raises(ValueError, match=re.escape(f"{field}={value!r}")):
        plain(**{field: value})


def test_non_finite_timestamp_raises():
    with pytest.raises(ValueError, match="timestamp_s=nan"):
        Tracker(plain()).update(Detections.empty(), float("nan"))


def test_timestamp_gaps_are_bridged_by_a_longer_prediction():
    # 100 px/s: a gap of 6 frame periods moves the target 24 px, beyond the 15 px gate from
    # where a fixed-step prediction would put it, so only a dt-aware prediction matches.
    periods = [1, 1, 1, 1, 1, 6, 1, 1, 4, 1, 1, 1, 8, 1, 1, 1]
    times = np.concatenate([[0.0], np.cumsum(periods) * DT])
    vel = np.array([100.0, 0.0])
    tracker = Tracker(plain())
    for t in times:
        out = tracker.update(dets(np.array([20.0, 50.0]) + vel * t), t)
        assert list(out.track_id) == [1] and out.detection[0] == 0
    assert out.state[0] == CONFIRMED
    np.testing.assert_allclose(out.velocity_xy[0], vel, atol=3.0)


def test_timestamps_that_stop_advancing_step_at_the_rate_seen_before():
    """A stream that repeats its last timestamp: the steps stay those of the 10 frames/s seen."""
    tracker = Tracker(plain())
    for k in range(40):
        out = tracker.update(dets([[10.0 + 2.0 * k, 30.0]]), min(k, 10) * 0.1)  # 2 px per frame
        assert list(out.track_id) == [1]
    np.testing.assert_allclose(out.velocity_xy[0], [20.0, 0.0], atol=1.0)


def test_timestamps_that_never_advance_step_at_the_default_rate():
    from irstream.clock import DEFAULT_FRAME_S

    tracker = Tracker(plain())
    for k in range(20):
        out = tracker.update(dets([[10.0 + 2.0 * k, 30.0]]), 7.0)  # 2 px per frame, clock stuck
    np.testing.assert_allclose(out.velocity_xy[0], [2.0 / DEFAULT_FRAME_S, 0.0], atol=2.0)


@pytest.mark.parametrize("jump_px, cfg", [
    (20.0, plain(accel_noise_px_s2=5000.0)),  # inside the (huge) covariance gate, beyond the 15 px gate
    (8.0, plain(reacquire_gate_px_s=0.0)),  # within the 15 px gate, but ~6 sigma for a settled track
])
def test_a_detection_outside_the_gate_starts_a_new_track(jump_px, cfg):
    tracker = Tracker(cfg)
    for k in range(15):
        tracker.update(dets([[60.0, 60.0]]), k * DT)
    out = tracker.update(dets([[60.0 + jump_px, 60.0]]), 15 * DT)
    assert list(out.track_id) == [1, 2] and list(out.state) == [COASTING, TENTATIVE]
    assert list(out.detection) == [-1, 0]


def test_a_track_takes_back_its_target_just_outside_its_gate():
    # As on a real clip after the camera re-points: the track learnt a velocity from the jolt
    # (-11 px/frame, then 0), the drone is 8 px from the prediction, far outside the settled
    # covariance but well inside the reacquire gate.  One id, no coasting ghost.
    tracker = Tracker(plain())
    for k in range(15):
        tracker.update(dets([[60.0, 60.0]]), k * DT)
    out = tracker.update(dets([[68.0, 60.0], [100.0, 60.0]]), 15 * DT)
    assert list(out.track_id) == [1, 2] and list(out.detection) == [0, 1]
    assert out.state[0] == CONFIRMED
    far = Tracker(plain(reacquire_gate_px_s=5.0 * FPS))
    for k in range(15):
        far.update(dets([[60.0, 60.0]]), k * DT)
    assert list(far.update(dets([[68.0, 60.0]]), 15 * DT).detection) == [-1, 0]


def test_established_tracks_take_precedence_over_newborn_ones():
    tracker = Tracker(plain())
    k = 0
    for k in range(8):
        out = tracker.update(dets([[40.0 + 4.0 * k, 40.0]]), k * DT)
    k += 1
    out = tracker.update(dets([[40.0 + 4.0 * k, 40.0], [40.0 + 4.0 * k + 6.0, 40.0]]), k * DT)
    assert len(out) == 2 and by_id(out, 2).state[0] == TENTATIVE
    # Next frame the only detection is 2 px ahead of the confirmed prediction and right on the
    # newborn track: the newborn is cheaper, yet the established track keeps its target.
    k += 1
    out = tracker.update(dets([[40.0 + 4.0 * k + 2.0, 40.0]]), k * DT)
    assert by_id(out, 1).detection[0] == 0 and by_id(out, 2).detection[0] == -1


def test_two_hundred_targets_per_frame():
    rng = np.random.default_rng(7)
    gx, gy = np.meshgrid(np.arange(20) * 40.0 + 20.0, np.arange(10) * 40.0 + 20.0)
    start = np.stack([gx.ravel(), gy.ravel()], axis=1)
    vel = np.array([30.0, -20.0]) + rng.uniform(-5.0, 5.0, (200, 2))
    cfg = plain(confirm_llr_nats=0.0)  # identities at scale; evidence is tested apart
    tracker = Tracker(cfg)
    target_of = {}
    for k in range(50):
        order = rng.permutation(200)
        xy = start[order] + vel[order] * k * DT + rng.normal(0, 0.3, (200, 2))
        out = tracker.update(dets(xy, score=rng.uniform(0.6, 1.0, 200)), k * DT)
        assert len(out) == 200 and np.all(out.detection >= 0)
        if k == 0:
            target_of = dict(zip(out.track_id.tolist(), order[out.detection].tolist()))
        assert [target_of[t] for t in out.track_id.tolist()] == order[out.detection].tolist()
        if k + 1 >= cfg.confirm_hits:
            assert np.all(out.state == CONFIRMED) and len(out.published()) == 200
    assert sorted(target_of) == list(range(1, 201))
    err = out.velocity_xy - vel[[target_of[t] for t in out.track_id.tolist()]]
    assert np.abs(err).max() < 10.0


def test_cv_model_steps_position_by_velocity_times_dt():
    F, Q = cv_model(0.5, 2.0)
    np.testing.assert_allclose(F @ [1.0, 2.0, 10.0, -4.0], [6.0, 0.0, 10.0, -4.0])
    # Q in [x, y, vx, vy] order: var_x = a^2 dt^4 / 4, var_vx = a^2 dt^2, no x-y coupling.
    assert Q[0, 0] == pytest.approx(4.0 * 0.5 ** 4 / 4) and Q[2, 2] == pytest.approx(4.0 * 0.25)
    assert Q[0, 1] == 0.0 and Q[0, 2] == pytest.approx(4.0 * 0.5 ** 3 / 2)


def test_assign_prefers_more_pairs_and_drops_gated_ones():
    inf = np.inf
    rows, cols = assign(np.array([[0.0, 5.0], [4.0, inf]]))
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 1), (1, 0)]
    rows, cols = assign(np.array([[inf, inf], [inf, 1.0], [inf, inf]]))
    assert list(zip(rows.tolist(), cols.tolist())) == [(1, 1)]
    assert len(assign(np.full((0, 3), inf))[0]) == 0


# ---- what separates targets from clutter (issue: prove the tracker) ---------------------------


def run_frames(tracker, frames, shifts=None):
    """frames: list of (xy rows, scores); returns the Tracks of each frame."""
    out = []
    for k, (xy, score) in enumerate(frames):
        d = dets(xy, score) if len(xy) else Detections.empty()
        out.append(tracker.update(d, k * DT, None if shifts is None else shifts[k]))
    return out


def test_static_clutter_with_middling_scores_is_not_confirmed_while_a_sure_target_is():
    """Both are detected in the same frames (same persistence); only the detector's confidence
    differs, and the track score (log-likelihood ratio) tells them apart."""
    target, clutter = [60.0, 40.0], [150.0, 90.0]
    frames = [([target, clutter], np.array([0.97, 0.6])) if k % 4 != 3 else ([], 0.9) for k in range(24)]
    out = run_frames(Tracker(plain()), frames)
    published = set().union(*(o.published().track_id.tolist() for o in out))
    on_target = {int(t) for o in out for t, xy in zip(o.track_id, o.centroid_xy) if np.hypot(*(xy - target)) < 2}
    assert published and published <= on_target


def test_camera_pan_keeps_ids_when_the_shift_is_given():
    """The whole scene jumps 12 px at frame 10 (beyond the 15 px gate's reach together with the
    target's own motion); with the measured shift the tracks follow, without it they restart."""
    pan = np.array([12.0, -9.0])

    def frames():
        for k in range(20):
            off = pan if k >= 10 else np.zeros(2)
            yield ([np.array([50.0 + k, 60.0]) + off, np.array([120.0, 100.0]) + off], 0.95)

    shifts = [pan if k == 10 else np.zeros(2) for k in range(20)]
    with_shift = run_frames(Tracker(plain()), list(frames()), shifts)
    without = run_frames(Tracker(plain()), list(frames()))
    assert sorted(with_shift[-1].published().track_id.tolist()) == [1, 2]
    assert max(without[-1].track_id) > 2


def test_a_target_the_camera_follows_holds_its_place_through_a_pan():
    """Camera locked on the target: the scene jumps, the target stays put in the image."""
    shifts = [np.array([10.0, 6.0]) if k == 8 else np.zeros(2) for k in range(16)]
    out = run_frames(Tracker(plain()), [([[80.0, 80.0]], 0.95)] * 16, shifts)
    assert out[-1].published().track_id.tolist() == [1]
    assert np.allclose(out[-1].centroid_xy[0], [80.0, 80.0], atol=0.5)


def test_a_burst_of_clutter_is_never_published_and_the_target_keeps_its_id():
    rng = np.random.default_rng(3)
    frames = []
    for k in range(20):
        rows = [[40.0 + 2 * k, 50.0]]
        if k == 9:
            rows += rng.uniform(100, 300, (60, 2)).tolist()
        frames.append((rows, 0.95))
    out = run_frames(Tracker(plain()), frames)
    for o in out[9:]:
        assert o.published().track_id.tolist() == [1]


def test_static_clutter_rule_unpublishes_a_ground_point_once_the_scene_has_moved():
    cfg = plain(static_clutter_shift_px=5.0)
    frames, shifts, scene = [], [], np.zeros(2)
    for k in range(24):
        step = np.array([1.5, 0.0]) if k >= 6 else np.zeros(2)
        scene = scene + step
        shifts.append(step)
        frames.append(([[60.0, 60.0], np.array([150.0, 40.0]) + scene], 0.95))  # target held, rock moves
    out = run_frames(Tracker(cfg), frames, shifts)
    assert sorted(out[5].published().track_id.tolist()) == [1, 2]  # before the scene moves: no way to tell
    last = out[-1].published()
    assert last.track_id.tolist() == [1] and np.allclose(last.centroid_xy[0], [60.0, 60.0], atol=0.5)


def test_static_clutter_ratio_keeps_a_slow_target_and_large_tracks_in_clear_sky_are_exempt():
    # The scene pans 1.5 px a frame; a rock goes with it, a small aircraft creeps 0.5 px a frame
    # against it (0.33 of the scene's move), a large target in clear sky seems to go with the
    # scene (the phase correlation followed it), and a building's corner as large goes with it in
    # structured surroundings, after seeming to move 4 px for three frames (a camera step that
    # was misread): the rock and the corner are dropped.
    cfg = plain(static_clutter_shift_px=10.0, static_clutter_travel_ratio=0.15, static_clutter_max_area_px=25.0,
                static_max_structure=0.1)
    tracker = Tracker(cfg)
    scene = np.zeros(2)
    for k in range(30):
        step = np.array([1.5, 0.0])
        scene = scene + step
        small = dets([np.array([40.0, 40.0]) + scene, np.array([100.0 + 2.0 * k, 100.0])], score=0.95)
        large = dets([np.array([200.0, 150.0]) + scene], score=0.95, side=8)
        misread = np.array([4.0, 0.0]) if 3 <= k < 6 else np.zeros(2)
        corner = dets([np.array([300.0, 200.0]) + scene + misread], score=0.95, side=8, structure=0.45)
        every = Detections(*(np.concatenate([getattr(d, f) for d in (small, large, corner)]) for f in
                             ("centroid_xy", "bbox_xyxy", "area_px", "peak_score", "mean_score", "contrast", "structure")))
        out = tracker.update(every, k * DT, scene_shift_xy=step)
    assert sorted(out.published().track_id.tolist()) == [2, 3]


def _across_a_jump(cfg: TrackerConfig) -> list[int]:
    """A still camera that re-points once, 120 px at frame 20: a rock fixed in the scene and a
    far aircraft creeping 0.5 px a frame against it.  Returns the ids published at the end."""
    tracker, scene = Tracker(cfg), np.zeros(2)
    for k in range(30):
        step = np.array([120.0, 0.0]) if k == 20 else np.zeros(2)
        scene = scene + step
        xy = [np.array([40.0, 40.0]) + scene, np.array([60.0 + 0.5 * k, 100.0]) + scene]
        out = tracker.update(dets(xy, score=0.95), k * DT, scene_shift_xy=step)
    return sorted(out.published().track_id.tolist())


def test_a_camera_jump_counts_as_one_step_of_pan_so_a_slow_target_stays_and_a_rock_goes():
    cfg = plain(static_clutter_shift_px=20.0, static_clutter_travel_ratio=0.15, static_clutter_max_step_px=20.0)
    assert _across_a_jump(cfg) == [2]
    # Counted at its full 120 px, the jump asked the aircraft for 18 px of travel in a second.
    assert _across_a_jump(plain(static_clutter_shift_px=20.0, static_clutter_travel_ratio=0.15,
                                static_clutter_max_step_px=1000.0)) == []


# ---- clutter map, motion evidence, the picture's edge -----------------------------------------


def run_scene(tracker, frames, shift=(0.0, 0.0), shape=None):
    out = []
    for k, xy in enumerate(frames):
        out.append(tracker.update(dets(xy) if len(xy) else Detections.empty(), k * DT, np.array(shift), shape))
    return out


def bursts(n, on=4, off=12):
    """True in bursts of `on` frames every on + off: clutter that fires, falls silent long enough
    for its track to end (max_coast_s = 10), and fires again at the same place."""
    return [k % (on + off) < on for k in range(n)]


def test_recurring_clutter_stops_confirming_once_the_map_has_learnt_it():
    frames = [[[40.0, 40.0]] if b else [] for b in bursts(200)]

    def confirmed_late(cfg):
        out = run_scene(Tracker(cfg), frames)
        return sum(len(o.published()) for o in out[100:])

    assert confirmed_late(plain(clutter_cell_px=0.0)) > 10
    assert confirmed_late(plain()) == 0


def test_a_target_crossing_a_learnt_clutter_cell_is_still_tracked():
    clutter = [[[40.0, 60.0]] if b else [] for b in bursts(150)]
    target = [[[10.0 + 0.5 * (k - 100), 60.0]] if k >= 100 else [] for k in range(150)]
    out = run_scene(Tracker(plain()), [c + t for c, t in zip(clutter, target)])
    assert all(len(o.published()) >= 1 for o in out[105:])
    assert all(np.abs(o.published().centroid_xy[:, 0] - (10.0 + 0.5 * (k + 105 - 100))).min() < 2.0
               for k, o in enumerate(out[105:]))


def test_the_map_moves_with_the_scene():
    """The camera pans 2 px/frame: the clutter's pixel moves, its scene cell does not."""
    tracker = Tracker(plain())
    frames = [[[40.0 + 2.0 * k, 40.0]] if b else [] for k, b in enumerate(bursts(160))]
    out = run_scene(tracker, frames, shift=(2.0, 0.0))
    assert sum(len(o.published()) for o in out[96:]) == 0
    assert tracker._clutter.penalty_nats(np.array([[40.0 + 2.0 * 159, 40.0]]))[0] > 2.0
    assert tracker._clutter.penalty_nats(np.array([[40.0, 40.0]]))[0] == 0.0


def test_a_confirmed_hovering_target_is_not_killed_by_the_map():
    frames = [[[50.0, 50.0]]] * 300
    out = run_scene(Tracker(plain()), frames)
    assert all(list(o.published().track_id) == [1] for o in out[5:])


def test_moving_against_the_scene_confirms_sooner_than_hovering():
    cfg = plain(confirm_llr_nats=6.0, confirm_hits=2)

    def first_confirmed(frames):
        for k, o in enumerate(run_scene(Tracker(cfg), frames)):
            if len(o.published()):
                return k
        return None

    still = first_confirmed([[[50.0, 50.0]]] * 20)
    moving = first_confirmed([[[50.0 + 1.5 * k, 50.0]] for k in range(20)])
    assert still is not None and moving is not None and moving < still


def test_tracks_leaving_the_picture_are_not_published_outside_it():
    shape = (64, 80)
    frames = [[[60.0 + 3.0 * k, 30.0]] if 60 + 3 * k < 80 else [] for k in range(20)]
    for o in run_scene(Tracker(plain()), frames, shape=shape):
        pub = o.published()
        assert ((pub.centroid_xy[:, 0] >= 0) & (pub.centroid_xy[:, 0] <= shape[1] - 1)).all()


def test_moving_is_judged_over_the_window_even_when_timestamps_do_not_advance():
    """A source without timing (every frame at t = 0): the tracker steps DEFAULT_FRAME_S, so the
    one-second window still slides and its memory stays bounded."""
    tracker = Tracker(plain(motion_ref_px=1.5, moving_window_s=1.0))
    for k in range(200):
        out = tracker.update(dets([[40.0 + min(k, 50), 40.0]], score=0.99), 0.0)
    assert not out.moving[0]  # stopped 150 frames (6 s) ago
    assert len(tracker._tracks[0].recent) <= FPS + 2


def test_rules_in_seconds_count_the_frames_the_tracker_sees():
    """At 25 frames/s (timestamps as a video gives them) the rules are the frame counts they
    were tuned as; at a quarter of the rate they cover the same time in a quarter of the frames."""
    full, quarter = Tracker(plain()), Tracker(plain())
    for k in range(30):
        full.update(Detections.empty(), k / 25.0)
        quarter.update(Detections.empty(), 4 * k / 25.0)
    assert [full.frames(s) for s in (0.08, 0.2, 0.4, 2.0, 4.0)] == [2, 5, 10, 50, 100]
    assert [quarter.frames(s) for s in (0.08, 0.2, 0.4, 2.0, 4.0)] == [1, 2, 3, 13, 25]
    assert full.frames(0.0) == quarter.frames(0.0) == 0


def test_a_quarter_rate_replay_keeps_the_target_and_still_drops_one_frame_false_alarms():
    """A live run that keeps up with every 4th frame of a 25 frames/s camera: the target is
    confirmed on its 2nd frame (two hits in 0.2 s), coasts through one missed frame, and a
    false alarm seen in one frame is never published."""
    tracker, dt = Tracker(plain()), 4 * DT
    published = []
    for k in range(20):
        rows = [] if k == 10 else [[30.0 + 8.0 * k, 40.0]]  # 2 px per camera frame
        if k == 6:
            rows.append([150.0, 120.0])
        pub = tracker.update(dets(rows), k * dt).published()
        published.append(sorted(pub.track_id.tolist()))
    assert published[0] == [] and all(ids == [1] for ids in published[1:])


def test_the_frame_clock_counts_seconds_in_the_frames_it_sees_and_a_stall_does_not_move_it():
    from irstream.clock import DEFAULT_FRAME_S, FrameClock

    clock = FrameClock()
    for k in range(30):
        clock.tick(k * 0.16)  # a live run keeping up with 6.25 of 25 frames/s
    assert clock.frames(2.0) == 13 and clock.frames(0.4) == 3 and clock.frames(0.0) == 0
    assert clock.tick(29 * 0.16 + 5.0) == pytest.approx(5.0)  # a 5 s stall is one long step ...
    assert clock.frame_s == pytest.approx(0.16)  # ... not the rate
    assert clock.tick(29 * 0.16 + 5.0) == pytest.approx(0.16)  # time did not advance: the rate seen
    assert FrameClock().frame_s == DEFAULT_FRAME_S  # before any step
    with pytest.raises(ValueError, match="timestamp_s"):
        clock.tick(float("nan"))
