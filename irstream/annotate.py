"""Drawing on frames for people: boxes and labels over a gray image."""

from __future__ import annotations

import cv2
import numpy as np

from irstream.types import Detections

DETECTION_BGR = (0, 200, 255)
#: Boxes around few-pixel targets are drawn this many pixels wider so they do not hide the target.
BOX_MARGIN_PX = 3


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """A [0, 1] float gray image as an 8-bit BGR canvas."""
    u8 = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return cv2.cvtColor(u8, cv2.COLOR_GRAY2BGR)


def draw_detections(canvas: np.ndarray, dets: Detections, color=DETECTION_BGR) -> np.ndarray:
    for i, (b, p) in enumerate(zip(dets.bbox_xyxy, dets.peak_score)):
        x0, y0, x1, y1 = (int(v) for v in b)
        m = BOX_MARGIN_PX
        cv2.rectangle(canvas, (x0 - m, y0 - m), (x1 - 1 + m, y1 - 1 + m), color, 1)
        cv2.putText(canvas, f"{i}:{p:.2f}", (x0 - m, max(10, y0 - m - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, color, 1,
                    cv2.LINE_AA)
    return canvas
