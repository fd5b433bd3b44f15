"""The run loop: sources -> preprocess -> inference -> targets -> tracker -> outputs.

One loop for one source or several (each source a lane of it).  Threads sit only at the
edges.  A reader thread per source decodes frames into a small buffer; the main thread runs
preprocessing, the model, target extraction and the trackers (stateful, so no locks); each
output runs in its own SinkWorker thread behind a bounded queue.

File runs never drop: the reader waits for room, the outputs block when full, and inference
sets the pace.  Live runs keep latency bounded: the reader keeps only the newest frame and
counts the ones it replaced, and outputs drop (and count) rather than wait.

Stopping (Ctrl-C, the preview's q, max_frames) stops the reader; the frames already read are
still processed, then every output finishes its queue and closes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from irstream.config import PipelineConfig, load_pipeline, override
from irstream.detect.detector import Detector, DetectorStream
from irstream.errors import UserError
from irstream.io.reader import POLL_S, FrameReader
from irstream.io.base import Source
from irstream.io.sources import SourceConfig, open_source
from irstream.sinks.outputs import file_sinks, numbered, publisher, web_view
from irstream.sinks.worker import TIMING_WINDOW_FRAMES, SinkWorker
from irstream.track.stage import TrackingStage
from irstream.types import CONFIRMED, Frame, FrameResult, Prepared

#: Seconds a stopping run waits for the reader thread to leave the source's read call.  A
#: camera or stream that hangs in its read is then left to the process exit to release.
READER_JOIN_S = 5.0
#: Seconds a round of a run over several sources waits when none has a frame ready.
IDLE_WAIT_S = 0.005
SHOW_CURSOR = "\x1b[?25h"
log = logging.getLogger(__name__)
#: Per-frame stages.  read: the source's read call (for a live source this includes waiting
#: for the next frame); inference: frame handed to the model until its map is back.
#: queued: read until taken for processing (in file runs, the frames decoded ahead wait here).
#: processing: from the start of preprocessing to the tracks, what one frame costs.
STAGES = ("read", "queued", "preprocess", "inference", "targets", "motion", "tracker", "processing")


@dataclass
class RunSummary:
    source: str
    device: str
    live: bool
    frames_read: int = 0
    frames_processed: int = 0
    frames_dropped: int = 0
    frames_frozen: int = 0
    frames_corrupt: int = 0
    frames_expected: int | None = None
    reconnects: int = 0
    outages_s: list[float] = field(default_factory=list)  # each outage of a live source, s (irstream.io.live.OUTAGE_MIN_S)
    runtime_outages: int = 0  # a remote runtime (Triton) that stopped answering, and was waited for
    model_threads: int = 0  # CPU threads the model ran on (0: a GPU or a server)
    temporal: bool = False  # temporal evidence ran (TargetConfig.temporal, for this source)
    stalls: int = 0
    detections: int = 0
    confirmed_tracks: int = 0  # ids ever confirmed
    published_track_frames: int = 0  # published tracks summed over frames
    wall_s: float = 0.0
    stopped_early: bool = False
    stage_ms: dict[str, deque] = field(default_factory=lambda: {s: _window() for s in STAGES})
    latency_ms: deque = field(default_factory=lambda: _window())
    outputs: dict[str, dict] = field(default_factory=dict)
    _confirmed_ids: set[int] = field(default_factory=set, repr=False)  # live ids already counted
    _tiles: object = field(default=None, repr=False)

    def note_model(self, detector) -> None:
        """Name the runtime the detector settled on (after warm-up) and its CPU threads."""
        self.model_threads = detector.segmenter.threads
        self._tiles = detector.segmenter.memory  # counts the tiles run and kept, where tiles are reused
        self.device += f" {detector.runtime_label}" + (f", {self.model_threads} threads" if self.model_threads else "")

    @property
    def fps(self) -> float:
        return self.frames_processed / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict:
        """The summary as plain values, for JSON and tables: counts, rate, and p50/p99 of every
        stage, of each output's write and of read->tracks and read->output (NaN without frames)."""
        stages = dict(self.stage_ms) | {f"write {n}": o["write_ms"] for n, o in self.outputs.items()}
        stages |= {"read->tracks": self.latency_ms} | {f"read->{n}": o["latency_ms"] for n, o in self.outputs.items()}
        timing = {k: dict(zip(("p50_ms", "p99_ms"), percentiles(v))) for k, v in stages.items()}
        per_frame = max(1, self.frames_processed)
        tiles = self._tiles and (self._tiles.tiles_run + self._tiles.tiles_kept)
        return {"source": self.source, "device": self.device, "live": self.live, "model_threads": self.model_threads,
                "temporal": self.temporal,
                "frames_read": self.frames_read, "frames_processed": self.frames_processed,
                "frames_dropped": self.frames_dropped, "frames_frozen": self.frames_frozen,
                "frames_corrupt": self.frames_corrupt, "frames_expected": self.frames_expected,
                "reconnects": self.reconnects, "outages": len(self.outages_s),
                "outages_s": [round(v, 2) for v in self.outages_s], "runtime_outages": self.runtime_outages, "stalls": self.stalls,
                "fps": round(self.fps, 3), "wall_s": self.wall_s, "detections": self.detections,
                "confirmed_tracks": self.confirmed_tracks,
                "published_tracks_per_frame": self.published_track_frames / per_frame,
                "tiles_kept_share": self._tiles.tiles_kept / tiles if tiles else None,
                "stopped_early": self.stopped_early, "timing": timing, "latency": timing["read->tracks"],
                "outputs": {name: {k: v for k, v in o.items() if not k.endswith("_ms")} for name, o in self.outputs.items()}}

    def add(self, res: FrameResult) -> None:
        """One processed frame: its counts, timings and latency.  A track is counted once, when
        first confirmed; only live ids are remembered."""
        self.frames_processed += 1
        self.detections += len(res.detections)
        tracks = res.tracks
        self.published_track_frames += len(tracks.published())
        now = set(tracks.track_id[tracks.state == CONFIRMED].tolist())
        self.confirmed_tracks += len(now - self._confirmed_ids)
        self._confirmed_ids = (self._confirmed_ids | now) & set(tracks.track_id.tolist())
        for k, v in res.timings_ms.items():
            self.stage_ms[k].append(v)
        self.latency_ms.append((time.perf_counter() - res.frame.read_at) * 1e3)

    def collect(self, reader: FrameReader, source: Source, runtime, workers, stopped: bool) -> None:
        """The end of the run: what the reader, the source, the model's runtime and the outputs
        counted."""
        self.frames_read, self.frames_dropped = reader.read, reader.dropped
        self.reconnects = getattr(source, "reconnects", 0)
        self.outages_s = list(getattr(source, "outages_s", []))
        self.runtime_outages = getattr(runtime, "outages", 0)
        self.frames_corrupt = getattr(source, "corrupt_frames", 0)
        self.frames_expected = None if self.live else source.frame_count
        self.stopped_early = stopped
        for w in workers:
            self.outputs[w.name] = {"written": w.written, "dropped": w.dropped, "write_ms": w.times_ms,
                                    "latency_ms": w.latency_ms, "sent": getattr(w.sink, "sent", None),
                                    "timed_out": w.timed_out}


def _window() -> deque:
    return deque(maxlen=TIMING_WINDOW_FRAMES)


def percentiles(values, qs=(50, 99)) -> list[float]:
    return [float(np.percentile(values, q)) for q in qs] if len(values) else [float("nan")] * len(qs)


class Watchdog:
    """Reports a stage that holds the main loop longer than `limit_s`, from its own thread, so
    that a hung read, model or output shows up instead of a silent hang.  The loop calls
    `enter(stage)` as it moves on; each stall is logged once and counted in `stalls`."""

    WHAT = {"read": "no frame has come from the source",
            "inference": "a frame has not come through preprocessing, the model and the tracker",
            "output": "an output's queue has stayed full (a stalled disk, window or subscriber)"}

    def __init__(self, limit_s: float, source_id: str) -> None:
        self.limit_s, self.source_id = limit_s, source_id
        self.stalls = 0
        self._stage: str | None = None
        self._since = 0.0
        self._reported = True
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)

    def __enter__(self) -> "Watchdog":
        if self.limit_s > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()

    def enter(self, stage: str | None) -> None:
        """The loop now waits on `stage` (None: on nothing that can stall, e.g. paused)."""
        with self._lock:
            self._stage, self._since, self._reported = stage, time.monotonic(), False

    def _run(self) -> None:
        while not self._stop.wait(min(1.0, self.limit_s / 4)):
            with self._lock:
                stalled = (self._stage is not None and not self._reported
                           and time.monotonic() - self._since > self.limit_s)
                if stalled:
                    self._reported = True
                    self.stalls += 1
                    stage = self._stage
            if stalled:
                log.warning("%s: watchdog: %s for %.0f s; still waiting", self.source_id, self.WHAT[stage],
                            self.limit_s)


@dataclass
class Lane:
    """One source's share of a run: its reader, its detector state (AGC, learnt text mask), its
    tracker, its file outputs and its summary."""

    stream: int
    source: Source
    live: bool
    reader: FrameReader
    detector: DetectorStream
    tracking: TrackingStage
    summary: RunSummary
    workers: list[SinkWorker] = field(default_factory=list)
    taken: int = 0
    done: bool = False


class Pipeline:
    """One run of a PipelineConfig over one source or several: iterate it for each frame's
    FrameResult (`.stream` says which source), or `run()` it.

        for result in Pipeline.from_toml("pipelines/default.toml", source="clip.mp4"):
            print(result.frame.index, len(result.tracks.published()))

    Every source is a lane of the same loop: one reader per source, one model for all, one
    detector state and one tracker per source.  With one source each frame goes through the
    model as it comes (a GPU overlaps one frame's copies with the next one's forward pass);
    with several, each round takes at most one frame from every source that has one ready and
    runs them through the model together (`Detector.batch`).  A source with nothing ready is
    skipped for the round, so a slow, stalled or dead source never holds the others; file
    sources still lose no frame (their readers wait for room), live ones keep the newest frame.

    Results reach the configured outputs whether or not the caller iterates: one publisher for
    the run (every message carries `source` and `stream`), file outputs per source (numbered
    `-<stream>` before the suffix when there are several).  Stopping early (break, Ctrl-C,
    max_frames) closes the sources and drains the outputs.  A pipeline runs once.

    sources: URIs (set up as cfg's [source]) or SourceConfigs; None = cfg's [[source]] list, or
        its [source].
    source: an opened source to run instead (tests, the soak).
    extra_sinks: (name, sink, drop_when_full) for outputs built by the caller, e.g. a preview.
    on_frame: called on the main thread after each frame (progress bars).
    stop, paused: events another thread (a preview window, a signal) sets.
    """

    def __init__(self, cfg: PipelineConfig, sources: list[str | SourceConfig] | None = None, extra_sinks=(),
                 on_frame=None, stop: threading.Event | None = None, paused: threading.Event | None = None,
                 source: Source | None = None) -> None:
        configs = [dataclasses.replace(cfg.source, uri=s) if isinstance(s, str) else s
                   for s in (sources if sources is not None else cfg.sources or [cfg.source])]
        if not configs:
            raise UserError("give at least one source")
        if len(configs) > 1 and (cfg.output.preview or extra_sinks):
            raise UserError("= true shows one source; run several sources without it", "output.preview")
        if len(configs) > 1 and cfg.output.web:
            raise UserError("shows one source; run several sources without it", "output.web")
        self.cfg, self.on_frame = cfg, on_frame
        self.stop, self.paused = stop or threading.Event(), paused or threading.Event()
        self.lanes: list[Lane] = []
        try:
            self.detector = Detector.from_config(cfg)
            if source is not None:
                self.lanes.append(self._lane(0, source, cfg.source.mode))
            else:
                for k, c in enumerate(configs):
                    opened = open_source(c.uri, fps=c.fps, camera=c.camera, reconnect=c.reconnect)
                    self.lanes.append(self._lane(k, opened, c.mode))
            self.publisher = publisher(cfg.output)
            self.web = web_view(cfg.output)
            self.extra_sinks = list(extra_sinks)
        except BaseException:
            for lane in self.lanes:
                lane.source.close()
            if source is not None and not self.lanes:
                source.close()
            raise
        self.watchdog = Watchdog(cfg.run.watchdog_s, ", ".join(lane.source.source_id for lane in self.lanes))
        self._times: dict[tuple[int, int], tuple[float, float, float]] = {}  # (stream, index) -> queued, pre, submit
        self._started = False

    def _lane(self, k: int, src: Source, mode: str) -> Lane:
        live = src.live if mode == "auto" else mode == "live"
        # A file run reads no further than max_frames; a live run counts the frames it takes.
        limit = 0 if live else self.cfg.run.max_frames
        # A file run live is paced at its own rate, as its camera would deliver it.
        reader = FrameReader(src, self.cfg.run.read_queue_frames, live, limit, pace=live and not src.live)
        stream = self.detector.new_stream(src.lossless)
        summary = RunSummary(src.source_id, str(self.detector.device), live, temporal=stream.targets.temporal is not None)
        return Lane(k, src, live, reader, stream, TrackingStage(self.cfg), summary)

    @classmethod
    def from_toml(cls, path: str | Path | None = None, source: str | None = None, **overrides) -> "Pipeline":
        """The pipeline a TOML file describes (the shipped default when None), on `source` when
        given, with config values replaced by dotted name: `**{"model.device": "cpu"}`."""
        cfg = override(load_pipeline(path), **{"source.uri": source}, **overrides)
        return cls(cfg)

    @property
    def summary(self) -> RunSummary:
        """The run's summary (of the first source, where there are several: see `summaries`)."""
        return self.lanes[0].summary

    @property
    def summaries(self) -> list[RunSummary]:
        return [lane.summary for lane in self.lanes]

    @property
    def source(self) -> Source:
        return self.lanes[0].source

    @property
    def live(self) -> bool:
        return self.lanes[0].live

    def run(self) -> RunSummary:
        """Process every source to its end; the summary of the (first) source."""
        for _ in self:
            pass
        return self.summary

    def __iter__(self) -> Iterator[FrameResult]:
        if self._started:
            raise RuntimeError("a Pipeline runs once; build a new one to run again")
        self._started = True
        shared: list[SinkWorker] = []
        t_start = time.perf_counter()
        try:
            # Warm up first: a subscriber that waits on the publisher's open should get frame 0
            # as soon as it connects, not after the model's first (slow) forward passes.
            for shape in dict.fromkeys(lane.source.shape for lane in self.lanes if lane.source.shape):
                self.detector.warm_up(shape)
            self._start_outputs(shared)
            t_start = time.perf_counter()  # the rate is of frames, not of opening outputs
            for lane in self.lanes:
                lane.reader.start()
            with self.watchdog:
                yield from self._loop(shared)
        finally:
            self._close(shared, time.perf_counter() - t_start)
        failed = [w for lane in self.lanes for w in lane.workers if w.error is not None] + \
                 [w for w in shared if w.error is not None]
        if failed:
            raise UserError(f"{failed[0].name}: {failed[0].error}")

    def _start_outputs(self, shared: list[SinkWorker]) -> None:
        """Start the run's shared outputs (publisher, web view, caller's sinks) into `shared` and
        each lane's files into its workers, one by one, so that those started before one that
        fails are still closed."""
        q, several = self.cfg.run.sink_queue_frames, len(self.lanes) > 1
        sinks = [("publish", self.publisher, True)] if self.publisher is not None else []
        sinks += [("web", self.web, True)] if self.web is not None else []
        for name, sink, drop in sinks + self.extra_sinks:
            shared.append(SinkWorker(sink, name, q, drop).start())
        for lane in self.lanes:
            path = (lambda p, k=lane.stream: numbered(p, k)) if several else (lambda p: p)
            for name, sink, drop in file_sinks(self.cfg.output, lane.source.fps, lane.live, path):
                lane.workers.append(SinkWorker(sink, name, q, drop).start())
            lane.summary.note_model(self.detector)

    def _close(self, shared: list[SinkWorker], wall_s: float) -> None:
        for lane in self.lanes:
            lane.reader.stop()
        for lane in self.lanes:
            # The source's frames come from the reader thread; closing it under a read in
            # progress crashes the decoder, so it is closed only once the reader has left.
            if lane.reader.join(READER_JOIN_S):
                lane.source.close()
            for w in lane.workers:
                w.close()
        for w in shared:
            w.close()
        for lane in self.lanes:
            lane.summary.wall_s = wall_s
            lane.summary.collect(lane.reader, lane.source, self.detector.segmenter.runtime,
                                 [*lane.workers, *shared], self.stop.is_set())
            lane.summary.stalls = self.watchdog.stalls

    def _loop(self, shared: list[SinkWorker]) -> Iterator[FrameResult]:
        dog = self.watchdog
        dog.enter("read")
        while not all(lane.done for lane in self.lanes):
            if self.stop.is_set():
                for lane in self.lanes:
                    lane.reader.stop()  # what is already buffered is still processed below
            if self.paused.is_set():
                dog.enter(None)
                while self.paused.is_set() and not self.stop.is_set():
                    time.sleep(POLL_S)
                dog.enter("read")
            ready = self._take_round()
            if not ready:
                if len(self.lanes) > 1:
                    time.sleep(IDLE_WAIT_S)
                continue
            dog.enter("inference")
            for lane, prepared, prob in self._infer(ready):
                yield self._finish(lane, prepared, prob, shared)
            dog.enter("read")
        dog.enter("inference")
        for prepared, prob in self.detector.flush():
            yield self._finish(self.lanes[0], prepared, prob, shared)
        dog.enter(None)

    def _take_round(self) -> list[tuple[Lane, Frame]]:
        """At most one frame from every source that has one (one source: waiting briefly for
        it); frozen frames are counted and skipped, a source at max_frames is done."""
        wait_s = POLL_S if len(self.lanes) == 1 else 0.0
        ready = []
        for lane in self.lanes:
            if lane.done:
                continue
            frame = lane.reader.get(timeout=wait_s)
            if frame is None:
                if lane.reader.finished:  # the reader sets its error before it finishes
                    if lane.reader.error is not None:
                        raise lane.reader.error
                    lane.done = True
                continue
            lane.taken += 1
            if self.cfg.run.max_frames and lane.taken >= self.cfg.run.max_frames:
                lane.reader.stop()
                lane.done = True
            if frame.frozen:  # the same image again: no new scene for the model or the tracker
                lane.summary.frames_frozen += 1
                lane.reader.read_ms.pop(frame.index, None)
                continue
            ready.append((lane, frame))
        return ready

    def _infer(self, ready: list[tuple[Lane, Frame]]) -> list[tuple[Lane, Prepared, np.ndarray]]:
        """The maps of this round's frames (of earlier rounds too, where a GPU held one back)."""
        prepared = []
        for lane, frame in ready:
            t0 = time.perf_counter()
            prepared.append(lane.detector.prepare(frame))
            t1 = time.perf_counter()
            self._times[lane.stream, frame.index] = ((t0 - frame.read_at) * 1e3, (t1 - t0) * 1e3, t1)
        if len(self.lanes) > 1:
            return [(lane, p, prob) for (lane, _), p, prob in zip(ready, prepared, self.detector.batch(prepared))]
        lane = self.lanes[0]
        done = self.detector.push(prepared[0])
        if not lane.reader.buffered:
            # Nothing to overlap with (a live source, or a reader behind): a pipelined device
            # would otherwise hold this frame's result until the next one arrives.
            done += self.detector.flush()
        return [(lane, p, prob) for p, prob in done]

    def _finish(self, lane: Lane, prepared: Prepared, prob: np.ndarray, shared: list[SinkWorker]) -> FrameResult:
        frame = prepared.frame
        queued_ms, pre_ms, t_submit = self._times.pop((lane.stream, frame.index))
        t0 = time.perf_counter()
        timings = {"read": lane.reader.read_ms.pop(frame.index, float("nan")), "queued": queued_ms,
                   "preprocess": pre_ms, "inference": (t0 - t_submit) * 1e3}
        dets = lane.detector.find(prepared, prob)
        t1 = time.perf_counter()
        ignored = lane.detector.ignored(prepared)
        tracks = lane.tracking(dets, prepared.unit, frame.timestamp_s, timings, ignored)
        timings["targets"] = (t1 - t0) * 1e3
        # From the start of preprocessing to here: what the frame cost, without the time it
        # waited in the read queue (which in a file run is most of read->output).
        timings["processing"] = pre_ms + (time.perf_counter() - t_submit) * 1e3
        res = FrameResult(frame, prepared.unit, dets, tracks, timings, ignored=ignored,
                          live=lane.live, stream=lane.stream)
        self.watchdog.enter("output")
        for w in (*lane.workers, *shared):
            w.put(res)
        self.watchdog.enter("inference")
        lane.summary.add(res)
        if self.on_frame:
            self.on_frame(res)
        return res


@contextlib.contextmanager
def graceful_interrupt(stop: threading.Event, on_first=None):
    """First Ctrl-C (or SIGTERM) sets `stop` so the run drains and closes its outputs; a second
    Ctrl-C ends the process at once (exit 130), leaving outputs as they are.  Only the main
    thread can own signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    signals = []  # counted apart from `stop`, which a preview's q also sets

    def handler(signum, _frame):
        signals.append(signum)
        if len(signals) > 1 and signum == signal.SIGINT:
            if sys.stderr.isatty():
                sys.stderr.write(SHOW_CURSOR)  # a progress bar hid it, and no cleanup runs
                sys.stderr.flush()
            os._exit(130)
        stop.set()
        if on_first:
            on_first(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
