"""The tracking stage: the scene's motion, then the tracker, per frame."""

from __future__ import annotations

import time

import numpy as np

from irstream.track.tracker import Tracker
from irstream.types import Detections, Tracks


class TrackingStage:
    """The per-frame work after the detector: the scene's motion, then the tracker.  Runs and
    `irstream eval-track` share it, so what is evaluated is what runs."""

    def __init__(self, cfg) -> None:
        """cfg: a PipelineConfig (its [motion] and [tracker])."""
        self.tracker = Tracker(cfg.tracker, cfg.motion)

    def __call__(self, dets: Detections, unit: np.ndarray, timestamp_s: float, timings: dict | None = None,
                 ignored: np.ndarray | None = None) -> Tracks:
        """The tracks after this frame; adds each part's time, ms, to `timings`.  ignored: pixels
        that are not the scene (burned-in text, ignore regions), left out of its motion."""
        t0 = time.perf_counter()
        shift = self.tracker.scene_shift(unit, ignored)
        t1 = time.perf_counter()
        tracks = self.tracker.update(dets, timestamp_s, shift, unit.shape)
        t2 = time.perf_counter()
        if timings is not None:
            timings.update(motion=(t1 - t0) * 1e3, tracker=(t2 - t1) * 1e3)
        return tracks
