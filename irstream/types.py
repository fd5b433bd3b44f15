"""The data that flows between stages."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields

import numpy as np


def _check_rows(obj, shapes: dict[str, tuple], n: int) -> None:
    """Every field of a parallel-array dataclass has n rows: the shape in `shapes`, else (n,)."""
    for f in fields(obj):
        arr = getattr(obj, f.name)
        expect = shapes.get(f.name, (n,))
        if arr.shape != expect:
            raise ValueError(f"{type(obj).__name__}.{f.name} has shape {arr.shape}, expected {expect}")


@dataclass(frozen=True)
class Detections:
    """Targets found in one frame, as parallel arrays (N rows).

    centroid_xy: (N, 2) float, sub-pixel (x = column, y = row), 0-based pixel centres.
    bbox_xyxy:   (N, 4) int, inclusive-exclusive box (x0, y0, x1, y1).
    area_px:     (N,) int, pixels in the component.
    peak_score:  (N,) float, highest target probability in the component.
    mean_score:  (N,) float, mean target probability over the component.
    contrast:    (N,) float, peak image value minus the median of a ring around the box
                 (input range [0, 1]).
    structure:   (N,) float, spread of the scene around the target (10th to 90th percentile
                 of a wider ring, input range [0, 1]): near 0 in a clear sky, large on a
                 building's edge, a ridge line or among lit windows.  Zeros when not given.
    """

    centroid_xy: np.ndarray
    bbox_xyxy: np.ndarray
    area_px: np.ndarray
    peak_score: np.ndarray
    mean_score: np.ndarray
    contrast: np.ndarray
    structure: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.structure is None:
            object.__setattr__(self, "structure", np.zeros(len(self.centroid_xy)))
        n = len(self.area_px)
        _check_rows(self, {"centroid_xy": (n, 2), "bbox_xyxy": (n, 4)}, n)

    def __len__(self) -> int:
        return len(self.area_px)

    def __getitem__(self, keep) -> "Detections":
        """Select rows with a boolean mask, an index array or a slice."""
        return Detections(**{f.name: getattr(self, f.name)[keep] for f in fields(self)})

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 2)), np.zeros((0, 4), dtype=np.int64), np.zeros(0, dtype=np.int64),
                   np.zeros(0), np.zeros(0), np.zeros(0))

    def to_records(self) -> list[dict]:
        return [
            {
                "x": round(float(c[0]), 3), "y": round(float(c[1]), 3),
                "bbox": [int(v) for v in b], "area_px": int(a),
                "peak_score": round(float(p), 4), "mean_score": round(float(m), 4),
                "contrast": round(float(k), 4), "structure": round(float(st), 4),
            }
            for c, b, a, p, m, k, st in zip(self.centroid_xy, self.bbox_xyxy, self.area_px,
                                            self.peak_score, self.mean_score, self.contrast, self.structure)
        ]


@dataclass(frozen=True)
class Prepared:
    """A frame made ready for the model: preprocessing's output, the detector's input.

    unit:  (H, W) float32 in [0, 1], what the model sees (after AGC; ignored pixels filled).
    valid: (H, W) bool where targets may be reported, or None for everywhere.
    """

    frame: "Frame"
    unit: np.ndarray
    valid: np.ndarray | None = None


@dataclass(frozen=True)
class Frame:
    """One image from a source, as the sensor gave it.

    image:       (H, W) uint8 or uint16 gray, raw counts (no scaling yet).
    index:       0-based position in the source.  For live sources frames dropped under load
                 still consume an index, so gaps show where drops happened.
    timestamp_s: presentation time within a file or image sequence (index / fps when the
                 container has none), or capture time as Unix seconds for live sources.
    source_id:   what the frame came from (a path, a camera, a URL), as given by the user.
    bit_depth:   8 or 16, the storage depth; it decides how preprocessing scales the image.
    read_at:     time.perf_counter() when the frame was read, the start of its latency.
    frozen:      a live source gave the same image again (a camera calibrating its shutter, a
                 stream repeating itself): no new scene, so the pipeline skips and counts it.
    """

    image: np.ndarray
    index: int
    timestamp_s: float
    source_id: str
    bit_depth: int
    read_at: float = field(default_factory=time.perf_counter)
    frozen: bool = False

    def __post_init__(self) -> None:
        if self.image.ndim != 2:
            raise ValueError(f"Frame.image must be (H, W) gray, got shape {self.image.shape}")
        if self.bit_depth not in (8, 16):
            raise ValueError(f"Frame.bit_depth must be 8 or 16, got {self.bit_depth}")


#: Track lifecycle, stored as small ints in Tracks.state.  A track is TENTATIVE until it has
#: enough hits, then CONFIRMED while it keeps being matched, COASTING (confirmed, predicted
#: only) during its first misses, LOST (kept, unpublished, in case its target comes back) after
#: more of them, and gone once it has missed too long.
TENTATIVE, CONFIRMED, COASTING, LOST = 0, 1, 2, 3
TRACK_STATES = ("tentative", "confirmed", "coasting", "lost")


@dataclass(frozen=True)
class Tracks:
    """Tracks alive after one frame's update, as parallel arrays (N rows).

    track_id:      (N,) int, unique within a run, never reused.
    state:         (N,) int, TENTATIVE / CONFIRMED / COASTING / LOST (names in TRACK_STATES).
    centroid_xy:   (N, 2) float, px (x = column, y = row): the matched detection's centroid,
                   or the filter's prediction for a track without one this frame.
    velocity_xy:   (N, 2) float, filtered velocity, px/s.
    covariance_xy: (N, 2, 2) float, the filter's position covariance, px^2 (about its estimate,
                   which a hit track's centroid_xy replaces by the detection).
    bbox_xyxy:     (N, 4) int, box of the last matched detection.
    age_frames:    (N,) int, frames since the track was born (1 on its first frame).
    hits:          (N,) int, detections matched to it so far.
    misses:        (N,) int, consecutive frames without a match (0 when matched this frame).
    score:         (N,) float, peak score of the last matched detection.
    detection:     (N,) int, row of this frame's Detections it was matched to, -1 if none.
    moving:        (N,) bool, moved against the scene in the last second or so (the tracker's
                   moving_window_s): False for a hovering target, or one the camera holds over
                   a scene it does not see move (a clear sky).
    """

    track_id: np.ndarray
    state: np.ndarray
    centroid_xy: np.ndarray
    velocity_xy: np.ndarray
    covariance_xy: np.ndarray
    bbox_xyxy: np.ndarray
    age_frames: np.ndarray
    hits: np.ndarray
    misses: np.ndarray
    score: np.ndarray
    detection: np.ndarray
    moving: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.track_id)
        _check_rows(self, {"centroid_xy": (n, 2), "velocity_xy": (n, 2), "covariance_xy": (n, 2, 2),
                           "bbox_xyxy": (n, 4)}, n)

    def __len__(self) -> int:
        return len(self.track_id)

    def __getitem__(self, keep) -> "Tracks":
        return Tracks(**{f.name: getattr(self, f.name)[keep] for f in fields(self)})

    @classmethod
    def empty(cls) -> "Tracks":
        i = np.zeros(0, dtype=np.int64)
        return cls(i, i.copy(), np.zeros((0, 2)), np.zeros((0, 2)), np.zeros((0, 2, 2)),
                   np.zeros((0, 4), dtype=np.int64), i.copy(), i.copy(), i.copy(), np.zeros(0), i.copy(),
                   np.zeros(0, dtype=bool))

    def published(self) -> "Tracks":
        """The confirmed tracks, matched or coasting: what sinks show by default."""
        return self[(self.state == CONFIRMED) | (self.state == COASTING)]

    def to_records(self) -> list[dict]:
        return [
            {
                "id": int(self.track_id[i]), "state": TRACK_STATES[int(self.state[i])],
                "x": round(float(self.centroid_xy[i, 0]), 3), "y": round(float(self.centroid_xy[i, 1]), 3),
                "vx": round(float(self.velocity_xy[i, 0]), 3), "vy": round(float(self.velocity_xy[i, 1]), 3),
                "cov": [[round(float(v), 4) for v in row] for row in self.covariance_xy[i]],
                "bbox": [int(v) for v in self.bbox_xyxy[i]],
                "age": int(self.age_frames[i]), "hits": int(self.hits[i]), "misses": int(self.misses[i]),
                "score": round(float(self.score[i]), 4), "detection": int(self.detection[i]),
                "moving": bool(self.moving[i]),
            }
            for i in range(len(self))
        ]


@dataclass(frozen=True)
class FrameResult:
    """Everything the pipeline knows about one frame, handed to every sink.

    image:     (H, W) float32 in [0, 1], the frame as the model saw it (after AGC).
    tracks:    all live tracks; sinks show `tracks.published()` unless told otherwise.
    timings_ms: per-stage wall time for this frame (read, preprocess, inference, ...).
    ignored:   (H, W) bool, pixels no target is reported from (ignore regions, learnt
               burned-in text), or None when there are none.
    live:      the frame came from a live source (latency then counts from the read).
    stream:    the source's position among the run's sources (0 in a one-source run).
    """

    frame: Frame
    image: np.ndarray
    detections: Detections
    tracks: Tracks
    timings_ms: dict[str, float] = field(default_factory=dict)
    ignored: np.ndarray | None = None
    live: bool = False
    stream: int = 0
