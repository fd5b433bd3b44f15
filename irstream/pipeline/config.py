"""[run]: how the run loop paces, queues and watches its stages."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunConfig:
    """read_queue_frames: frames decoded ahead of inference in file runs (live runs keep 1).
    sink_queue_frames: results queued per output before it blocks (file) or drops (live).
    max_frames: stop after this many frames; 0 = until the source ends.
    watchdog_s: a stage (waiting for a frame, the model, an output's full queue) that holds a
        frame longer than this is reported (logged, and counted in the summary), s; 0 = off.
    threads: CPU threads the model may use; 0 = the measured default: OpenVINO every usable core
        (its workers sleep when idle), torch all but one (see
        irstream.model.segment.default_threads: its spinning threads would starve decoding,
        tracking and the outputs).
    """

    read_queue_frames: int = 8
    sink_queue_frames: int = 64
    max_frames: int = 0
    watchdog_s: float = 10.0
    threads: int = 0

    def __post_init__(self) -> None:
        for name in ("read_queue_frames", "sink_queue_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 1")
        if self.max_frames < 0:
            raise ValueError(f"max_frames={self.max_frames}: must be >= 0")
        if not self.watchdog_s >= 0:
            raise ValueError(f"watchdog_s={self.watchdog_s}: must be >= 0 (0 = off)")
        if self.threads < 0:
            raise ValueError(f"threads={self.threads}: must be >= 0 (0 = the default for the runtime)")
