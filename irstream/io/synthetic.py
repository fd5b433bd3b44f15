"""Synthetic scenes as a source (`synth:sky?seed=1&frames=100`): tests and demos without a camera."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import parse_qsl

from irstream.clock import DEFAULT_FPS
from irstream.errors import UserError
from irstream.io.base import Source
from irstream.types import Frame

class SyntheticSource(Source):
    """Moving targets on a procedural background (`data.synthetic.synth_sequence`), for tests and demos.

    live=False, realtime=False: frames as fast as they are made, timestamped index / fps.
    realtime=True: paced at fps with time.sleep, like playing a file at its rate.
    live=True: paced too, and stamped with capture time, like a camera.
    truth: frame index -> ground-truth rows (track_id, x, y, area_px, bbox_xyxy), filled
    as frames are yielded.
    """

    def __init__(self, seed: int = 0, n_frames: int = 100, shape: tuple[int, int] = (256, 320), kind: str = "sky",
                 n_targets: int = 4, bit_depth: int = 8, fps: float = DEFAULT_FPS, live: bool = False,
                 realtime: bool = False, source_id: str | None = None):
        from irstream.data.synthetic import BACKGROUNDS, synth_sequence

        if kind not in BACKGROUNDS:
            raise UserError(f"synthetic background {kind!r}: unknown; known: {', '.join(BACKGROUNDS)}")
        if bit_depth not in (8, 16):
            raise UserError(f"synthetic bit_depth {bit_depth}: must be 8 or 16")
        if n_frames < 1 or fps <= 0:
            raise UserError(f"synthetic source: frames ({n_frames}) and fps ({fps}) must be positive")
        self.source_id = source_id or f"synth:{kind}?seed={seed}&frames={n_frames}"
        self.live, self.realtime = bool(live), bool(realtime or live)
        self.fps, self.frame_count = float(fps), int(n_frames)
        self.shape, self.bit_depth = (int(shape[0]), int(shape[1])), bit_depth
        self.truth: dict[int, list] = {}
        self._gen = synth_sequence(seed, n_frames, self.shape, kind, n_targets, bit_depth)

    def _frames(self) -> Iterator[Frame]:
        start = time.perf_counter()
        for index, (img, rows) in enumerate(self._gen):
            if self.realtime:
                wait = start + index / self.fps - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            self.truth[index] = rows
            t = time.time() if self.live else index / self.fps
            yield Frame(img, index, t, self.source_id, self.bit_depth)

    def _release(self) -> None:
        self._gen.close()


_SYNTH_PARAMS = {"seed": int, "frames": int, "width": int, "height": int, "targets": int, "bits": int,
                 "fps": float, "live": int, "realtime": int}


def _open_synthetic(spec: str, fps: float) -> SyntheticSource:
    """synth:KIND?seed=1&frames=100&width=320&height=256&targets=4&bits=8&fps=25&live=0&realtime=0"""
    kind, _, query = spec[len("synth:"):].partition("?")
    opts: dict = {"fps": fps}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in _SYNTH_PARAMS:
            raise UserError(f"{spec}: unknown option {key!r}; known: {', '.join(_SYNTH_PARAMS)}")
        try:
            opts[key] = _SYNTH_PARAMS[key](value)
        except ValueError:
            raise UserError(f"{spec}: {key}={value!r} is not a number") from None
    return SyntheticSource(seed=opts.get("seed", 0), n_frames=opts.get("frames", 100),
                           shape=(opts.get("height", 256), opts.get("width", 320)), kind=kind or "sky",
                           n_targets=opts.get("targets", 4), bit_depth=opts.get("bits", 8), fps=opts["fps"],
                           live=bool(opts.get("live", 0)), realtime=bool(opts.get("realtime", 0)), source_id=spec)


