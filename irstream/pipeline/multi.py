"""Several sources in one process: one reader per source, their frames batched into one
forward pass, one tracker per source.

Each round takes at most one frame from every source that has one ready and runs them through
the model together (`Detector.batch`: the tiles of all frames in one batch per tile size), then
each source's own detector state (AGC, learnt text mask) finds its targets and its own tracker
updates.  A source with nothing ready is skipped for the round, so a slow, stalled or dead
source never holds the others; file sources still lose no frame (their readers wait for room),
live ones keep the newest frame (per source).

Outputs: one publisher for all sources (every message carries `source` and `stream`, the
source's position in the run); files (`save`, `jsonl`, `mot`, `frames_dir`) get one per source,
named with `-<stream>` before the suffix.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from irstream.config import PipelineConfig
from irstream.io.sources import SourceConfig
from irstream.errors import UserError
from irstream.io.reader import FrameReader
from irstream.io.sources import Source, open_source
from irstream.detect.detector import Detector, DetectorStream
from irstream.pipeline.run import READER_JOIN_S, RunSummary, file_sinks, publisher
from irstream.sinks.worker import SinkWorker
from irstream.track.stage import TrackingStage
from irstream.types import FrameResult

#: Seconds a round waits when no source has a frame ready.
IDLE_WAIT_S = 0.005


@dataclass
class Lane:
    """One source's share of the run."""

    stream: int
    source: Source
    live: bool
    reader: FrameReader
    detector: DetectorStream
    tracking: TrackingStage
    summary: RunSummary
    workers: list[SinkWorker] = field(default_factory=list)
    done: bool = False


def numbered(path: str, stream: int) -> str:
    """out.mp4 -> out-0.mp4; a folder gets -<stream> on its name."""
    p = Path(path)
    return str(p.with_name(f"{p.stem}-{stream}{p.suffix}"))


class MultiPipeline:
    """A run over several sources; iterate it for FrameResults (of all sources, `.stream` says
    which), or `run()` it for the per-source summaries."""

    def __init__(self, cfg: PipelineConfig, sources: list[str | SourceConfig] | None = None,
                 stop: threading.Event | None = None) -> None:
        """sources: URIs (set up as cfg's [source]) or SourceConfigs; None = cfg's [[source]] list."""
        uris = [dataclasses.replace(cfg.source, uri=s) if isinstance(s, str) else s
                for s in (sources if sources is not None else cfg.sources or [cfg.source])]
        if len(uris) < 1:
            raise UserError("give at least one source")
        if cfg.output.preview:
            raise UserError("= true shows one source; run several sources without it", "output.preview")
        self.cfg, self.stop = cfg, stop or threading.Event()
        self.detector = Detector.from_config(cfg)
        self.lanes: list[Lane] = []
        try:
            for k, uri in enumerate(uris):
                self.lanes.append(self._lane(k, uri))
            self.publisher = publisher(cfg.output)
        except BaseException:
            for lane in self.lanes:
                lane.source.close()
            raise
        self._started = False

    def _lane(self, k: int, c: SourceConfig) -> Lane:
        src = open_source(c.uri, fps=c.fps, camera=c.camera, reconnect=c.reconnect)
        live = src.live if c.mode == "auto" else c.mode == "live"
        limit = 0 if live else self.cfg.run.max_frames
        reader = FrameReader(src, self.cfg.run.read_queue_frames, live, limit, pace=live and not src.live)
        summary = RunSummary(src.source_id, str(self.detector.device), live)
        return Lane(k, src, live, reader, self.detector.new_stream(), TrackingStage(self.cfg), summary)

    def run(self) -> list[RunSummary]:
        for _ in self:
            pass
        return [lane.summary for lane in self.lanes]

    def __iter__(self) -> Iterator[FrameResult]:
        if self._started:
            raise RuntimeError("a MultiPipeline runs once; build a new one to run again")
        self._started = True
        shared: list[SinkWorker] = []
        t0 = time.perf_counter()
        try:
            for shape in {lane.source.shape for lane in self.lanes if lane.source.shape}:
                self.detector.warm_up(shape)
            q = self.cfg.run.sink_queue_frames
            if self.publisher is not None:
                shared.append(SinkWorker(self.publisher, "publish", q, True).start())
            for lane in self.lanes:
                sinks = file_sinks(self.cfg.output, lane.source.fps, lane.live, lambda p, k=lane.stream: numbered(p, k))
                lane.workers = [SinkWorker(s, name, q, drop).start() for name, s, drop in sinks]
                lane.summary.note_model(self.detector)
            t0 = time.perf_counter()
            for lane in self.lanes:
                lane.reader.start()
            yield from self._loop(shared)
        finally:
            for lane in self.lanes:
                lane.reader.stop()
            for lane in self.lanes:
                if lane.reader.join(READER_JOIN_S):
                    lane.source.close()
                for w in lane.workers:
                    w.close()
            for w in shared:
                w.close()
            wall = time.perf_counter() - t0
            for lane in self.lanes:
                lane.summary.wall_s = wall
                lane.summary.collect(lane.reader, lane.source, self.detector.segmenter.runtime,
                                     [*lane.workers, *shared], self.stop.is_set())
        failed = [w for lane in self.lanes for w in lane.workers if w.error is not None] + \
                 [w for w in shared if w.error is not None]
        if failed:
            raise UserError(f"{failed[0].name}: {failed[0].error}")

    def _loop(self, shared: list[SinkWorker]) -> Iterator[FrameResult]:
        while not all(lane.done for lane in self.lanes):
            if self.stop.is_set():
                for lane in self.lanes:
                    lane.reader.stop()
            ready = self._take_round()
            if not ready:
                time.sleep(IDLE_WAIT_S)
                continue
            t_pre = time.perf_counter()
            prepared = [lane.detector.prepare(frame) for lane, frame in ready]
            t_inf = time.perf_counter()
            probs = self.detector.batch(prepared)
            t_done = time.perf_counter()
            for (lane, frame), prep, prob in zip(ready, prepared, probs):
                yield self._finish(lane, prep, prob, shared, {
                    "preprocess": (t_inf - t_pre) * 1e3 / len(ready), "inference": (t_done - t_inf) * 1e3,
                    "read": lane.reader.read_ms.pop(frame.index, float("nan"))})

    def _take_round(self) -> list:
        """At most one frame from every source that has one now; frozen frames are counted."""
        ready = []
        for lane in self.lanes:
            if lane.done:
                continue
            frame = lane.reader.get(timeout=0.0)
            if frame is None:
                if lane.reader.finished:
                    if lane.reader.error is not None:
                        raise lane.reader.error
                    lane.done = True
                continue
            if self.cfg.run.max_frames and lane.summary.frames_processed >= self.cfg.run.max_frames:
                lane.reader.stop()
                lane.done = True
                continue
            if frame.frozen:
                lane.summary.frames_frozen += 1
                continue
            ready.append((lane, frame))
        return ready

    def _finish(self, lane: Lane, prep, prob: np.ndarray, shared, timings: dict) -> FrameResult:
        frame = prep.frame
        t0 = time.perf_counter()
        dets = lane.detector.find(prep, prob)
        timings["targets"] = (time.perf_counter() - t0) * 1e3
        tracks = lane.tracking(dets, prep.unit, frame.timestamp_s, timings)
        res = FrameResult(frame, prep.unit, dets, tracks, timings, ignored=lane.detector.ignored(prep),
                          live=lane.live, stream=lane.stream)
        for w in (*lane.workers, *shared):
            w.put(res)
        lane.summary.add(res)
        return res
