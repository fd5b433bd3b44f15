"""A real RTSP server for tests and the soak: GStreamer's gst-rtsp-server serving an H.264
video file on loopback as a network camera does.

It is its own program, run with the system Python that has GStreamer's bindings (Debian:
`gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-good
gstreamer1.0-plugins-bad`), not with irstream's environment, so it imports nothing of irstream:

    /usr/bin/python3 irstream/tools/rtsp_server.py --port 8554 --path /cam CLIP.mp4 [--cache F]

The file is encoded once, at start, as a camera encodes (H.264 without B-frames, a key frame
every second: the clips' own key frame every 10 s would keep a client that comes back waiting
for up to 10 s), and its access units are sent in a loop, paced by the wall clock, through a
live source: the stream lasts as long as the server runs, its timestamps only go forward, and a
client that joins or comes back starts at the next key frame, as with a camera.  With --cache,
the encoded stream is kept in that file (and F.json) and read from it by the next start, so a
restarted server is back in a fraction of a second, as a rebooted camera's stream is.  (A file source looped by segment seeks does not hold: the
server's own seek for each client's PLAY range replaces the loop's.)  One stream is shared by
every client, as a camera's encoder is.  It prints "ready" once it listens, and stops on
SIGTERM or SIGINT.
"""

import argparse
import itertools
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstApp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstApp, GstRtspServer  # noqa: E402

#: The media each client is served: byte-stream H.264 from the live source, packetised; SPS/PPS
#: sent with every key frame (config-interval -1), so a client can start at any key frame.
#: Its queue holds at most APPSRC_MAX_BYTES and drops the oldest beyond (a client that does not
#: read costs old frames, never a backlog sent later in a burst).
APPSRC_MAX_BYTES = 2_000_000
MEDIA_LINE = (f"( appsrc name=src is-live=true format=time do-timestamp=true max-bytes={APPSRC_MAX_BYTES} "
              "leaky-type=downstream "
              "! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 config-interval=-1 )")


#: The camera-like encoding: key frame interval, frames; bit rate, bits/s (a 640x512 thermal
#: camera's H.264 stream is typically 1-4 Mbit/s).
KEY_EVERY_FRAMES = 25
BITRATE_BPS = 2_000_000
#: Seconds the encoding may go without a frame before it is given up.
ENCODE_WAIT_S = 10


def encode(clip: str) -> tuple[list[tuple[bytes, bool]], Gst.Caps, float]:
    """Every access unit of clip, re-encoded, as (bytes, is key frame), their caps, and frames/s."""
    pipeline = Gst.parse_launch(
        "filesrc name=file ! decodebin ! videoconvert "
        f"! openh264enc gop-size={KEY_EVERY_FRAMES} bitrate={BITRATE_BPS} complexity=low "
        "! h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au "
        "! appsink name=sink sync=false")
    pipeline.get_by_name("file").set_property("location", clip)  # any path, quotes and all
    sink: GstApp.AppSink = pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    units, caps = [], None
    while (sample := sink.try_pull_sample(ENCODE_WAIT_S * Gst.SECOND)) is not None:
        buf = sample.get_buffer()
        caps = caps or sample.get_caps()
        units.append((buf.extract_dup(0, buf.get_size()),
                      not buf.has_flags(Gst.BufferFlags.DELTA_UNIT)))
    error = pipeline.get_bus().pop_filtered(Gst.MessageType.ERROR)
    ended = sink.is_eos()
    pipeline.set_state(Gst.State.NULL)
    if error is not None or not ended or not units:
        why = error.parse_error()[0].message if error is not None else "no frame came for a while"
        raise SystemExit(f"cannot encode {clip}: {why}")
    ok, num, den = caps.get_structure(0).get_fraction("framerate")
    return units, caps, (num / den if ok and num else 25.0)


def load(clip: str, cache: str) -> tuple[list[tuple[bytes, bool]], Gst.Caps, float]:
    """encode(clip), through the cache files when given: cache holds the units back to back,
    cache.json their sizes, key flags, caps and rate, and which file (path, size, time) and
    encoding they came from; anything else there, or unreadable, is encoded afresh."""
    index = Path(cache + ".json") if cache else None
    st = Path(clip).stat()
    source = [str(Path(clip).resolve()), st.st_size, st.st_mtime_ns, KEY_EVERY_FRAMES, BITRATE_BPS]
    try:
        meta = json.loads(index.read_text()) if index else None
        if meta and meta["source"] == source:
            data = Path(cache).read_bytes()
            ends = list(itertools.accumulate(meta["sizes"]))
            units = [(data[end - size:end], key) for end, size, key in zip(ends, meta["sizes"], meta["keys"])]
            return units, Gst.Caps.from_string(meta["caps"]), meta["fps"]
    except (OSError, ValueError, KeyError):
        pass
    units, caps, fps = encode(clip)
    if index is not None:  # written whole, then renamed: a kill never leaves half a cache
        Path(cache + ".tmp").write_bytes(b"".join(u for u, _ in units))
        os.replace(cache + ".tmp", cache)
        Path(cache + ".json.tmp").write_text(json.dumps({
            "source": source, "sizes": [len(u) for u, _ in units], "keys": [k for _, k in units],
            "caps": caps.to_string(), "fps": fps}))
        os.replace(cache + ".json.tmp", index)
    return units, caps, fps


class LiveStream:
    """Sends the access units, looped, to whichever media is being served now."""

    def __init__(self, units, caps, fps: float) -> None:
        self.units, self.caps, self.period_s = units, caps, 1.0 / fps
        self._src = None
        self._lock = threading.Lock()

    def attach(self, media: GstRtspServer.RTSPMedia) -> None:
        src = media.get_element().get_by_name("src")
        src.set_property("caps", self.caps)
        with self._lock:
            self._src, self._synced = src, False
        media.connect("unprepared", self._detach)

    def _detach(self, media) -> None:
        with self._lock:
            if self._src is not None and media.get_element().get_by_name("src") is self._src:
                self._src = None

    def run(self) -> None:
        start, n = time.monotonic(), 0
        while True:
            for data, key in self.units:
                time.sleep(max(0.0, start + n * self.period_s - time.monotonic()))
                n += 1
                with self._lock:
                    src = self._src
                    self._synced = self._synced or key if src is not None else False
                    if src is None or not self._synced:
                        continue  # a new stream starts at a key frame
                src.emit("push-buffer", Gst.Buffer.new_wrapped(data))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", help="a video file GStreamer can decode (the shared clips: H.264 in MP4)")
    parser.add_argument("--port", type=int, default=8554)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--path", default="/cam")
    parser.add_argument("--fps", type=float, default=0.0, help="frames/s sent (0: the file's rate)")
    parser.add_argument("--cache", default="", help="file that keeps the encoded stream between starts")
    args = parser.parse_args()
    Gst.init(None)

    units, caps, fps = load(args.clip, args.cache)
    stream = LiveStream(units, caps, args.fps or fps)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.address)
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(MEDIA_LINE)
    factory.set_shared(True)
    factory.connect("media-configure", lambda _f, media: stream.attach(media))
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on {args.address}:{args.port}", file=sys.stderr)
        return 1
    threading.Thread(target=stream.run, daemon=True).start()
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, lambda: loop.quit() or False)
    print(f"ready rtsp://{args.address}:{server.get_bound_port()}{args.path}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
