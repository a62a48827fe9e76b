"""SkipNet: official sizes and key names, a from-the-spec functional reference, skip-block pooling,
official checkpoint format, width family."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import mobilevision
from mobilevision.testing import randomise_batchnorm
from mobilevision.complexity import count_macs, count_params
from mobilevision.errors import IncompatibleWeights
from mobilevision.models.skipnet import MEASURED, SkipBlock, SqueezeExcite, make_divisible, pool_to

VARIANTS = {"skipnet_050": 0.5, "skipnet_075": 0.75, "skipnet_m": 1.0, "skipnet_125": 1.25}

# Spec A.2: IR blocks as (kernel, stride, SE, h_swish); skip blocks as (kernel, pooled size at 224).
SPEC_IR = {"base_block": (3, 1, False, True),
           "blocks.0.0": (3, 2, False, False), "blocks.0.1": (3, 1, False, False), "blocks.0.2": (5, 2, True, False),
           "blocks.0.3": (5, 1, True, False), "blocks.0.4": (5, 1, True, True),
           "blocks.1.0": (3, 2, False, True), "blocks.1.1": (3, 1, False, True), "blocks.1.2": (3, 1, False, True),
           "blocks.1.3": (3, 1, False, True),
           "blocks.2.0": (3, 1, True, True), "blocks.2.1": (3, 1, True, True),
           "blocks.3.0": (5, 2, True, True), "blocks.3.1": (5, 1, True, True), "blocks.3.2": (5, 1, True, True)}
SPEC_SKIP = {"skip1": (5, 28), "skip2": (3, 14)}
# Spec A.5 (fvcore at 224): group -> (params, MACs in M, two decimals).
SPEC_GROUPS = {"first_layer": (464, 5.82), "base_block": (752, 9.43), "blocks.0": (96_464, 76.54),
               "skip1": (8_240, 6.66), "blocks.1": (130_824, 31.57), "skip2": (4_520, 1.09),
               "blocks.2": (600_544, 51.16), "blocks.3": (2_023_944, 55.33), "conv": (155_520, 7.62),
               "classifier": (2_511_080, 2.51)}


def _randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    return randomise_batchnorm(model, seed, linear_std=0.05)


@pytest.fixture(scope="module")
def skipnet_m():
    torch.manual_seed(0)
    return _randomise(mobilevision.create_model("skipnet_m"))


@pytest.fixture(scope="module")
def image():
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))


def _fvcore_style_macs(model: nn.Module, size: int = 224) -> dict[str, int]:
    """MACs per top-level group as fvcore counts them: conv + linear, +2 per BN output element,
    +1 per adaptive-pool input element (SE, skip blocks, head pool)."""
    extra: dict[str, int] = {}
    hooks = []

    def add(group: str, n: int) -> None:
        extra[group] = extra.get(group, 0) + n

    for name, m in model.named_modules():
        group = name.split(".")[0] if not name.startswith("blocks.") else ".".join(name.split(".")[:2])
        if isinstance(m, nn.BatchNorm2d):
            hooks.append(m.register_forward_hook(lambda m, i, o, g=group: add(g, 2 * o.numel())))
        elif isinstance(m, (SqueezeExcite, SkipBlock)) or name == "avgpool":
            hooks.append(m.register_forward_hook(lambda m, i, o, g=group: add(g, i[0].numel())))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    flops = counter.get_flop_counts()
    groups = set(extra) | set(SPEC_GROUPS)
    return {g: sum(flops.get(f"SkipNet.{g}", {}).values()) // 2 + extra.get(g, 0) for g in groups}


# ---------------------------------------------------------------- sizes and keys

def test_official_parameter_count_and_macs():
    model = mobilevision.create_model("skipnet_m")
    assert count_params(model) == 5_532_352
    # The paper's 247.8 M (fvcore: conv + linear + BN + pooling); conv + linear alone are 236.6 M.
    assert abs(count_macs(model, (3, 224, 224)) / 247.8e6 - 1) < 0.001
    # Two independent counts agree: the flop counter's formulas and per-module hooks.
    assert count_macs(model, (3, 224, 224)) == sum(_fvcore_style_macs(model).values())


def test_per_group_params_and_macs_match_spec():
    model = mobilevision.create_model("skipnet_m")
    macs = _fvcore_style_macs(model)
    for group, (params, macs_m) in SPEC_GROUPS.items():
        assert count_params(model.get_submodule(group)) == params, group
        assert abs(macs[group] / 1e6 - macs_m) <= 0.006, (group, macs[group])


@pytest.mark.slow
@pytest.mark.parametrize("name", list(VARIANTS))
def test_card_numbers_are_measured(name):
    model = mobilevision.create_model(name)
    params, macs = MEASURED[name]
    assert count_params(model) == params and count_macs(model, (3, 224, 224)) == macs
    assert sum(_fvcore_style_macs(model).values()) == macs
    card = mobilevision.get_model_card(name)
    assert f"{params / 1e6:.2f}M params" in card.description and f"{macs / 1e6:.1f}M MACs" in card.description


def test_official_key_names(skipnet_m):
    sd = skipnet_m.state_dict()
    assert len(sd) == 354
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    expect = {"first_layer.0.weight": (16, 3, 3, 3), "conv.0.weight": (960, 160, 1, 1),
              "classifier.0.weight": (1280, 960), "classifier.0.bias": (1280,),
              "classifier.3.weight": (1000, 1280), "classifier.3.bias": (1000,),
              "skip1.core_block.0.weight": (96, 16, 1, 1), "skip1.core_block.3.weight": (96, 1, 5, 5),
              "skip1.core_block.6.weight": (40, 96, 1, 1), "skip2.core_block.0.weight": (40, 16, 1, 1),
              "skip2.core_block.3.weight": (40, 1, 3, 3), "skip2.core_block.6.weight": (80, 40, 1, 1),
              "blocks.0.2.conv.6.fc.0.weight": (24, 72), "blocks.0.2.conv.6.fc.2.weight": (72, 24),
              "blocks.3.2.conv.6.fc.0.weight": (240, 960), "blocks.3.2.conv.6.fc.2.bias": (960,),
              "blocks.2.0.conv.6.fc.0.weight": (120, 480), "blocks.2.1.conv.6.fc.0.weight": (168, 672)}
    expect.update({f"first_layer.1.{s}": None for s in bn})
    expect.update({f"conv.1.{s}": None for s in bn})
    for prefix in SPEC_IR:
        expect.update({f"{prefix}.conv.{i}.weight": None for i in (0, 3, 7)})
        expect.update({f"{prefix}.conv.{i}.{s}": None for i in (1, 4, 8) for s in bn})
    for prefix in SPEC_SKIP:
        expect.update({f"{prefix}.core_block.{i}.weight": None for i in (0, 3, 6)})
        expect.update({f"{prefix}.core_block.{i}.{s}": None for i in (1, 4, 7) for s in bn})
    for key, shape in expect.items():
        assert key in sd, key
        assert shape is None or tuple(sd[key].shape) == shape, key
    se = {k.split(".conv.6.")[0] for k in sd if ".conv.6.fc." in k}
    assert se == {p for p, (_, _, has_se, _) in SPEC_IR.items() if has_se}
    se_keys = {f"{p}.conv.6.fc.{i}.{s}" for p in se for i in (0, 2) for s in ("weight", "bias")}
    assert set(sd) == set(expect) | se_keys                # nothing else


def test_model_cards():
    assert set(VARIANTS) <= set(mobilevision.list_models("classify"))
    for name in VARIANTS:
        card = mobilevision.get_model_card(name)
        assert card.family == "skipnet" and card.task == "classify" and card.input_size == (3, 224, 224)
        assert card.interpolation == "bilinear" and card.crop_pct == 0.875 and card.num_classes == 1000
        assert card.mean == (0.485, 0.456, 0.406) and card.std == (0.229, 0.224, 0.225)
        assert card.classifier_prefixes == ("classifier.3.",)
        assert ("this project's member" in card.description) == (name != "skipnet_m")


# ---------------------------------------------------------------- forward graph

def _bn(sd, p, x):
    return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"])


def _reference_ir(sd, p, x, k, s, se, hs):
    """Spec A.1 IR block, written with PyTorch's own Hardswish/Hardsigmoid and mean pooling."""
    act = F.hardswish if hs else F.relu
    assert sd[f"{p}.conv.3.weight"].shape[-1] == k
    y = act(_bn(sd, f"{p}.conv.1", F.conv2d(x, sd[f"{p}.conv.0.weight"])))
    y = act(_bn(sd, f"{p}.conv.4", F.conv2d(y, sd[f"{p}.conv.3.weight"], stride=s, padding=k // 2, groups=y.shape[1])))
    if se:
        w = F.relu(F.linear(y.mean((2, 3)), sd[f"{p}.conv.6.fc.0.weight"], sd[f"{p}.conv.6.fc.0.bias"]))
        y = y * F.hardsigmoid(F.linear(w, sd[f"{p}.conv.6.fc.2.weight"], sd[f"{p}.conv.6.fc.2.bias"]))[:, :, None, None]
    y = _bn(sd, f"{p}.conv.8", F.conv2d(y, sd[f"{p}.conv.7.weight"]))
    return x + y if s == 1 and x.shape[1] == y.shape[1] else y


def _reference_skip(sd, p, x, k, size):
    assert sd[f"{p}.core_block.3.weight"].shape[-1] == k
    y = F.adaptive_avg_pool2d(x, size)
    y = F.relu(_bn(sd, f"{p}.core_block.1", F.conv2d(y, sd[f"{p}.core_block.0.weight"])))
    y = F.relu(_bn(sd, f"{p}.core_block.4", F.conv2d(y, sd[f"{p}.core_block.3.weight"], padding=k // 2,
                                                      groups=y.shape[1])))
    return _bn(sd, f"{p}.core_block.7", F.conv2d(y, sd[f"{p}.core_block.6.weight"]))


def _reference_logits(sd, img):
    """Spec A.2 'Forward', layer table in SPEC_IR / SPEC_SKIP, official 28/14 pool sizes."""
    def ir(p, x):
        return _reference_ir(sd, p, x, *SPEC_IR[p])

    def stage(g, x):
        for i in range(sum(p.startswith(f"blocks.{g}.") for p in SPEC_IR)):
            x = ir(f"blocks.{g}.{i}", x)
        return x

    x0 = ir("base_block", F.hardswish(_bn(sd, "first_layer.1", F.conv2d(img, sd["first_layer.0.weight"], stride=2,
                                                                        padding=1))))
    x = stage(1, stage(0, x0) + _reference_skip(sd, "skip1", x0, *SPEC_SKIP["skip1"]))
    x = stage(3, stage(2, x + _reference_skip(sd, "skip2", x0, *SPEC_SKIP["skip2"])))
    f = F.hardswish(_bn(sd, "conv.1", F.conv2d(x, sd["conv.0.weight"])))
    h = F.hardswish(F.linear(f.mean((2, 3)), sd["classifier.0.weight"], sd["classifier.0.bias"]))
    return F.linear(h, sd["classifier.3.weight"], sd["classifier.3.bias"]), f


def test_matches_functional_reference_from_spec(skipnet_m, image):
    with torch.no_grad():
        ref, ref_features = _reference_logits(skipnet_m.state_dict(), image)
        out = skipnet_m(image)
    assert ref.abs().max() > 0.5                       # O(1) logits: the comparison means something
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5), (out - ref).abs().max()
    assert torch.allclose(skipnet_m.forward_features(image), ref_features, atol=1e-5, rtol=1e-5)


def test_forward_is_head_of_features(skipnet_m, image):
    with torch.no_grad():
        features = skipnet_m.forward_features(image)
        assert features.shape == (2, 960, 7, 7) and skipnet_m.num_features == 960
        assert torch.equal(skipnet_m.forward_head(features), skipnet_m(image))
        conv_out = {}
        h = skipnet_m.conv.register_forward_hook(lambda m, i, o: conv_out.setdefault("f", o))
        skipnet_m(image)
        h.remove()
    assert torch.equal(conv_out["f"], features)        # Bias Loss's feature map is the `conv` output


@pytest.mark.parametrize("size, pooled", [(224, (28, 14)), (192, (24, 12)), (256, (32, 16)), (200, (25, 13))])
def test_skip_blocks_pool_to_main_path_resolution(skipnet_m, size, pooled):
    seen = []
    hooks = [getattr(skipnet_m, s).register_forward_hook(lambda m, i, o: seen.append(o.shape[-1]))
             for s in ("skip1", "skip2")]
    with torch.no_grad():
        assert skipnet_m(torch.randn(1, 3, size, size)).shape == (1, 1000)
    for h in hooks:
        h.remove()
    assert tuple(seen) == pooled


def test_pool_is_bit_identical_to_official_adaptive_pool():
    x = torch.randn(2, 16, 112, 112)
    for size in (28, 14, 56, 112):
        assert torch.equal(pool_to(x, (size, size)), F.adaptive_avg_pool2d(x, size))
    assert torch.equal(pool_to(x[:, :, :100, :100], (13, 13)), F.adaptive_avg_pool2d(x[:, :, :100, :100], 13))


@pytest.mark.slow
def test_torch_export_and_jit_trace_match_eager(skipnet_m):
    x = torch.randn(1, 3, 224, 224)
    program = torch.export.export(skipnet_m, (x,))
    ops = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
    assert sum("avg_pool2d.default" in op and "adaptive" not in op for op in ops) == 2   # the skip pools
    with torch.no_grad():
        ref = skipnet_m(x)
        assert torch.allclose(program.module()(x), ref, atol=1e-5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            traced = torch.jit.trace(skipnet_m, x)
        assert torch.allclose(traced(x), ref, atol=1e-5)


def test_official_init():
    torch.manual_seed(0)
    model = mobilevision.create_model("skipnet_m")
    conv = model.blocks[3][2].conv[0]                                # 1x1, 160 -> 960
    dw = model.blocks[3][2].conv[3]                                  # 5x5 depthwise, 960
    assert conv.weight.std().item() == pytest.approx((2 / 960) ** 0.5, rel=0.02)
    assert dw.weight.std().item() == pytest.approx((2 / (25 * 960)) ** 0.5, rel=0.05)
    fc = model.classifier[0]
    assert fc.weight.std().item() == pytest.approx(0.01, rel=0.02) and not fc.bias.any()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and not m.bias.any()
        if isinstance(m, nn.Conv2d):
            assert m.bias is None


def test_dropout_only_in_training(skipnet_m, image):
    model = mobilevision.create_model("skipnet_m", drop_rate=0.5)
    model.load_state_dict(skipnet_m.state_dict())
    with torch.no_grad():
        assert torch.equal(model(image), skipnet_m(image))
        model.train()
        assert not torch.equal(model(image), model(image))


# ---------------------------------------------------------------- checkpoints

def test_official_plain_state_dict_loads_strictly(skipnet_m, image, tmp_path):
    sd = skipnet_m.state_dict()
    plain, ddp = tmp_path / "skipblocknet-m.pth", tmp_path / "ddp.pth"
    torch.save(dict(reversed(sd.items())), plain)                   # key order must not matter
    torch.save({f"module.{k}": v for k, v in sd.items()}, ddp)      # DataParallel prefix stripped
    with torch.no_grad():
        ref = skipnet_m(image)
        for path in (plain, ddp):
            assert torch.equal(mobilevision.create_model("skipnet_m", weights=str(path))(image), ref)


def test_new_class_count_keeps_all_but_last_linear(skipnet_m, tmp_path):
    path = tmp_path / "net.pth"
    torch.save(skipnet_m.state_dict(), path)
    model = mobilevision.create_model("skipnet_m", weights=str(path), num_classes=10)
    assert model.classifier[3].weight.shape == (10, 1280) and model.model_card.num_classes == 10
    assert torch.equal(model.classifier[0].weight, skipnet_m.classifier[0].weight)
    assert torch.equal(model.conv[0].weight, skipnet_m.conv[0].weight)


def test_wrong_architecture_names_keys(tmp_path):
    emo = tmp_path / "emo.pth"
    torch.save(mobilevision.create_model("emo_1m").state_dict(), emo)
    with pytest.raises(IncompatibleWeights) as info:
        mobilevision.create_model("skipnet_m", weights=str(emo))
    msg = str(info.value)
    assert "missing keys: first_layer.0.weight" in msg and "unexpected keys: stage0." in msg and "SkipNet" in msg
    narrow = tmp_path / "w075.pth"
    torch.save(mobilevision.create_model("skipnet_075").state_dict(), narrow)
    with pytest.raises(IncompatibleWeights, match=r"shape mismatch: blocks\.0\.2\.conv\.7\.weight"):
        mobilevision.create_model("skipnet_m", weights=str(narrow))


# ---------------------------------------------------------------- width family

@pytest.mark.slow
@pytest.mark.parametrize("name", list(VARIANTS))
def test_width_family_builds_and_runs_at_other_sizes(name):
    width = VARIANTS[name]
    model = mobilevision.create_model(name)
    stem = make_divisible(16 * width)
    assert model.first_layer[0].out_channels == stem
    assert model.skip1.core_block[0].in_channels == model.skip2.core_block[0].in_channels == stem
    assert model.classifier[0].out_features == (1600 if width > 1 else 1280)
    with torch.no_grad():
        for size in (192, 256):
            features = model.forward_features(torch.randn(1, 3, size, size))
            assert features.shape == (1, model.num_features, size // 32, size // 32)
            assert model.forward_head(features).shape == (1, 1000)


def test_width_075_is_the_official_build():
    # Official skipblocknet(width=0.75): the stem rounds back to 16, so the hard-coded skip input fits.
    model = mobilevision.create_model("skipnet_075")
    assert count_params(model) == 4_027_992 and model.first_layer[0].out_channels == 16
    assert make_divisible(16 * 0.5) == 8 and make_divisible(16 * 1.25) == 24   # where official fails
