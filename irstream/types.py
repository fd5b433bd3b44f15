"""The data that flows between stages."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np


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
    """

    centroid_xy: np.ndarray
    bbox_xyxy: np.ndarray
    area_px: np.ndarray
    peak_score: np.ndarray
    mean_score: np.ndarray
    contrast: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.area_px)
        expect = {"centroid_xy": (n, 2), "bbox_xyxy": (n, 4)}
        for f in fields(self):
            arr = getattr(self, f.name)
            shape = expect.get(f.name, (n,))
            if arr.shape != shape:
                raise ValueError(f"Detections.{f.name} has shape {arr.shape}, expected {shape}")

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
                "contrast": round(float(k), 4),
            }
            for c, b, a, p, m, k in zip(self.centroid_xy, self.bbox_xyxy, self.area_px,
                                        self.peak_score, self.mean_score, self.contrast)
        ]
