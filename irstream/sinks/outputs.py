"""Which outputs a run's [output] config names, built: the ZeroMQ publisher (one per run) and
the file outputs (one set per source; a run over several numbers their paths per source)."""

from __future__ import annotations

from pathlib import Path

from irstream.sinks.annotate import TrackAnnotator
from irstream.sinks.files import FramesSink, JsonlSink, MotSink, VideoSink
from irstream.sinks.publish import ZmqPublisher


def file_sinks(o, fps: float, live: bool, path=lambda p: p) -> list:
    """(name, sink, drop_when_full) for the file outputs the [output] config names; `path` maps
    each configured path (a run over several sources numbers them per source: `numbered`)."""
    def annotator() -> TrackAnnotator:
        return TrackAnnotator(o.trail_frames, o.show_detections, o.include_tentative)

    sinks = []
    if o.save:
        sinks.append(("save", VideoSink(path(o.save), fps, annotator(), real_time=live), live))
    if o.frames_dir:
        sinks.append(("frames_dir", FramesSink(path(o.frames_dir), annotator()), live))
    if o.jsonl:
        sinks.append(("jsonl", JsonlSink(path(o.jsonl), o.include_tentative), live))
    if o.mot:
        sinks.append(("mot", MotSink(path(o.mot)), live))
    return sinks


def publisher(o):
    """The ZeroMQ publisher the [output] config names, or None."""
    if not o.publish:
        return None
    return ZmqPublisher(o.publish, o.topic, o.hwm_msgs, o.wait_subscriber_s, o.include_tentative, o.curve_dir)


def web_view(o):
    """The browser view the [output] config names, or None."""
    if not o.web:
        return None
    from irstream.sinks.web import WebView

    return WebView(o.web, o.web_token, TrackAnnotator(o.trail_frames, o.show_detections, o.include_tentative),
                   o.include_tentative)


def numbered(path: str, stream: int) -> str:
    """out.mp4 -> out-0.mp4; a folder gets -<stream> on its name."""
    p = Path(path)
    return str(p.with_name(f"{p.stem}-{stream}{p.suffix}"))
