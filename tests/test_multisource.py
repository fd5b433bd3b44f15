"""Several sources in one process: batched inference gives each source what it would get alone,
a slow source never holds the others, and the loop is the one a single source runs in."""

import time

import numpy as np
import pytest

from irstream.config import load_pipeline, override
import threading

from irstream.pipeline.run import Pipeline

A = "synth:sky?seed=11&frames=12&width=160&height=128"
B = "synth:sky?seed=12&frames=9&width=200&height=144"


def config(**more):
    return override(load_pipeline(), **{"model.device": "cpu", "model.runtime": "torch", "run.threads": 1, **more})


def alone(uri):
    return [r for r in Pipeline(override(config(), **{"source.uri": uri}))]


def test_batched_sources_get_what_each_gets_alone():
    together = list(Pipeline(config(), [A, B]))
    for stream, uri in enumerate((A, B)):
        mine = [r for r in together if r.stream == stream]
        ref = alone(uri)
        assert [r.frame.index for r in mine] == [r.frame.index for r in ref]
        for got, want in zip(mine, ref):
            assert len(got.detections) == len(want.detections)
            np.testing.assert_allclose(got.detections.centroid_xy, want.detections.centroid_xy, atol=0.05)
            assert got.tracks.track_id.tolist() == want.tracks.track_id.tolist()


def test_a_slow_live_source_does_not_hold_a_file_source():
    slow = "synth:sky?seed=13&frames=1000&width=160&height=128&fps=0.5&live=1&realtime=1"
    pipe = Pipeline(config(), [A, slow])
    t0, seen = time.monotonic(), {0: 0, 1: 0}
    for res in pipe:
        seen[res.stream] += 1
        if seen[0] == 12:
            break
    # All 12 file frames came through while the live source gave one frame every 2 s: had the
    # rounds waited for it, the file source could not have run ahead of it.
    assert seen[1] <= 1 + (time.monotonic() - t0) / 2 and seen[1] < seen[0]


def test_messages_say_which_stream_they_are(tmp_path):
    cfg = config(**{"output.jsonl": str(tmp_path / "m.jsonl")})
    pipe = Pipeline(cfg, [A, B])
    pipe.run()
    summaries = pipe.summaries
    assert [s.frames_processed for s in summaries] == [12, 9]
    import json

    for k, n in ((0, 12), (1, 9)):
        lines = (tmp_path / f"m-{k}.jsonl").read_text().splitlines()
        assert len(lines) == n and all(json.loads(line)["stream"] == k for line in lines)


def test_a_pipeline_file_with_several_sources(tmp_path):
    toml = tmp_path / "two.toml"
    toml.write_text(f'[[source]]\nuri = "{A}"\n\n[[source]]\nuri = "{B}"\nfps = 10.0\n\n[model]\ndevice = "cpu"\n')
    cfg = load_pipeline(toml)
    assert [s.uri for s in cfg.sources] == [A, B] and cfg.source.uri == A and cfg.sources[1].fps == 10.0
    pipe = Pipeline(cfg)
    pipe.run()
    assert [s.frames_processed for s in pipe.summaries] == [12, 9]


def test_preview_is_refused_for_several_sources():
    from irstream.errors import UserError

    with pytest.raises(UserError, match="preview"):
        Pipeline(config(**{"output.preview": True}), [A, B])


def test_several_sources_run_the_single_source_loop_with_its_pause_and_on_frame():
    seen, paused = [], threading.Event()
    paused.set()
    pipe = Pipeline(config(), [A, B], paused=paused, on_frame=lambda res: seen.append(res.stream))
    release = threading.Timer(0.5, paused.clear)
    release.start()
    t0 = time.monotonic()
    pipe.run()
    assert time.monotonic() - t0 >= 0.5  # nothing ran while paused
    assert sorted(seen) == [0] * 12 + [1] * 9
    assert [s.frames_processed for s in pipe.summaries] == [12, 9] and pipe.summary is pipe.summaries[0]
    assert all(s.to_dict()["frames_processed"] == s.frames_processed for s in pipe.summaries)
