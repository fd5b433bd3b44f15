"""The OpenVINO runtime: converted once and cached, the reference's masks on real images, bf16
only where the CPU has it, and never picked by "auto" when its masks disagree."""

import numpy as np
import pytest
import torch

from conftest import REPO, SIRST
from irstream.model import openvino as ovrt
from irstream.model.runtime import MASK_IOU_MIN, TorchRuntime, mask_iou
from irstream.model import segment
from irstream.model.segment import StreamSegmenter
from irstream.model.weights import load_weights
from irstream.tools.bench import real_frames

pytest.importorskip("openvino", reason="openvino (the openvino extra) is not installed")

WEIGHTS = REPO / "weights" / "lrrnet_light_real2.safetensors"


@pytest.fixture(scope="module")
def model():
    return load_weights(WEIGHTS)[0].eval()


@pytest.fixture(scope="module")
def frames():
    # Real frames of an odd size: the graph must pad to the model's multiple and crop back.
    return real_frames((150, 190), 6, SIRST)[0]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IRSTREAM_CACHE", str(tmp_path / "cache"))


def _run(rt, frames):
    return [rt(f[None, None])[0] for f in frames]


def test_fp32_gives_eager_fp32s_probabilities_on_real_frames(model, frames):
    got, want = _run(ovrt.OpenVinoRuntime(model, "fp32"), frames), _run(TorchRuntime(model, torch.device("cpu")), frames)
    assert max(np.abs(g - w).max() for g, w in zip(got, want)) < 1e-3  # fp32 with its norms summed in another order
    assert mask_iou(got, want) == 1.0 and any((w > 0.5).any() for w in want)


@pytest.mark.parametrize("channels,groups", [(8, 8), (24, 8), (64, 8)])
def test_flat_group_norm_is_group_norm(channels, groups):
    """One channel per group (instance norm), several, and a flat patch (tiny variance)."""
    norm = torch.nn.GroupNorm(groups, channels)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    x = torch.randn(3, channels, 20, 28) * 4 + 7
    x[1] = 5 + 1e-3 * torch.randn(channels, 20, 28)
    with torch.no_grad():
        # the flat patch: its mean is known to fp32 precision (~5e-7 of 5), a 1e-3 spread to ~5e-4 of itself
        assert torch.allclose(ovrt.FlatGroupNorm(norm)(x), norm(x), atol=1e-3, rtol=1e-4)


def test_the_fp32_graph_has_its_norms_flat_and_bf16_keeps_the_converters(model):
    flat, plain = ovrt.converted(model, flat_norms=True), ovrt.converted(model)
    norms = {g: sum(op.get_type_name() == "GroupNormalization" for op in g.get_ordered_ops()) for g in (flat, plain)}
    in_model = sum(isinstance(m, torch.nn.GroupNorm) for m in model.modules())
    assert norms[flat] == 0 and norms[plain] == in_model - 1  # the reconstruction head's is not converted
    assert not any(isinstance(m, torch.nn.GroupNorm) for m in ovrt.with_flat_norms(model).modules())
    assert any(isinstance(m, torch.nn.GroupNorm) for m in model.modules())  # a copy was changed


#: A pixel whose eager fp32 probability is this close to 0.5 may fall on either side in bf16.
BORDERLINE = 0.1


def test_every_precision_this_cpu_offers_keeps_the_masks(model, frames):
    """The masks agree as `auto` asks, or (on the sample videos' frames, some 60 target px in
    all, where one pixel is 1.5% of the IoU) differ only in pixels that sit on the threshold."""
    want = _run(TorchRuntime(model, torch.device("cpu")), frames)
    for precision in ovrt.cpu_precisions():
        got = _run(ovrt.OpenVinoRuntime(model, precision), frames)
        if mask_iou(got, want) >= MASK_IOU_MIN:
            continue
        flipped = np.concatenate([w[(g > 0.5) != (w > 0.5)] for g, w in zip(got, want)])
        assert np.abs(flipped - 0.5).max() < BORDERLINE and len(flipped) <= 2, (precision, flipped)


def test_a_frame_size_seen_often_runs_in_its_own_fixed_size_graph_with_the_same_maps(model, frames):
    rt = ovrt.OpenVinoRuntime(model, "fp32")
    batch = np.stack(frames[:3])[:, None]
    first = rt(batch)  # the any-size graph
    for _ in range(ovrt.STATIC_AFTER_CALLS):
        again = rt(batch)
    assert list(rt._static) == [(1, 150, 190)]
    assert again.shape == first.shape and np.abs(again - first).max() < 1e-4
    for side in range(64, 64 + 8 * (ovrt.STATIC_SIZES_KEPT + 1), 8):  # a folder of many sizes...
        rt(batch[:1, :, :side, :side])
    assert len(rt._static) == 1  # ...stays on the any-size graph
    for side in range(64, 64 + 8 * ovrt.STATIC_SIZES_KEPT, 8):
        for _ in range(ovrt.STATIC_AFTER_CALLS):
            rt(batch[:1, :, :side, :side])
    assert len(rt._static) == ovrt.STATIC_SIZES_KEPT and (1, 150, 190) not in rt._static  # oldest dropped


def test_warm_up_compiles_the_tiles_and_coarse_pass_graphs_before_the_first_frame(model):
    seg = StreamSegmenter(model, "cpu", runtime="openvino", tile_px=192, tile_overlap_px=16, coarse=4)
    seg.warm_up((512, 640))
    assert set(seg.runtime._static) == {(1, 192, 192), (1, 128, 160)}


def test_conversion_is_cached_by_the_weights_and_read_back(model, tmp_path, monkeypatch):
    ovrt.converted(model)
    (entry,) = (tmp_path / "cache" / "openvino").iterdir()
    ovrt.converted(model, flat_norms=True)
    assert len(list((tmp_path / "cache" / "openvino").iterdir())) == 2  # each form its own entry
    assert (entry / "model.xml").is_file() and (entry / "model.bin").is_file()

    def refuse(*args, **kwargs):
        raise AssertionError("converted again although the cache holds the graph")

    monkeypatch.setattr(ovrt.import_openvino(), "convert_model", refuse)
    assert ovrt.converted(model) is not None
    other = load_weights(REPO / "weights" / "lrrnet_light_sirst.safetensors")[0]
    with pytest.raises(AssertionError, match="converted again"):
        ovrt.converted(other)  # other weights, another key


def test_a_cpu_without_bf16_runs_fp32():
    assert ovrt.cpu_precisions(["FP32", "INT8", "BIN"]) == ["fp32"]
    assert ovrt.cpu_precisions(["BF16", "FP32", "INT8"]) == ["bf16", "fp32"]


def test_openvino_runtime_falls_back_to_fp32_where_the_cpu_has_no_bf16(model, frames, monkeypatch):
    monkeypatch.setattr("irstream.model.segment.cpu_precisions", lambda: ovrt.cpu_precisions(["FP32", "INT8"]))
    seg = StreamSegmenter(model, "cpu", runtime="openvino")
    seg.warm_up(frames[0].shape)
    assert seg.runtime_label == "openvino-fp32"


class _Broken:
    """A runtime that is very fast and wrong (finds nothing)."""

    spec = type("Spec", (), {"label": "broken"})()

    def __call__(self, batch):
        return np.zeros((batch.shape[0], *batch.shape[2:]), np.float32)


def test_auto_keeps_its_choice_for_the_next_run(model, frames, monkeypatch):
    monkeypatch.setattr(segment, "machine_quiet", lambda: True)
    first = StreamSegmenter(model, "cpu", runtime="auto")
    first.warm_up(frames[0].shape)
    again = StreamSegmenter(model, "cpu", runtime="auto")
    again.warm_up(frames[0].shape)
    assert again.picked_from_cache and again.runtime_label == first.runtime_label
    other_size = StreamSegmenter(model, "cpu", runtime="auto")
    other_size.warm_up((frames[0].shape[0] + 8, frames[0].shape[1]))
    assert not other_size.picked_from_cache


def test_a_choice_timed_on_a_busy_machine_is_not_kept(model, frames, monkeypatch):
    """Timed beside other work, the slower runtime can win; the next run times again."""
    monkeypatch.setattr(segment, "machine_quiet", lambda: False)
    for _ in range(2):
        seg = StreamSegmenter(model, "cpu", runtime="auto")
        seg.warm_up(frames[0].shape)
        assert not seg.picked_from_cache


def test_auto_leaves_out_a_runtime_that_cannot_start(model, frames, caplog):
    def refuse():
        raise RuntimeError("Exception from src/inference: the CPU plugin does not support this CPU")

    seg = StreamSegmenter(model, "cpu", runtime="auto")
    seg._candidates.append(("openvino-refused", refuse))
    seg.warm_up(frames[0].shape)
    assert seg.runtime_label != "openvino-refused" and "openvino-refused left out" in caplog.text


def test_auto_never_picks_a_runtime_whose_masks_disagree(model, frames):
    seg = StreamSegmenter(model, "cpu", runtime="auto")
    seg._candidates.append(("broken", _Broken))
    seg.warm_up(frames[0].shape)
    assert seg.runtime_label != "broken" and not seg.picked_from_cache
    want = _run(TorchRuntime(model, torch.device("cpu")), frames)
    assert mask_iou([seg.push(0, f)[0][1] for f in frames], want) >= MASK_IOU_MIN
