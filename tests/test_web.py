"""The browser view: served while a run goes on, read by a real headless Chromium; tokens off
loopback; a stalled browser never holds the run."""

import shutil
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from conftest import REPO
from irstream.config import load_pipeline, override
from irstream.errors import UserError
from irstream.pipeline.run import Pipeline
from irstream.sinks.web import WebView
from irstream.tools.loopback import free_port

SAMPLE = str(REPO / "sample_videos" / "sky_drones.mkv")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
#: Where the browser test leaves its screenshot (kept: CI can collect it).
ARTIFACTS = REPO / "runs" / "artifacts"
#: Seconds the page runs before the test reads it and takes its picture.
BROWSER_S = 5.0
#: Longest the browser test watches (seconds) for MIN_MESSAGES results to reach the page.
BROWSER_MAX_S = 30.0
MIN_MESSAGES = 10
#: Seconds the page may take to load before the test gives up.
PAGE_LOAD_S = 20.0
#: Injected into the page: reads the MJPEG stream as the <img> does (its own second connection:
#: the <img> exposes no per-frame event), decodes each JPEG part and records how late it was
#: (now minus the part's X-Ready-Unix-S stamp) once it could be painted.
PICTURE_LATENESS_JS = """
window.pictureLate = [];
(async () => {
  const reader = (await fetch('/stream.mjpg' + location.search)).body.getReader();
  const text = new TextDecoder('latin1');
  let buf = new Uint8Array(0);
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    const joined = new Uint8Array(buf.length + value.length);
    joined.set(buf); joined.set(value, buf.length); buf = joined;
    for (;;) {
      const head = text.decode(buf.subarray(0, Math.min(buf.length, 400)));
      const end = head.indexOf('\\r\\n\\r\\n');
      if (end < 0) break;
      const size = +/Content-Length: (\\d+)/.exec(head)[1];
      const ready = +/X-Ready-Unix-S: ([\\d.]+)/.exec(head)[1];
      if (buf.length < end + 4 + size + 2) break;
      const jpeg = buf.slice(end + 4, end + 4 + size);
      buf = buf.slice(end + 4 + size + 2);
      await createImageBitmap(new Blob([jpeg], {type: 'image/jpeg'}));
      window.pictureLate.push(Date.now() - 1000 * ready);
    }
  }
})();
"""


def get(url: str, token: str = "") -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_off_loopback_the_view_needs_a_token_and_refuses_requests_without_it():
    with pytest.raises(UserError, match="token"):
        WebView(f"0.0.0.0:{free_port()}")
    view = WebView(f"0.0.0.0:{free_port()}", token="s3cret")
    view.open()
    try:
        base = f"http://127.0.0.1:{view.port}"
        assert get(f"{base}/") == 401 and get(f"{base}/?token=wrong") == 401 and get(f"{base}/events") == 401
        assert get(f"{base}/?token=s3cret") == 200 and get(f"{base}/", token="s3cret") == 200
        assert view.clients["refused"] == 3
    finally:
        view.close()


#: Seconds each frame of the browser test's run is held after its outputs got it: 100 frames
#: last 12 s, long enough for a browser to start and watch.
HOLD_S = 0.12


def web_run(on_frame=None, **more):
    """The default pipeline on the sample video, served at a free loopback port."""
    cfg = override(load_pipeline(), **{"source.uri": SAMPLE, "model.device": "cpu", "output.web": f"127.0.0.1:{free_port()}",
                                       **more})
    return Pipeline(cfg, on_frame=on_frame)


@pytest.mark.slow
def test_the_cli_takes_the_token_from_the_environment():
    """`irstream run --web 0.0.0.0:PORT` refuses to serve without a token, and takes it from
    IRSTREAM_WEB_TOKEN (a flag's value would show in the process list)."""
    from typer.testing import CliRunner

    from irstream.cli import app

    args = ["run", SAMPLE, "--web", f"0.0.0.0:{free_port()}", "--max-frames", "3", "--weights", "tophat",
            "--device", "cpu"]
    refused = CliRunner().invoke(app, args, env={"IRSTREAM_WEB_TOKEN": ""})
    assert refused.exit_code != 0 and "token" in refused.output
    served = CliRunner().invoke(app, args, env={"IRSTREAM_WEB_TOKEN": "s3cret"})
    assert served.exit_code == 0, served.output[-1500:]


def test_a_stalled_browser_never_holds_a_file_run():
    pipe = web_run(**{"model.weights": "tophat"})
    runner = threading.Thread(target=pipe.run)
    runner.start()
    while pipe.web._server is None:
        time.sleep(0.01)
    stalled = socket.create_connection(("127.0.0.1", pipe.web.port))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")  # and never reads
    runner.join(120)
    stalled.close()
    assert not runner.is_alive() and pipe.summary.frames_processed == 100
    assert pipe.summary.outputs["web"]["written"] == 100


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (apt install chromium)")
def test_a_browser_shows_the_live_picture_and_the_sample_videos_target():
    from cdp import Chromium

    pipe = web_run(on_frame=lambda _res: time.sleep(HOLD_S))
    runner = threading.Thread(target=pipe.run)
    runner.start()
    browser = Chromium(CHROMIUM)
    try:
        while pipe.web._server is None:
            time.sleep(0.05)
        browser.open(pipe.web.url)
        deadline = time.monotonic() + PAGE_LOAD_S
        while browser.value("location.href") != pipe.web.url or browser.value("document.readyState") != "complete":
            assert time.monotonic() < deadline, "the page did not load"
            time.sleep(0.05)
        browser.value(PICTURE_LATENESS_JS)
        time.sleep(BROWSER_S)
        # A busy machine runs the model slower: watch on while the run lasts, up to a bound.
        deadline = time.monotonic() + BROWSER_MAX_S
        while (runner.is_alive() and time.monotonic() < deadline
               and not browser.value(f"+document.getElementById('messages').textContent > {MIN_MESSAGES}")):
            time.sleep(0.2)
        shown = browser.value("({messages: +document.getElementById('messages').textContent, "
                              "changes: +document.getElementById('changes').textContent, "
                              "late: +document.getElementById('late').textContent, "
                              "tracks: document.querySelectorAll('tr.track').length, "
                              "pictures: window.pictureLate.length, "
                              "picture_late: [...window.pictureLate].sort((a, b) => a - b)"
                              "[Math.floor(window.pictureLate.length / 2)]})")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "web_view.png"
        browser.screenshot(shot)
    finally:
        browser.close()
        pipe.stop.set()
        runner.join(60)
    print(f"browser view: {shown}; screenshot {shot}")
    assert shown["messages"] > MIN_MESSAGES and shown["changes"] >= 2  # the table and the picture update
    assert shown["tracks"] >= 1  # the sample video's target, in the table
    assert shown["late"] < 100  # ms from the result being ready to the page showing it (p50)
    assert shown["pictures"] >= 5 and shown["picture_late"] < 100  # the same for the picture, decoded
    assert shot.stat().st_size > 10_000


def test_bench_web_runs_both_settings_and_the_browsers_are_served():
    from irstream.tools.bench import bench_web

    cfg = override(load_pipeline(), **{"source.uri": SAMPLE, "model.device": "cpu", "model.weights": "tophat"})
    rows = bench_web(cfg, frames=20, repeats=2)
    none, watched = rows.values()
    assert none["frames per run"] == watched["frames per run"] == 20  # a file run loses no frame, browsers or not
    assert none["frames to browsers, all runs"] == 0
    # 2 runs x 2 browsers x (picture + events), each sent frames (newest wins: a slow one skips some)
    assert watched["frames to browsers, all runs"] >= 2 * 2 * 2 * 5
    assert watched["x no browser"] > 0
