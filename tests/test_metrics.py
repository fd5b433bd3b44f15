"""Our metrics against an independent implementation (pyirstdmetrics) on real SIRST v1 masks."""

import cv2
import numpy as np
import pytest

from irstream.data.sirst import load_split
from irstream.eval.metrics import SegMetrics, match_targets

from conftest import needs_sirst

pim = pytest.importorskip("py_irstd_metrics", reason="pyirstdmetrics is a dev dependency")


def _perturbed_predictions(samples, seed=0):
    """Predictions a real detector could make: shifted, grown or shrunk targets, misses,
    false alarms of random sizes (some of equal area, which the authors' code miscounts)."""
    rng = np.random.default_rng(seed)
    preds = []
    for s in samples:
        m = s.mask.astype(np.uint8)
        op = rng.integers(5)
        if op == 0:
            m = cv2.dilate(m, np.ones((3, 3), np.uint8))
        elif op == 1:
            m = np.roll(m, rng.integers(-4, 5, size=2), axis=(0, 1))
        elif op == 2:
            m = cv2.erode(m, np.ones((2, 2), np.uint8))
        elif op == 3:
            m[:] = 0
        for _ in range(rng.integers(0, 4)):
            y, x = rng.integers(0, m.shape[0] - 3), rng.integers(0, m.shape[1] - 3)
            m[y:y + 2, x:x + 2] = 1
        preds.append(m.astype(bool))
    return preds


@needs_sirst
def test_iou_niou_pd_fa_agree_with_pyirstdmetrics():
    from conftest import SIRST

    samples = load_split(SIRST, "test")
    preds = _perturbed_predictions(samples)
    ours = SegMetrics()
    cm = pim.CMMetrics(num_bins=1, threshold=0.5, metric_handlers={
        "iou": pim.IoUHandler(with_dynamic=False, with_binary=True, sample_based=False),
        "niou": pim.IoUHandler(with_dynamic=False, with_binary=True, sample_based=True),
    })
    pdfa = pim.ProbabilityDetectionAndFalseAlarmRate(num_bins=1, distance_threshold=3)
    for s, p in zip(samples, preds):
        ours.update(p, s.mask)
        prob = p.astype(np.float64)
        cm.update(prob, s.mask)
        pdfa.update(prob, s.mask)
    got = ours.result()
    ref_pix = cm.get()
    ref_obj = pdfa.get()
    assert got["iou"] == pytest.approx(100 * float(np.ravel(ref_pix["iou"]["binary"])[0]), abs=1e-6)
    assert got["niou"] == pytest.approx(100 * float(np.ravel(ref_pix["niou"]["binary"])[0]), abs=1e-6)
    assert got["pd"] == pytest.approx(100 * float(ref_obj["probability_detection"][0]), abs=1e-9)
    assert got["fa"] == pytest.approx(1e6 * float(ref_obj["false_alarm"][0]), abs=1e-9)
    assert 0 < got["pd"] < 100 and got["fa"] > 0  # the perturbations exercised both sides


def test_equal_area_false_alarm_is_counted():
    truth = np.zeros((32, 32), bool)
    truth[5:7, 5:7] = True
    pred = truth.copy()
    pred[20:22, 20:22] = True  # same area as the target, far away
    n_t, found, fa_px = match_targets(truth, pred)
    assert (n_t, found, fa_px) == (1, 1, 4)


def test_match_needs_centroid_closer_than_three_pixels():
    truth = np.zeros((32, 32), bool)
    truth[10, 10] = True
    for dx, hit in ((2, True), (3, False)):
        pred = np.zeros_like(truth)
        pred[10, 10 + dx] = True
        assert match_targets(truth, pred)[1] == int(hit)
