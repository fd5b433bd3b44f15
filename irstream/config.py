"""Pipelines are data: a TOML file names the source, model, thresholds, tracker and outputs.

Each TOML table fills one config dataclass; keys left out keep the dataclass defaults, and an
unknown table or key is an error that names it.  Command-line flags override the file
(`override`).  Relative paths are taken from the directory the command runs in.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from irstream.errors import UserError
from irstream.detect.osd import OsdConfig
from irstream.detect.preprocess import PreprocessConfig
from irstream.detect.targets import TargetConfig
from irstream.io.sources import SourceConfig
from irstream.model.config import ModelConfig
from irstream.pipeline.config import RunConfig
from irstream.shipped import shipped_pipeline
from irstream.sinks.config import OutputConfig
from irstream.track.motion import MotionConfig
from irstream.track.tracker import TrackerConfig

#: Keys that were counted in frames and are now stated in time: the new key, its value per old
#: unit and its unit, at 25 frames/s (the rate the old defaults were tuned at).
RENAMED = {f"tracker.{old}": (new, 1.0 / 25.0, "s") for old, new in (
    ("confirm_window", "confirm_window_s"), ("static_confirm_frames", "static_confirm_s"),
    ("publish_coast_frames", "publish_coast_s"), ("max_coast_frames", "max_coast_s"),
    ("handover_frames", "handover_s"))} | {f"tracker.{old}": (new, 25.0, "px/s") for old, new in (
    ("max_gate_px", "max_gate_px_s"), ("reacquire_gate_px", "reacquire_gate_px_s"))}


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
