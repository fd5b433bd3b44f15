import json

import pytest
import torch
from safetensors.torch import save_file

from irstream.errors import UserError
from irstream.model.registry import build_model
from irstream.model.weights import card_path, load_weights, save_weights


@pytest.fixture()
def light_weights(tmp_path):
    path = tmp_path / "light.safetensors"
    save_weights(build_model("lrrnet_light"), path, "lrrnet_light", {"training": {"note": "test"}})
    return path


def test_round_trip_rebuilds_the_same_model(light_weights):
    model, card = load_weights(light_weights)
    ref = build_model("lrrnet_light")
    assert model.cfg == ref.cfg
    assert card["model"] == "lrrnet_light" and card["config"]["channels"] == [8, 16, 32, 64]
    assert json.loads(card_path(light_weights).read_text())["training"]["note"] == "test"


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="no such weights file"):
        load_weights(tmp_path / "nope.safetensors")


def test_pickle_is_refused_not_loaded(tmp_path):
    path = tmp_path / "model.pth"
    torch.save(build_model("lrrnet_light").state_dict(), path)
    with pytest.raises(UserError, match="never loads"):
        load_weights(path)


def test_a_safetensors_header_length_starting_with_a_pickle_byte_still_loads(tmp_path):
    # The file starts with its header's length, little-endian: a length of 0x..80 starts it with
    # 0x80, a pickle's first byte (a real LCRNet checkpoint was refused for it).
    from irstream.model.weights import _read_tensors

    path = tmp_path / "w.safetensors"
    for pad in range(512):
        save_file({"w": torch.ones(3)}, str(path), metadata={"pad": "x" * pad})
        if path.read_bytes()[:1] == b"\x80":
            break
    assert path.read_bytes()[:1] == b"\x80"
    tensors, meta = _read_tensors(path)
    assert torch.equal(tensors["w"], torch.ones(3)) and meta["pad"] == "x" * pad


def test_truncated_file(light_weights):
    data = light_weights.read_bytes()
    light_weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="not a valid safetensors"):
        load_weights(light_weights)


def test_garbage_file(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(UserError, match="not a valid safetensors"):
        load_weights(path)


def test_foreign_safetensors_without_metadata(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, str(path))
    with pytest.raises(UserError, match="not written by irstream"):
        load_weights(path)


def test_wrong_shapes(tmp_path):
    """Light tensors under metadata that claims the full architecture."""
    light = build_model("lrrnet_light").state_dict()
    path = tmp_path / "mislabelled.safetensors"
    meta = {"format": "irstream-weights/1", "model": "lrrnet",
            "config": json.dumps(build_model("lrrnet").cfg.to_dict())}
    save_file({k: v.contiguous() for k, v in light.items()}, str(path), metadata=meta)
    with pytest.raises(UserError, match="do not fit the model"):
        load_weights(path)


def test_wrong_architecture_name(light_weights):
    with pytest.raises(UserError, match="holds 'lrrnet_light' weights, not 'lrrnet'"):
        load_weights(light_weights, model_name="lrrnet")


def test_bad_config_in_metadata(tmp_path):
    path = tmp_path / "badcfg.safetensors"
    meta = {"format": "irstream-weights/1", "model": "lrrnet", "config": json.dumps({"channels": [8], "x": 1})}
    save_file({"w": torch.zeros(1)}, str(path), metadata=meta)
    with pytest.raises(UserError, match="bad architecture config"):
        load_weights(path)
