"""What this machine offers a run: the CPU cores it may use, whether other work is on them, and a
cache folder."""

from __future__ import annotations

import os
from pathlib import Path


def usable_cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


#: The machine counts as quiet while its 1-minute load average is below this share of its cores.
QUIET_LOAD_SHARE = 0.5


def machine_quiet() -> bool:
    """Nothing much else runs here (load average; True where the OS does not say)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return True
    return load < QUIET_LOAD_SHARE * usable_cores()


def cache_root() -> Path:
    """Where irstream keeps what it can make again (converted models, runtime choices):
    $IRSTREAM_CACHE, else irstream/ in the user's cache folder ($XDG_CACHE_HOME or ~/.cache)."""
    if os.environ.get("IRSTREAM_CACHE"):
        return Path(os.environ["IRSTREAM_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "irstream"
