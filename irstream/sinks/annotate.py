"""Drawing on frames for people: detections, tracks with ids and trails, a heads-up display."""

from __future__ import annotations

from collections import deque

import cv2
import numpy as np

from irstream.types import COASTING, Detections, FrameResult, Tracks

DETECTION_BGR = (0, 200, 255)
HUD_BGR = (255, 255, 255)
#: Boxes around few-pixel targets are drawn this many pixels wider so they do not hide the target.
BOX_MARGIN_PX = 3
#: Track colours, picked by id so a track keeps its colour; saturated, readable on gray.
PALETTE_BGR = ((80, 255, 80), (255, 160, 60), (60, 60, 255), (255, 80, 255), (80, 255, 255), (255, 255, 80),
               (160, 120, 255), (60, 200, 160))
FONT = cv2.FONT_HERSHEY_SIMPLEX
#: Ignored pixels (ignore regions, learnt burned-in text) are tinted with this colour, keeping
#: IGNORED_KEEP of the image so the text stays readable.
IGNORED_BGR = (160, 60, 0)
IGNORED_KEEP = 0.6


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """A [0, 1] float gray image as an 8-bit BGR canvas."""
    u8 = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return cv2.cvtColor(u8, cv2.COLOR_GRAY2BGR)


def draw_detections(canvas: np.ndarray, dets: Detections, color=DETECTION_BGR, labels: bool = True) -> np.ndarray:
    for i, (b, p) in enumerate(zip(dets.bbox_xyxy, dets.peak_score)):
        x0, y0, x1, y1 = (int(v) for v in b)
        m = BOX_MARGIN_PX
        cv2.rectangle(canvas, (x0 - m, y0 - m), (x1 - 1 + m, y1 - 1 + m), color, 1)
        if labels:
            cv2.putText(canvas, f"{i}:{p:.2f}", (x0 - m, max(10, y0 - m - 3)), FONT, 0.35, color, 1, cv2.LINE_AA)
    return canvas


class TrackAnnotator:
    """Draws tracks (box, id, trail) over raw detections, and a HUD line.

    Stateful only in the trails it remembers: one per track id, `trail_frames` points long.
    Detections are thin and unlabelled so that the tracks, what is published, stand out.
    """

    def __init__(self, trail_frames: int = 30, show_detections: bool = True, show_tentative: bool = False) -> None:
        self.trail_frames = trail_frames
        self.show_detections = show_detections
        self.show_tentative = show_tentative
        self.trails: dict[int, deque] = {}

    def annotate(self, res: FrameResult, hud: str = "") -> np.ndarray:
        canvas = to_bgr8(res.image)
        if res.ignored is not None and res.ignored.any():
            shade = canvas[res.ignored].astype(np.float32)
            canvas[res.ignored] = (IGNORED_KEEP * shade + (1.0 - IGNORED_KEEP) * np.array(IGNORED_BGR)).astype(np.uint8)
        if self.show_detections:
            draw_detections(canvas, res.detections, labels=False)
        tracks = res.tracks if self.show_tentative else res.tracks.published()
        self._update_trails(tracks)
        for i in range(len(tracks)):
            self._draw_track(canvas, tracks, i)
        if hud:
            h = canvas.shape[0]
            (tw, th), base = cv2.getTextSize(hud, FONT, 0.4, 1)
            cv2.rectangle(canvas, (0, h - th - base - 6), (tw + 8, h), (0, 0, 0), -1)
            cv2.putText(canvas, hud, (4, h - base - 2), FONT, 0.4, HUD_BGR, 1, cv2.LINE_AA)
        return canvas

    def _update_trails(self, tracks: Tracks) -> None:
        alive = set(int(t) for t in tracks.track_id)
        for tid in list(self.trails):
            if tid not in alive:
                del self.trails[tid]
        for tid, xy in zip(tracks.track_id, tracks.centroid_xy):
            self.trails.setdefault(int(tid), deque(maxlen=self.trail_frames)).append((float(xy[0]), float(xy[1])))

    def _draw_track(self, canvas: np.ndarray, tracks: Tracks, i: int) -> None:
        tid = int(tracks.track_id[i])
        color = PALETTE_BGR[tid % len(PALETTE_BGR)]
        pts = np.round(np.array(self.trails[tid])).astype(np.int32)
        if len(pts) > 1:
            cv2.polylines(canvas, [pts.reshape(-1, 1, 2)], False, color, 1, cv2.LINE_AA)
        x, y = (int(round(v)) for v in tracks.centroid_xy[i])
        w, h = (int(v) for v in tracks.bbox_xyxy[i, 2:] - tracks.bbox_xyxy[i, :2])
        r = max(w, h) // 2 + BOX_MARGIN_PX + 2
        thickness = 1 if tracks.state[i] == COASTING else 2
        cv2.rectangle(canvas, (x - r, y - r), (x + r, y + r), color, thickness)
        cv2.putText(canvas, str(tid), (x + r + 2, max(10, y - r)), FONT, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(canvas, str(tid), (x + r + 2, max(10, y - r)), FONT, 0.45, color, 1, cv2.LINE_AA)
