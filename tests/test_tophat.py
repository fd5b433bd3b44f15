"""The classical floor: a top-hat filter that loads and runs like any model."""

import numpy as np
import pytest
import torch

from irstream.model.config import ModelConfig
from irstream.detect.detector import Detector, load_model
from irstream.model.tophat import TopHat, TopHatCfg
from irstream.shipped import shipped_weights
from irstream.train.loop import TrainConfig

from conftest import SIRST, needs_sirst


def scene() -> np.ndarray:
    """Noisy sky with a 3x3 target and a 30x30 warm building."""
    img = 0.3 + 0.01 * np.random.default_rng(0).standard_normal((96, 96)).astype(np.float32)
    img[40:43, 20:23] += 0.3
    img[30:60, 55:85] += 0.3
    return img


def test_keeps_a_small_target_and_drops_a_wide_bright_region():
    logits = TopHat(TopHatCfg(radius_px=5, k_sigma=12.0)).target_logits(torch.from_numpy(scene())[None, None])[0, 0]
    found = logits > 0
    assert found[40:43, 20:23].all()
    assert not found[32:58, 57:83].any()  # the building's inside is background to an 11 px square
    assert int(found.sum()) <= 9 + 8  # the target, and at most a few of the building's corner pixels


def test_a_flat_frame_has_no_target():
    logits = TopHat().target_logits(torch.full((1, 1, 32, 32), 0.4))
    assert torch.isfinite(logits).all() and not (logits > 0).any()


def test_shipped_by_name_and_runs_in_the_detector():
    loaded = load_model(ModelConfig(weights="tophat"))
    assert isinstance(loaded.model, TopHat) and loaded.card["model"] == "tophat"
    assert loaded.tiles == (0, 0) and loaded.threshold == 0.5
    det = Detector(ModelConfig(weights="tophat", device="cpu"))
    frame = (scene() * 255).astype(np.uint8)
    d = det(frame).detections
    assert len(d) >= 1 and np.abs(d.centroid_xy - [21, 41]).sum(axis=1).min() < 1.5


def test_training_refuses_a_model_without_parameters():
    with pytest.raises(ValueError, match="no parameters"):
        TrainConfig(model="tophat")


@needs_sirst
def test_its_card_figures_are_what_eval_measures():
    from irstream.eval.images import evaluate_weights
    from irstream.model.weights import read_card

    got = evaluate_weights(shipped_weights("tophat"), SIRST, "val", device="cpu")
    card = read_card(shipped_weights("tophat"))["metrics"]["sirst-v1/val"]
    assert got["iou"] == pytest.approx(card["iou"], abs=0.05) and got["pd"] == pytest.approx(card["pd"], abs=0.05)


def test_config_round_trip_and_unknown_keys():
    cfg = TopHatCfg(radius_px=4, k_sigma=6.0)
    assert TopHatCfg.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown TopHatCfg keys"):
        TopHatCfg.from_dict({**cfg.to_dict(), "channels": [8]})  # a network's card
