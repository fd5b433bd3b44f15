"""The batched Kalman arithmetic against filterpy's KalmanFilter, one filter per track."""

import numpy as np
from filterpy.kalman import KalmanFilter

from irstream.track import kalman

MEAS_NOISE_PX = 1.5
VELOCITY_STD_PX_S = 20.0


def _filterpy_twin(xy, F, Q, R):
    kf = KalmanFilter(dim_x=4, dim_z=2)
    kf.F, kf.Q, kf.R = F, Q, R
    kf.H = np.hstack([np.eye(2), np.zeros((2, 2))])
    kf.x = np.array([xy[0], xy[1], 0.0, 0.0])
    kf.P = np.diag([MEAS_NOISE_PX ** 2] * 2 + [VELOCITY_STD_PX_S ** 2] * 2)
    return kf


def test_batched_steps_match_filterpy_over_a_random_walk():
    rng = np.random.default_rng(3)
    n_tracks, n_steps = 7, 40
    R = np.eye(2) * MEAS_NOISE_PX ** 2
    xy = rng.uniform(0, 500, (n_tracks, 2))
    x, P = kalman.initial_state(xy, MEAS_NOISE_PX, VELOCITY_STD_PX_S)
    # Steps of varying length, as when frames are dropped: F and Q change from step to step.
    twins = None
    for step in range(n_steps):
        dt = 1 / 25 * rng.integers(1, 4)
        F, Q = kalman.cv_model(dt, accel_noise_px_s2=50.0)
        if twins is None:
            twins = [_filterpy_twin(p, F, Q, R) for p in xy]
        x, P = kalman.predict(x, P, F, Q)
        for kf in twins:
            kf.predict(F=F, Q=Q)
        np.testing.assert_allclose(x, [kf.x for kf in twins], atol=1e-9)
        np.testing.assert_allclose(P, [kf.P for kf in twins], atol=1e-9)
        # Some tracks go unmeasured on a step, as when their target is missed.
        seen = rng.random(n_tracks) < 0.7
        z = x[seen, :2] + rng.normal(0, 2.0, (seen.sum(), 2))
        x[seen], P[seen] = kalman.update(x[seen], P[seen], z, R)
        for kf, zi in zip([t for t, s in zip(twins, seen) if s], z):
            kf.update(zi)
        np.testing.assert_allclose(x, [kf.x for kf in twins], atol=1e-9)
        np.testing.assert_allclose(P, [kf.P for kf in twins], atol=1e-9)


def test_cv_model_lays_blocks_out_as_positions_then_velocities():
    F, Q = kalman.cv_model(0.1, accel_noise_px_s2=10.0)
    assert F[0, 2] == F[1, 3] == 0.1
    # Position variance from one step of white acceleration: dt^4/4 * sigma^2.
    assert np.isclose(Q[0, 0], 0.1 ** 4 / 4 * 100) and np.isclose(Q[2, 2], 0.1 ** 2 * 100)
    assert Q[0, 1] == 0 and np.isclose(Q[0, 2], 0.1 ** 3 / 2 * 100)


def test_inv2x2_matches_numpy():
    m = np.random.default_rng(0).normal(size=(50, 2, 2)) + np.eye(2) * 3
    np.testing.assert_allclose(kalman.inv2x2(m), np.linalg.inv(m), rtol=1e-12)
