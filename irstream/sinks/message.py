"""The message irstream publishes per frame, shared by the ZeroMQ publisher, the JSONL sink
and `irstream listen`.  The schema is versioned: a consumer checks `schema` and refuses what it
does not know.  Documented field by field in the README ("Message schema").
"""

from __future__ import annotations

import json
import math
import time

from irstream.types import FrameResult

SCHEMA = "irstream.frame/1"
#: Keys every message carries, with their JSON types; `listen` validates against this.
REQUIRED = {
    "schema": str, "frame": int, "timestamp_s": (int, float), "sent_unix_s": (int, float),
    "latency_ms": (int, float), "source": str, "width": int, "height": int, "bit_depth": int,
    "detections": list, "tracks": list,
}

#: Track fields a consumer may rely on being finite numbers.
TRACK_NUMBERS = ("id", "x", "y", "vx", "vy", "age", "hits", "score")


def build_message(res: FrameResult, include_tentative: bool = False) -> dict:
    f = res.frame
    tracks = res.tracks if include_tentative else res.tracks.published()
    return {
        "schema": SCHEMA,
        "frame": f.index,
        "timestamp_s": round(f.timestamp_s, 6),
        "sent_unix_s": round(time.time(), 6),
        "latency_ms": round((time.perf_counter() - f.read_at) * 1e3, 3),
        "source": f.source_id,
        "stream": res.stream,
        "width": int(f.image.shape[1]),
        "height": int(f.image.shape[0]),
        "bit_depth": f.bit_depth,
        "detections": res.detections.to_records(),
        "tracks": tracks.to_records(),
    }


def encode(msg: dict) -> bytes:
    # allow_nan=False: a NaN that slipped through must fail here, not in a consumer's parser.
    return json.dumps(msg, separators=(",", ":"), allow_nan=False).encode()


def validate(msg: object) -> str | None:
    """None when `msg` is a message of the schema this code knows, else what is wrong."""
    if not isinstance(msg, dict):
        return "not a JSON object"
    if msg.get("schema") != SCHEMA:
        return f"schema {msg.get('schema')!r}, expected {SCHEMA!r}"
    for key, kind in REQUIRED.items():
        if not isinstance(msg.get(key), kind):
            return f"field {key!r} missing or not {getattr(kind, '__name__', 'a number')}"
    for t in msg["tracks"]:
        if not isinstance(t, dict) or not all(isinstance(t.get(k), (int, float)) and math.isfinite(t[k])
                                              for k in TRACK_NUMBERS):
            return f"a track lacks a finite {', '.join(TRACK_NUMBERS)}"
        if not isinstance(t.get("state"), str):
            return "a track lacks its state"
    return None
