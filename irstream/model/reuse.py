"""Tiles whose picture has not changed keep the map the model made of them.

Each tile is run alone (GroupNorm and the attention take their statistics per tile), so a tile
whose pixels are what they were when the model last ran on it would get the same map again.
Under a still camera most of a frame is such tiles: sky, hills and buildings that only the
sensor's noise moves.  A tile is run again as soon as any of its pixels, lightly blurred so
that noise and compression shimmer do not count, moved by `levels` grey levels (of 255) from
that last run, and at least every `max_frames` frames.  A tile whose map holds a target (a
pixel at or above `hot`, the score threshold) runs on every frame: the blur hides much of a 1-2
px target's contrast, and a target must not be reported where it was.  So what is kept is empty
sky and clutter below the threshold; a new target there is found when its tile changes enough or
at the next refresh.  A camera that pans changes every tile and runs them all, as without this,
unless `max_tiles` caps the tiles run on one frame: then the tiles holding a target run, and of
the others that are due, those kept `max_frames` frames first, then those that changed most (a
target that came in moves its tile's pixels far more than a flicker moves the others) up to the
cap; the rest keep their maps one more frame.  The cap bounds the slowest frame, which a live
run's latency waits on: a camera's gain that flickers moves every tile by a few grey levels
while its map stays below the threshold.  Used on CPU only: on a GPU a changing batch size would
capture a CUDA graph per size.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Gaussian sigma of the blur before tiles are compared, px: noise is not change.
CHANGE_BLUR_SIGMA_PX = 1.0
#: Grey levels per unit of the [0, 1] frames the model sees.
GREY_LEVELS = 255.0


@dataclass
class _Slot:
    seen: np.ndarray  # (N, t, t) the blurred tiles as they were when last run
    maps: np.ndarray  # (N, t, t) their maps from that run
    ages: np.ndarray  # (N,) frames each map has been kept since
    hot: np.ndarray  # (N,) the map holds a target: the tile runs on every frame


class TileMemory:
    """The last run of every tile of every stream (`slot`: the source's id)."""

    def __init__(self, levels: float, max_frames: int, hot: float = 1.0, max_tiles: int = 0) -> None:
        self.change = levels / GREY_LEVELS
        self.max_frames, self.hot, self.max_tiles = max_frames, hot, max_tiles
        self._slots: dict[object, _Slot] = {}
        self._pending: dict[object, np.ndarray] = {}
        self.tiles_run = self.tiles_kept = 0

    def reset(self) -> None:
        self._slots.clear()
        self._pending.clear()
        self.tiles_run = self.tiles_kept = 0

    def to_run(self, slot, tiles: np.ndarray) -> np.ndarray:
        """Which of a frame's tiles (N, 1, t, t) need the model: a bool per tile."""
        seen = np.stack([cv2.GaussianBlur(t[0], (0, 0), CHANGE_BLUR_SIGMA_PX) for t in tiles])
        self._pending[slot] = seen
        last = self._slots.get(slot)
        if last is None or last.seen.shape != seen.shape:  # a new stream, or a new frame size
            n = len(seen)
            self._slots[slot] = _Slot(seen.copy(), np.empty_like(seen), np.zeros(n, int), np.zeros(n, bool))
            return np.ones(n, bool)
        change = np.abs(seen - last.seen).reshape(len(seen), -1).max(axis=1)
        old = last.ages >= self.max_frames
        due = (change >= self.change) | old | last.hot
        if not self.max_tiles or due.sum() <= self.max_tiles:
            return due
        return self._capped(change, due & ~last.hot, old, last.hot)

    def _capped(self, change: np.ndarray, due: np.ndarray, old: np.ndarray, hot: np.ndarray) -> np.ndarray:
        """The hot tiles, and of the other due tiles as many as the cap leaves (at least one, so
        that no tile waits forever behind a frame full of targets)."""
        run = hot.copy()
        others = np.flatnonzero(due)
        room = max(1, self.max_tiles - int(hot.sum()))
        order = np.lexsort((-change[others], ~old[others]))  # kept too long first, then changed most
        run[others[order[:room]]] = True
        return run

    def maps(self, slot, run: np.ndarray, new_maps: np.ndarray) -> np.ndarray:
        """The frame's maps (N, t, t): those of the tiles just run, the kept ones elsewhere."""
        seen, last = self._pending.pop(slot), self._slots[slot]
        last.seen[run] = seen[run]
        last.maps[run] = new_maps  # a copy: a runtime may reuse its output buffer
        last.ages[run] = 0
        if len(new_maps):
            last.hot[run] = new_maps.reshape(len(new_maps), -1).max(axis=1) >= self.hot
        last.ages[~run] += 1
        self.tiles_run += int(run.sum())
        self.tiles_kept += int((~run).sum())
        return last.maps.copy()
