"""The streaming pipeline: source -> preprocess -> inference -> targets -> tracker -> sinks.

Threads sit only at the edges.  A reader thread decodes frames into a small buffer; the main
thread runs preprocessing, the model, target extraction and the tracker (stateful, so no
locks); each output runs in its own SinkWorker thread behind a bounded queue.

File runs never drop: the reader waits for room, the outputs block when full, and inference
sets the pace.  Live runs keep latency bounded: the reader keeps only the newest frame and
counts the ones it replaced, and outputs drop (and count) rather than wait.

Stopping (Ctrl-C, the preview's q, max_frames) stops the reader; the frames already read are
still processed, then every output finishes its queue and closes.
"""

from __future__ import annotations

import contextlib
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
from irstream.errors import UserError
from irstream.io.reader import POLL_S, FrameReader
from irstream.io.sources import Source, open_source
from irstream.detect.detector import Detector
from irstream.sinks.annotate import TrackAnnotator
from irstream.sinks.files import FramesSink, JsonlSink, MotSink, VideoSink
from irstream.sinks.publish import ZmqPublisher
from irstream.sinks.worker import TIMING_WINDOW_FRAMES, SinkWorker
from irstream.track.stage import TrackingStage
from irstream.types import CONFIRMED, FrameResult, Prepared

#: Seconds a stopping run waits for the reader thread to leave the source's read call.  A
#: camera or stream that hangs in its read is then left to the process exit to release.
READER_JOIN_S = 5.0
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
    runtime_outages: int = 0  # a remote runtime (Triton) that stopped answering, and was waited for
    model_threads: int = 0  # CPU threads the model ran on (0: a GPU or a server)
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

    def note_model(self, detector) -> None:
        """Name the runtime the detector settled on (after warm-up) and its CPU threads."""
        self.model_threads = detector.segmenter.threads
        self.device += f" {detector.runtime_label}" + (f", {self.model_threads} threads" if self.model_threads else "")

    @property
    def fps(self) -> float:
        return self.frames_processed / self.wall_s if self.wall_s > 0 else 0.0

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
        self.runtime_outages = getattr(runtime, "outages", 0)
        self.frames_corrupt = getattr(source, "corrupt_frames", 0)
        self.frames_expected = None if self.live else source.frame_count
        self.stopped_early = stopped
        for w in workers:
            self.outputs[w.name] = {"written": w.written, "dropped": w.dropped, "write_ms": w.times_ms,
                                    "latency_ms": w.latency_ms, "sent": getattr(w.sink, "sent", None),
                                    "timed_out": w.timed_out}


def file_sinks(o, fps: float, live: bool, path=lambda p: p) -> list:
    """(name, sink, drop_when_full) for the file outputs the [output] config names; `path` maps
    each configured path (a run over several sources numbers them per source)."""
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


class Pipeline:
    """One run of a PipelineConfig: iterate it for each frame's FrameResult, or `run()` it.

        for result in Pipeline.from_toml("pipelines/default.toml", source="clip.mp4"):
            print(result.frame.index, len(result.tracks.published()))

    Results reach the configured outputs whether or not the caller iterates; stopping early
    (break, Ctrl-C, max_frames) closes the source and drains the outputs.  A pipeline runs once.

    extra_sinks: (name, sink, drop_when_full) for outputs built by the caller, e.g. a preview.
    on_frame: called on the main thread after each frame (progress bars).
    source: an opened source to run instead of opening cfg.source.uri (tests, the soak).
    """

    def __init__(self, cfg: PipelineConfig, extra_sinks=(), on_frame=None, stop: threading.Event | None = None,
                 paused: threading.Event | None = None, source: Source | None = None) -> None:
        self.cfg = cfg
        self.stop = stop or threading.Event()
        self.paused = paused or threading.Event()
        self.on_frame = on_frame
        self.source = source or open_source(cfg.source.uri, fps=cfg.source.fps, camera=cfg.source.camera,
                                            reconnect=cfg.source.reconnect)
        self.live = self.source.live if cfg.source.mode == "auto" else cfg.source.mode == "live"
        try:
            self.detector = Detector.from_config(cfg)
            self.tracking = TrackingStage(cfg)
            self.sinks = self._output_sinks() + list(extra_sinks)
        except BaseException:
            self.source.close()
            raise
        self.summary = RunSummary(self.source.source_id, str(self.detector.device), self.live)
        self.watchdog = Watchdog(cfg.run.watchdog_s, self.source.source_id)
        self._times: dict[int, tuple[float, float, float]] = {}  # frame index -> queued_ms, pre_ms, t_submit
        self._started = False

    @classmethod
    def from_toml(cls, path: str | Path | None = None, source: str | None = None, **overrides) -> "Pipeline":
        """The pipeline a TOML file describes (the shipped default when None), on `source` when
        given, with config values replaced by dotted name: `**{"model.device": "cpu"}`."""
        cfg = override(load_pipeline(path), **{"source.uri": source}, **overrides)
        return cls(cfg)

    def _output_sinks(self) -> list:
        pub = publisher(self.cfg.output)
        return ([("publish", pub, True)] if pub else []) + file_sinks(self.cfg.output, self.source.fps, self.live)

    def run(self) -> RunSummary:
        """Process the whole source; the summary of the run."""
        for _ in self:
            pass
        return self.summary

    def __iter__(self) -> Iterator[FrameResult]:
        if self._started:
            raise RuntimeError("a Pipeline runs once; build a new one to run again")
        self._started = True
        workers = []
        # A file run reads no further than max_frames; a live run counts processed frames.
        limit = 0 if self.live else self.cfg.run.max_frames
        # A file run live is paced at its own rate, as its camera would deliver it.
        reader = FrameReader(self.source, self.cfg.run.read_queue_frames, self.live, limit,
                             pace=self.live and not self.source.live)
        t_start = time.perf_counter()
        try:
            # Warm up first: a subscriber that waits on the publisher's open should get frame 0
            # as soon as it connects, not after the model's first (slow) forward passes.
            if self.source.shape:
                self.detector.warm_up(self.source.shape)
            for name, sink, drop in self.sinks:
                workers.append(SinkWorker(sink, name, self.cfg.run.sink_queue_frames, drop).start())
            self.summary.note_model(self.detector)
            t_start = time.perf_counter()  # the rate is of frames, not of opening outputs
            reader.start()
            with self.watchdog:
                yield from self._loop(reader, workers)
        finally:
            reader.stop()
            # The source's frames come from the reader thread; closing it under a read in
            # progress crashes the decoder, so it is closed only once the reader has left.
            if reader.join(READER_JOIN_S):
                self.source.close()
            for w in workers:
                w.close()
            self.summary.wall_s = time.perf_counter() - t_start
            self._collect(reader, workers)
        errors = [w for w in workers if w.error is not None]
        if errors:
            raise UserError(f"{errors[0].name}: {errors[0].error}")

    def _loop(self, reader: FrameReader, workers: list[SinkWorker]) -> Iterator[FrameResult]:
        limit = self.cfg.run.max_frames
        taken = 0
        dog = self.watchdog
        dog.enter("read")
        while not (limit and taken >= limit):
            if self.stop.is_set():
                reader.stop()  # what is already buffered is still processed below
            if self.paused.is_set():
                dog.enter(None)
                while self.paused.is_set() and not self.stop.is_set():
                    time.sleep(POLL_S)
                dog.enter("read")
            frame = reader.get()
            if frame is None:
                if reader.finished:  # the reader sets its error before it finishes
                    if reader.error is not None:
                        raise reader.error
                    break
                continue
            taken += 1
            if frame.frozen:  # the same image again: no new scene for the model or the tracker
                self.summary.frames_frozen += 1
                reader.read_ms.pop(frame.index, None)
                continue
            dog.enter("inference")
            t0 = time.perf_counter()
            prepared = self.detector.prepare(frame)
            t1 = time.perf_counter()
            self._times[frame.index] = ((t0 - frame.read_at) * 1e3, (t1 - t0) * 1e3, t1)
            done = self.detector.push(prepared)
            if not reader.buffered:
                # Nothing to overlap with (a live source, or a reader behind): a pipelined
                # device would otherwise hold this frame's result until the next one arrives.
                done += self.detector.flush()
            for prepared, prob in done:
                yield self._finish(prepared, prob, reader, workers)
            dog.enter("read")
        reader.stop()
        dog.enter("inference")
        for prepared, prob in self.detector.flush():
            yield self._finish(prepared, prob, reader, workers)
        dog.enter(None)

    def _finish(self, prepared: Prepared, prob: np.ndarray, reader: FrameReader,
                workers: list[SinkWorker]) -> FrameResult:
        frame = prepared.frame
        queued_ms, pre_ms, t_submit = self._times.pop(frame.index)
        t0 = time.perf_counter()
        timings = {"read": reader.read_ms.pop(frame.index, float("nan")), "queued": queued_ms, "preprocess": pre_ms,
                   "inference": (t0 - t_submit) * 1e3}
        dets = self.detector.find(prepared, prob)
        t1 = time.perf_counter()
        tracks = self.tracking(dets, prepared.unit, frame.timestamp_s, timings)
        timings["targets"] = (t1 - t0) * 1e3
        # From the start of preprocessing to here: what the frame cost, without the time it
        # waited in the read queue (which in a file run is most of read->output).
        timings["processing"] = pre_ms + (time.perf_counter() - t_submit) * 1e3
        res = FrameResult(frame, prepared.unit, dets, tracks, timings, ignored=self.detector.ignored(prepared),
                          live=self.live)
        self.watchdog.enter("output")
        for w in workers:
            w.put(res)
        self.watchdog.enter("inference")
        self.summary.add(res)
        if self.on_frame:
            self.on_frame(res)
        return res

    def _collect(self, reader: FrameReader, workers: list[SinkWorker]) -> None:
        self.summary.collect(reader, self.source, self.detector.segmenter.runtime, workers, self.stop.is_set())
        self.summary.stalls = self.watchdog.stalls


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
