"""One training run's settings: `TrainConfig`, the single definition of every training default.

Each field carries its help text (and, where it differs from the field's name, its flag), so
that `irstream train` is generated from this class (irstream.cli.model) and cannot drift from it.
Defaults are the paper's recipe (Sec. V-A) on SIRST v1's train split.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from irstream.data import default_data_root

#: Validation sets of mix runs beside SIRST v1 val and the backgrounds (see irstream.train.loop),
#: by name, with the key of their columns in metrics.csv (val_<key>_pd, val_<key>_fa).
VAL_SETS = {"clips": "clip", "daub": "daub", "drones": "drones"}


def option(default=None, help: str = "", flag: str = "", factory=None):
    """A TrainConfig field with its command-line help; flag: the option's name where it is not
    the field's (e.g. --crop for crop_px)."""
    meta = {"help": help, "flag": flag}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _sirst_v1() -> str:
    return str(default_data_root() / "sirst-v1")


def _data_root() -> str:
    return str(default_data_root())


@dataclass
class TrainConfig:
    """One training run (see the help of each field, which `irstream train --help` shows)."""

    model: str = option("lrrnet", "Registered model name (see `irstream models`).")
    data: str = option(help="SIRST-style dataset root; default: sirst-v1 in $IRSTREAM_DATA (../shared/data).",
                       factory=_sirst_v1)
    train_split: str = option("train", "Split trained on.")
    val_split: str = option("val", "Split the best epoch is chosen on.")
    extra_data: list[str] = option(help="More SIRST-style roots (their 'train' split), e.g. NUDT-SIRST.", factory=list)
    epochs: int = option(400, "Epochs (or validation rounds, with --steps-per-epoch).")
    batch: int = option(8, "Images per step.")
    lr: float = option(1e-4, "Initial learning rate (Adam).")
    poly_power: float = option(0.9, "lr = lr0 x (1 - progress) ^ this; progress in steps, or in time with a "
                                    "time budget, so a budgeted run still decays to zero.")
    rec_weight: float = option(0.1, "Weight of the reconstruction MSE (Sec. IV-D).")
    crop_px: int = option(0, "Square crop side, px; 0 = whole images resized to --resize.", flag="crop")
    crop_sizes: tuple[int, ...] = option((), "Mixed crop sides, px, one drawn per batch (repeatable; --mix runs), so "
                                             "the weights learn tiles and whole frames; unset = --crop.")
    resize_px: int = option(512, "Side whole images are resized to when --crop is 0, px.", flag="resize")
    target_crop_share: float = option(0.7, "Share of crops centred (with jitter) on a target pixel; small targets "
                                           "are a tiny share of pixels, so random crops are mostly empty.")
    flips: bool = option(True, "Random horizontal and vertical flips.")
    synthetic_share: float = option(0.0, "Share of each batch from the synthetic generator.")
    half_scale_share: float = option(0.0, "Share of crops taken at twice the side and shrunk by 2, so the model "
                                          "also learns targets of 1 to 3 px.")
    val_every: int = option(1, "Validate every N epochs.")
    max_minutes: float = option(0.0, "Wall-time budget, min; the lr decays over it. 0 = by epochs.")
    max_cpu_minutes: float = option(0.0, "Budget in CPU minutes of training, validation not counted (equal-cost "
                                         "model comparisons); the lr decays over it. 0 = off.")
    seed: int = option(0, "Random seed.")
    threads: int = option(0, "CPU threads for torch; 0 = irstream's default, as in every command (all usable "
                             "cores but one for torch).")
    init_weights: str = option("", "Fine-tune: start from these irstream weights (same model).", flag="init")
    mix: list[str] = option(help="Real-data source and weight, repeatable: sirst-v1:0.3, nudt-sirst, backgrounds, "
                                 "daub, antiuav, drone-ir, cvpr2025, close-drones, reticle, paste (irstream/data/mix.py); "
                                 "unset = --data and --extra-data.", factory=list)
    data_root: str = option(help="Folder holding the --mix sources; default: $IRSTREAM_DATA (../shared/data).",
                            factory=_data_root)
    hard_share: float = option(0.0, "Share of crops centred on the model's own mined false alarms (--mix runs).")
    mine_every: int = option(0, "Mine false alarms every N steps; 0 = never (nor with --hard-share 0).")
    mine_images: int = option(300, "Training images run per mining pass.")
    steps_per_epoch: int = option(0, "Steps between validations and checkpoints; 0 = one pass over the data.")
    intensity_jitter: float = option(0.0, "Random gain 1 +- J and offset +- J/2 per crop, so the model does not "
                                          "learn one sensor's gray levels.")
    channels_last: bool = option(False, "Channels-last memory (faster on most CPUs; see `irstream bench train`).")
    amp: str = option("", "'' (fp32) or bf16 autocast.")
    tile_px: int = option(0, "Validate and mine in tiles of this side, px, as the weights will run (the card "
                             "records it as their inference contract); 0 = whole images.")
    tile_overlap_px: int = option(64, "Overlap of those tiles, px.")
    target_smooth: float | None = option(None, "SoftIoU smoothing on images with a target (0.1 keeps 1-px targets "
                                               "worth learning); unset = 1, as on target-free images.")
    negative_weight: float = option(0.0, "Weight of a cross-entropy term on target-free pixels (pushes down "
                                         "confident false alarms); 0 = off.")
    positive_weight: float = option(0.0, "Weight of a cross-entropy term on target pixels, per target pixel (raises "
                                         "targets the model has learnt to suppress, where SoftIoU's gradient "
                                         "vanishes); 0 = off.")
    ema_decay: float = option(0.0, "Validate and keep an exponential moving average of the weights with this "
                                   "per-step decay (0.999 ~ the last 1,000 steps); 0 = off, below 1.")
    unscored: list[str] = option(help="A validation set (clips, daub, drones) measured but left out of the "
                                      "selection score, so no choice of the run uses it (repeatable).", factory=list)
    fold: str = option("a", "Which labelled clips and DAUB sequences train: 'a' (the shipped weights), 'b' "
                            "(the other way round), 'c' or 'd' (two of fold a's DAUB ground sequences held out "
                            "each); the held-out ones of b-d are measured, never scored, so that every clip and "
                            "sequence is scored by weights that never saw it (irstream/data/mix.py).")

    def __post_init__(self) -> None:
        if self.crop_px % 8 or self.resize_px % 8 or any(c % 8 or c <= 0 for c in self.crop_sizes):
            raise ValueError("crop_px, crop_sizes and resize_px must be multiples of 8 (the model's size multiple)")
        for name in ("target_crop_share", "synthetic_share", "half_scale_share", "hard_share", "intensity_jitter"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}={getattr(self, name)}: must be within [0, 1]")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay={self.ema_decay}: must be within [0, 1) (1 would never move from the first step)")
        if self.amp not in ("", "bf16"):
            raise ValueError(f"amp={self.amp!r}: must be '' (fp32) or 'bf16'")
        if self.threads < 0:
            raise ValueError(f"threads={self.threads}: must be >= 0 (0 = the default)")
        from irstream.model.registry import trainable  # torch: loaded when a run is configured, not with the CLI

        if not trainable(self.model):
            raise ValueError(f"model {self.model!r} has no parameters to learn (a classical filter); pick a network")
        if self.mix:
            from irstream.data.mix import parse_mix

            parse_mix(self.mix)
        from irstream.data.mix import FOLDS

        if self.fold not in FOLDS:
            raise ValueError(f"fold={self.fold!r}: must be one of {', '.join(FOLDS)}")
        if self.fold != "a":
            # The shipped recipe chooses its checkpoint on fold a's validation clips; another fold's
            # held-out clips exist to be scored by weights that no choice of theirs touched.
            self.unscored = sorted(set(self.unscored) | {"clips", "daub"})
        if set(self.unscored) - set(VAL_SETS):
            raise ValueError(f"unscored={self.unscored}: known validation sets are {', '.join(VAL_SETS)}")
