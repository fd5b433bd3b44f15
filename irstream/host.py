"""What this machine offers a run: the CPU cores it may use and a cache folder."""

from __future__ import annotations

import os
from pathlib import Path


def usable_cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cache_root() -> Path:
    """Where irstream keeps what it can make again (converted models, runtime choices):
    $IRSTREAM_CACHE, else irstream/ in the user's cache folder ($XDG_CACHE_HOME or ~/.cache)."""
    if os.environ.get("IRSTREAM_CACHE"):
        return Path(os.environ["IRSTREAM_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "irstream"
