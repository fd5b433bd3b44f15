"""irstream against a real RTSP server (GStreamer's, serving a real H.264 clip on loopback),
through a link with real faults: each fault is survived, the outage is counted, and messages
are published again soon after the link comes back.

The faults are injected by a TCP proxy on the path (RTSP over TCP: irstream/tools/faultproxy.py),
because this kernel has no `tc netem` qdisc; the test ids say so ("tcp-proxy: ...").
"""

import threading
import time

import pytest

from conftest import SHARED_DATA
from irstream.config import load_pipeline, override
from irstream.io.live import ReconnectConfig
from irstream.pipeline.run import Pipeline
from irstream.tools.faultproxy import FaultProxy
from irstream.tools.loopback import Subscriber, free_port
from irstream.tools.rtsp import PACKAGES, RtspServer, gst_python
from irstream.tools.soak import _resumed_after

CLIP = SHARED_DATA / "antiuav-clips" / "20190925_101846_1_4.mp4"
pytestmark = [pytest.mark.skipif(gst_python() is None, reason=f"no GStreamer RTSP server (apt install {PACKAGES})"),
              pytest.mark.skipif(not CLIP.is_file(), reason=f"{CLIP} is not present")]
#: The reconnect backoff of these runs, s: first retry, longest wait.
BACKOFF = ReconnectConfig(initial_s=0.1, max_s=0.5)
#: Seconds from the link coming back to the next published message (the issue's goal).
BACK_WITHIN_S = 2.0
#: Seconds the run goes on before the fault, and after the link is back.
BEFORE_S, AFTER_S = 4.0, 5.0


@pytest.fixture
def server():
    """A server per test, as a camera per scene: no test inherits another's sessions."""
    with RtspServer(CLIP, free_port()) as s:
        yield s


def live_run(url: str, fault, fault_s: float):
    """Run the default pipeline (the cheap top-hat model: this tests the plumbing) on `url`,
    live, publishing; `fault()` at BEFORE_S, the link back after fault_s (or once fault()
    returns).  Returns the summary, the subscriber, and the monotonic times the fault began and
    the link came back."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    cfg = override(load_pipeline(), **{"source.uri": url, "source.mode": "live", "source.reconnect": BACKOFF,
                                       "model.weights": "tophat", "model.device": "cpu", "output.publish": endpoint,
                                       "run.threads": 1})
    stop = threading.Event()
    pipe = Pipeline(cfg, stop=stop)
    with Subscriber(endpoint, cfg.output.topic) as sub:
        runner = threading.Thread(target=pipe.run, daemon=True)
        runner.start()
        time.sleep(BEFORE_S)
        began = time.monotonic()
        fault()
        back_at = max(time.monotonic(), began + fault_s)
        time.sleep(fault_s + AFTER_S)
        stop.set()
        runner.join(30.0)
        assert not runner.is_alive(), "the run did not stop"
    return pipe.summary, sub, began, back_at


def resumed_within(sub: Subscriber, began: float, back_at: float) -> float:
    """Seconds from the link coming back to the end of the silence the fault caused."""
    return _resumed_after(sub, began, back_at, float("inf"))


@pytest.mark.slow
@pytest.mark.parametrize("name, faults", [("loss 5%", {"loss": 0.05}),
                                          ("delay 200 ms, jitter 50 ms", {"delay_s": 0.2, "jitter_s": 0.05})],
                         ids=lambda v: f"tcp-proxy: {v}" if isinstance(v, str) else "")
def test_a_lossy_or_slow_link_keeps_publishing(server, name, faults):
    proxy = FaultProxy(("127.0.0.1", server.port))
    try:
        summary, sub, began, back_at = live_run(f"rtsp://127.0.0.1:{proxy.port}{server.path}", lambda: proxy.set(**faults), 5.0)
    finally:
        proxy.close()
    assert summary.frames_processed > 0 and sub.received > 0
    assert not [gap for end, gap in sub.gaps if gap > BACK_WITHIN_S], sub.gaps
    assert sub.last_at > back_at + AFTER_S - 1.0  # still publishing at the end
    if "loss" in faults:
        assert proxy.dropped > 0


@pytest.mark.slow
@pytest.mark.parametrize("fault_s", [0.0], ids=["tcp-proxy: connection reset"])
def test_a_reset_connection_is_reopened(server, fault_s):
    proxy = FaultProxy(("127.0.0.1", server.port))
    try:
        summary, sub, began, back_at = live_run(f"rtsp://127.0.0.1:{proxy.port}{server.path}", proxy.reset, fault_s)
    finally:
        proxy.close()
    back = resumed_within(sub, began, back_at)
    print(f"tcp-proxy reset: publishing again {back:.2f} s after the reset; outages {summary.outages_s}")
    assert proxy.resets == 1 and summary.reconnects >= 1 and summary.outages_s
    assert back <= BACK_WITHIN_S, sub.gaps


@pytest.mark.slow
def test_a_stream_that_stalls_for_10_s_is_reopened_once_it_flows(server):
    """The server's packets stop for 10 s while every connection stays open."""
    proxy = FaultProxy(("127.0.0.1", server.port))
    try:
        summary, sub, began, back_at = live_run(f"rtsp://127.0.0.1:{proxy.port}{server.path}", lambda: proxy.stall(10.0), 10.0)
    finally:
        proxy.close()
    # FFmpeg may wait the stall out on the open connection (the same connection delivers
    # again) or irstream reopens it after its read timeout: either way the outage is counted.
    back = resumed_within(sub, began, back_at)
    print(f"tcp-proxy stall: publishing again {back:.2f} s after the stream flowed; outages {summary.outages_s}")
    assert proxy.stalled > 0 and summary.outages_s and max(summary.outages_s) >= 5.0
    assert back <= BACK_WITHIN_S, sub.gaps


@pytest.mark.slow
def test_a_server_killed_and_restarted_is_reconnected(server):
    down_s = 3.0
    summary, sub, began, back_at = live_run(server.url, lambda: threading.Thread(target=server.restart, args=(down_s,)).start(),
                                     down_s)
    back = resumed_within(sub, began, back_at)
    print(f"server restart: publishing again {back:.2f} s after it listened; outages {summary.outages_s}")
    assert server.restarts >= 1 and summary.reconnects >= 1 and max(summary.outages_s) >= down_s
    assert back <= BACK_WITHIN_S, sub.gaps


@pytest.mark.slow
def test_the_rtsp_soak_lives_through_every_kind_of_fault(tmp_path):
    """`irstream bench soak --rtsp`, short: each of the five faults once in 90 s."""
    import json

    from typer.testing import CliRunner

    from irstream.cli import app

    res = CliRunner().invoke(app, ["bench", "soak", str(CLIP), "--rtsp", "--duration", "90", "--fault-every", "11",
                                   "--weights", "tophat", "--device", "cpu", "--out", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())["phases"]["rtsp"]
    assert [f["fault"] for f in report["fault_log"]] == ["loss", "delay", "reset", "stall", "restart"]
    # The reset and the restart need a reconnect; a stall may be waited out on its connection.
    assert report["reconnects"] >= 2 and report["outages"] >= 3 and not report["crashed"]
    assert report["frames_processed"] > 500
    assert report["worst_back_after_s"] <= 10.0 and report["memory_ok"]
    assert (tmp_path / "rss.png").stat().st_size > 0 and (tmp_path / "rss.csv").read_text().startswith("seconds,")
