"""`irstream bench`: the benchmarks run, time what they say, and report it as JSON."""

import json
import subprocess
import sys

import numpy as np
import pytest

from irstream.tools.bench import TrackerScene, bench_tracker, latency_stats

from conftest import REPO


def _bench(*args):
    # A subprocess: bench pins itself to cores, which must not leak into the test process.
    proc = subprocess.run([sys.executable, "cli.py", "bench", *args, "--json"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_latency_stats_on_known_times():
    s = latency_stats([0.001] * 99 + [0.101])
    assert s["p50_ms"] == 1.0 and np.isclose(s["mean_ms"], 2.0) and np.isclose(s["fps"], 500.0)
    assert 1.0 < s["p99_ms"] <= 101.0


def test_tracker_scene_keeps_its_targets_in_the_frame():
    scene = TrackerScene(targets=50, shape=(100, 200), pd=0.8)
    frames = scene.frames(40)
    seen = np.array([len(f) for f in frames])
    assert abs(seen.mean() / 50 - 0.8) < 0.05
    xy = np.concatenate([f.centroid_xy for f in frames])
    assert xy[:, 0].min() > -3 and xy[:, 0].max() < 203 and xy[:, 1].max() < 103


def test_tracker_bench_carries_one_track_per_target():
    r = bench_tracker(TrackerScene(targets=30), frames=40, warmup=30)
    # Targets that wrap around the edges leave a coasting track behind them for a while.
    assert 27 <= r["tracks_mean"] <= 40 and r["fps"] > 0 and r["p99_ms"] >= r["p50_ms"]


def test_bench_tracker_command_reports_json_on_one_core():
    r = _bench("tracker", "--targets", "20", "--frames", "30", "--warmup", "20")
    assert r["machine"]["cores_used"] == 1 and r["tracker"]["scene"]["targets"] == 20
    assert r["results"]["update"]["fps"] > 0


def test_bench_model_compares_paths_against_the_reference_on_real_frames():
    r = _bench("model", "--height", "64", "--width", "96", "--iters", "3", "--warmup", "1", "--check-frames", "3")
    rows = r["results"]
    assert "reference" in next(iter(rows))
    assert any("cl" in k for k in rows) and len(rows) >= 3
    for row in rows.values():
        assert row["mask_iou"] >= 0.99 and row["agrees"] and row["fps"] > 0 and row["p99_ms"] >= row["p50_ms"]


class _Inverted:
    """A runtime that gets every mask wrong: what a broken fast path looks like."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, batch):
        return 1.0 - self.inner(batch)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_bench_model_flags_a_path_whose_masks_disagree_with_the_reference():
    import torch

    from irstream.io.imageio import read_gray
    from irstream.model.runtime import TorchRuntime
    from irstream.model.weights import load_weights
    from irstream.tools.bench import ModelBench, bench_model

    model = load_weights(REPO / "weights" / "lrrnet_light_sirst.safetensors")[0].eval()
    frames = [read_gray(REPO / "sample_videos" / "sky_targets.png")[:128, :128].astype(np.float32) / 255]
    cpu = torch.device("cpu")
    paths = [("fp32 (reference)", lambda: TorchRuntime(model, cpu)),
             ("fp32 again", lambda: TorchRuntime(model, cpu)),
             ("inverted", lambda: _Inverted(TorchRuntime(model, cpu)))]
    rows = bench_model(model, cpu, ModelBench((64, 64), 1, 2, 1), frames, paths)
    assert rows["fp32 again"]["agrees"] and rows["fp32 again"]["mask_iou"] >= 0.99
    assert not rows["inverted"]["agrees"] and rows["inverted"]["mask_iou"] < 0.5


def test_bench_pipeline_delivers_every_frame_to_the_subscriber():
    r = _bench("pipeline", "--height", "64", "--width", "80", "--frames", "12", "--runtime", "torch")
    row = r["results"]["torch"]
    assert row["frames_read"] == row["frames_processed"] == row["messages_received"] == 12
    assert row["inference p50_ms"] > 0 and row["read->publish p99_ms"] >= row["inference p50_ms"]


@pytest.mark.parametrize("flag, values, labels", [
    ("--coarse", ("0", "4"), {"torch, coarse off", "torch, coarse 4"}),
    ("--tile-px", ("0", "48"), {"torch, whole frames", "torch, tiles of 48 px"}),
])
def test_bench_pipeline_compares_settings_in_one_run(flag, values, labels):
    r = _bench("pipeline", "--height", "64", "--width", "80", "--frames", "4", "--runtime", "torch",
               *[arg for v in values for arg in (flag, v)])
    rows = r["results"]
    assert set(rows) == labels
    assert all(row["frames_processed"] == row["messages_received"] == 4 for row in rows.values())


def test_bench_pipeline_compares_file_and_live_runs_and_threads():
    """A file run processes every frame; the same clip live is played at its rate (25 frames/s)
    and names its mode, threads and runtime."""
    r = _bench("pipeline", "--height", "64", "--width", "80", "--frames", "10", "--runtime", "auto",
               "--mode", "file", "--mode", "live", "--threads", "1")
    rows = r["results"]
    assert set(rows) == {"auto, file, 1 threads", "auto, live, 1 threads"}
    file_run, live_run = rows["auto, file, 1 threads"], rows["auto, live, 1 threads"]
    assert file_run["mode"] == "file" and file_run["frames_processed"] == 10 and file_run["threads"] == 1
    assert live_run["mode"] == "live" and live_run["frames_read"] == 10 and live_run["device"].startswith("cpu ")
    assert live_run["fps"] <= 25.0 * 1.2  # paced: no faster than the clip's own rate


def test_bench_stream_returns_every_frame_pushed():
    from irstream.tools.bench import bench_stream
    from irstream.model.registry import build_model

    frames = [np.random.default_rng(i).random((40, 48), dtype=np.float32) for i in range(3)]
    r = bench_stream(build_model("lrrnet_light").eval(), "cpu", frames, repeats=2, overlap=True)
    assert r["frames"] == 6 and r["fps"] > 0 and r["runtime"]


@pytest.mark.slow
def test_bench_sources_runs_n_cameras_apart_and_batched():
    r = _bench("pipeline", "--sources", "1", "--sources", "2", "--frames", "4", "--height", "64", "--width", "64")
    rows = r["results"]
    assert set(rows) == {"1 x separate", "2 x separate", "2 x batched"}
    assert rows["2 x separate"]["processes"] == 2 and rows["2 x batched"]["processes"] == 1
    assert rows["2 x batched"]["frames"] == rows["2 x separate"]["frames"] == 8  # no frame lost either way
    assert rows["2 x batched"]["x separate"] > 0
    # Two processes each hold torch and the model: their peak memory adds up, one process's does not.
    one, two = rows["1 x separate"]["memory_mib (all processes)"], rows["2 x separate"]["memory_mib (all processes)"]
    assert 1.5 * one < two and rows["2 x batched"]["memory_mib (all processes)"] < two


def test_mask_check_falls_back_to_the_sample_videos_without_shared_data(tmp_path):
    # A GPU machine has the checkout but no ../shared: the check must still find real frames
    # (it once looked for sample_videos/ inside the package and found none).
    from irstream.tools.bench import real_frames

    frames, origin = real_frames((64, 80), 3, sirst_root=tmp_path / "absent")
    assert origin == "sample_videos/*.mkv"
    assert len(frames) == 3 and all(f.shape == (64, 80) and 0.0 <= f.min() <= f.max() <= 1.0 for f in frames)


def test_bench_triton_url_without_sources_is_one_line():
    from typer.testing import CliRunner

    from irstream.cli import app

    res = CliRunner().invoke(app, ["bench", "pipeline", "--triton-url", "127.0.0.1:1"])
    assert res.exit_code != 0 and "--sources" in res.output and "Traceback" not in res.output
