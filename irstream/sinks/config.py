"""[output]: where results go (the outputs' config)."""

from __future__ import annotations

from dataclasses import dataclass

#: Bounds that keep a typo from becoming a hang or an allocation failure: ZeroMQ takes the
#: high-water mark as a C int, and a run that waits a day for a subscriber is a mistake.
MAX_HWM_MSGS = 1_000_000
MAX_WAIT_SUBSCRIBER_S = 3600.0


@dataclass(frozen=True)
class OutputConfig:
    """Where results go; an empty string turns an output off.

    publish: ZeroMQ endpoint to bind, e.g. "tcp://127.0.0.1:5556" (loopback: only this machine).
    topic: first frame of every ZeroMQ message.
    hwm_msgs: messages ZeroMQ queues per subscriber before dropping for it.
    wait_subscriber_s: wait this long for a first subscriber before starting, s.
    curve_dir: a folder from `irstream keys`: publish encrypted (CurveZMQ), to authorised
        subscribers only; "" = plain, which is what loopback alone is safe for.
    web: serve the annotated live picture and a table of tracks to browsers at HOST:PORT
        (irstream.sinks.web), e.g. "127.0.0.1:8080"; any address but loopback needs web_token.
    web_token: the token browsers must give (?token=), compared in constant time.
    save: annotated video (.mp4, .mkv lossless, .avi).  frames_dir: annotated frames as PNGs.
    jsonl: one message per line.
    mot: confirmed tracks as MOTChallenge CSV.  preview: a window (needs a display).
    trail_frames: length of the drawn track trails, frames.
    include_tentative: publish and draw unconfirmed and lost tracks too (debugging the tracker).
    show_detections: draw raw single-frame detections under the tracks.
    """

    publish: str = ""
    topic: str = "irstream"
    hwm_msgs: int = 1000
    wait_subscriber_s: float = 0.0
    curve_dir: str = ""
    web: str = ""
    web_token: str = ""
    save: str = ""
    frames_dir: str = ""
    jsonl: str = ""
    mot: str = ""
    preview: bool = False
    trail_frames: int = 30
    include_tentative: bool = False
    show_detections: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.hwm_msgs <= MAX_HWM_MSGS:
            raise ValueError(f"hwm_msgs={self.hwm_msgs}: must be 1 to {MAX_HWM_MSGS}")
        if not 0 <= self.wait_subscriber_s <= MAX_WAIT_SUBSCRIBER_S:
            raise ValueError(f"wait_subscriber_s={self.wait_subscriber_s}: must be 0 to {MAX_WAIT_SUBSCRIBER_S:.0f} s")
        if self.trail_frames < 1:
            raise ValueError(f"trail_frames={self.trail_frames}: must be >= 1")
