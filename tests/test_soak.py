"""The soak's machinery on a short run over the real clips (the long soak is `irstream bench
soak`, not part of the quick tests): a damaged file loses no frame, a subscriber that stalls
costs nothing, a camera that vanishes is reopened."""

import pytest

from irstream.config import load_pipeline, override
from irstream.tools.soak import SoakConfig, file_phase, live_phase

from conftest import SHARED_DATA

CLIPS = sorted((SHARED_DATA / "antiuav-clips").glob("*.mp4"))
needs_clips = pytest.mark.skipif(not CLIPS, reason="../shared/data/antiuav-clips is not present")
CFG = SoakConfig(frames=60, live_frames=25, scale=0.25, corrupt_spots=4, pause_every_s=1.0, pause_s=0.5,
                 outage_every=20, outage_s=1.5, freeze_every=9, freeze_frames=2)


@pytest.mark.slow
@needs_clips
def test_damaged_file_with_a_stalling_subscriber_loses_nothing(tmp_path):
    r = file_phase(override(load_pipeline(), **{"model.device": "cpu"}), CLIPS[:1], CFG, tmp_path)
    assert r["frames_in_file"] == 60 and r["frames_corrupt"] >= 1
    assert r["frames_read"] + r["frames_corrupt"] == 60 and r["lost"] == 0
    assert r["frames_processed"] == r["frames_read"] == r["messages_published"]
    assert r["peak_mib"] > 0 and r["samples"] > 0


@needs_clips
def test_a_vanishing_freezing_camera_is_reopened_and_the_run_goes_on():
    r = live_phase(override(load_pipeline(), **{"model.device": "cpu"}), CLIPS[:1], CFG)
    assert r["outages"] >= 1 and r["reconnects"] >= 1
    assert r["frames_processed"] + r["frozen"] >= 25
