"""Datasets for training and evaluation: SIRST-style splits, the real-data mix, labels.

Where the data lives is the user's business: commands take a folder, and their default is
`default_data_root()`.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable naming the folder that holds sirst-v1, nudt-sirst, daub, ... .
DATA_ENV = "IRSTREAM_DATA"
#: Without it: this folder, relative to the working directory (a checkout beside `shared/`).
DEV_DATA_ROOT = Path("..") / "shared" / "data"


def default_data_root() -> Path:
    """$IRSTREAM_DATA, else ../shared/data from the working directory."""
    return Path(os.environ.get(DATA_ENV) or DEV_DATA_ROOT)
