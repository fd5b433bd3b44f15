"""A clutter map: how often false detections appear at each place of the scene, learnt online.

The radar literature's clutter map (cell-averaging CFAR's neighbour over time): the scene is cut
into cells and each cell keeps an exponentially decaying average of the detections that no
established track explains, per frame.  A cell on a treetop, a lit window or a glinting wave
crest, where the detector keeps firing, learns a high rate; a cell of clean sky keeps the floor.

The tracker's sequential score (irstream.track.tracker) assumes one clutter density everywhere; with the
map, a detection in a cell of rate r is worth log(r / floor) nats less as evidence for a *new*
track, so starting a track where detections keep appearing without moving needs far more evidence
than in clean sky.  Confirmed tracks are never charged: a target that hovers over one place is
not killed by its own history there.

Cells live in scene coordinates: every frame the map's origin moves with the global-motion
estimate (irstream.track.motion), so when the camera pans the rate stays with the treetop, not with
the pixel.  Values decay lazily (a cell is brought up to date when it is read or written).
"""

from __future__ import annotations

import math

import numpy as np

#: Cells kept before decayed ones are dropped (bounded memory on long runs), beyond 4 per cell
#: written this frame; a cell is forgotten once its rate is below FORGET_SHARE of the floor.
MAX_CELLS_KEPT = 10_000
FORGET_SHARE = 0.1


class ClutterMap:
    """cell_px: side of a cell, px.  time_constant_s: how long the map remembers, s (a detection
    counts 1/e as much after this long).  floor: the rate of a clean cell, false detections per
    cell per frame; the penalty is measured against it.  max_penalty_nats: cap of the penalty.
    """

    def __init__(self, cell_px: float, time_constant_s: float, floor: float, max_penalty_nats: float) -> None:
        self.cell_px, self.tau_s, self.floor, self.max_penalty = cell_px, time_constant_s, floor, max_penalty_nats
        self.origin_xy = np.zeros(2)  # where the scene's (0, 0) is in the current image, px
        self.now_s = 0.0
        self._gain = 0.0  # weight of this frame's count in the average: 1 - exp(-dt / tau)
        self._rate: dict[tuple[int, int], tuple[float, float]] = {}  # cell -> (rate, time of rate)

    def advance(self, dt_s: float, scene_shift_xy: np.ndarray) -> None:
        """Move to the next frame: dt_s later, the scene shifted by scene_shift_xy px."""
        self.now_s += dt_s
        self.origin_xy = self.origin_xy + scene_shift_xy
        self._gain = 1.0 - math.exp(-dt_s / self.tau_s)

    def _cells(self, xy: np.ndarray) -> list[tuple[int, int]]:
        c = np.floor((np.asarray(xy, float).reshape(-1, 2) - self.origin_xy) / self.cell_px).astype(np.int64)
        return [(int(a), int(b)) for a, b in c]

    def _read(self, cell: tuple[int, int]) -> float:
        rate, t = self._rate.get(cell, (0.0, self.now_s))
        return rate * math.exp(-(self.now_s - t) / self.tau_s)

    def rate(self, xy: np.ndarray) -> np.ndarray:
        """Learnt false detections per frame in the cells of points xy (N, 2)."""
        return np.array([self._read(c) for c in self._cells(xy)])

    def penalty_nats(self, xy: np.ndarray) -> np.ndarray:
        """log(rate / floor) for points xy (N, 2), 0 in clean cells, at most max_penalty_nats."""
        r = np.maximum(self.rate(xy), self.floor)
        return np.minimum(np.log(r / self.floor), self.max_penalty)

    def add(self, xy: np.ndarray) -> None:
        """Count this frame's unexplained detections at xy (N, 2) (call once per frame, after advance)."""
        counts: dict[tuple[int, int], int] = {}
        for c in self._cells(xy):
            counts[c] = counts.get(c, 0) + 1
        for c, n in counts.items():
            self._rate[c] = (self._read(c) + self._gain * n, self.now_s)
        if len(self._rate) > 4 * len(counts) + MAX_CELLS_KEPT:
            self._forget()

    def _forget(self) -> None:
        """Drop cells that have decayed to near the floor: they would read as clean sky anyway."""
        self._rate = {c: (r, t) for c, (r, t) in self._rate.items() if self._read(c) >= FORGET_SHARE * self.floor}
