"""Kalman predict and update for many constant-velocity tracks at once.

filterpy's KalmanFilter is one object per track, and its per-call overhead (argument reshaping,
copies of the prior and posterior) was 60% of the tracker's time at 200 tracks: about 10 ms a
frame on one core, against a budget of 10 ms for everything.  These functions do the same
arithmetic as filterpy (its predict, and its update with the Joseph-form covariance) on stacked
states, so the cost per frame is a handful of numpy calls whatever the number of tracks.
tests/test_kalman.py checks them against filterpy itself.

State per track is [x, y, vx, vy] in px and px/s; measurements are positions [x, y] in px
(H = [I 0]).  x is (T, 4), P is (T, 4, 4).
"""

from __future__ import annotations

import numpy as np
from filterpy.common import Q_discrete_white_noise


def cv_model(dt_s: float, accel_noise_px_s2: float) -> tuple[np.ndarray, np.ndarray]:
    """F and Q, both (4, 4), of the constant-velocity model over one step of dt_s seconds.

    F: the transition; position moves by velocity * dt, velocity is carried over unchanged.
    Q: process noise from the discrete white-noise acceleration model (acceleration constant
       within a step, independent between steps, std accel_noise_px_s2 on each axis).  Position
       variance grows as dt^4/4 and velocity variance as dt^2, which is what lets a track bridge
       a gap of dropped frames: the longer the step, the wider the gate.
    """
    F = np.eye(4)
    F[0, 2] = F[1, 3] = dt_s
    # order_by_dim=False lays the blocks out as [x, y, vx, vy]; filterpy's default is [x, vx, y, vy].
    Q = Q_discrete_white_noise(dim=2, dt=dt_s, var=accel_noise_px_s2 ** 2, block_size=2, order_by_dim=False)
    return F, Q


def initial_state(xy: np.ndarray, meas_noise_px: float, velocity_std_px_s: float) -> tuple[np.ndarray, np.ndarray]:
    """x (N, 4) and P (N, 4, 4) of new tracks born at centroids xy (N, 2), px, at rest.

    One centroid gives position only: the position is as good as one measurement, and the
    velocity starts at zero with velocity_std_px_s doubt.
    """
    n = len(xy)
    x = np.zeros((n, 4))
    x[:, :2] = xy
    P = np.zeros((n, 4, 4))
    P[:, [0, 1], [0, 1]] = meas_noise_px ** 2
    P[:, [2, 3], [2, 3]] = velocity_std_px_s ** 2
    return x, P


def predict(x: np.ndarray, P: np.ndarray, F: np.ndarray, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prior of every track one step on: x F^T and F P F^T + Q."""
    return x @ F.T, F @ P @ F.T + Q


def innovation_cov(P: np.ndarray, R: np.ndarray) -> np.ndarray:
    """S = H P H^T + R, (T, 2, 2): the spread of a track's next detection about its prediction."""
    return P[:, :2, :2] + R


def update(x: np.ndarray, P: np.ndarray, z: np.ndarray, R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posterior of tracks x (T, 4), P (T, 4, 4) given one measured position each, z (T, 2).

    Joseph form, (I - KH) P (I - KH)^T + K R K^T, as filterpy uses: it stays symmetric and
    positive definite where the shorter (I - KH) P drifts.
    """
    S = innovation_cov(P, R)
    K = P[:, :, :2] @ inv2x2(S)  # (T, 4, 2); P H^T is P's first two columns
    x = x + (K @ (z - x[:, :2])[:, :, None])[:, :, 0]
    I_KH = np.broadcast_to(np.eye(4), P.shape).copy()
    I_KH[:, :, :2] -= K
    P = I_KH @ P @ I_KH.transpose(0, 2, 1) + K @ R @ K.transpose(0, 2, 1)
    return x, P


def inv2x2(m: np.ndarray) -> np.ndarray:
    """Inverses of a stack of 2x2 matrices (..., 2, 2), written out: cheaper than np.linalg.inv."""
    a, b, c, d = m[..., 0, 0], m[..., 0, 1], m[..., 1, 0], m[..., 1, 1]
    inv = np.stack([np.stack([d, -b], -1), np.stack([-c, a], -1)], -2)
    return inv / (a * d - b * c)[..., None, None]
