from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
SIRST = SHARED_DATA / "sirst-v1"
NUDT = SHARED_DATA / "nudt-sirst"

needs_sirst = pytest.mark.skipif(not SIRST.is_dir(), reason="../shared/data/sirst-v1 is not present")
