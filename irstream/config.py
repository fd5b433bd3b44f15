"""Pipelines are data: a TOML file names the source, model, thresholds, tracker and outputs.

Each TOML table fills one config dataclass; keys left out keep the dataclass defaults, and an
unknown table or key is an error that names it.  Command-line flags override the file
(`override`).  Relative paths are taken from the directory the command runs in.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from irstream.errors import UserError
from irstream.shipped import shipped_pipeline, shipped_weights
from irstream.track.motion import MotionConfig
from irstream.track.osd import OsdConfig
from irstream.model.preprocess import PreprocessConfig
from irstream.io.sources import CameraConfig, ReconnectConfig
from irstream.track.targets import TargetConfig
from irstream.track.tracker import TrackerConfig

def usable_cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cache_root() -> Path:
    """Where irstream keeps what it can make again (converted models, runtime choices):
    $IRSTREAM_CACHE, else irstream/ in the user's cache folder ($XDG_CACHE_HOME or ~/.cache)."""
    if os.environ.get("IRSTREAM_CACHE"):
        return Path(os.environ["IRSTREAM_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "irstream"


#: Keys that were counted in frames and are now stated in time: the new key, its value per old
#: unit and its unit, at 25 frames/s (the rate the old defaults were tuned at).
RENAMED = {f"tracker.{old}": (new, 1.0 / 25.0, "s") for old, new in (
    ("confirm_window", "confirm_window_s"), ("static_confirm_frames", "static_confirm_s"),
    ("publish_coast_frames", "publish_coast_s"), ("max_coast_frames", "max_coast_s"),
    ("handover_frames", "handover_s"))} | {f"tracker.{old}": (new, 25.0, "px/s") for old, new in (
    ("max_gate_px", "max_gate_px_s"), ("reacquire_gate_px", "reacquire_gate_px_s"))}

#: How the model can run ([model] runtime).
RUNTIMES = ("auto", "torch", "openvino", "onnxruntime", "triton")
#: Bounds that keep a typo from becoming a hang or an allocation failure: ZeroMQ takes the
#: high-water mark as a C int, and a run that waits a day for a subscriber is a mistake.
MAX_HWM_MSGS = 1_000_000
MAX_WAIT_SUBSCRIBER_S = 3600.0


@dataclass(frozen=True)
class SourceConfig:
    """uri: video file, image folder or glob, camera index or /dev/video path, stream URL or
        GStreamer pipeline; the `irstream run SOURCE` argument replaces it.
    mode: "auto" (files are file runs, cameras and URLs live), "file" (never drop a frame;
        inference sets the pace) or "live" (the newest frame wins; latency stays bounded and
        every skipped frame is counted).
    fps: frame rate of image sequences, and of sources that report none, frames/s.
    camera: [source.camera], how a camera is set up (irstream.io.sources.CameraConfig).
    reconnect: [source.reconnect], how a lost camera or stream is reopened, with backoff
        (irstream.io.sources.ReconnectConfig).
    """

    uri: str = ""
    mode: str = "auto"
    fps: float = 25.0
    camera: CameraConfig = field(default_factory=CameraConfig)
    reconnect: ReconnectConfig = field(default_factory=ReconnectConfig)

    def __post_init__(self) -> None:
        if self.mode not in ("auto", "file", "live"):
            raise ValueError(f"mode={self.mode!r}: must be 'auto', 'file' or 'live'")
        if not self.fps > 0:
            raise ValueError(f"fps={self.fps}: must be > 0")


@dataclass(frozen=True)
class ModelConfig:
    """weights: a .safetensors file written by irstream; "" = the shipped default weights; a bare
        name picks other shipped weights (e.g. "lrrnet_light_sirst").
    device: "auto" (CUDA when torch sees one), "cpu" or "cuda".
    upscale: the model sees the frame enlarged by this whole factor (bicubic) and its map is
        max-pooled back.  2 finds 1 to 3 px targets the model misses at 1, at 4x the compute
        and with more clutter; 1 for targets of about 4 px and more.
    tile_px, tile_overlap_px: run frames larger than tile_px px in tiles of that side sharing
        tile_overlap_px px (irstream.model.segment.tiled); unset = what the weights' card says they
        were validated with ("inference"), 0 = whole frames.
    runtime: "auto", "torch", "openvino" (CPU, needs the openvino extra), "onnxruntime" (CPU,
        needs the onnx extra) or "triton" (a Triton server, needs the triton extra; see
        irstream.model.triton).  auto: on CPU the fastest of torch, OpenVINO (bf16 where the
        CPU has it, fp32) and ONNX Runtime whose masks agree with eager fp32, timed on the
        first frame's size; on CUDA fp32 replayed as CUDA graphs (see
        irstream.model.segment.CUDA_AUTO); "torch" is eager fp32 everywhere.
    coarse: also run the model on the frame shrunk this many times (2 or 4; 0 = off) and lay
        its large targets (irstream.model.segment.COARSE_MIN_AREA_PX and up) over the full map:
        a close drone of 40-130 px is a 10-30 px target there, the size the model learnt,
        at 1/4 or 1/16 of the pixels' cost.
    triton_url, triton_model, triton_version: the server (gRPC host:port), the model's name
        there and its version ("" = latest), for runtime "triton".  The weights are still
        read here, for their card (input scale, tiles, threshold): give the ones it serves.
    """

    weights: str = ""
    device: str = "auto"
    upscale: int = 1
    coarse: int = 4
    runtime: str = "auto"
    tile_px: int | None = None
    tile_overlap_px: int | None = None
    triton_url: str = "127.0.0.1:8001"
    triton_model: str = "irstream"
    triton_version: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.upscale, int) or isinstance(self.upscale, bool) or self.upscale < 1:
            raise ValueError(f"upscale={self.upscale!r}: must be a whole number >= 1")
        if self.device not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:\d+", self.device):
            raise ValueError(f"device={self.device!r}: must be 'auto', 'cpu', 'cuda' or 'cuda:N'")
        if self.coarse not in (0, 2, 4):
            raise ValueError(f"coarse={self.coarse!r}: must be 0 (off), 2 or 4")
        for name in ("tile_px", "tile_overlap_px"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 0):
                raise ValueError(f"{name}={v!r}: must be a whole number >= 0")
        if self.tile_px and self.tile_overlap_px is not None and self.tile_overlap_px >= self.tile_px:
            raise ValueError(f"tile_overlap_px={self.tile_overlap_px} must be smaller than tile_px={self.tile_px}")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime={self.runtime!r}: must be one of {', '.join(RUNTIMES)}")

    @property
    def weights_path(self) -> Path:
        """"" = the default shipped weights; a bare name (no folder, no suffix) = those shipped
        weights by name, e.g. "lrrnet_light_sirst"; anything else is a path."""
        if not self.weights:
            return shipped_weights()
        p = Path(self.weights)
        if not p.suffix and p.name == self.weights:
            return shipped_weights(self.weights)
        return p

    def tiles(self, card: dict) -> tuple[int, int]:
        """(tile_px, overlap_px) to run with: these settings where given, else the card's."""
        from irstream.model.weights import inference_tiles

        card_tile, card_overlap = inference_tiles(card)
        tile = card_tile if self.tile_px is None else self.tile_px
        overlap = card_overlap if self.tile_overlap_px is None else self.tile_overlap_px
        return tile, overlap


@dataclass(frozen=True)
class OutputConfig:
    """Where results go; an empty string turns an output off.

    publish: ZeroMQ endpoint to bind, e.g. "tcp://127.0.0.1:5556" (loopback: only this machine).
    topic: first frame of every ZeroMQ message.
    hwm_msgs: messages ZeroMQ queues per subscriber before dropping for it.
    wait_subscriber_s: wait this long for a first subscriber before starting, s.
    curve_dir: a folder from `irstream keys`: publish encrypted (CurveZMQ), to authorised
        subscribers only; "" = plain, which is what loopback alone is safe for.
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


@dataclass(frozen=True)
class PipelineConfig:
    source: SourceConfig = field(default_factory=SourceConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    targets: TargetConfig = field(default_factory=TargetConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    osd: OsdConfig = field(default_factory=OsdConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    run: RunConfig = field(default_factory=RunConfig)
    # [[source]] tables, for a run over several sources; `source` is then the first of them.
    sources: tuple[SourceConfig, ...] = ()


def load_pipeline(path: str | Path | None = None) -> PipelineConfig:
    """Read a pipeline TOML: a path, the name of a shipped pipeline ("noisy"), or the
    shipped default when None."""
    path = pipeline_path(path)
    if not path.is_file():
        raise UserError(f"pipeline {path}: no such file; give a TOML path or a shipped name "
                        f"({', '.join(shipped_pipeline_names())})")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None
    return from_dict(data, str(path))


def pipeline_path(path: str | Path | None) -> Path:
    if path is None:
        return shipped_pipeline()
    p = Path(path)
    return shipped_pipeline(str(path)) if not p.suffix and p.name == str(path) else p


def shipped_pipeline_names() -> list[str]:
    return sorted(p.stem for p in shipped_pipeline().parent.glob("*.toml"))


def from_dict(data: dict, where: str = "pipeline") -> PipelineConfig:
    try:
        many = data.get("source")
        if isinstance(many, list):  # [[source]]: several sources in one run
            sources = tuple(_build(SourceConfig, d, f"source {i + 1}") for i, d in enumerate(many))
            if not sources:
                raise ValueError("[[source]] lists no source")
            rest = {k: v for k, v in data.items() if k != "source"}
            return dataclasses.replace(_build(PipelineConfig, rest, ""), source=sources[0], sources=sources)
        return _build(PipelineConfig, data, "")
    except (TypeError, ValueError) as exc:
        raise UserError(f"{where}: {exc}") from None


def override(cfg: PipelineConfig, flags: dict[str, str] | None = None, **dotted) -> PipelineConfig:
    """Replace values by dotted name, e.g. override(cfg, **{"model.device": "cpu"}); None keeps.
    flags: the command-line flag each dotted name came from, for error messages (a value
    without one is named by its config key)."""
    for key, value in dotted.items():
        if value is None:
            continue
        section, name = key.split(".", 1)
        try:
            part = dataclasses.replace(getattr(cfg, section), **{name: value})
        except (TypeError, ValueError) as exc:
            where = (flags or {}).get(key, f"[{section}] {name} =")
            raise UserError(f"{where} {value}: {exc}") from None
        cfg = dataclasses.replace(cfg, **{section: part})
    return cfg


def _build(cls, data: dict, prefix: str):
    if not isinstance(data, dict):
        raise ValueError(f"[{prefix}] must be a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"[{prefix}]" if prefix else "top level"
        if f"{prefix}.{unknown[0]}" in RENAMED:
            new, scale, unit = RENAMED[f"{prefix}.{unknown[0]}"]
            raise ValueError(f"{unknown[0]!r} in {where} is now {new!r}, in {unit}, so that a run that sees fewer "
                             f"frames/s tracks alike ({unknown[0]} = {data[unknown[0]]!r} was {new} = "
                             f"{data[unknown[0]] * scale:g} at 25 frames/s)")
        raise ValueError(f"unknown key {unknown[0]!r} in {where}; known: {', '.join(sorted(names))}")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        name = f"{prefix}.{key}" if prefix else key
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value, name)
        else:
            kwargs[key] = _coerce(value, hint, name)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"[{prefix}] {exc}" if prefix else str(exc)) from None


def _coerce(value, hint, name: str):
    """TOML gives lists where the dataclasses hold tuples, and ints where they hold floats."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, list):
            raise ValueError(f"{name} must be a list, got {value!r}")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{name}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ValueError(f"{name} = {value!r}: expected {len(args)} values")
        return tuple(_coerce(v, a, f"{name}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin in (typing.Union, types.UnionType):  # "float | None": TOML has no None, so the value is the float
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    simple = hint if isinstance(hint, type) else None
    if simple in (int, float, str, bool) and not isinstance(value, simple) or (simple is int and isinstance(value, bool)):
        raise ValueError(f"{name} = {value!r}: expected {simple.__name__}")
    return value
