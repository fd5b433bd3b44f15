"""The rate a stage actually sees, read from frame timestamps.

Rules are stated in seconds and counted in the frames seen in that time, so a live run that keeps
up with 6 of a camera's 25 frames/s waits, learns and forgets as long as a file run that sees all
25.  The rate is the median of the recent intervals, so a dropped frame or a stall does not move it.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

#: The rate assumed where nothing gives one, frames/s: image sequences, sources that report no
#: rate (`[source] fps`), and the clock below until it has seen two frames.  The common camera rate.
DEFAULT_FPS = 25.0
DEFAULT_FRAME_S = 1.0 / DEFAULT_FPS
#: Intervals whose median is the rate: about 1 s at 25 frames/s.
RATE_WINDOW_FRAMES = 25
#: Slack, frames, when a time is counted in frames: 0.2 s at 0.04 s per frame is 5 frames, not 6,
#: when the timestamps make the interval 0.039999 s.
FRAME_COUNT_SLACK = 0.01


class FrameClock:
    """tick(timestamp_s) per frame gives the step; frames(seconds) counts a time at the rate seen."""

    def __init__(self) -> None:
        self.frame_s = DEFAULT_FRAME_S  # the median of the recent steps
        self._last_t: float | None = None
        self._steps_s: deque[float] = deque(maxlen=RATE_WINDOW_FRAMES)

    def tick(self, timestamp_s: float) -> float:
        """The step from the previous frame, s.  Where time did not advance (a repeated timestamp,
        a caller that gives none) the step is the rate seen so far, so every stage that keeps a
        clock agrees on it without a setting of its own."""
        if not math.isfinite(timestamp_s):
            raise ValueError(f"timestamp_s={timestamp_s!r}: must be a finite number of seconds")
        first = self._last_t is None
        dt = 0.0 if first else timestamp_s - self._last_t
        # Stored even when it went backwards: a looping file or a clock reset restarts from here.
        self._last_t = timestamp_s
        dt = dt if dt > 0 else self.frame_s
        if not first:
            self._steps_s.append(dt)
            self.frame_s = float(np.median(self._steps_s))
        return dt

    def frames(self, seconds: float) -> int:
        """A time as a number of frames at the rate seen (at least one for any time above zero)."""
        if seconds <= 0:
            return 0
        return max(1, math.ceil(seconds / self.frame_s - FRAME_COUNT_SLACK))
