"""Runtimes: torch paths and ONNX Runtime give the reference's masks on real images."""

import numpy as np
import pytest
import torch

from irstream.errors import UserError
from irstream.model.openvino import openvino_available
from irstream.model.runtime import (MASK_IOU_MIN, OnnxRuntime, RuntimeSpec, TorchRuntime, export_onnx, mask_iou,
                                    onnxruntime_available)
from irstream.tools.bench import real_frames
from irstream.model.segment import StreamSegmenter
from irstream.model.weights import load_weights

from conftest import REPO, SIRST

WEIGHTS = REPO / "weights" / "lrrnet_light_sirst.safetensors"
needs_ort = pytest.mark.skipif(not onnxruntime_available(), reason="onnxruntime (the onnx extra) is not installed")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def model():
    return load_weights(WEIGHTS)[0]


@pytest.fixture(scope="module")
def frames():
    # Odd sizes on purpose: every runtime must pad to the model's multiple and crop back.
    return real_frames((92, 118), 6, SIRST)[0]


def _run(rt, frames):
    return [rt(f[None, None])[0] for f in frames]


def test_channels_last_matches_the_reference(model, frames):
    ref = _run(TorchRuntime(model, CPU), frames)
    got = _run(TorchRuntime(model, CPU, RuntimeSpec(channels_last=True)), frames)
    assert got[0].shape == (92, 118)
    # oneDNN sums in another order for NHWC: probabilities move by a few 1e-3 at most.
    assert max(np.abs(g - r).max() for g, r in zip(got, ref)) < 1e-2 and mask_iou(got, ref) > 0.99


def test_a_runtime_leaves_the_callers_model_alone(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    TorchRuntime(model, CPU, RuntimeSpec(channels_last=True))
    assert all(torch.equal(before[k], v) and v.dtype == torch.float32 for k, v in model.state_dict().items())


def test_half_precision_and_graphs_are_refused_on_cpu(model):
    with pytest.raises(ValueError, match="CUDA"):
        TorchRuntime(model, CPU, RuntimeSpec(precision="fp16"))
    with pytest.raises(ValueError, match="CUDA"):
        TorchRuntime(model, CPU, RuntimeSpec(cuda_graphs=True))


@needs_ort
def test_onnx_export_runs_in_onnxruntime_like_torch(model, frames, tmp_path):
    dest = tmp_path / "light.onnx"
    export_onnx(model, dest)
    ref = _run(TorchRuntime(model, CPU), frames)
    got = _run(OnnxRuntime(dest), frames)
    assert max(np.abs(g - r).max() for g, r in zip(got, ref)) < 1e-3 and mask_iou(got, ref) > 0.99
    # Dynamic batch: two frames in one call give what each gives alone.
    both = OnnxRuntime(dest)(np.stack([frames[0], frames[1]])[:, None])
    np.testing.assert_allclose(both[1], got[1], atol=1e-5)


@needs_ort
@pytest.mark.parametrize("shape", [(250, 256), (484, 640), (33, 71), (8, 8)])
def test_exported_graph_takes_any_frame_size_in_plain_onnxruntime(model, frames, tmp_path, shape):
    """What a user who deploys the .onnx without irstream does: any size, no padding by hand."""
    import onnxruntime as ort

    dest = tmp_path / "light.onnx"
    export_onnx(model, dest)
    session = ort.InferenceSession(str(dest), providers=["CPUExecutionProvider"])
    h, w = shape
    x = np.ascontiguousarray(np.resize(frames[0], (h, w)), dtype=np.float32)[None, None]
    got = session.run(None, {"frames": x})[0]
    ref = _run(TorchRuntime(model, CPU), [x[0, 0]])[0]
    assert got.shape == (1, 1, h, w) and np.abs(got[0, 0] - ref).max() < 1e-3


def test_onnx_weights_are_refused_with_the_reason(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"\x08\x07")
    with pytest.raises(UserError, match="ONNX export.*safetensors"):
        load_weights(tmp_path / "m.onnx")


@needs_ort
def test_onnxruntime_refuses_foreign_and_broken_files(tmp_path, model):
    import onnx

    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf at all")
    with pytest.raises(UserError, match="cannot load"):
        OnnxRuntime(broken)
    foreign = tmp_path / "foreign.onnx"
    proto = onnx.load_from_string(export_onnx(model))
    del proto.metadata_props[:]
    foreign.write_bytes(proto.SerializeToString())
    with pytest.raises(UserError, match="not an irstream ONNX export"):
        OnnxRuntime(foreign)


def test_stream_segmenter_auto_picks_a_cpu_runtime_by_timing(model, frames):
    seg = StreamSegmenter(model, "cpu", runtime="auto")
    seg.warm_up(frames[0].shape)
    expect = ({"eager-fp32-cl"} | ({"onnxruntime"} if onnxruntime_available() else set())
              | ({"openvino-fp32", "openvino-bf16"} if openvino_available() else set()))
    assert seg.runtime_label in expect
    ref = StreamSegmenter(model, "cpu", runtime="torch")
    assert ref.runtime_label == "eager-fp32"
    got = [seg.push(0, f)[0][1] for f in frames]
    want = [ref.push(0, f)[0][1] for f in frames]
    assert mask_iou(got, want) >= MASK_IOU_MIN


def test_stream_segmenter_rejects_an_unknown_runtime(model):
    with pytest.raises(UserError, match="runtime = 'tensorrt'"):
        StreamSegmenter(model, "cpu", runtime="tensorrt")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
@pytest.mark.parametrize("spec", [RuntimeSpec(cuda_graphs=True),
                                  RuntimeSpec(precision="fp16", channels_last=True),
                                  RuntimeSpec(precision="fp16", channels_last=True, cuda_graphs=True)],
                         ids=lambda s: s.label)
def test_cuda_paths_keep_the_reference_masks(model, frames, spec):
    cuda = torch.device("cuda")
    ref = [TorchRuntime(model, cuda).forward(torch.from_numpy(f[None, None]).to(cuda))[0].cpu().numpy() for f in frames]
    rt = TorchRuntime(model, cuda, spec)
    got = [rt.forward(torch.from_numpy(f[None, None]).to(cuda))[0].cpu().numpy() for f in frames]
    assert mask_iou(got, ref) >= 0.99


def test_export_leaves_the_callers_model_alone(model):
    pytest.importorskip("onnxruntime")
    model.train()
    try:
        export_onnx(model)
        assert model.training
    finally:
        model.eval()


def test_target_logits_is_forwards_first_output(model, frames):
    x = torch.from_numpy(frames[0][None, None, :88, :112].copy())
    with torch.inference_mode():
        # The same kernels on the same input, but two calls may take different oneDNN paths (the
        # forward also runs the reconstruction head): equal to float32 rounding, not bit for bit.
        np.testing.assert_allclose(model.target_logits(x).numpy(), model(x)[0].numpy(), rtol=0, atol=1e-4)


def test_torch_runtime_refuses_another_backend(model):
    with pytest.raises(ValueError, match="onnxruntime"):
        TorchRuntime(model, CPU, RuntimeSpec(backend="onnxruntime"))
