"""`irstream bench soak`: the pipeline driven for a long time through injected faults.

Two phases over real clips:

- file: the clips, resized and looped to `frames`, written to one lossless FFV1 file whose bytes
  are then damaged in `corrupt_spots` places.  The run publishes to a subscriber that stops
  reading for `pause_s` every `pause_every_s`.  Nothing may be lost: every frame of the file is
  either processed or counted corrupt, and every processed frame is published.
- live: the same clips as a camera (FlakyCapture) that freezes for a few frames now and then
  and vanishes for `outage_s` every `outage_every` frames; the run must live through every loss.

Resident memory is sampled throughout; the soak passes when it has stopped growing after the
warm-up (MemorySampler.report, GROWTH_LIMIT_MIB) and the file phase lost nothing.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

#: Resident-memory growth tolerated between the early and the late part of a phase, MiB: the
#: allocator's and the caches' noise, well below what a leak of one frame a frame would give.
GROWTH_LIMIT_MIB = 20.0
#: Bytes flipped at each damaged spot of the soak file: enough to destroy a frame or two.
DAMAGE_BYTES = 2000
#: Seconds between memory samples.
SAMPLE_S = 0.5
#: The flaky camera's frame period, s (25 frames/s).
CAMERA_PERIOD_S = 0.04


@dataclass(frozen=True)
class SoakConfig:
    frames: int = 10_000          # file phase, frames in the file
    live_frames: int = 2_000      # live phase, frames read from the flaky camera
    scale: float = 0.5            # clips are resized by this (640x512 -> 320x256)
    corrupt_spots: int = 20       # places where the file's bytes are damaged
    pause_every_s: float = 20.0   # the subscriber stops reading this often ...
    pause_s: float = 3.0          # ... for this long
    outage_every: int = 500       # live: frames between losses of the camera
    outage_s: float = 2.0         # live: how long it stays gone
    freeze_every: int = 300       # live: frames between freezes ...
    freeze_frames: int = 4        # ... of this many repeated frames
    warmup_share: float = 0.2     # memory: the first share of a phase is warm-up

    def __post_init__(self) -> None:
        if self.frames < 2 or self.live_frames < 1 or self.outage_every < 2 or self.freeze_every < 2:
            raise ValueError("frames >= 2, live_frames >= 1, outage_every and freeze_every >= 2")
        if not 0 < self.scale <= 4 or self.outage_s < 0 or self.pause_s < 0 or self.pause_every_s <= 0:
            raise ValueError("0 < scale <= 4, outage_s and pause_s >= 0, pause_every_s > 0")


def rss_mib() -> float:
    """Resident memory of this process, MiB (Linux /proc; elsewhere the peak so far)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss_mib() -> float | None:
    """The most resident memory this process has held, MiB (None where the OS does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


class MemorySampler:
    """Samples (frames done, RSS MiB) from a thread."""

    def __init__(self) -> None:
        self.samples: list[tuple[int, float]] = []
        self.frames = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss")

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.samples.append((self.frames, rss_mib()))

    def report(self, warmup_share: float) -> dict:
        """Peak, and growth: the median of the last fifth against the median just after warm-up."""
        rss = np.array([r for _, r in self.samples]) if self.samples else np.array([rss_mib()])
        n = len(rss)
        start = int(n * warmup_share)
        early = rss[start:max(start + 1, start + n // 5)]
        late = rss[-max(1, n // 5):]
        growth = float(np.median(late) - np.median(early))
        return {"peak_mib": float(rss.max()), "after_warmup_mib": float(np.median(early)),
                "end_mib": float(np.median(late)), "growth_mib": growth, "samples": n,
                "memory_ok": growth < GROWTH_LIMIT_MIB}


# ---------------------------------------------------------------------------------------------
# Inputs


def clip_frames(clips: list[Path], scale: float):
    """Gray frames of the clips, read as any run reads them (irstream.io.sources), resized, looped
    for ever."""
    from irstream.io.sources import open_source

    while True:
        for clip in clips:
            with open_source(str(clip)) as src:
                for frame in src:
                    yield cv2.resize(frame.image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def write_soak_file(clips: list[Path], dest: Path, frames: int, scale: float, spots: int, seed: int = 0,
                    on_frame=None) -> int:
    """`frames` frames of the clips as a lossless FFV1 .avi, then damaged in `spots` places
    (bytes flipped) away from the header.  Returns the number of frames written."""
    it = clip_frames(clips, scale)
    first = next(it)
    h, w = first.shape
    writer = cv2.VideoWriter(str(dest), cv2.VideoWriter_fourcc(*"FFV1"), 25.0, (w, h), isColor=False)
    if not writer.isOpened():
        raise RuntimeError(f"{dest}: OpenCV cannot write FFV1 here")
    try:
        writer.write(first)
        for i in range(frames - 1):
            writer.write(next(it))
            if on_frame:
                on_frame()
    finally:
        writer.release()
    data = bytearray(dest.read_bytes())
    rng = np.random.default_rng(seed)
    for at in rng.integers(len(data) // 20, len(data) - DAMAGE_BYTES, spots):
        data[at:at + DAMAGE_BYTES] = bytes(b ^ 0xAA for b in data[at:at + DAMAGE_BYTES])
    dest.write_bytes(bytes(data))
    return frames


class FlakyCapture:
    """Stands in for cv2.VideoCapture on a camera: real frames from the clips, with freezes
    (the last frame again) and outages (reads fail until the outage is over; `reopen` gives a
    new capture only once it is)."""

    def __init__(self, frames, cfg: SoakConfig, state: dict) -> None:
        self._frames, self._cfg, self._state = frames, cfg, state
        self._last = None

    def read(self):
        s, c = self._state, self._cfg
        # Paced like a camera at 25 frames/s, not as fast as the clips decode.
        wait = s["next_at"] - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        s["next_at"] = max(s["next_at"], time.monotonic() - CAMERA_PERIOD_S) + CAMERA_PERIOD_S
        if s["gone_until"] > time.monotonic() or s["current"] is not self:
            return False, None
        s["n"] += 1
        if s["n"] % c.outage_every == 0:
            s["gone_until"] = time.monotonic() + c.outage_s
            s["outages"] += 1
            return False, None
        if self._last is not None and s["n"] % c.freeze_every < c.freeze_frames:
            return True, self._last
        self._last = next(self._frames)
        return True, self._last

    def get(self, prop):
        shape = self._state["shape"]
        return {cv2.CAP_PROP_FRAME_WIDTH: shape[1], cv2.CAP_PROP_FRAME_HEIGHT: shape[0],
                cv2.CAP_PROP_FPS: 25.0}.get(prop, 0.0)

    def release(self) -> None:
        pass


def flaky_camera(clips: list[Path], cfg: SoakConfig):
    """A CaptureSource over a FlakyCapture, with its reopen function; and the fault counters."""
    from irstream.errors import UserError
    from irstream.io.live import CaptureSource, ReconnectConfig

    frames = clip_frames(clips, cfg.scale)
    first = next(frames)
    state = {"n": 0, "gone_until": 0.0, "outages": 0, "shape": first.shape, "next_at": 0.0}

    def reopen():
        if state["gone_until"] > time.monotonic():
            raise UserError("soak camera: still gone")
        state["current"] = FlakyCapture(frames, cfg, state)
        return state["current"]

    state["current"] = FlakyCapture(frames, cfg, state)
    policy = ReconnectConfig(initial_s=0.25, max_s=1.0)
    return CaptureSource("soak camera", state["current"], 25.0, "the camera", reopen=reopen, reconnect=policy), state


# ---------------------------------------------------------------------------------------------
# Phases


@dataclass
class SoakReport:
    phases: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(p["passed"] for p in self.phases.values())


def file_phase(pipe_cfg, clips: list[Path], cfg: SoakConfig, workdir: Path, on_frame=None) -> dict:
    from irstream.tools.loopback import Subscriber, free_port
    from irstream.config import override
    from irstream.pipeline.run import Pipeline

    path = workdir / "soak.avi"
    written = write_soak_file(clips, path, cfg.frames, cfg.scale, cfg.corrupt_spots)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    c = override(pipe_cfg, **{"source.uri": str(path), "source.mode": "file", "output.publish": endpoint,
                              "output.wait_subscriber_s": 5.0})
    with MemorySampler() as mem, Subscriber(endpoint, c.output.topic, cfg.pause_every_s, cfg.pause_s) as sub:
        def counted(res):
            mem.frames += 1
            if on_frame:
                on_frame(res)

        s = Pipeline(c, on_frame=counted).run()
    d = s.to_dict()
    published = d["outputs"]["publish"]["sent"]
    accounted = s.frames_read + s.frames_corrupt
    r = {"frames_in_file": written, **{k: d[k] for k in ("frames_read", "frames_corrupt", "frames_processed")},
         "messages_published": published, "messages_received": sub.received, "subscriber_pauses": sub.pauses,
         "dropped": d["frames_dropped"], **{k: d[k] for k in ("stalls", "fps", "wall_s")}, **mem.report(cfg.warmup_share)}
    r["lost"] = written - accounted + (s.frames_read - s.frames_processed) + (s.frames_processed - published)
    r["passed"] = r["lost"] == 0 and r["memory_ok"]
    return r


def live_phase(pipe_cfg, clips: list[Path], cfg: SoakConfig, on_frame=None) -> dict:
    from irstream.config import override
    from irstream.pipeline.run import Pipeline

    source, state = flaky_camera(clips, cfg)
    c = override(pipe_cfg, **{"source.uri": "soak camera", "source.mode": "live", "run.max_frames": cfg.live_frames})
    with MemorySampler() as mem:
        def counted(res):
            mem.frames += 1
            if on_frame:
                on_frame(res)

        s = Pipeline(c, on_frame=counted, source=source).run()
    d = s.to_dict()
    r = {**{k: d[k] for k in ("frames_read", "frames_processed")}, "dropped": d["frames_dropped"],
         "frozen": d["frames_frozen"], "outages": state["outages"],
         **{k: d[k] for k in ("reconnects", "stalls", "fps", "wall_s")}, **mem.report(cfg.warmup_share)}
    # The run survived every outage (short ones end within the quick retries, longer ones by
    # reopening the camera) and took all its frames.
    r["passed"] = r["memory_ok"] and s.frames_processed + s.frames_frozen >= cfg.live_frames
    return r


# ---------------------------------------------------------------------------------------------
# Against a real RTSP server, through a faulty link


#: The faults of an RTSP soak, in turn, one every fault_every_s.
RTSP_FAULTS = ("loss", "delay", "reset", "stall", "restart")
#: A fault after which no message comes within this long of the link coming back is a lost
#: reconnect, s (the soak fails).  The goal, BACK_GOAL_S, is reported per fault.
RECOVER_LIMIT_S = 30.0
BACK_GOAL_S = 2.0
#: Seconds a stopping soak run may take to drain and close.
RUN_JOIN_S = 60.0


@dataclass(frozen=True)
class RtspSoakConfig:
    duration_s: float = 600.0     # how long the soak runs, s ...
    frames: int = 0               # ... or until this many frames are processed (0: by duration)
    fault_every_s: float = 60.0   # a fault this often, the kinds of RTSP_FAULTS in turn
    fault_s: float = 20.0         # loss and delay last this long, s (at most half of fault_every_s)
    loss: float = 0.05            # share of the stream's RTP packets dropped
    delay_s: float = 0.2          # delay and jitter of every packet, s
    jitter_s: float = 0.05
    stall_s: float = 10.0         # the stream stops this long, connections open
    restart_down_s: float = 3.0   # the server is down this long
    reconnect_initial_s: float = 0.1  # the run's reconnect backoff, s
    reconnect_max_s: float = 0.5
    warmup_share: float = 0.2

    def __post_init__(self) -> None:
        if not (self.duration_s > 0 and self.fault_every_s > max(self.stall_s, self.restart_down_s)):
            raise ValueError(f"duration_s > 0, and fault_every_s longer than a stall ({self.stall_s:g} s) or a restart")
        if not 0 <= self.loss < 1 or self.frames < 0:
            raise ValueError("0 <= loss < 1, frames >= 0")


def rtsp_phase(pipe_cfg, clip: Path, cfg: RtspSoakConfig, workdir: Path, on_frame=None) -> dict:
    """The pipeline, live, on a real RTSP server behind a faulty link (FaultProxy), publishing to
    a subscriber, with a fault every fault_every_s.  Writes rss.csv and rss.png to workdir."""
    from irstream.config import override
    from irstream.io.live import ReconnectConfig
    from irstream.pipeline.run import Pipeline
    from irstream.tools.faultproxy import FaultProxy
    from irstream.tools.loopback import Subscriber, free_port
    from irstream.tools.rtsp import RtspServer

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    stop = threading.Event()
    with RtspServer(clip, free_port()) as server, MemorySampler() as mem:
        proxy = FaultProxy(("127.0.0.1", server.port))
        backoff = ReconnectConfig(cfg.reconnect_initial_s, cfg.reconnect_max_s)
        c = override(pipe_cfg, **{"source.uri": f"rtsp://127.0.0.1:{proxy.port}{server.path}", "source.mode": "live",
                                   "source.reconnect": backoff, "output.publish": endpoint})

        def counted(res):
            mem.frames += 1
            if on_frame:
                on_frame(res)
            if cfg.frames and mem.frames >= cfg.frames:
                stop.set()

        pipe = Pipeline(c, on_frame=counted, stop=stop)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                pipe.run()
            except BaseException as exc:  # the soak's verdict, not a thread's silent death
                errors.append(exc)

        faults: list[dict] = []
        runner = threading.Thread(target=run, name="soak run", daemon=True)
        try:
            with Subscriber(endpoint, c.output.topic, gap_s=1.0) as sub:
                runner.start()
                try:
                    faults = _fault_schedule(server, proxy, cfg, stop, runner)
                finally:  # stopped before the subscriber drains: it waits for the messages to end
                    stop.set()
                    runner.join(RUN_JOIN_S)
        finally:
            stop.set()
            if runner.is_alive():
                runner.join(RUN_JOIN_S)
            proxy.close()
    crashed = runner.is_alive() or bool(errors) or pipe.summary.frames_processed == 0
    d = pipe.summary.to_dict()
    for f, after in zip(faults, faults[1:] + [{"began": float("inf")}]):
        f["back_after_s"] = _resumed_after(sub, f["began"], f["back_at"], after["began"])
    for f in faults:
        del f["began"], f["back_at"]
    _write_memory(mem, workdir)
    r = {"frames_read": d["frames_read"], "frames_processed": d["frames_processed"], "dropped": d["frames_dropped"],
         "corrupt": d["frames_corrupt"], "frozen": d["frames_frozen"], "messages_received": sub.received,
         "faults": len(faults), "outages": d["outages"], "reconnects": d["reconnects"],
         "longest_outage_s": max(d["outages_s"], default=0.0),
         "back_within_goal": sum(f["back_after_s"] <= BACK_GOAL_S for f in faults),
         "worst_back_after_s": max((f["back_after_s"] for f in faults), default=0.0),
         "latency_p50_ms": d["latency"]["p50_ms"], "latency_p99_ms": d["latency"]["p99_ms"], "fps": d["fps"],
         "wall_s": d["wall_s"], "crashed": crashed, "error": str(errors[0]) if errors else "",
         **mem.report(cfg.warmup_share), "fault_log": faults}
    r["passed"] = r["memory_ok"] and not crashed and r["worst_back_after_s"] <= RECOVER_LIMIT_S
    return r


def _fault_schedule(server, proxy, cfg: RtspSoakConfig, stop: threading.Event, runner: threading.Thread) -> list[dict]:
    """Inject the faults in turn until the duration is over (or the run stopped); each one's
    kind, when it began (s into the soak) and when the link came back (monotonic)."""
    t0, log_ = time.monotonic(), []
    k = 0
    # Each fault is followed by a whole fault-free interval before the next (or the end).
    while (time.monotonic() - t0 + 2 * cfg.fault_every_s <= cfg.duration_s and not stop.wait(cfg.fault_every_s)
           and runner.is_alive()):
        kind = RTSP_FAULTS[k % len(RTSP_FAULTS)]
        k += 1
        began = time.monotonic()
        if kind == "loss":
            proxy.set(loss=cfg.loss)
            stop.wait(min(cfg.fault_s, cfg.fault_every_s / 2))
            proxy.set(loss=0.0)
        elif kind == "delay":
            proxy.set(delay_s=cfg.delay_s, jitter_s=cfg.jitter_s)
            stop.wait(min(cfg.fault_s, cfg.fault_every_s / 2))
            proxy.set(delay_s=0.0, jitter_s=0.0)
        elif kind == "reset":
            proxy.reset()
        elif kind == "stall":
            proxy.stall(cfg.stall_s)
            stop.wait(cfg.stall_s)
        else:
            server.restart(cfg.restart_down_s)
        log_.append({"fault": kind, "at_s": round(began - t0, 1), "began": began, "back_at": time.monotonic()})
    # The rest of the duration, fault-free, so the last fault's recovery is seen.
    stop.wait(max(0.0, cfg.duration_s - (time.monotonic() - t0)))
    return log_


#: A silence that began this close before a fault began is the fault's (the last message before it), s.
FAULT_EDGE_S = 0.5


def _resumed_after(sub, began: float, back_at: float, until: float) -> float:
    """Seconds from the link coming back to the end of the last silence the fault caused: of
    the silences (Subscriber.gaps) that began with or after the fault and before `until` (the
    next fault), the latest end after the link came back; 0 where none ended after it
    (messages kept coming), inf where no message came after it at all."""
    ends = [end for end, gap in sub.gaps if began - FAULT_EDGE_S <= end - gap < until - FAULT_EDGE_S and end > back_at]
    if ends:
        return max(ends) - back_at
    return 0.0 if sub.last_at is not None and sub.last_at >= back_at else float("inf")


def _write_memory(mem: MemorySampler, workdir: Path) -> None:
    """rss.csv (seconds, frames, RSS MiB) and rss.png of the run's resident memory."""
    import csv

    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    workdir.mkdir(parents=True, exist_ok=True)
    with (workdir / "rss.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["seconds", "frames", "rss_mib"])
        w.writerows((round(k * SAMPLE_S, 1), n, round(r, 2)) for k, (n, r) in enumerate(mem.samples))
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.plot([k * SAMPLE_S / 60 for k in range(len(mem.samples))], [r for _, r in mem.samples])
    ax.set_xlabel("minutes")
    ax.set_ylabel("resident memory, MiB")
    ax.set_title("irstream on an RTSP stream with faults")
    fig.tight_layout()
    fig.savefig(workdir / "rss.png", dpi=100)
    plt.close(fig)
