"""Registry (model cards, create_model) and safe checkpoint loading, on the toy model."""
from __future__ import annotations

import pytest
import torch

import mobilevision
from mobilevision.errors import IncompatibleWeights, ModelNotFound, WeightsError


def test_front_door_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, mobilevision, mobilevision.export.metadata; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_card_and_list(toy_name):
    assert toy_name in mobilevision.list_models() and toy_name in mobilevision.list_models("classify")
    assert toy_name not in mobilevision.list_models("anomaly")
    card = mobilevision.get_model_card(toy_name)
    assert card.task == "classify" and card.input_size == (3, 64, 64) and card.labels[3] == "class_3"


def test_unknown_model_suggests(toy_name):
    with pytest.raises(ModelNotFound, match="did you mean toy_test_classifier"):
        mobilevision.create_model("toy_test_clasifier")


def test_create_model_attaches_card_and_eval(toy_name):
    m = mobilevision.create_model(toy_name)
    assert not m.training and m.model_card.name == toy_name and m.model_card.num_classes == 10
    m5 = mobilevision.create_model(toy_name, num_classes=5)
    assert m5.head.out_features == 5 and m5.model_card.labels is None and m5.model_card.num_classes == 5


def _save(obj, path):
    torch.save(obj, path)
    return str(path)


def test_plain_and_prefixed_state_dicts_load(toy_name, tmp_path):
    src = mobilevision.create_model(toy_name)
    x = torch.randn(1, 3, 64, 64)
    plain = _save(src.state_dict(), tmp_path / "a.pth")
    prefixed = _save({f"module.{k}": v for k, v in src.state_dict().items()}, tmp_path / "b.pth")
    for path in (plain, prefixed):
        m = mobilevision.create_model(toy_name, weights=path)
        assert torch.equal(m(x), src(x))


def test_safetensors_load(toy_name, tmp_path):
    from safetensors.torch import save_file

    src = mobilevision.create_model(toy_name)
    save_file(src.state_dict(), tmp_path / "w.safetensors")
    m = mobilevision.create_model(toy_name, weights=str(tmp_path / "w.safetensors"))
    assert torch.equal(m.head.weight, src.head.weight)
    (tmp_path / "bad.safetensors").write_bytes(b"\x01\x02")
    with pytest.raises(WeightsError, match="corrupt safetensors"):
        mobilevision.create_model(toy_name, weights=str(tmp_path / "bad.safetensors"))


def test_new_class_count_keeps_backbone(toy_name, tmp_path):
    src = mobilevision.create_model(toy_name)
    path = _save(src.state_dict(), tmp_path / "a.pth")
    m = mobilevision.create_model(toy_name, weights=path, num_classes=3)
    assert torch.equal(m.conv.weight, src.conv.weight) and m.head.weight.shape == (3, 16)


@pytest.mark.parametrize("make, error, words", [
    (lambda p: None, WeightsError, "not found"),
    (lambda p: p.write_text("hello"), WeightsError, "cannot read checkpoint"),
    (lambda p: torch.save([1, 2, 3], p), WeightsError, "not a state dict"),
    (lambda p: torch.save({"conv.weight": 3}, p), WeightsError, "not tensors"),
    (lambda p: torch.save({"conv.weight": torch.zeros(2)}, p), IncompatibleWeights, "shape mismatch"),
])
def test_bad_checkpoints(toy_name, tmp_path, make, error, words):
    p = tmp_path / "w.pth"
    make(p)
    with pytest.raises(error, match=words):
        mobilevision.create_model(toy_name, weights=str(p))


def test_url_is_refused(toy_name):
    with pytest.raises(WeightsError, match="local file"):
        mobilevision.create_model(toy_name, weights="https://example.com/w.pth")
