"""The command line, in-process (typer's CliRunner) and as `python cli.py`."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from irstream.cli import DEFAULT_WEIGHTS, app
from irstream.data.sirst import load_sample
from irstream.data.synthetic import write_image_set
from irstream.metrics import components

from conftest import REPO, SIRST, needs_sirst

runner = CliRunner()
needs_weights = pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="shipped weights missing")


def _one_line_error(result, *needles):
    assert result.exit_code == 2
    text = result.output.strip()
    assert "Traceback" not in text and len(text.splitlines()) == 1, text
    for n in needles:
        assert n in text


def test_models_lists_both_variants():
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0
    assert "lrrnet_light" in result.output and "3,454,994" in result.output


def test_root_cli_py_is_the_same_command():
    proc = subprocess.run([sys.executable, "cli.py", "models"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "867,274" in proc.stdout


@needs_sirst
@needs_weights
def test_detect_finds_the_target_in_a_real_image(tmp_path):
    name = "Misc_1"
    truth = load_sample(SIRST, name).mask
    _, t_cent = components(truth)
    result = runner.invoke(app, ["detect", str(SIRST / "images" / f"{name}.png"), "--json", "--device", "cpu",
                                 "--overlay-dir", str(tmp_path), "--mask-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    rec = json.loads(result.output.strip().splitlines()[-1])
    assert (rec["height"], rec["width"]) == truth.shape
    found = np.array([[t["y"], t["x"]] for t in rec["targets"]])
    assert len(found) and min(np.linalg.norm(found - c, axis=1).min() for c in t_cent) < 3.0
    assert (tmp_path / f"{name}_overlay.png").is_file() and (tmp_path / f"{name}_mask.png").is_file()


@needs_weights
def test_detect_on_the_shipped_sample_image():
    result = runner.invoke(app, ["detect", str(REPO / "sample_videos" / "sky_targets.png"), "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)["targets"]) >= 1


def test_detect_missing_image_is_one_line(tmp_path):
    result = runner.invoke(app, ["detect", str(tmp_path / "none.png")])
    _one_line_error(result, "none.png")


def test_eval_refuses_a_pickle(tmp_path):
    bad = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, bad)
    write_image_set(tmp_path / "data", 2, seed=0, shape=(32, 32))
    result = runner.invoke(app, ["eval", "--weights", str(bad), "--data", str(tmp_path / "data")])
    _one_line_error(result, "model.pt", "never loads")


def test_eval_on_missing_dataset_is_one_line(tmp_path):
    result = runner.invoke(app, ["eval", "--data", str(tmp_path / "nowhere")])
    _one_line_error(result, "nowhere")


@needs_sirst
@needs_weights
def test_eval_prints_the_numbers_on_the_card():
    card = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    result = runner.invoke(app, ["eval", "--data", str(SIRST), "--split", "test", "--weights", str(DEFAULT_WEIGHTS),
                                 "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    for k in ("iou", "niou", "pd", "fa"):
        assert round(got[k], 4) == pytest.approx(card["metrics"]["test"][k], abs=1e-4)


@needs_weights
def test_export_writes_an_onnx_file_that_agrees_with_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    dest = tmp_path / "light.onnx"
    result = runner.invoke(app, ["export", str(dest)])
    assert result.exit_code == 0, result.output
    assert dest.stat().st_size > 1_000_000 and "mask IoU 1.0000" in " ".join(result.output.split())


def test_export_of_a_pickle_is_one_line(tmp_path):
    bad = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, bad)
    _one_line_error(runner.invoke(app, ["export", str(tmp_path / "x.onnx"), "--weights", str(bad)]), "model.pt")
