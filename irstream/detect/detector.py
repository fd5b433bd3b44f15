"""The detector: a frame in, its targets out.

One object owns what turns a sensor frame into detections, so that every user of the model
(runs, eval-track, detect, calibrate, the soak) wires it the same way: the weights and their
card (input scale, inference tiles, calibrated threshold), preprocessing with its valid-pixel
mask, one StreamSegmenter on the chosen device and runtime, and the target stage.

It keeps per-stream state (the AGC's smoothed limits, the learnt on-screen-display mask);
`reset()` starts a new stream, e.g. between unrelated still images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from irstream.model.config import ModelConfig
from irstream.detect.osd import OsdConfig
from irstream.detect.preprocess import PreprocessConfig, Preprocessor
from irstream.model.segment import StreamSegmenter, resolve_device, set_threads
from irstream.model.reuse import TileMemory
from irstream.detect.targets import TargetConfig, TargetStage, resolve_targets
from irstream.types import Detections, Frame, Prepared
from irstream.model.weights import load_weights


@dataclass(frozen=True)
class LoadedModel:
    """Weights loaded as a ModelConfig says: the model on its device, its card, and what the
    card fixes about running it (inference tiles, the calibrated threshold)."""

    model: object  # a registered model (irstream.model.registry), in eval mode on `device`
    card: dict
    path: Path  # the weights file
    device: object  # torch.device
    tiles: tuple[int, int]  # (tile_px, overlap_px); 0 = whole frames
    targets: TargetConfig  # with its score threshold resolved: the config's, else the card's operating point

    @property
    def threshold(self) -> float:
        return self.targets.score_threshold


def load_model(cfg: ModelConfig = ModelConfig(), targets: TargetConfig = TargetConfig()) -> LoadedModel:
    """The one place weights are turned into something that runs."""
    path = cfg.weights_path
    model, card = load_weights(path)
    device = resolve_device(cfg.device)
    return LoadedModel(model.eval().to(device), card, path, device, cfg.tiles(card), resolve_targets(targets, card))


def _runtime(cfg: ModelConfig):
    """The runtime name for a local runtime; a TritonRuntime for "triton"."""
    if cfg.runtime != "triton":
        return cfg.runtime
    from irstream.model.triton import TritonConfig, TritonRuntime

    return TritonRuntime(TritonConfig(cfg.triton_url, cfg.triton_model, cfg.triton_version))


@dataclass(frozen=True)
class Detected:
    """One frame through the detector: what the model saw, its map and the targets."""

    prepared: Prepared
    prob: np.ndarray  # (H, W) target probability, zero where targets are not reported
    detections: Detections


class Detector:
    """Frames in, detections out.

    `detector(frame)` handles one frame (a Frame, or a bare uint8/uint16 image) and returns
    its Detected; streams go through `prepare` -> `push`/`flush` -> `find`, which lets a GPU
    overlap copies of one frame with the forward pass of the next (results come back in order,
    possibly one frame late).
    """

    def __init__(self, model: ModelConfig = ModelConfig(), preprocess: PreprocessConfig = PreprocessConfig(),
                 targets: TargetConfig = TargetConfig(), osd: OsdConfig = OsdConfig(), threads: int = 0) -> None:
        set_threads(threads)
        self.model_cfg, self.preprocess_cfg, self.osd_cfg = model, preprocess, osd
        loaded = load_model(model, targets)
        self.targets_cfg = loaded.targets  # the threshold resolved once, here
        self.model, self.card, self.device, self.tiles = loaded.model, loaded.card, loaded.device, loaded.tiles
        self.segmenter = StreamSegmenter(self.model, self.device, model.upscale, _runtime(model),
                                         tile_px=self.tiles[0], tile_overlap_px=self.tiles[1], coarse=model.coarse,
                                         threads=threads, reuse=self._tile_memory(model))
        self.reset()

    def _tile_memory(self, model: ModelConfig) -> TileMemory | None:
        # CPU only: on a GPU each new batch size of changed tiles would capture a CUDA graph.
        if not model.reuse_levels or self.device.type != "cpu" or model.runtime == "triton":
            return None
        return TileMemory(model.reuse_levels, model.reuse_max_frames, hot=self.targets_cfg.score_threshold,
                          max_tiles=model.reuse_max_tiles)

    @classmethod
    def from_config(cls, cfg) -> "Detector":
        """The detector a PipelineConfig describes ([model], [preprocess], [targets], [osd])."""
        return cls(cfg.model, cfg.preprocess, cfg.targets, cfg.osd, cfg.run.threads)

    def reset(self) -> None:
        """Forget the stream: AGC limits, the learnt text mask and the tiles' kept maps."""
        self.stream = self.new_stream()
        self.segmenter.reset()

    def new_stream(self, lossless: bool = False) -> "DetectorStream":
        """The per-stream state of one more source sharing this detector's model; lossless: the
        source's frames are stored exactly (Source.lossless)."""
        return DetectorStream(Preprocessor(self.preprocess_cfg, eight_bit_scale=self.model.cfg.input_scale),
                              TargetStage(self.targets_cfg, self.osd_cfg, lossless))

    @property
    def threshold(self) -> float:
        """The score threshold in use (the card's operating point unless the config set one)."""
        return self.targets_cfg.score_threshold

    @property
    def runtime_label(self) -> str:
        return self.segmenter.runtime_label

    def warm_up(self, shape: tuple[int, int]) -> None:
        self.segmenter.warm_up(shape)

    def prepare(self, frame: Frame) -> Prepared:
        return self.stream.prepare(frame)

    def push(self, prepared: Prepared) -> list[tuple[Prepared, np.ndarray]]:
        """Hand one prepared frame to the model; returns the (prepared, prob) pairs finished."""
        return [self._masked(p, prob) for p, prob in self.segmenter.push(prepared, prepared.unit)]

    def flush(self) -> list[tuple[Prepared, np.ndarray]]:
        return [self._masked(p, prob) for p, prob in self.segmenter.flush()]

    def find(self, prepared: Prepared, prob: np.ndarray) -> Detections:
        """The targets in a finished map.  Call it in frame order: it learns the text mask."""
        return self.stream.find(prepared, prob)

    def ignored(self, prepared: Prepared) -> np.ndarray | None:
        """(H, W) bool pixels no target is reported from, or None."""
        return self.stream.ignored(prepared)

    def batch(self, prepared: list[Prepared]) -> list[np.ndarray]:
        """Probability maps of frames from several streams in one forward pass per tile size
        (runs with several sources); each stream then finds its targets with its own state."""
        ids = [p.frame.source_id for p in prepared]
        slots = [(sid, ids[:i].count(sid)) for i, sid in enumerate(ids)]  # the same source given twice: two streams
        probs = self.segmenter.batch([p.unit for p in prepared], slots)
        return [self._masked(p, prob)[1] for p, prob in zip(prepared, probs)]

    def __call__(self, frame: Frame | np.ndarray) -> Detected:
        if isinstance(frame, np.ndarray):
            frame = as_frame(frame)
        done = self.push(self.prepare(frame)) + self.flush()
        (prepared, prob), = done
        return Detected(prepared, prob, self.find(prepared, prob))

    @staticmethod
    def _masked(prepared: Prepared, prob: np.ndarray) -> tuple[Prepared, np.ndarray]:
        return prepared, prob if prepared.valid is None else prob * prepared.valid


@dataclass
class DetectorStream:
    """What a detector keeps per stream: the AGC's limits and the learnt text mask."""

    preprocessor: Preprocessor
    targets: TargetStage

    def prepare(self, frame: Frame) -> Prepared:
        return self.preprocessor(frame)

    def find(self, prepared: Prepared, prob: np.ndarray) -> Detections:
        return self.targets(prob, prepared.unit, prepared.frame.timestamp_s)

    def ignored(self, prepared: Prepared) -> np.ndarray | None:
        return self.targets.ignored(prepared.valid)


def as_frame(image: np.ndarray, index: int = 0, timestamp_s: float = 0.0, source_id: str = "array") -> Frame:
    """A bare (H, W) uint8 or uint16 image as a Frame."""
    if image.ndim != 2 or image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"an image for the detector is (H, W) uint8 or uint16 gray, got {image.shape} {image.dtype}")
    return Frame(image, index, timestamp_s, source_id, 8 if image.dtype == np.uint8 else 16)
