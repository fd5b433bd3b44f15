"""Output workers and sinks alone: no model, no source."""

import threading
import time

import cv2
import numpy as np
import pytest

from irstream.sinks import files, worker
from irstream.errors import UserError
from irstream.sinks.files import VideoSink
from irstream.sinks.worker import SinkWorker
from irstream.types import Detections, Frame, FrameResult, Tracks


def result(index: int = 0, t: float = 0.0) -> FrameResult:
    img = np.zeros((32, 48), np.uint8)
    return FrameResult(Frame(img, index, t, "test", 8), img / 255.0, Detections.empty(), Tracks.empty(), {})


class Recorder:
    def __init__(self, idle_error=None, block: threading.Event | None = None):
        self.written, self.closed, self.idle_error, self.block = [], False, idle_error, block

    def open(self):
        pass

    def write(self, res):
        if self.block is not None:
            self.block.wait()
        self.written.append(res.frame.index)

    def close(self):
        self.closed = True


def test_worker_writes_in_order_and_closes():
    rec = Recorder()
    w = SinkWorker(rec, "rec", maxsize=2).start()
    for i in range(10):
        w.put(result(i))
    w.close()
    assert rec.written == list(range(10)) and rec.closed and w.written == 10 and not w.timed_out


def test_worker_whose_idle_fails_is_reported_on_the_next_put():
    class BadIdle(Recorder):
        def idle(self):
            raise RuntimeError("window gone")

    w = SinkWorker(BadIdle(), "preview").start()
    time.sleep(5 * worker.IDLE_POLL_S)
    with pytest.raises(UserError, match="preview"):
        w.put(result())


def test_close_gives_up_on_a_stuck_sink(monkeypatch):
    monkeypatch.setattr(worker, "CLOSE_TIMEOUT_S", 0.3)
    block = threading.Event()
    rec = Recorder(block=block)
    w = SinkWorker(rec, "stuck", maxsize=1, drop_when_full=True).start()
    for i in range(3):
        w.put(result(i))
    t0 = time.perf_counter()
    w.close()
    assert w.timed_out and time.perf_counter() - t0 < 2.0
    block.set()


def test_open_failure_is_one_user_error_and_the_sink_is_closed():
    class BadOpen(Recorder):
        def open(self):
            raise OSError("device busy")

    rec = BadOpen()
    with pytest.raises(UserError, match="out: cannot open"):
        SinkWorker(rec, "out").start()
    assert rec.closed


def test_live_video_repeats_frames_to_follow_capture_time(tmp_path):
    """A live run processing every 4th frame of a 20 fps camera still makes a video that plays
    at the scene's speed: the video is read back with 1 + 3 x 4 frames."""
    sink = VideoSink(tmp_path / "v.avi", fps=20.0, real_time=True)
    sink.open()
    for i, t in enumerate((100.0, 100.2, 100.4, 100.6)):
        sink.write(result(i, t))
    assert sink._copies(1000.0) == int(files.MAX_REPEAT_S * 20) + 1  # a long stall is bridged only so far
    sink.close()
    cap = cv2.VideoCapture(str(tmp_path / "v.avi"))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n == 13
