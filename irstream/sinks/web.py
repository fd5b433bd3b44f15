"""The live view in a browser, for boxes without a screen: `irstream run ... --web 127.0.0.1:8080`.

One page (`/`) shows the annotated live picture and a table of the published tracks.  The
picture is MJPEG (`/stream.mjpg`: multipart JPEG, which every browser shows in a plain <img>
with no script and the least code), the tracks come as Server-Sent Events (`/events`) carrying
the same per-frame message that ZeroMQ publishes.  Both are stamped with the time the result
reached the view, before it was drawn and encoded (`ready_unix_s` in the message, the header
`X-Ready-Unix-S` on each JPEG part), so that the page can show, and a test read back, how late
each path is.

Python's own threading HTTP server serves it (no dependency: a page, two streams).  The sink
runs in its own worker thread like every output; it encodes each frame once and hands it to
every client's thread as "the newest frame", so a slow or stalled browser only misses frames
(counted per client as drops) and never slows the pipeline.

It binds loopback by default.  Bound to any other address it needs a token (`--web-token`),
given as `?token=` (the page passes it on) or `Authorization: Bearer`, compared in constant
time; a request without it gets 401.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit

import cv2

from irstream.errors import UserError
from irstream.sinks.annotate import TrackAnnotator
from irstream.sinks.message import build_message
from irstream.types import FrameResult

log = logging.getLogger(__name__)
#: JPEG quality of the live picture (OpenCV's 0-100): a 640x512 frame is ~40 KB.
JPEG_QUALITY = 80
#: Seconds a client's stream waits for a new frame before it checks whether the view closed.
CLIENT_POLL_S = 0.5
#: Seconds a write to a client may block before the client is dropped (a browser that stopped
#: reading for this long holds only its own thread, never the pipeline).
CLIENT_SEND_TIMEOUT_S = 30.0
#: Seconds a connection may take to send its request: an idle or trickling one is closed
#: instead of holding a thread for ever.
REQUEST_TIMEOUT_S = 10.0
BOUNDARY = "irstreamframe"


def parse_address(text: str) -> tuple[str, int]:
    """"127.0.0.1:8080" or ":8080" (loopback) -> (host, port); UserError naming it otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise UserError(f"= {text!r}: give HOST:PORT, e.g. 127.0.0.1:8080", "output.web")
    return host.strip("[]") or "127.0.0.1", int(port)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class _Latest:
    """The newest frame as each stream sends it (a multipart JPEG part, a Server-Sent Event), and
    a condition that wakes every client on a new one.  Built once per frame, sent to every client."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.seq = 0
        self.parts: dict[str, bytes] = {}
        self.closed = False

    def put(self, parts: dict[str, bytes]) -> None:
        with self.cond:
            self.seq += 1
            self.parts = parts
            self.cond.notify_all()

    def wait_newer(self, seq: int) -> tuple[int, dict[str, bytes]] | None:
        """The newest (seq, parts) after `seq`; None once the view is closed."""
        with self.cond:
            while self.seq <= seq and not self.closed:
                self.cond.wait(CLIENT_POLL_S)
            return None if self.closed else (self.seq, self.parts)

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()


class WebView:
    """A sink: the annotated frames and the tracks, served to browsers at `address`."""

    def __init__(self, address: str, token: str = "", annotator: TrackAnnotator | None = None,
                 include_tentative: bool = False) -> None:
        self.host, self.port = parse_address(address)
        if not is_loopback(self.host) and not token:
            raise UserError(f"= {address!r} serves other machines: give a token with --web-token (or [output] "
                            f"web_token), which every browser then passes as ?token=", "output.web")
        self.token, self.include_tentative = token, include_tentative
        self.annotator = annotator or TrackAnnotator()
        self.latest = _Latest()
        self.clients = {"connected": 0, "served_frames": 0, "dropped_frames": 0, "refused": 0}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """Where a browser opens the view, the token included."""
        query = f"/?token={quote(self.token, safe='')}" if self.token else "/"
        return f"http://{self.host}:{self.port}{query}"

    def open(self) -> None:
        """Start serving; a view already serving (opened early, e.g. by `bench web`) stays as it is."""
        if self._server is not None:
            return
        handler = type("Handler", (_Handler,), {"view": self})
        try:
            self._server = ThreadingHTTPServer((self.host, self.port), handler)
        except OSError as exc:
            raise UserError(f"= {self.host}:{self.port}: cannot serve the web view there ({exc.strerror}); "
                            "pick a free port or an address of this machine", "output.web") from None
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]  # port 0: the one the OS gave
        threading.Thread(target=self._server.serve_forever, name="web-view", daemon=True).start()
        log.info("web view at http://%s:%d/%s", self.host, self.port, " (token required)" if self.token else "")

    def write(self, res: FrameResult) -> None:
        if not self.clients["connected"]:
            return  # nobody watches: no drawing, no encoding (a client starts with the next frame)
        ready = time.time()
        image = self.annotator.annotate(res)
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            return
        msg = build_message(res, self.include_tentative) | {"ready_unix_s": ready}
        head = (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n"
                f"X-Ready-Unix-S: {ready:.6f}\r\n\r\n")
        self.latest.put({"mjpeg": head.encode() + jpeg.tobytes() + b"\r\n",
                         "events": b"data: " + json.dumps(msg, separators=(",", ":")).encode() + b"\n\n"})

    def close(self) -> None:
        self.latest.close()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def count(self, **changes: int) -> None:
        with self._lock:
            for k, v in changes.items():
                self.clients[k] += v

    def allowed(self, handler: BaseHTTPRequestHandler) -> bool:
        if not self.token:
            return True
        given = parse_qs(urlsplit(handler.path).query).get("token", [""])[0]
        auth = handler.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = auth[len("Bearer "):]
        return hmac.compare_digest(given.encode(), self.token.encode())


class _Handler(BaseHTTPRequestHandler):
    view: WebView
    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT_S

    def log_message(self, fmt, *args) -> None:  # the run's log, not stderr per request
        log.debug("web view: %s", fmt % args)

    def do_GET(self) -> None:
        if not self.view.allowed(self):
            self.view.count(refused=1)
            self._reply(HTTPStatus.UNAUTHORIZED, b"a token is needed: open the URL the run printed (?token=...)\n",
                        "text/plain")
            return
        route = urlsplit(self.path).path
        if route == "/":
            self._reply(HTTPStatus.OK, PAGE.encode(), "text/html; charset=utf-8")
        elif route == "/stream.mjpg":
            self._stream(f"multipart/x-mixed-replace; boundary={BOUNDARY}", "mjpeg")
        elif route == "/events":
            self._stream("text/event-stream", "events")
        else:
            self._reply(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

    def _reply(self, status: HTTPStatus, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, kind: str, part: str) -> None:
        """Newest frame wins: each part is the latest result; the ones that came while this
        client was still being sent the last are counted as its drops."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", kind)
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.connection.settimeout(CLIENT_SEND_TIMEOUT_S)
        view, seq = self.view, self.view.latest.seq
        view.count(connected=1)
        try:
            while (newest := view.latest.wait_newer(seq)) is not None:
                if seq and newest[0] > seq + 1:
                    view.count(dropped_frames=newest[0] - seq - 1)
                seq = newest[0]
                self.wfile.write(newest[1][part])
                self.wfile.flush()
                view.count(served_frames=1)
        except (OSError, ValueError):  # the browser went away, or stopped reading for too long
            pass
        finally:
            view.count(connected=-1)
            self.close_connection = True


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>irstream live</title>
<style>
body { font: 14px sans-serif; margin: 12px; background: #111; color: #ddd }
#view { max-width: 100%; border: 1px solid #444; image-rendering: pixelated }
table { border-collapse: collapse; margin-top: 8px } td, th { padding: 2px 10px; text-align: right }
th { color: #9cf } #status { color: #aaa }
</style></head><body>
<div id="status">frame <span id="frame">-</span> · messages <span id="messages">0</span> ·
late <span id="late">-</span> ms (p50 of the last 100) · picture changes <span id="changes">0</span></div>
<img id="view" alt="live picture">
<table><thead><tr><th>id</th><th>x</th><th>y</th><th>w</th><th>h</th><th>state</th><th>moving</th><th>score</th></tr></thead>
<tbody id="tracks"></tbody></table>
<script>
const q = location.search;  // carries the token, if any, to both streams
document.getElementById("view").src = "/stream.mjpg" + q;
const late = [];
let messages = 0;
const events = new EventSource("/events" + q);
events.onmessage = (e) => {
  const m = JSON.parse(e.data);
  late.push(Date.now() - 1000 * m.ready_unix_s);
  if (late.length > 100) late.shift();
  const sorted = [...late].sort((a, b) => a - b);
  document.getElementById("late").textContent = sorted[Math.floor(sorted.length / 2)].toFixed(1);
  document.getElementById("frame").textContent = m.frame;
  document.getElementById("messages").textContent = ++messages;
  document.getElementById("tracks").innerHTML = (m.tracks || []).map((t) =>
    `<tr class="track"><td>${t.id}</td><td>${t.x.toFixed(1)}</td><td>${t.y.toFixed(1)}</td>` +
    `<td>${t.bbox[2] - t.bbox[0]}</td><td>${t.bbox[3] - t.bbox[1]}</td><td>${t.state}</td>` +
    `<td>${t.moving ?? ""}</td><td>${(t.score ?? 0).toFixed(2)}</td></tr>`).join("");
};
// The picture updates: a few of its pixels are read every 200 ms and changes counted.
const canvas = document.createElement("canvas"), ctx = canvas.getContext("2d");
let last = "", changes = 0;
setInterval(() => {
  const img = document.getElementById("view");
  if (!img.naturalWidth) return;
  canvas.width = 64; canvas.height = 48;
  ctx.drawImage(img, 0, 0, 64, 48);
  const sig = Array.from(ctx.getImageData(0, 0, 64, 48).data.filter((_, i) => i % 97 === 0)).join(",");
  if (sig !== last) { if (last) changes++; last = sig; document.getElementById("changes").textContent = changes; }
}, 200);
</script></body></html>
"""
