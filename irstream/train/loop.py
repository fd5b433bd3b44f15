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
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy import ndimage
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from irstream.errors import UserError
from irstream.data.sirst import Sample, load_split
from irstream.eval.images import background_false_alarms, clip_detections, evaluate
from irstream.model.registry import LRRNet, build_model
from irstream.train.config import VAL_SETS, TrainConfig
from irstream.model.segment import image_logits, set_threads
from irstream.model.weights import save_weights


def soft_iou_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0,
                  target_smooth: float | None = None) -> torch.Tensor:
    """1 - SoftIoU, per image, averaged over the batch.

    smooth keeps a target-free image's loss finite (it is S / (S + smooth) for a predicted mass
    S).  target_smooth, when given, replaces it on images that hold a target: with smooth 1 a
    1-px target that the model ignores costs only 0.5 (against 0.33 for finding it with one
    stray pixel), so the loss learns to give up on the smallest targets; 0.1 makes ignoring it
    cost 0.91."""
    p = torch.sigmoid(logits)
    area = target.sum(dim=(1, 2, 3))
    inter = (p * target).sum(dim=(1, 2, 3))
    union = p.sum(dim=(1, 2, 3)) + area - inter
    if target_smooth is not None:
        smooth = torch.where(area > 0, target_smooth, smooth)
    return 1.0 - ((inter + smooth) / (union + smooth)).mean()


def false_alarm_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on the pixels that hold no target, averaged over all pixels.

    SoftIoU cannot push down a confident false alarm: on a target-free crop its gradient on a
    logit is p(1 - p) / (S + 1)^2 for a predicted mass S, which vanishes as p -> 1, and the
    false alarms of real scenes are just that (76% of them score >= 0.9).  This term's gradient
    is p itself."""
    return (torch.nn.functional.softplus(logits) * (1.0 - target)).mean()


def miss_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on the target pixels, averaged over the batch's target pixels.

    SoftIoU cannot raise a target the model has learnt to suppress: its gradient on a target
    pixel's logit carries p(1 - p), which is 1e-13 at the logit of -30 that weights trained
    without this term give DAUB's 1-px ground targets, so no number of steps moves them.  This
    term's gradient is p - 1, about -1 there, shared among the target pixels."""
    return (torch.nn.functional.softplus(-logits) * target).sum() / target.sum().clamp(min=1.0)


def lrrnet_loss(logits, recon, image, target, rec_weight: float, target_smooth: float | None = None,
                negative_weight: float = 0.0, positive_weight: float = 0.0) -> tuple[torch.Tensor, dict]:
    seg = soft_iou_loss(logits, target, target_smooth=target_smooth)
    rec = torch.nn.functional.mse_loss(recon, image)
    loss = seg + rec_weight * rec
    if negative_weight:
        loss = loss + negative_weight * false_alarm_loss(logits, target)
    if positive_weight:
        loss = loss + positive_weight * miss_loss(logits, target)
    return loss, {"seg": seg.item(), "rec": rec.item()}


class StepRunner:
    """One optimiser step under a speed setting: channels-last memory, bf16 autocast, torch.compile.

    The settings change how the arithmetic runs, not what is learnt; `irstream bench train`
    measures which is fastest on a machine.
    """

    def __init__(self, model, opt, rec_weight: float, channels_last: bool = False, amp: str = "",
                 compile: bool = False, target_smooth: float | None = None, negative_weight: float = 0.0,
                 positive_weight: float = 0.0):
        self.model, self.opt, self.rec_weight, self.target_smooth = model, opt, rec_weight, target_smooth
        self.negative_weight, self.positive_weight = negative_weight, positive_weight
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            model.to(memory_format=torch.channels_last)
        self.amp_dtype = {"": None, "bf16": torch.bfloat16}[amp]
        self.forward = torch.compile(model) if compile else model

    def step(self, x: torch.Tensor, y: torch.Tensor) -> dict:
        x = x.contiguous(memory_format=self.memory_format)
        with torch.autocast(x.device.type, dtype=self.amp_dtype or torch.bfloat16, enabled=self.amp_dtype is not None):
            logits, recon = self.forward(x)
        loss, parts = lrrnet_loss(logits.float(), recon.float(), x, y, self.rec_weight, self.target_smooth,
                                  self.negative_weight, self.positive_weight)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": loss.item(), **parts}


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


# ---- real-data mix -------------------------------------------------------------------------

def _jitter(img: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    gain, offset = 1.0 + rng.uniform(-amount, amount), rng.uniform(-amount / 2, amount / 2)
    return np.clip(img * np.float32(gain) + np.float32(offset), 0.0, 1.0)


#: Images whose targets cover fewer pixels than this are never shrunk by half: a 1-3 px target
#: averaged with its neighbours drops to a quarter of its contrast and would be a label the
#: image no longer shows.
MIN_HALF_SCALE_AREA_PX = 9


def make_mix_batch(mix, cfg: TrainConfig, rng: np.random.Generator):
    """A batch from the mix: source by weight; crop on a target, on a mined false alarm, or anywhere."""
    from irstream.data.sirst import crop_at

    side = int(rng.choice(cfg.crop_sizes)) if cfg.crop_sizes else cfg.crop_px
    imgs, masks = [], []
    for _ in range(cfg.batch):
        name, i = mix.pick(rng)
        s = mix.sources[name][i]
        half = rng.random() < cfg.half_scale_share and not 0 < s.mask.sum() < MIN_HALF_SCALE_AREA_PX
        size = 2 * side if half else side
        r, centre = rng.random(), None
        if r < cfg.target_crop_share and s.mask.any():
            ys, xs = np.nonzero(s.mask)
            k = rng.integers(ys.size)
            centre = (int(ys[k]), int(xs[k]))
        elif r < cfg.target_crop_share + cfg.hard_share and (name, i) in mix.hard:
            pts = mix.hard[(name, i)]
            centre = tuple(int(v) for v in pts[rng.integers(len(pts))])
        img, mask = crop_at(s.image, s.mask, size, centre, rng, size // 4)
        if half:
            img = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)
            mask = mask.reshape(side, 2, side, 2).any(axis=(1, 3))
        if cfg.flips:
            img, mask = flip_pair(img, mask, rng)
        if cfg.intensity_jitter:
            img = _jitter(img, cfg.intensity_jitter, rng)
        imgs.append(np.ascontiguousarray(img, dtype=np.float32))
        masks.append(np.ascontiguousarray(mask))
    x = torch.from_numpy(np.stack(imgs)[:, None])
    y = torch.from_numpy(np.stack(masks)[:, None].astype(np.float32))
    return x, y


#: A predicted component counts as a false alarm for mining when it lies this far (px) from any truth pixel.
MINE_CLEARANCE_PX = 3
#: At most this many false alarms are kept per image (the highest-scoring).
MINE_PER_IMAGE = 8


def false_alarm_centres(logits: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, int]:
    """(row, col) centres of the highest-scoring components of logits > 0 that stay
    MINE_CLEARANCE_PX away from every truth pixel (at most MINE_PER_IMAGE), and how many such
    components there are."""
    near_truth = cv2.dilate(truth.astype(np.uint8), np.ones((2 * MINE_CLEARANCE_PX + 1,) * 2, np.uint8)) > 0
    n, labels, _, cents = cv2.connectedComponentsWithStats((logits > 0).astype(np.uint8), connectivity=8)
    # Per-label reductions, not a mask per component: an untrained model makes thousands.
    peaks = ndimage.maximum(logits, labels, np.arange(n))
    touching = np.zeros(n, bool)
    touching[np.unique(labels[near_truth])] = True
    pts = sorted(((float(peaks[c]), int(round(cents[c][1])), int(round(cents[c][0])))
                  for c in range(1, n) if not touching[c]), reverse=True)
    return np.array([p[1:] for p in pts[:MINE_PER_IMAGE]], dtype=np.int64).reshape(-1, 2), len(pts)


def mining_due(cfg: TrainConfig, step: int, last_mined: int | None) -> bool:
    """At every multiple of mine_every steps, and at once where this process has not mined yet
    (last_mined None: hard negatives are not checkpointed, so a resumed run mines again).  A model
    trained from scratch is not mined before its first mine_every steps: it has learnt nothing,
    and would only time random blobs.  With no crops to centre on them (hard_share 0) a pass
    would be spent for nothing."""
    if not cfg.mine_every or not cfg.hard_share or (step < cfg.mine_every and not cfg.init_weights):
        return False
    return last_mined is None or (step % cfg.mine_every == 0 and step != last_mined)


@torch.inference_mode()
def mine_hard_negatives(model: LRRNet, mix, count: int, rng: np.random.Generator, device, tiles=(0, 0)) -> dict:
    """Run the model over `count` training images (drawn as training draws them) and store the
    centres of its false alarms in mix.hard.  Returns what it found."""
    was_training = model.training
    model.eval()
    seen, with_fa, fa_total = set(), 0, 0
    for _ in range(count):
        key = mix.pick(rng)
        if key in seen:
            continue
        seen.add(key)
        s = mix.sources[key[0]][key[1]]
        centres, count = false_alarm_centres(image_logits(model, s.image, device, *tiles), s.mask)
        if count:
            mix.hard[key] = centres
            with_fa += 1
            fa_total += count
        else:
            mix.hard.pop(key, None)
    model.train(was_training)
    return {"images": len(seen), "images_with_fa": with_fa, "fa_components": fa_total,
            "hard_images": len(mix.hard)}


#: Clip validation takes every n-th labelled frame of the validation clips.
CLIP_VAL_STEP = 20
#: Every n-th frame of the held-out DAUB sequences is validated on (250 frames -> 25).
DAUB_VAL_STEP = 10
#: In the checkpoint score, each false detection per clip frame costs this much of the drone's Pd.
CLIP_FA_COST = 0.2


# ---- checkpoints ---------------------------------------------------------------------------

def _ema_model(model: LRRNet, decay: float):
    """The weight average kept beside the trained model (torch's own EMA), or None when off."""
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    # use_buffers: a model with running statistics would have them averaged too (the registered
    # ones use GroupNorm and keep none).
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _save_checkpoint(run: Path, model: LRRNet, opt: torch.optim.Optimizer, state: dict, ema=None) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()})
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            tensors[f"opt.{i}.{k}"] = (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous()
    save_file(tensors, str(run / "last.tmp"))
    (run / "last.tmp").replace(run / "last.safetensors")
    (run / "state.json").write_text(json.dumps(state, indent=2))


def _part(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors of one part of a checkpoint ("model.", "ema."), without the prefix."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _load_checkpoint(run: Path, model: LRRNet, opt: torch.optim.Optimizer, ema=None) -> dict:
    tensors = load_file(str(run / "last.safetensors"))
    model.load_state_dict(_part(tensors, "model."))
    if ema is not None:
        saved = _part(tensors, "ema.")
        if saved:
            ema.load_state_dict(saved)
        else:  # a run that kept no average before its resume starts one from the resumed weights
            ema.update_parameters(model)
    osd = opt.state_dict()
    per: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, i, name = k.split(".", 2)
            per.setdefault(int(i), {})[name] = v
    osd["state"] = per
    opt.load_state_dict(osd)
    return json.loads((run / "state.json").read_text())


def checkpoint_weights(path: Path) -> tuple[LRRNet, str, dict]:
    """A run's last checkpoint (last.safetensors, state.json beside it) as (model, registered
    name, card): the weight average where the run kept one, else the trained weights."""
    try:
        state = json.loads((path.parent / "state.json").read_text())
        cfg = state["config"]
        tensors = load_file(str(path))
        model = build_model(cfg["model"])
        model.load_state_dict(_part(tensors, "ema.module.") or _part(tensors, "model."))
    except (OSError, KeyError, ValueError, RuntimeError, SafetensorError) as exc:
        raise UserError(f"{path}: not a readable run checkpoint of irstream train ({str(exc).splitlines()[0]})") from None
    card = {"training": {"epoch": state.get("epoch"), "step": state.get("step"), "recipe": cfg},
            "inference": {"tile_px": cfg.get("tile_px", 0), "tile_overlap_px": cfg.get("tile_overlap_px", 0)}}
    return model.eval(), cfg["model"], card


# ---- the loop ------------------------------------------------------------------------------

def train(cfg: TrainConfig, run: Path, resume: bool = False, progress=None) -> dict:
    """Train, checkpoint every epoch, keep the best on validation.  Returns the final state."""
    run.mkdir(parents=True, exist_ok=True)
    set_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    data = _TrainData(cfg)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = _initial_model(cfg).to(device).train()
    ema = _ema_model(model, cfg.ema_decay)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)

    # Any first validation beats the starting best: the score has no lower bound (it subtracts
    # false alarms per frame), so a from-scratch model's first epoch can score below -1.
    state = {"epoch": 0, "step": 0, "elapsed_s": 0.0, "train_cpu_s": 0.0, "best_score": -1e9, "best_epoch": 0, "config": asdict(cfg),
             "mining": []}
    if resume and (run / "last.safetensors").is_file():
        state = {**state, **_load_checkpoint(run, model, opt, ema), "config": asdict(cfg)}
    runner = StepRunner(model, opt, cfg.rec_weight, channels_last=cfg.channels_last, amp=cfg.amp,
                        target_smooth=cfg.target_smooth, negative_weight=cfg.negative_weight,
                        positive_weight=cfg.positive_weight)
    if ema is not None and cfg.channels_last:
        ema.module.to(memory_format=torch.channels_last)  # one layout: torch's batched update on CUDA
    steps_per_epoch = cfg.steps_per_epoch or data.steps_per_epoch(cfg.batch)
    total_steps = cfg.epochs * steps_per_epoch
    rng = np.random.default_rng([cfg.seed, state["epoch"]])
    t_start = time.monotonic() - state["elapsed_s"]

    cpu_mark = time.process_time()

    def count_cpu() -> None:
        nonlocal cpu_mark
        now = time.process_time()
        state["train_cpu_s"] += now - cpu_mark
        cpu_mark = now

    def progress_fraction() -> float:
        count_cpu()  # every run's card gives its training CPU time, whatever its budget
        if cfg.max_cpu_minutes:
            return min(1.0, state["train_cpu_s"] / (60.0 * cfg.max_cpu_minutes))
        if cfg.max_minutes:
            return min(1.0, (time.monotonic() - t_start) / (60.0 * cfg.max_minutes))
        return state["step"] / total_steps

    def keep_if_best(row: dict) -> None:
        """Validate the kept weights (validation is not training time), record the row, and save
        them as best.safetensors when they score higher than any epoch before."""
        nonlocal cpu_mark
        count_cpu()
        kept = model if ema is None else ema.module
        val = data.validate(kept, device)
        cpu_mark = time.process_time()
        row.update(val)
        _append_csv(run / "metrics.csv", row)
        if val["val_score"] > state["best_score"]:
            state["best_score"], state["best_epoch"] = val["val_score"], state["epoch"]
            save_weights(kept, run / "best.safetensors", cfg.model, _card(cfg, state, val, data))

    # With a wall-time budget the step count is unknown up front: the bar then only pulses.
    bar_total = None if cfg.max_minutes or cfg.max_cpu_minutes else total_steps
    task = progress.add_task("train", total=bar_total, completed=state["step"]) if progress else None
    last_mined, unvalidated = None, None
    while state["epoch"] < cfg.epochs and progress_fraction() < 1.0:
        losses = []
        batches = data.batches(steps_per_epoch, rng)
        for _ in range(steps_per_epoch):
            # Checked before every step, so passes fall on the multiples of mine_every whatever
            # the epoch length; the batches are drawn lazily and use a new pass at once.  No pass
            # once the budget is spent.
            if data.mix is not None and mining_due(cfg, state["step"], last_mined) and progress_fraction() < 1.0:
                found = mine_hard_negatives(model, data.mix, cfg.mine_images, rng, device, data.tiles)
                state["mining"].append({"step": state["step"], **found})
                last_mined = state["step"]
            batch = next(batches)
            if progress_fraction() >= 1.0:
                break  # the budget ends inside an epoch: validate and checkpoint what there is
            lr = cfg.lr * (1.0 - progress_fraction()) ** cfg.poly_power
            for g in opt.param_groups:
                g["lr"] = lr
            parts = runner.step(*(t.to(device) for t in batch))
            if ema is not None:
                ema.update_parameters(model)
            losses.append([parts["loss"], parts["seg"], parts["rec"]])
            state["step"] += 1
            if progress:
                progress.update(task, advance=1, description=f"epoch {state['epoch'] + 1} loss {losses[-1][0]:.3f}")
        if not losses:
            # A mining pass or making a batch spent the budget: no new epoch.  A run that never
            # stepped validates and keeps its start weights (epoch 0; there is no checkpoint to
            # resume); otherwise the last epoch was checkpointed, and is validated below.
            if state["step"] == 0:
                keep_if_best({"epoch": 0, "step": 0, "elapsed_s": round(time.monotonic() - t_start, 1)})
            break
        state["epoch"] += 1
        state["elapsed_s"] = time.monotonic() - t_start
        row = {"epoch": state["epoch"], "step": state["step"], "lr": lr,
               "loss": float(np.mean([l[0] for l in losses])),
               "seg_loss": float(np.mean([l[1] for l in losses])),
               "rec_loss": float(np.mean([l[2] for l in losses])), "elapsed_s": round(state["elapsed_s"], 1)}
        last = state["epoch"] >= cfg.epochs or progress_fraction() >= 1.0
        if state["epoch"] % cfg.val_every == 0 or last:
            keep_if_best(row)
            unvalidated = None
        else:
            _append_csv(run / "metrics.csv", row)
            unvalidated = row
        plot_training(run / "metrics.csv", run / "curves.png")
        _save_checkpoint(run, model, opt, state, ema)
    # A wall-time or CPU budget can run out after an epoch that val_every skipped (in the next
    # epoch's mining pass, or between epochs): the weights a run ends with are always validated.
    if unvalidated is not None:
        keep_if_best(unvalidated)
    return state


def plot_training(metrics_csv: Path, png: Path) -> None:
    """Loss and every validation figure against training minutes, one panel each (PNG)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    with metrics_csv.open() as f:
        rows = list(csv.DictReader(f))
    panels = [("loss", "training loss"), ("val_iou", "SIRST v1 val IoU %"), ("val_fa", "SIRST v1 val Fa x1e-6"),
              ("val_bg_clean", "backgrounds val: share clean"), ("val_clip_pd", "val clips: drone Pd"),
              ("val_clip_fa", "val clips: false det. / frame"), ("val_score", "checkpoint score")]
    panels = [(k, t) for k, t in panels if any(r.get(k) for r in rows)]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 2.8), squeeze=False)
    for ax, (key, title) in zip(axes[0], panels):
        pts = [(float(r["elapsed_s"]) / 60.0, float(r[key])) for r in rows if r.get(key)]
        ax.plot(*zip(*pts), "o-", ms=2)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("minutes")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


class _TrainData:
    """What one run trains and validates on: a SIRST-style split (with extras), or the real mix."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg, self.mix = cfg, None
        if cfg.mix:
            from irstream.data.mix import Mix, load_backgrounds, parse_mix

            from irstream.data.mix import FOLDS, clip_frames, daub_frames, drone_val_frames

            root, fold = Path(cfg.data_root), FOLDS[cfg.fold]
            self.mix = Mix.load(parse_mix(cfg.mix), root, cfg.fold)
            self.backgrounds_val = load_backgrounds(root / "sirst-v2-backgrounds", "val")
            self.clips_val = list(clip_frames(root / "antiuav-clips", fold.antiuav_held_out, CLIP_VAL_STEP)) \
                if "antiuav" in self.mix.weights else []
            self.daub_val = list(daub_frames(root / "daub", fold.daub_held_out, DAUB_VAL_STEP)) \
                if "daub" in self.mix.weights else []
            self.drones_val = list(drone_val_frames(root)) \
                if {"drone-ir", "cvpr2025", "reticle", "paste"} & set(self.mix.weights) else []
        else:
            self.train_set = load_split(cfg.data, cfg.train_split)
            for extra in cfg.extra_data:
                self.train_set += load_split(extra, "train")
        self.val_set = load_split(cfg.data, cfg.val_split)
        self.tiles = (cfg.tile_px, cfg.tile_overlap_px)

    def steps_per_epoch(self, batch: int) -> int:
        n = sum(self.mix.sizes().values()) if self.mix else len(self.train_set)
        return max(1, n // batch)

    def batches(self, steps: int, rng: np.random.Generator):
        if self.mix is not None:
            for _ in range(steps):
                yield make_mix_batch(self.mix, self.cfg, rng)
            return
        order = rng.permutation(len(self.train_set))
        for b in range(steps):
            idx = order[(b * self.cfg.batch) % len(order):][:self.cfg.batch]
            yield make_batch(self.train_set, idx, self.cfg, rng)

    def validate(self, model: LRRNet, device) -> dict:
        """Validation figures; val_score is what checkpoints are chosen on (higher is better):
        SIRST val IoU / 100; in mix runs plus the share of clean target-free val images, and with
        the clips in the mix plus the drone's Pd on the validation clips minus CLIP_FA_COST per
        false detection per frame; with DAUB in the mix the same for its held-out sequences."""
        val = evaluate(model, self.val_set, device, tiles=self.tiles)
        row = {f"val_{k}": v for k, v in val.items() if k in ("iou", "niou", "pd", "fa")}
        row["val_score"] = val["iou"] / 100.0
        if self.mix is not None:
            bg = background_false_alarms(model, self.backgrounds_val, device, tiles=self.tiles)
            row.update({"val_bg_clean": bg["clean_share"], "val_bg_dets": bg["dets_per_image"]})
            row["val_score"] += bg["clean_share"]
        for name, frames in (("clips", self.clips_val if self.mix else []), ("daub", self.daub_val if self.mix else []),
                             ("drones", self.drones_val if self.mix else [])):
            if not frames:
                continue
            key = VAL_SETS[name]
            res = clip_detections(model, frames, device, tiles=self.tiles)
            row.update({f"val_{key}_pd": res["pd"], f"val_{key}_fa": res["fa_per_frame"]})
            if name not in self.cfg.unscored:
                row["val_score"] += res["pd"] - CLIP_FA_COST * min(res["fa_per_frame"], 1.0 / CLIP_FA_COST)
        return row


def _initial_model(cfg: TrainConfig) -> LRRNet:
    if not cfg.init_weights:
        return build_model(cfg.model)
    from irstream.model.weights import load_weights

    model, _ = load_weights(cfg.init_weights, model_name=cfg.model)
    return model


def _append_csv(path: Path, row: dict) -> None:
    fields = ["epoch", "step", "lr", "loss", "seg_loss", "rec_loss", "elapsed_s",
              "val_iou", "val_niou", "val_pd", "val_fa", "val_bg_clean", "val_bg_dets",
              *(f"val_{key}_{m}" for key in VAL_SETS.values() for m in ("pd", "fa")), "val_score"]
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        if new:
            w.writeheader()
        w.writerow({k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()})


def _fold_card(cfg: TrainConfig) -> dict:
    """Which labelled clips and DAUB sequences trained the weights and which never reached them."""
    from irstream.data.mix import FOLDS

    return {"name": cfg.fold, **asdict(FOLDS[cfg.fold])}


def _card(cfg: TrainConfig, state: dict, val: dict, data: _TrainData) -> dict:
    if data.mix is not None:
        sources = {n: {"weight": round(w, 4), "images": data.mix.sizes()[n]} for n, w in data.mix.weights.items()}
        selected = ("SIRST v1 val IoU / 100 + share of sirst-v2-backgrounds val images with no detection"
                    + (f" + drone Pd on the validation clips (every {CLIP_VAL_STEP}th labelled frame) - {CLIP_FA_COST}"
                       " x their false detections per frame" if data.clips_val else "")
                    + (f" + the same for the held-out DAUB sequences (every {DAUB_VAL_STEP}th frame)"
                       if data.daub_val else "")
                    + (" + the same for the drone sets' validation videos and clips (irstream.data.mix.drone_val_frames)"
                       if data.drones_val else "")
                    + (f"; measured but not scored: {', '.join(cfg.unscored)}" if cfg.unscored else ""))
    else:
        sources = [cfg.data, *cfg.extra_data]
        selected = f"{cfg.val_split} IoU"
    return {
        "training": {
            "data": sources,
            "train_split": cfg.train_split,
            "val_split": cfg.val_split,
            "selected_on": f"{selected}, evaluated every {cfg.val_every} epoch(s)",
            "epoch": state["epoch"],
            "step": state["step"],
            "minutes": round(state["elapsed_s"] / 60.0, 1),
            "training_cpu_minutes": round(state.get("train_cpu_s", 0.0) / 60.0, 1),
            "recipe": asdict(cfg),
            "fold": _fold_card(cfg),
            "loss": f"SoftIoU + {cfg.rec_weight} x MSE(reconstruction, input)"
                    + (f" + {cfg.negative_weight} x BCE on target-free pixels" if cfg.negative_weight else "")
                    + (f" + {cfg.positive_weight} x BCE on target pixels" if cfg.positive_weight else "")
                    + "; no L1 term",
            "hard_negative_mining": state.get("mining", [])[-5:],
        },
        "inference": {"tile_px": cfg.tile_px, "tile_overlap_px": cfg.tile_overlap_px},
        "metrics": {"val": {k: round(v, 4) if isinstance(v, float) else v for k, v in val.items()}},
    }
