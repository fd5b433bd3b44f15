"""The preview window: annotated frames for a person; q or Esc quits, space pauses.

It runs as a sink in its own thread (see sinks.SinkWorker): every OpenCV GUI call happens
on that thread, and a window that is slow to paint only loses preview frames.  The window is
a small object with `show(image) -> key` and `close()`, so the key handling is tested with a
scripted window and no display.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import cv2

from irstream.sinks.annotate import TrackAnnotator
from irstream.sinks.files import HudClock
from irstream.types import FrameResult

KEY_QUIT = (ord("q"), ord("Q"), 27)
KEY_PAUSE = ord(" ")
#: Seconds allowed for the display probe; OpenCV's Qt backend aborts the whole process when
#: it cannot reach a display, so the probe runs in a child process.
DISPLAY_PROBE_TIMEOUT_S = 10.0


def display_available() -> bool:
    """Whether an OpenCV window can open here, tested in a child process."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    probe = "import cv2; cv2.namedWindow('irstream-probe'); cv2.waitKey(1); cv2.destroyAllWindows()"
    try:
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=DISPLAY_PROBE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


#: OpenCV's Qt backend logs font and platform chatter ("QFont::fromString", "Cannot find
#: font directory") that means nothing to a user; Qt reads this variable when it starts.
QUIET_QT = "qt.qpa.*=false;qt.text.font.*=false;*.debug=false"


class CvWindow:
    """An OpenCV HighGUI window."""

    def __init__(self, title: str = "irstream") -> None:
        self.title = title
        os.environ.setdefault("QT_LOGGING_RULES", QUIET_QT)
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)

    def show(self, image) -> int:
        if image is not None:
            cv2.imshow(self.title, image)
        key = cv2.waitKey(1) & 0xFF
        if cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            return KEY_QUIT[0]  # closed with the title bar's button: same as q
        return key

    def close(self) -> None:
        cv2.destroyWindow(self.title)


class PreviewSink:
    """Shows each result; sets `stop` on q/Esc and toggles `paused` on space.

    make_window: called on the sink's thread to create the window (CvWindow by default).
    """

    def __init__(self, stop: threading.Event, paused: threading.Event, make_window=CvWindow,
                 annotator: TrackAnnotator | None = None) -> None:
        self.stop, self.paused, self.make_window = stop, paused, make_window
        self.annotator = annotator or TrackAnnotator()
        self.hud = HudClock()
        self.window = None

    def open(self) -> None:
        self.window = self.make_window()

    def write(self, res: FrameResult) -> None:
        self._handle(self.window.show(self.annotator.annotate(res, self.hud.line(res))))

    def idle(self) -> None:
        """Keep the window responsive (and the pause key heard) while no frames come."""
        self._handle(self.window.show(None))

    def _handle(self, key: int) -> None:
        if key in KEY_QUIT:
            self.stop.set()
            self.paused.clear()
        elif key == KEY_PAUSE:
            if self.paused.is_set():
                self.paused.clear()
            else:
                self.paused.set()

    def close(self) -> None:
        if self.window is not None:
            self.window.close()
