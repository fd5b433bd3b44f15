"""Training LRRNet: the paper's recipe by default, resumable, selected on a validation split.

Loss: SoftIoU on the target logits plus rec_weight x MSE between the reconstruction and
the input (Sec. IV-D).  The paper's L1 term is left out: in the authors' code it is a
hard count of positive pixels and carries no gradient.

Checkpoints (model and optimizer) are safetensors plus a JSON state, written every
epoch to the run folder; `resume=True` continues from there.  The best epoch on the
validation split is kept as best.safetensors with its card; the test split is never
looked at here.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors.torch import load_file, save_file

from irstream.data.sirst import Sample, load_split
from irstream.metrics import SegMetrics
from irstream.models import LRRNet, build_model
from irstream.segment import forward_any_size
from irstream.weights import save_weights


@dataclass
class TrainConfig:
    """One training run.  Defaults are the paper's recipe (Sec. V-A) on SIRST v1's train split.

    crop_px: side of the square training crops; 0 trains on whole images resized to resize_px.
    target_crop_share: fraction of crops centred (with jitter) on a target pixel; the rest
        are uniform.  Small targets are a tiny share of pixels, so random crops are mostly empty.
    synthetic_share: fraction of each batch drawn from the synthetic generator.
    half_scale_share: fraction of crops taken at twice the side and shrunk by 2, so the model
        also learns targets of 1 to 3 px (the real sequences' far aircraft), which SIRST has few of.
    init_weights: start from these irstream weights (fine-tuning) instead of from scratch;
        they must be of the same model.
    poly_power: lr = lr0 * (1 - progress) ** poly_power, progress in iterations, or in
        wall time when max_minutes is set (so a time-budgeted run still decays to zero).
    """

    model: str = "lrrnet"
    data: str = "../shared/data/sirst-v1"
    train_split: str = "train"
    val_split: str = "val"
    extra_data: list[str] = field(default_factory=list)  # more SIRST-style roots, their "train" split
    epochs: int = 400
    batch: int = 8
    lr: float = 1e-4
    poly_power: float = 0.9
    rec_weight: float = 0.1
    crop_px: int = 0
    resize_px: int = 512
    target_crop_share: float = 0.7
    flips: bool = True
    synthetic_share: float = 0.0
    half_scale_share: float = 0.0
    val_every: int = 1
    max_minutes: float = 0.0
    seed: int = 0
    threads: int = 0
    init_weights: str = ""

    def __post_init__(self) -> None:
        if self.crop_px % 8 or self.resize_px % 8:
            raise ValueError("crop_px and resize_px must be multiples of 8 (the model's size multiple)")
        for name in ("target_crop_share", "synthetic_share", "half_scale_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}={getattr(self, name)}: must be within [0, 1]")


def soft_iou_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - SoftIoU, per image, averaged over the batch."""
    p = torch.sigmoid(logits)
    inter = (p * target).sum(dim=(1, 2, 3))
    union = p.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3)) - inter
    return 1.0 - ((inter + smooth) / (union + smooth)).mean()


def lrrnet_loss(logits, recon, image, target, rec_weight: float) -> tuple[torch.Tensor, dict]:
    seg = soft_iou_loss(logits, target)
    rec = torch.nn.functional.mse_loss(recon, image)
    return seg + rec_weight * rec, {"seg": seg.item(), "rec": rec.item()}


# ---- batches -------------------------------------------------------------------------------

def _pad_min(a: np.ndarray, size: int) -> np.ndarray:
    ph, pw = max(0, size - a.shape[0]), max(0, size - a.shape[1])
    return np.pad(a, ((0, ph), (0, pw)), mode="reflect" if a.dtype != bool else "constant") if ph or pw else a


def crop_pair(s: Sample, size: int, rng: np.random.Generator, centred: bool) -> tuple[np.ndarray, np.ndarray]:
    img, mask = _pad_min(s.image, size), _pad_min(s.mask, size)
    h, w = img.shape
    ys, xs = np.nonzero(mask)
    if centred and ys.size:
        i = rng.integers(ys.size)
        jitter = rng.integers(-size // 4, size // 4 + 1, size=2)
        y0, x0 = ys[i] - size // 2 + jitter[0], xs[i] - size // 2 + jitter[1]
    else:
        y0, x0 = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    y0, x0 = int(np.clip(y0, 0, h - size)), int(np.clip(x0, 0, w - size))
    return img[y0:y0 + size, x0:x0 + size], mask[y0:y0 + size, x0:x0 + size]


def half_scale_pair(s: Sample, size: int, rng: np.random.Generator, centred: bool) -> tuple[np.ndarray, np.ndarray]:
    """A crop of twice the side shrunk by 2 (area average): targets come out at a quarter of
    their area, as far-away targets of 1 to 3 px look.  The mask keeps a pixel that any of
    its four source pixels marked, so no target vanishes."""
    img, mask = crop_pair(s, 2 * size, rng, centred)
    small = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return small, mask.reshape(size, 2, size, 2).any(axis=(1, 3))


def resize_pair(s: Sample, size: int) -> tuple[np.ndarray, np.ndarray]:
    img = cv2.resize(s.image, (size, size), interpolation=cv2.INTER_LINEAR)
    mask = cv2.resize(s.mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST) > 0
    return img, mask


def flip_pair(img, mask, rng):
    if rng.random() < 0.5:
        img, mask = img[:, ::-1], mask[:, ::-1]
    if rng.random() < 0.5:
        img, mask = img[::-1], mask[::-1]
    return img, mask


def make_batch(samples: list[Sample], idx: np.ndarray, cfg: TrainConfig, rng: np.random.Generator):
    side = cfg.crop_px or cfg.resize_px
    imgs, masks = [], []
    for i in idx:
        if cfg.synthetic_share and rng.random() < cfg.synthetic_share:
            from irstream.data.synthetic import random_scene

            img, mask = random_scene(rng, (side, side))
        elif cfg.crop_px and cfg.half_scale_share and rng.random() < cfg.half_scale_share:
            img, mask = half_scale_pair(samples[i], side, rng, rng.random() < cfg.target_crop_share)
        elif cfg.crop_px:
            img, mask = crop_pair(samples[i], side, rng, rng.random() < cfg.target_crop_share)
        else:
            img, mask = resize_pair(samples[i], side)
        if cfg.flips:
            img, mask = flip_pair(img, mask, rng)
        imgs.append(np.ascontiguousarray(img))
        masks.append(np.ascontiguousarray(mask))
    x = torch.from_numpy(np.stack(imgs)[:, None].astype(np.float32))
    y = torch.from_numpy(np.stack(masks)[:, None].astype(np.float32))
    return x, y


# ---- evaluation ----------------------------------------------------------------------------

@torch.inference_mode()
def evaluate(model: LRRNet, samples: list[Sample], device: torch.device, on_image=None) -> dict:
    """Metrics of `model` on whole images (no resizing): a pixel is a target where its logit > 0."""
    was_training = model.training
    model.eval()
    m = SegMetrics()
    for s in samples:
        x = torch.from_numpy(s.image)[None, None].to(device)
        logits, _ = forward_any_size(model, x)
        m.update(logits[0, 0].cpu().numpy() > 0, s.mask)
        if on_image:
            on_image()
    model.train(was_training)
    return m.result()


# ---- checkpoints ---------------------------------------------------------------------------

def _save_checkpoint(run: Path, model: LRRNet, opt: torch.optim.Optimizer, state: dict) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            tensors[f"opt.{i}.{k}"] = (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous()
    save_file(tensors, str(run / "last.tmp"))
    (run / "last.tmp").replace(run / "last.safetensors")
    (run / "state.json").write_text(json.dumps(state, indent=2))


def _load_checkpoint(run: Path, model: LRRNet, opt: torch.optim.Optimizer) -> dict:
    tensors = load_file(str(run / "last.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    osd = opt.state_dict()
    per: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, i, name = k.split(".", 2)
            per.setdefault(int(i), {})[name] = v
    osd["state"] = per
    opt.load_state_dict(osd)
    return json.loads((run / "state.json").read_text())


# ---- the loop ------------------------------------------------------------------------------

def train(cfg: TrainConfig, run: Path, resume: bool = False, progress=None) -> dict:
    """Train, checkpoint every epoch, keep the best on validation.  Returns the final state."""
    run.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    train_set = load_split(cfg.data, cfg.train_split)
    for extra in cfg.extra_data:
        train_set += load_split(extra, "train")
    val_set = load_split(cfg.data, cfg.val_split)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = _initial_model(cfg).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)

    state = {"epoch": 0, "step": 0, "elapsed_s": 0.0, "best_iou": -1.0, "best_epoch": 0, "config": asdict(cfg)}
    if resume and (run / "last.safetensors").is_file():
        state = _load_checkpoint(run, model, opt)
    steps_per_epoch = max(1, len(train_set) // cfg.batch)
    total_steps = cfg.epochs * steps_per_epoch
    rng = np.random.default_rng([cfg.seed, state["epoch"]])
    log = run / "metrics.csv"
    t_start = time.monotonic() - state["elapsed_s"]

    def progress_fraction() -> float:
        if cfg.max_minutes:
            return min(1.0, (time.monotonic() - t_start) / (60.0 * cfg.max_minutes))
        return state["step"] / total_steps

    # With a wall-time budget the step count is unknown up front: the bar then only pulses.
    bar_total = None if cfg.max_minutes else total_steps
    task = progress.add_task("train", total=bar_total, completed=state["step"]) if progress else None
    while state["epoch"] < cfg.epochs and progress_fraction() < 1.0:
        order = rng.permutation(len(train_set))
        losses = []
        for b in range(steps_per_epoch):
            lr = cfg.lr * (1.0 - progress_fraction()) ** cfg.poly_power
            for g in opt.param_groups:
                g["lr"] = lr
            x, y = make_batch(train_set, order[b * cfg.batch:(b + 1) * cfg.batch], cfg, rng)
            x, y = x.to(device), y.to(device)
            logits, recon = model(x)
            loss, parts = lrrnet_loss(logits, recon, x, y, cfg.rec_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append([loss.item(), parts["seg"], parts["rec"]])
            state["step"] += 1
            if progress:
                progress.update(task, advance=1, description=f"epoch {state['epoch'] + 1} loss {losses[-1][0]:.3f}")
        state["epoch"] += 1
        state["elapsed_s"] = time.monotonic() - t_start
        row = {"epoch": state["epoch"], "step": state["step"], "lr": lr,
               "loss": float(np.mean([l[0] for l in losses])),
               "seg_loss": float(np.mean([l[1] for l in losses])),
               "rec_loss": float(np.mean([l[2] for l in losses])), "elapsed_s": round(state["elapsed_s"], 1)}
        last = state["epoch"] >= cfg.epochs or progress_fraction() >= 1.0
        if state["epoch"] % cfg.val_every == 0 or last:
            val = evaluate(model, val_set, device)
            row.update({f"val_{k}": v for k, v in val.items() if k in ("iou", "niou", "pd", "fa")})
            if val["iou"] > state["best_iou"]:
                state["best_iou"], state["best_epoch"] = val["iou"], state["epoch"]
                save_weights(model, run / "best.safetensors", cfg.model, _card(cfg, state, val))
        _append_csv(log, row)
        _save_checkpoint(run, model, opt, state)
    return state


def _initial_model(cfg: TrainConfig) -> LRRNet:
    if not cfg.init_weights:
        return build_model(cfg.model)
    from irstream.weights import load_weights

    model, _ = load_weights(cfg.init_weights, model_name=cfg.model)
    return model


def _append_csv(path: Path, row: dict) -> None:
    fields = ["epoch", "step", "lr", "loss", "seg_loss", "rec_loss", "elapsed_s",
              "val_iou", "val_niou", "val_pd", "val_fa"]
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        if new:
            w.writeheader()
        w.writerow({k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()})


def _card(cfg: TrainConfig, state: dict, val: dict) -> dict:
    return {
        "training": {
            "data": [cfg.data, *cfg.extra_data],
            "train_split": cfg.train_split,
            "val_split": cfg.val_split,
            "selected_on": f"{cfg.val_split} IoU, evaluated every {cfg.val_every} epoch(s)",
            "epoch": state["epoch"],
            "step": state["step"],
            "minutes": round(state["elapsed_s"] / 60.0, 1),
            "recipe": asdict(cfg),
            "loss": f"SoftIoU + {cfg.rec_weight} x MSE(reconstruction, input); no L1 term",
        },
        "metrics": {"val": {k: round(v, 4) if isinstance(v, float) else v for k, v in val.items()}},
    }
