"""What ships inside the package: the default weights with their cards, and the pipeline
files users copy and edit.  Found through importlib.resources, so a wheel or a non-editable
install works from any directory; the repository's top-level `weights/` and `pipelines/` are
links to these folders.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

#: The weights a pipeline uses when it names none.
DEFAULT_WEIGHTS = "lrrnet_light_real2"
#: The pipeline `irstream run` uses when given none.
DEFAULT_PIPELINE = "default"


def _folder(name: str) -> Path:
    return Path(str(files(__package__) / name))


def weights_dir() -> Path:
    return _folder("weights")


def pipelines_dir() -> Path:
    return _folder("pipelines")


def shipped_weights(name: str = DEFAULT_WEIGHTS) -> Path:
    """The shipped .safetensors file of that name (it may not exist: callers report that)."""
    return weights_dir() / f"{name}.safetensors"


def shipped_pipeline(name: str = DEFAULT_PIPELINE) -> Path:
    return pipelines_dir() / f"{name}.toml"
