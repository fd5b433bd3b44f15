"""irstream: find and track small targets in infrared video.

The public API, enough to track a video in a few lines:

    import irstream

    pipeline = irstream.Pipeline.from_toml(source="sample_videos/sky_drones.mkv")
    for result in pipeline:
        for track in result.tracks.published().to_records():
            print(result.frame.index, track["id"], track["x"], track["y"])

Or stage by stage: `irstream.open_source(...)` gives Frames, `irstream.Detector()` turns a frame
into Detections, `irstream.Tracker()` links them into Tracks.  Names are imported on first use,
so `import irstream` stays cheap (torch loads with the detector).
"""

from __future__ import annotations

import importlib

#: Public name -> the module that defines it.
_EXPORTS = {
    "Pipeline": "irstream.pipeline.run",
    "RunSummary": "irstream.pipeline.run",
    "Detector": "irstream.detect.detector",
    "Detected": "irstream.detect.detector",
    "load_model": "irstream.detect.detector",
    "Tracker": "irstream.track.tracker",
    "TrackerConfig": "irstream.track.tracker",
    "open_source": "irstream.io.sources",
    "load_pipeline": "irstream.config",
    "override": "irstream.config",
    "PipelineConfig": "irstream.config",
    "ModelConfig": "irstream.model.config",
    "PreprocessConfig": "irstream.detect.preprocess",
    "TargetConfig": "irstream.detect.targets",
    "Frame": "irstream.types",
    "Prepared": "irstream.types",
    "Detections": "irstream.types",
    "Tracks": "irstream.types",
    "FrameResult": "irstream.types",
    "UserError": "irstream.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'irstream' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
