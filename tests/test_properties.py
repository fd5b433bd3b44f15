"""Property-based tests: preprocessing, target extraction, the tracker and the message on
arbitrary arrays, sizes and detection streams.  Nothing raises, nothing published is NaN, and
a track id is never handed out twice in a run."""

import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from irstream.sinks.message import build_message, encode, validate
from irstream.track.motion import GlobalMotion, MotionConfig
from irstream.detect.preprocess import PreprocessConfig, Preprocessor
from irstream.detect.targets import TargetConfig, extract_targets
from irstream.track.tracker import Tracker, TrackerConfig
from irstream.types import Detections, Frame, FrameResult

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
shapes = st.tuples(st.integers(1, 48), st.integers(1, 48))


def images(dtype):
    return shapes.flatmap(lambda hw: arrays(dtype, hw))


@SETTINGS
@given(st.one_of(images(np.uint8), images(np.uint16)), st.sampled_from(["percentile", "fixed"]))
def test_preprocessing_gives_a_finite_unit_image_for_any_frame(img, agc):
    pre = Preprocessor(PreprocessConfig(agc=agc, fixed_range_counts=(100, 30000)))
    for i in range(2):  # twice: the AGC's smoothing state is used on the second frame
        out = pre(Frame(img, i, i / 25, "prop", 16 if img.dtype == np.uint16 else 8)).unit
        assert out.shape == img.shape and out.dtype == np.float32
        assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


@SETTINGS
@given(shapes.flatmap(lambda hw: st.tuples(arrays(np.float32, hw, elements=st.floats(0, 1, width=32)),
                                           arrays(np.float32, hw, elements=st.floats(0, 1, width=32)))),
       st.floats(0.05, 0.95), st.integers(1, 5), st.integers(0, 6), st.integers(0, 4))
def test_targets_are_finite_and_inside_the_frame(maps, threshold, min_area, ring, border):
    score, image = maps
    d = extract_targets(score, image, TargetConfig(score_threshold=threshold, min_area_px=min_area,
                                                   max_area_px=min_area + 400, ring_px=ring, border_px=border))
    h, w = score.shape
    assert all(np.isfinite(getattr(d, f)).all() for f in ("centroid_xy", "peak_score", "mean_score", "contrast"))
    assert ((d.centroid_xy >= border - 0.5) & (d.centroid_xy <= [w - 0.5 - border, h - 0.5 - border])).all()
    assert (d.area_px >= min_area).all() and (d.peak_score > threshold).all()


def _detections(draw, n_max=12, extent=300.0):
    n = draw(st.integers(0, n_max))
    coord = st.floats(-extent, 2 * extent, allow_nan=False, width=32)
    xy = np.array(draw(st.lists(st.tuples(coord, coord), min_size=n, max_size=n)), dtype=float).reshape(n, 2)
    score = np.array(draw(st.lists(st.floats(0, 1), min_size=n, max_size=n)), dtype=float)
    box = np.concatenate([np.floor(xy) - 1, np.floor(xy) + 2], axis=1).astype(np.int64)
    return Detections(xy, box, np.full(n, 3, np.int64), score, score * 0.9, np.full(n, 0.05))


@st.composite
def detection_streams(draw):
    frames = draw(st.integers(1, 40))
    # Frame times strictly increase, with gaps (dropped frames) and jitter; shifts are the
    # scene's global motion, sometimes unknown.
    steps = draw(st.lists(st.floats(1e-3, 1.0), min_size=frames, max_size=frames))
    shift = st.one_of(st.none(), st.tuples(st.floats(-20, 20), st.floats(-20, 20)))
    return [(_detections(draw), float(t), draw(shift)) for t in np.cumsum(steps)]


@SETTINGS
@given(detection_streams(), st.integers(1, 5), st.integers(0, 4), st.booleans())
def test_tracker_on_any_detection_stream(stream, confirm_hits, coast, tentative):
    # handover_s (on by default) gives a lost target's id to the lone track that follows it, on
    # purpose; off here, so that any other id coming back is caught.
    tracker = Tracker(TrackerConfig(confirm_hits=confirm_hits, confirm_window_s=(confirm_hits + 2) * 0.04,
                                    max_coast_s=coast * 0.04, handover_s=0.0))
    seen_ids, dead_ids, alive = set(), set(), set()
    img = np.zeros((8, 8), np.uint8)
    for i, (dets, t, shift) in enumerate(stream):
        tracks = tracker.update(dets, t, shift)
        ids = set(tracks.track_id.tolist())
        assert len(ids) == len(tracks)  # no id twice in one frame
        assert not ids & dead_ids  # an id that died never comes back
        dead_ids |= alive - ids
        alive = ids
        seen_ids |= ids
        msg = build_message(FrameResult(Frame(img, i, t, "prop", 8), img / 255.0, dets, tracks, {}), tentative)
        # encode() refuses NaN and inf; validate() checks every track number is finite.
        assert validate(json.loads(encode(msg))) is None


@SETTINGS
@given(images(np.uint8), images(np.uint8))
def test_global_motion_on_any_pair_of_frames(a, b):
    cfg = MotionConfig()
    motion = GlobalMotion(cfg)
    for img in (a, b):
        shift = motion.estimate(img.astype(np.float32) / 255)
        # zero where the shift is not believed, else within the believed range
        assert shift.shape == (2,) and np.isfinite(shift).all()
        assert not shift.any() or cfg.min_shift_px <= np.hypot(*shift) <= cfg.max_shift_px
