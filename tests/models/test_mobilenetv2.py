"""MobileNetV2 (torchvision sizes, key names, widths, init) and torchvision-file loading of its trunk."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mobilevision.complexity import count_params
from mobilevision.errors import IncompatibleWeights, WeightsError
from mobilevision.models.mobilenetv2 import (MobileNetV2, extract_torchvision_state_dict, load_torchvision_trunk,
                                             make_divisible)
from mobilevision.testing import randomise_batchnorm

TORCHVISION_PARAMS = 3_504_872   # torchvision's documented mobilenet_v2 size
CLASSIFIER_PARAMS = 1280 * 1000 + 1000
TRUNK_PARAMS = 2_223_872         # spec §2

# torchvision key -> shape at width 1.0 (t = 1 block: conv.0.{0,1} dw, conv.1 project, conv.2 BN;
# t = 6 blocks: conv.0 expand, conv.1 dw, conv.2 project, conv.3 BN)
KEYS = {
    "features.0.0.weight": (32, 3, 3, 3), "features.0.1.weight": (32,), "features.0.1.running_var": (32,),
    "features.1.conv.0.0.weight": (32, 1, 3, 3), "features.1.conv.0.1.bias": (32,),
    "features.1.conv.1.weight": (16, 32, 1, 1), "features.1.conv.2.running_mean": (16,),
    "features.2.conv.0.0.weight": (96, 16, 1, 1), "features.2.conv.0.1.weight": (96,),
    "features.2.conv.1.0.weight": (96, 1, 3, 3), "features.2.conv.2.weight": (24, 96, 1, 1),
    "features.2.conv.3.num_batches_tracked": (),
    "features.14.conv.1.0.weight": (576, 1, 3, 3), "features.14.conv.2.weight": (160, 576, 1, 1),
    "features.17.conv.0.0.weight": (960, 160, 1, 1), "features.17.conv.2.weight": (320, 960, 1, 1),
    "features.18.0.weight": (1280, 320, 1, 1), "features.18.1.bias": (1280,),
    "classifier.1.weight": (1000, 1280), "classifier.1.bias": (1000,),
}
ABSENT = ("features.19.0.weight", "features.1.conv.3.weight", "features.2.conv.4.weight", "features.0.0.bias",
          "features.1.conv.1.bias", "classifier.0.weight")


def _outputs(model: nn.Module, types: tuple[type, ...], size: int) -> list[tuple[nn.Module, torch.Tensor]]:
    seen: list[tuple[nn.Module, torch.Tensor]] = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((m, o))) for m in model.modules()
             if type(m) in types]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, size, size))
    finally:
        for h in hooks:
            h.remove()
    return seen


@pytest.fixture(scope="module")
def net() -> MobileNetV2:
    torch.manual_seed(0)
    return randomise_batchnorm(MobileNetV2(), seed=1, linear_std=0.05)


@pytest.fixture(scope="module")
def net_file(net, tmp_path_factory):
    """net's weights as a torchvision-format file (plain state dict with classifier.1.*)."""
    path = tmp_path_factory.mktemp("weights") / "mobilenet_v2-test.pth"
    torch.save(net.state_dict(), path)
    return path


def _x(n: int = 2, size: int = 64, seed: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------------- network

def test_make_divisible_matches_torchvision_rule():
    assert [make_divisible(v) for v in (32, 16, 24, 11.2, 8.4, 5.6, 12.0, 1280, 160 * 0.35, 320 * 0.35)] == \
           [32, 16, 24, 16, 8, 8, 16, 1280, 56, 112]
    assert make_divisible(1280 * 1.4) == 1792
    for v in (3.0, 11.2, 17.5, 44.8, 100.0, 250.0):
        assert make_divisible(v) >= 0.9 * v and make_divisible(v) % 8 == 0


def test_param_counts():
    with torch.device("meta"):
        full, trunk = MobileNetV2(), MobileNetV2(include_classifier=False)
    assert count_params(full) == TORCHVISION_PARAMS
    assert count_params(trunk) == TRUNK_PARAMS == TORCHVISION_PARAMS - CLASSIFIER_PARAMS
    assert full.num_features == trunk.num_features == 1280


def test_macs_match_torchvision():
    """conv + fc MACs at 224: torchvision lists 0.301 G ('GFLOPS', which counts MACs)."""
    with torch.device("meta"):
        model = MobileNetV2()
        macs = sum(math.prod(m.weight.shape) * (math.prod(o.shape[2:]) if o.ndim == 4 else 1)
                   for m, o in _outputs(model, (nn.Conv2d, nn.Linear), 224))
    assert round(macs / 1e9, 3) == 0.301


def test_torchvision_key_names_and_shapes():
    with torch.device("meta"):
        model = MobileNetV2()
    sd = model.state_dict()
    for k, shape in KEYS.items():
        assert tuple(sd[k].shape) == shape, k
    for k in ABSENT:
        assert k not in sd
    assert len(model.features) == 19
    # stride 2 on the first block of stages 2, 3, 4, 6 (features 2, 4, 7, 14), on the depthwise conv
    strided = [i for i in range(1, 18) if model.features[i].conv[-3][0].stride == (2, 2)]
    assert strided == [2, 4, 7, 14]
    residual = [i for i in range(1, 18) if model.features[i].use_residual]
    assert residual == [3, 5, 6, 8, 9, 10, 12, 13, 15, 16]
    assert isinstance(model.features[18][2], nn.ReLU6) and isinstance(model.features[1].conv[0][2], nn.ReLU6)
    assert not any(isinstance(m, nn.ReLU6) for m in model.features[2].conv[2:])  # linear bottleneck
    assert all(m.eps == 1e-5 and m.momentum == 0.1 for m in model.modules() if isinstance(m, nn.BatchNorm2d))


@pytest.mark.parametrize("width, stem, last_block", [(0.35, 16, 112), (0.5, 16, 160), (0.75, 24, 240),
                                                     (1.0, 32, 320)])
def test_widths_build_and_run(width, stem, last_block):
    model = MobileNetV2(width_mult=width, include_classifier=False).eval()
    assert model.features[0][0].out_channels == stem
    assert model.features[17].out_channels == last_block
    assert model.num_features == 1280
    with torch.no_grad():
        feats = model.forward_features(_x(2, 64))
        pooled = model(_x(2, 64))
    assert feats.shape == (2, 1280, 2, 2) and pooled.shape == (2, 1280)
    assert torch.allclose(pooled, feats.mean((2, 3)), atol=1e-6)


def test_shapes_at_224_and_head(net):
    with torch.device("meta"):
        assert MobileNetV2().forward_features(torch.zeros(1, 3, 224, 224)).shape == (1, 1280, 7, 7)
    with torch.no_grad():
        x = _x(2, 64)
        logits = net(x)
        assert logits.shape == (2, 1000)
        assert torch.equal(net.forward_head(net.forward_features(x)), logits)
        assert net.forward_head(net.forward_features(x), pre_logits=True).shape == (2, 1280)
    assert MobileNetV2(num_classes=136, dropout=0.1).classifier[0].p == 0.1


def test_torchvision_init():
    torch.manual_seed(0)
    model = MobileNetV2()
    w = model.features[17].conv[0][0].weight  # 1x1, fan_out = 960
    assert abs(w.std().item() / math.sqrt(2 / 960) - 1) < 0.05
    fc = model.classifier[1]
    assert abs(fc.weight.std().item() / 0.01 - 1) < 0.05 and not fc.bias.any()
    bn = model.features[5].conv[3]
    assert torch.equal(bn.weight, torch.ones_like(bn.weight)) and not bn.bias.any()


def test_eval_is_deterministic(net):
    x = _x()
    with torch.no_grad():
        assert torch.equal(net(x), net(x))


# --------------------------------------------------------------------------------------------- loading

def test_file_loads_into_trunk_identically(net, net_file):
    trunk = MobileNetV2(include_classifier=False)
    load_torchvision_trunk(trunk, net_file)
    ref = net.state_dict()
    for k, v in trunk.state_dict().items():
        assert torch.equal(v, ref[k]), k
    x = _x()
    with torch.no_grad():
        assert torch.equal(trunk.eval().forward_features(x), net.forward_features(x))
        assert torch.equal(trunk(x), net.forward_head(net.forward_features(x), pre_logits=True))


def test_file_loads_full_model_and_other_class_count(net, net_file):
    full = MobileNetV2()
    load_torchvision_trunk(full, net_file)
    x = _x()
    with torch.no_grad():
        assert torch.equal(full.eval()(x), net(x))
    other = MobileNetV2(num_classes=10)
    fresh = other.classifier[1].weight.clone()
    load_torchvision_trunk(other, net_file)
    assert torch.equal(other.classifier[1].weight, fresh)
    assert torch.equal(other.features[18][0].weight, net.features[18][0].weight)


def test_old_file_without_bn_counters(net, tmp_path):
    sd = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old.pth"
    torch.save(sd, path)
    trunk = MobileNetV2(include_classifier=False)
    load_torchvision_trunk(trunk, path)
    assert trunk.features[0][1].num_batches_tracked.dtype == torch.long
    fixed = extract_torchvision_state_dict(sd)
    assert set(fixed) == set(net.state_dict())
    with pytest.raises(WeightsError, match="plain state dict"):
        extract_torchvision_state_dict(sd, key="state_dict")


def test_missing_key_raises_incompatible(net, tmp_path):
    sd = dict(net.state_dict())
    del sd["features.18.0.weight"]
    path = tmp_path / "missing.pth"
    torch.save(sd, path)
    with pytest.raises(IncompatibleWeights, match=r"missing keys: features\.18\.0\.weight") as e:
        load_torchvision_trunk(MobileNetV2(include_classifier=False), path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_wrong_width_raises_incompatible(net_file):
    with pytest.raises(IncompatibleWeights, match=r"shape mismatch: features\.0\.0\.weight \(32, 3, 3, 3\) vs "
                                                  r"\(16, 3, 3, 3\)") as e:
        load_torchvision_trunk(MobileNetV2(width_mult=0.5, include_classifier=False), net_file)
    assert "\n" not in str(e.value)


def test_unexpected_trunk_key_raises_incompatible(net, tmp_path):
    sd = dict(net.state_dict())
    sd["features.19.0.weight"] = torch.zeros(1)
    path = tmp_path / "extra.pth"
    torch.save(sd, path)
    with pytest.raises(IncompatibleWeights, match=r"unexpected keys: features\.19\.0\.weight"):
        load_torchvision_trunk(MobileNetV2(include_classifier=False), path)


def test_missing_or_unreadable_file_raises_weights_error(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        load_torchvision_trunk(MobileNetV2(include_classifier=False), tmp_path / "absent.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read checkpoint"):
        load_torchvision_trunk(MobileNetV2(include_classifier=False), junk)
