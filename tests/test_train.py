import time

import numpy as np
import pytest
import torch

from irstream.data.sirst import load_split
from irstream.data.synthetic import write_image_set
from irstream.model.registry import build_model
from irstream.train import loop
from irstream.train.loop import TrainConfig, lrrnet_loss, make_batch, train
from irstream.model.weights import load_weights, read_card

from conftest import SIRST, needs_sirst


def synth_set(tmp_path):
    """A small synthetic SIRST-style set whose val split is its test split."""
    data = tmp_path / "synth"
    write_image_set(data, 12, seed=2, shape=(64, 64))
    (data / "splits" / "val.txt").write_text((data / "splits" / "test.txt").read_text())
    return data


def slow_batches(monkeypatch, burn_s: float, first_free: bool) -> None:
    """Making each batch burns burn_s of CPU time (all but the first, with first_free)."""
    batches, made = loop._TrainData.batches, []

    def slow(self, steps, rng):
        for batch in batches(self, steps, rng):
            start = time.process_time()
            while (made or not first_free) and time.process_time() - start < burn_s:
                pass
            made.append(1)
            yield batch

    monkeypatch.setattr(loop._TrainData, "batches", slow)


@needs_sirst
def test_a_few_cpu_steps_lower_the_loss_on_real_crops():
    torch.manual_seed(0)
    cfg = TrainConfig(model="lrrnet_light", crop_px=64, lr=1e-3, batch=4)
    samples = load_split(SIRST, "train")[:8]
    rng = np.random.default_rng(0)
    x, y = make_batch(samples, np.arange(4), cfg, rng)
    model = build_model("lrrnet_light").train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    losses, seg = [], []
    for _ in range(12):
        loss, parts = lrrnet_loss(*model(x), x, y, cfg.rec_weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        seg.append(parts["seg"])
    # From a random start SoftIoU moves slowly (every pixel begins near p = 0.5), so the
    # bar is a clear, monotone-on-average fall of both the total and the segmentation term.
    assert losses[-1] < losses[0] - 0.01
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    assert seg[-1] < seg[0]


def test_run_checkpoints_resumes_and_keeps_best(tmp_path):
    data = synth_set(tmp_path)
    cfg = TrainConfig(model="lrrnet_light", data=str(data), epochs=1, batch=2, lr=1e-3, crop_px=32, threads=1)
    run = tmp_path / "run"
    first = train(cfg, run)
    assert first["epoch"] == 1 and first["step"] == 3
    assert first["train_cpu_s"] > 0.0  # recorded without a CPU budget too
    cfg.epochs = 2
    second = train(cfg, run, resume=True)
    assert second["epoch"] == 2 and second["step"] == 6
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("epoch,step,lr,loss")
    model, card = load_weights(run / "best.safetensors")
    assert card["training"]["val_split"] == "val" and "val_iou" in card["metrics"]["val"]
    assert read_card(run / "best.safetensors")["training"]["recipe"]["crop_px"] == 32


@pytest.mark.slow
def test_a_cpu_budget_ends_the_run_and_leaves_validation_out(tmp_path, monkeypatch):
    data = synth_set(tmp_path)
    budget_s, val_burn_s = 2.0, 0.4
    validate = loop._TrainData.validate

    def slow_validate(self, model, device):
        start = time.process_time()
        while time.process_time() - start < val_burn_s:  # a slow model's validation
            pass
        return validate(self, model, device)

    monkeypatch.setattr(loop._TrainData, "validate", slow_validate)
    cfg = TrainConfig(model="lrrnet_light", data=str(data), epochs=1000, steps_per_epoch=1, batch=2, lr=1e-3,
                      crop_px=32, threads=1, max_cpu_minutes=budget_s / 60.0)
    start = time.process_time()
    state = train(cfg, tmp_path / "run")
    spent_s = time.process_time() - start
    assert state["epoch"] < 1000 and state["epoch"] >= 2
    # Training ends at the first step past the budget; every validation's CPU time is on top.
    assert budget_s <= state["train_cpu_s"] < budget_s + 1.0
    assert spent_s >= state["train_cpu_s"] + state["epoch"] * val_burn_s
    card = read_card(tmp_path / "run" / "best.safetensors")
    assert card["training"]["training_cpu_minutes"] >= 0.0


def test_an_epoch_that_takes_no_step_is_not_recorded(tmp_path, monkeypatch):
    # Work before an epoch's first step (a mining pass, making the batch) can spend the rest of
    # the budget; the unchanged weights must not be validated and written again as a new epoch.
    data = synth_set(tmp_path)
    slow_batches(monkeypatch, 2.0, first_free=True)  # the second epoch's work outlasts the budget
    cfg = TrainConfig(model="lrrnet_light", data=str(data), epochs=1000, steps_per_epoch=1, batch=2, lr=1e-3,
                      crop_px=32, threads=1, max_cpu_minutes=1.0 / 60.0)
    state = train(cfg, tmp_path / "run")
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]
    steps = [int(r.split(",")[1]) for r in rows]
    assert steps == [1] and state["step"] == state["epoch"] == 1


def test_a_budget_that_ends_after_a_skipped_validation_still_validates_the_last_epoch(tmp_path, monkeypatch):
    # With --val-every past the run's end, the budget runs out in the next epoch's batch: the
    # epoch the run ends with must still be validated and kept, not left without best.safetensors.
    data = synth_set(tmp_path)
    slow_batches(monkeypatch, 2.0, first_free=True)
    cfg = TrainConfig(model="lrrnet_light", data=str(data), epochs=1000, steps_per_epoch=1, batch=2, lr=1e-3,
                      crop_px=32, threads=1, max_cpu_minutes=1.0 / 60.0, val_every=1000)
    state = train(cfg, tmp_path / "run")
    assert state["step"] == state["epoch"] == 1
    card = read_card(tmp_path / "run" / "best.safetensors")
    assert card["training"]["epoch"] == 1 and "val_iou" in card["metrics"]["val"]
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    validated = [r for r in rows[1:] if r.split(",")[rows[0].split(",").index("val_iou")]]
    assert len(validated) == 1 and validated[0].startswith("1,1,")


def test_a_run_that_never_steps_keeps_its_validated_start_weights(tmp_path, monkeypatch):
    # The first mining pass or batch can spend a small budget whole: the run still ends with
    # best.safetensors (its start weights, validated, as epoch 0) rather than with nothing.
    data = synth_set(tmp_path)
    slow_batches(monkeypatch, 1.5, first_free=False)  # every batch outlasts the budget
    cfg = TrainConfig(model="lrrnet_light", data=str(data), epochs=1000, steps_per_epoch=1, batch=2, lr=1e-3,
                      crop_px=32, threads=1, max_cpu_minutes=1.0 / 60.0)
    state = train(cfg, tmp_path / "run")
    assert state["step"] == state["epoch"] == 0
    card = read_card(tmp_path / "run" / "best.safetensors")
    assert card["training"]["epoch"] == 0 and "val_iou" in card["metrics"]["val"]
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]
    assert len(rows) == 1 and rows[0].startswith("0,0,")


def test_half_scale_crops_keep_every_target():
    from irstream.data.sirst import Sample
    from irstream.train.loop import half_scale_pair

    img = np.zeros((300, 300), np.float32)
    mask = np.zeros((300, 300), bool)
    img[150, 151] = 1.0  # a 1-pixel target
    mask[150, 151] = True
    small, small_mask = half_scale_pair(Sample("t", img, mask), 64, np.random.default_rng(0), centred=True)
    assert small.shape == small_mask.shape == (64, 64)
    assert small_mask.sum() == 1 and small[small_mask][0] == pytest.approx(0.25)  # area-averaged


def test_the_false_alarm_term_pushes_down_a_confident_false_alarm_that_soft_iou_leaves():
    from irstream.train.loop import false_alarm_loss, soft_iou_loss

    target = torch.zeros(1, 1, 32, 32)
    logits = torch.full((1, 1, 32, 32), -8.0)
    logits[..., 10:14, 10:14] = 6.0  # a 16-px blob at p = 0.9975 on a target-free crop
    logits.requires_grad_(True)
    soft_iou_loss(logits, target).backward()
    soft = logits.grad[0, 0, 12, 12].item()
    logits.grad = None
    false_alarm_loss(logits, target).backward()
    fa = logits.grad[0, 0, 12, 12].item()
    assert 0 < soft < 1e-4 and fa > 50 * soft
    # Target pixels are left to SoftIoU.
    assert false_alarm_loss(logits.detach(), torch.ones_like(target)).item() == 0.0
    loss, _ = lrrnet_loss(logits.detach(), torch.zeros_like(target), torch.zeros_like(target), target, 0.1,
                          negative_weight=2.0)
    base, _ = lrrnet_loss(logits.detach(), torch.zeros_like(target), torch.zeros_like(target), target, 0.1)
    assert loss.item() == pytest.approx(base.item() + 2.0 * false_alarm_loss(logits.detach(), target).item())


def test_the_miss_term_raises_a_suppressed_target_that_soft_iou_cannot():
    from irstream.train.loop import miss_loss, soft_iou_loss

    target = torch.zeros(2, 1, 32, 32)
    target[0, 0, 16, 16] = 1.0  # a 1-px target, as DAUB's ground sequences give
    logits = torch.full((2, 1, 32, 32), -20.0)
    logits[0, 0, 16, 16] = -30.0  # suppressed below its background, as weights trained without the term
    logits.requires_grad_(True)
    soft_iou_loss(logits, target, target_smooth=0.1).backward()
    soft = logits.grad[0, 0, 16, 16].item()
    logits.grad = None
    miss_loss(logits, target).backward()
    miss = logits.grad[0, 0, 16, 16].item()
    assert abs(soft) < 1e-9 and miss == pytest.approx(-1.0, abs=1e-6)
    assert logits.grad[1].abs().max().item() == 0.0  # target-free pixels are left to the other terms
    assert miss_loss(logits.detach(), torch.zeros_like(target)).item() == 0.0  # no target: no term
    loss, _ = lrrnet_loss(logits.detach(), torch.zeros_like(target), torch.zeros_like(target), target, 0.1,
                          positive_weight=0.5)
    base, _ = lrrnet_loss(logits.detach(), torch.zeros_like(target), torch.zeros_like(target), target, 0.1)
    assert loss.item() == pytest.approx(base.item() + 0.5 * miss_loss(logits.detach(), target).item())


def test_weight_average_is_what_is_validated_kept_and_resumed(tmp_path):
    from safetensors.torch import load_file

    data = synth_set(tmp_path)
    cfg = TrainConfig(model="lrrnet_light", data=str(data), epochs=1, batch=2, lr=1e-2, crop_px=32, threads=1,
                      ema_decay=0.9)
    run = tmp_path / "run"
    train(cfg, run)
    ckpt = load_file(str(run / "last.safetensors"))
    assert int(ckpt["ema.n_averaged"]) == 3  # one update per step
    kept, _ = load_weights(run / "best.safetensors")
    name = next(k for k in kept.state_dict() if k.endswith("weight"))
    assert torch.equal(kept.state_dict()[name], ckpt[f"ema.module.{name}"])
    assert not torch.equal(ckpt[f"ema.module.{name}"], ckpt[f"model.{name}"])  # an average, not the last step
    from_ckpt, model_name, card = loop.checkpoint_weights(run / "last.safetensors")  # what `irstream average` reads
    assert model_name == "lrrnet_light" and torch.equal(from_ckpt.state_dict()[name], kept.state_dict()[name])
    assert card["training"]["epoch"] == 1
    cfg.epochs = 2
    train(cfg, run, resume=True)
    assert int(load_file(str(run / "last.safetensors"))["ema.n_averaged"]) == 6  # carried over, not restarted
    with pytest.raises(ValueError, match="ema_decay"):
        TrainConfig(model="lrrnet_light", ema_decay=1.0)


def test_metrics_csv_takes_every_validation_set(tmp_path):
    """A mix run's row holds Pd and false alarms of each validation set (the drone sets'
    columns once broke a run at its first validation)."""
    from irstream.train.loop import VAL_SETS, _append_csv

    row = {"epoch": 1, "step": 10, "val_score": 1.0,
           **{f"val_{key}_{m}": 0.5 for key in VAL_SETS.values() for m in ("pd", "fa")}}
    _append_csv(tmp_path / "metrics.csv", row)
    _append_csv(tmp_path / "metrics.csv", row)
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert len(lines) == 3 and "val_drones_pd" in lines[0]


def test_the_train_command_is_generated_from_train_config(monkeypatch, tmp_path):
    """Every training default is defined once: each TrainConfig field is an option of
    `irstream train`, and the data folders follow $IRSTREAM_DATA as every command does."""
    import dataclasses

    from typer.testing import CliRunner

    from irstream.cli import app
    from irstream.train.config import TrainConfig

    help_text = CliRunner().invoke(app, ["train", "--help"], terminal_width=200, env={"COLUMNS": "200"}).output
    for f in dataclasses.fields(TrainConfig):
        assert "--" + (f.metadata["flag"] or f.name).replace("_", "-") in help_text, f.name
    monkeypatch.setenv("IRSTREAM_DATA", str(tmp_path))
    assert TrainConfig().data == str(tmp_path / "sirst-v1") and TrainConfig().data_root == str(tmp_path)
    res = CliRunner().invoke(app, ["train", "--model", "tophat", "--crop", "64"])
    assert res.exit_code == 2 and "no parameters to learn" in res.output
