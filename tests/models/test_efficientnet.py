"""EfficientNet-B3 (and B0) in torchvision's layout: sizes, stage table, key names, stochastic depth,
init, and torchvision-file loading of the trunk."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from mobilevision.complexity import count_params
from mobilevision.errors import IncompatibleWeights, WeightsError
from mobilevision.models.efficientnet import (EfficientNet, MBConv, StochasticDepth, efficientnet_b0,
                                              efficientnet_b3, load_torchvision_trunk, stage_settings)
from mobilevision.models.mobilenetv2 import MobileNetV2
from mobilevision.testing import randomise_batchnorm

B3_PARAMS = 12_233_232   # torchvision's documented efficientnet_b3 size
B3_TRUNK = 10_696_232
B0_PARAMS = 5_288_548    # torchvision's documented efficientnet_b0 size

# spec §3: (kernel, stride, expansion, out channels, repeats) per stage
B3_STAGES = [(3, 1, 1, 24, 2), (3, 2, 6, 32, 3), (5, 2, 6, 48, 3), (3, 2, 6, 96, 5), (5, 1, 6, 136, 5),
             (5, 2, 6, 232, 6), (3, 1, 6, 384, 2)]

KEYS = {
    "features.0.0.weight": (40, 3, 3, 3), "features.0.1.weight": (40,), "features.0.1.num_batches_tracked": (),
    # stage 1 (t = 1): block.0 depthwise, block.1 SE (squeeze = 40 // 4), block.2 projection
    "features.1.0.block.0.0.weight": (40, 1, 3, 3), "features.1.0.block.0.1.running_var": (40,),
    "features.1.0.block.1.fc1.weight": (10, 40, 1, 1), "features.1.0.block.1.fc1.bias": (10,),
    "features.1.0.block.1.fc2.weight": (40, 10, 1, 1), "features.1.0.block.1.fc2.bias": (40,),
    "features.1.0.block.2.0.weight": (24, 40, 1, 1), "features.1.0.block.2.1.weight": (24,),
    "features.1.1.block.0.0.weight": (24, 1, 3, 3), "features.1.1.block.1.fc1.weight": (6, 24, 1, 1),
    # t = 6: block.0 expand, block.1 depthwise, block.2 SE, block.3 projection
    "features.2.0.block.0.0.weight": (144, 24, 1, 1), "features.2.0.block.1.0.weight": (144, 1, 3, 3),
    "features.2.0.block.2.fc1.weight": (6, 144, 1, 1), "features.2.0.block.3.0.weight": (32, 144, 1, 1),
    "features.3.0.block.1.0.weight": (192, 1, 5, 5), "features.3.2.block.2.fc1.weight": (12, 288, 1, 1),
    "features.6.5.block.1.0.weight": (1392, 1, 5, 5),
    "features.7.1.block.2.fc1.weight": (96, 2304, 1, 1), "features.7.1.block.3.0.weight": (384, 2304, 1, 1),
    "features.8.0.weight": (1536, 384, 1, 1), "features.8.1.running_mean": (1536,),
    "classifier.1.weight": (1000, 1536), "classifier.1.bias": (1000,),
}
ABSENT = ("features.1.2.block.0.0.weight", "features.1.0.block.3.0.weight", "features.7.2.block.0.0.weight",
          "features.9.0.weight", "features.0.0.bias", "features.2.0.block.0.0.bias", "classifier.0.weight")


def _x(n: int = 2, size: int = 64, seed: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def b3() -> EfficientNet:
    torch.manual_seed(0)
    return randomise_batchnorm(efficientnet_b3(), seed=1, linear_std=0.05)


@pytest.fixture(scope="module")
def b3_file(b3, tmp_path_factory):
    """b3's weights as a torchvision-format file (plain state dict with classifier.1.*)."""
    path = tmp_path_factory.mktemp("weights") / "efficientnet_b3-test.pth"
    torch.save(b3.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def b3_meta() -> EfficientNet:
    with torch.device("meta"):
        return efficientnet_b3().eval()


# --------------------------------------------------------------------------------------------- network

def test_param_counts():
    with torch.device("meta"):
        full, trunk, b0 = efficientnet_b3(), efficientnet_b3(include_classifier=False), efficientnet_b0()
    assert count_params(full) == B3_PARAMS
    assert count_params(trunk) == B3_TRUNK == B3_PARAMS - (1536 * 1000 + 1000)
    assert count_params(b0) == B0_PARAMS
    assert full.num_features == 1536 and b0.num_features == 1280


def test_macs_match_torchvision(b3_meta):
    """conv + fc MACs at B3's native 300: torchvision lists 1.827 G ('GFLOPS', which counts MACs)."""
    seen: list[tuple[nn.Module, torch.Tensor]] = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((m, o))) for m in b3_meta.modules()
             if type(m) in (nn.Conv2d, nn.Linear)]
    try:
        with torch.no_grad():
            b3_meta.eval()(torch.zeros(1, 3, 300, 300, device="meta"))
    finally:
        for h in hooks:
            h.remove()
    macs = sum(math.prod(m.weight.shape) * (math.prod(o.shape[2:]) if o.ndim == 4 else 1) for m, o in seen)
    assert round(macs / 1e9, 3) == 1.827


def test_stage_table_matches_spec(b3_meta):
    settings = stage_settings(1.2, 1.4)
    assert [(k, s, t, cout, n) for t, k, s, _, cout, n in settings] == B3_STAGES
    assert settings[0][3] == 40 and b3_meta.features[0][0].out_channels == 40
    assert len(b3_meta.features) == 9
    cin = 40
    for i, (k, s, t, cout, n) in enumerate(B3_STAGES, start=1):
        stage = b3_meta.features[i]
        assert len(stage) == n and all(isinstance(b, MBConv) for b in stage)
        first_dw = stage[0].block[0 if t == 1 else 1][0]
        assert first_dw.kernel_size == (k, k) and first_dw.stride == (s, s)
        assert first_dw.groups == first_dw.in_channels == (cin if t == 1 else 6 * cin)
        assert all(b.out_channels == cout for b in stage)
        assert stage[0].use_residual == (s == 1 and cin == cout) and all(b.use_residual for b in stage[1:])
        cin = cout


def test_torchvision_key_names_and_shapes(b3_meta):
    sd = b3_meta.state_dict()
    for k, shape in KEYS.items():
        assert tuple(sd[k].shape) == shape, k
    for k in ABSENT:
        assert k not in sd
    block = b3_meta.features[2][0].block
    assert isinstance(block[0][2], nn.SiLU) and isinstance(block[1][2], nn.SiLU) and len(block[3]) == 2
    se = block[2]
    assert isinstance(se.avgpool, nn.AdaptiveAvgPool2d) and isinstance(se.activation, nn.SiLU)
    assert isinstance(se.scale_activation, nn.Sigmoid)
    assert isinstance(b3_meta.features[8][2], nn.SiLU) and isinstance(b3_meta.features[0][2], nn.SiLU)
    # torchvision's B0-B4 use plain BatchNorm2d (eps 1e-3 / momentum 0.01 only from B5 on)
    assert all(m.eps == 1e-5 and m.momentum == 0.1 for m in b3_meta.modules() if isinstance(m, nn.BatchNorm2d))
    assert b3_meta.classifier[0].p == 0.3


def test_stochastic_depth_probabilities(b3_meta):
    blocks = [b for stage in b3_meta.features[1:8] for b in stage]
    assert len(blocks) == 26
    for i, b in enumerate(blocks):
        assert b.stochastic_depth.p == pytest.approx(0.2 * i / 26)
    assert efficientnet_b0(stochastic_depth_prob=0.5).features[7][0].stochastic_depth.p == pytest.approx(0.5 * 15 / 16)


def test_shapes_at_224_and_head(b3, b3_meta):
    assert b3_meta.forward_features(torch.zeros(1, 3, 224, 224, device="meta")).shape == (1, 1536, 7, 7)
    with torch.no_grad():
        x = _x()
        feats = b3.forward_features(x)
        assert feats.shape == (2, 1536, 2, 2)
        assert b3.forward_head(feats).shape == (2, 1000)
        assert torch.allclose(b3.forward_head(feats, pre_logits=True), feats.mean((2, 3)), atol=1e-6)


def test_torchvision_init():
    torch.manual_seed(0)
    model = efficientnet_b3()
    fc = model.classifier[1]
    bound = 1 / math.sqrt(1000)
    assert fc.weight.abs().max() <= bound and fc.weight.abs().max() > 0.95 * bound and not fc.bias.any()
    w = model.features[8][0].weight  # 1x1, fan_out = 1536
    assert abs(w.std().item() / math.sqrt(2 / 1536) - 1) < 0.05
    se = model.features[4][0].block[2]
    assert not se.fc1.bias.any() and not se.fc2.bias.any()


def test_eval_is_deterministic_and_train_is_not(b3):
    x = _x()
    with torch.no_grad():
        assert torch.equal(b3(x), b3(x))
        training = copy.deepcopy(b3).train()  # a copy: training-mode BN would update b3's statistics
        torch.manual_seed(0)
        assert not torch.equal(training(x), training(x))


# --------------------------------------------------------------------------------------------- stochastic depth

def test_stochastic_depth_is_identity_in_eval_and_drops_whole_samples_in_train():
    x = torch.ones(256, 4, 3, 3)
    sd = StochasticDepth(0.5).eval()
    assert sd(x) is x
    torch.manual_seed(0)
    y = sd.train()(x)
    per_sample = y.flatten(1)
    assert torch.equal(per_sample.min(1).values, per_sample.max(1).values)  # whole samples kept or dropped
    values = set(per_sample[:, 0].tolist())
    assert values == {0.0, 2.0}  # survivors scaled by 1 / (1 - p)
    kept = (per_sample[:, 0] > 0).float().mean().item()
    assert 0.35 < kept < 0.65
    assert StochasticDepth(0.0).train()(x) is x
    with pytest.raises(ValueError, match="drop probability"):
        StochasticDepth(1.5)


def test_mbconv_drops_residual_branch_only_in_train():
    torch.manual_seed(0)
    block = MBConv(16, 16, expand_ratio=6, kernel=3, stride=1, drop_prob=1.0)
    x = torch.randn(3, 16, 8, 8)
    assert torch.equal(block.train()(x), x)  # branch always dropped: the identity path remains
    with torch.no_grad():
        assert not torch.equal(block.eval()(x), x)
    strided = MBConv(16, 16, expand_ratio=6, kernel=3, stride=2, drop_prob=1.0).train()
    assert not strided.use_residual and strided(x).abs().sum() > 0  # no residual: nothing to drop


# --------------------------------------------------------------------------------------------- loading

def test_file_loads_into_trunk_identically(b3, b3_file):
    trunk = efficientnet_b3(include_classifier=False)
    load_torchvision_trunk(trunk, b3_file)
    ref = b3.state_dict()
    assert set(ref) - set(trunk.state_dict()) == {"classifier.1.weight", "classifier.1.bias"}
    for k, v in trunk.state_dict().items():
        assert torch.equal(v, ref[k]), k
    x = _x(2, 32)
    with torch.no_grad():
        assert torch.equal(trunk.eval().forward_features(x), b3.forward_features(x))


def test_file_loads_with_other_class_count(b3, b3_file):
    model = efficientnet_b3(num_classes=136)
    fresh = model.classifier[1].weight.clone()
    load_torchvision_trunk(model, b3_file)
    assert torch.equal(model.classifier[1].weight, fresh)
    assert torch.equal(model.features[8][0].weight, b3.features[8][0].weight)


def test_old_file_without_bn_counters(b3, tmp_path):
    path = tmp_path / "old.pth"
    torch.save({k: v for k, v in b3.state_dict().items() if not k.endswith("num_batches_tracked")}, path)
    trunk = efficientnet_b3(include_classifier=False)
    load_torchvision_trunk(trunk, path)
    assert torch.equal(trunk.features[8][1].running_var, b3.features[8][1].running_var)


@pytest.mark.slow
def test_wrong_shape_or_missing_key_raises_incompatible(b3, tmp_path):
    sd = dict(b3.state_dict())
    sd["features.1.0.block.1.fc1.weight"] = torch.zeros(8, 40, 1, 1)
    del sd["features.8.1.bias"]
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(IncompatibleWeights, match=r"missing keys: features\.8\.1\.bias; shape mismatch: "
                                                  r"features\.1\.0\.block\.1\.fc1\.weight \(8, 40, 1, 1\)") as e:
        load_torchvision_trunk(efficientnet_b3(include_classifier=False), path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_other_architecture_raises_incompatible(tmp_path):
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(MobileNetV2().state_dict(), path)
    with pytest.raises(IncompatibleWeights, match="does not fit EfficientNet"):
        load_torchvision_trunk(efficientnet_b3(include_classifier=False), path)


def test_missing_file_raises_weights_error(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        load_torchvision_trunk(efficientnet_b3(include_classifier=False), tmp_path / "efficientnet_b3.pth")
