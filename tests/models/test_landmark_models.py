"""Landmark regressors (spec §2-§3): sizes, head, dropout defaults, de-normalisation, ImageNet trunk loading."""
from __future__ import annotations

import pytest
import torch

import mobilevision
from mobilevision.complexity import count_params
from mobilevision.errors import IncompatibleWeights
from mobilevision.models.mobilenetv2 import mobilenet_v2


@pytest.mark.parametrize("points", [68, 98, 29])
def test_student_size_matches_the_spec(points):
    model = mobilevision.create_model("landmarks_mnv2", num_classes=points)
    assert count_params(model.net.trunk) == 2_223_872
    assert count_params(model.net.head) == 2_562 * points          # 1,281 x 2N
    assert model.net.dropout.p == 0.1


def test_teacher_is_efficientnet_b3_at_224_with_dropout_05():
    model = mobilevision.create_model("landmarks_effb3")
    assert count_params(model.net.trunk) == 10_696_232 and model.net.trunk.num_features == 1536
    assert model.net.dropout.p == 0.5 and count_params(model.net.head) == 1_537 * 136
    assert model.model_card.input_size == (3, 224, 224)


def test_widths_are_registered_and_run():
    names = mobilevision.list_models("landmarks")
    assert {"landmarks_mnv2", "landmarks_mnv2_075", "landmarks_mnv2_050", "landmarks_mnv2_035", "landmarks_effb3"} <= set(names)
    model = mobilevision.create_model("landmarks_mnv2_050")
    with torch.no_grad():
        out = model(torch.rand(2, 3, 96, 96))
    assert out.shape == (2, 68, 2)


def test_detector_denormalises_inside_the_graph():
    torch.manual_seed(0)
    model = mobilevision.create_model("landmarks_mnv2_035", num_classes=5)
    with torch.no_grad():
        model.net.head.weight.zero_()
        model.net.head.bias.copy_(torch.tensor([0.0, 0.0, 0.5, -0.5, 0.25, 0.1, -0.5, 0.5, 0.1, 0.2]))
        out = model(torch.rand(1, 3, 64, 96))[0]                       # W 96, H 64
    # x = W/2 - W x_n, y = H/2 - H y_n (the reference's sign-flipped form)
    expected = torch.tensor([[48.0, 32.0], [0.0, 64.0], [24.0, 25.6], [96.0, 0.0], [38.4, 19.2]])
    torch.testing.assert_close(out, expected)


def test_card_is_a_stretched_unnormalised_crop():
    card = mobilevision.get_model_card("landmarks_mnv2")
    assert card.task == "landmarks" and card.resize_mode == "stretch"
    assert card.mean == (0.0, 0.0, 0.0) and card.std == (1.0, 1.0, 1.0) and card.output_names == ("landmarks",)


def test_imagenet_trunk_loads_from_a_torchvision_file(tmp_path):
    torch.manual_seed(1)
    imagenet = mobilenet_v2(1.0).eval()                                 # with classifier.1, torchvision layout
    path = tmp_path / "mobilenet_v2-b0353104.pth"
    torch.save(imagenet.state_dict(), path)
    model = mobilevision.create_model("landmarks_mnv2")
    model.net.load_backbone(str(path))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.net.trunk.forward_features(x), imagenet.forward_features(x.clone()))
    with pytest.raises(IncompatibleWeights):
        mobilevision.create_model("landmarks_mnv2_050").net.load_backbone(str(path))
