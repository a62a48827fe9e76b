"""EMO: exact sizes, official key names, strided-grid windows, official checkpoint formats."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

import mobilevision
from mobilevision.complexity import count_macs, count_params
from mobilevision.errors import IncompatibleWeights, WeightsError
from mobilevision.models.emo import IRMB, window_merge, window_merge_last, window_partition, window_partition_last

# Official figures (zhangzjn/EMO README and logs; MACs as fvcore counts them).
OFFICIAL = {"emo_1m": (1_361_168, 260.8e6), "emo_2m": (2_377_472, 439.4e6),
            "emo_5m": (5_108_848, 902.6e6), "emo_6m": (6_168_496, 960.8e6)}


class _PickledObject:
    """A class instance in a checkpoint: must never be unpickled."""


def _randomise_norms(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial BN/LN statistics, so a wrong key mapping or order shows up in the logits."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.LayerNorm)):
            m.weight.data = 1 + 0.1 * torch.randn(m.weight.shape, generator=g)
            m.bias.data = 0.1 * torch.randn(m.bias.shape, generator=g)
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean = 0.1 * torch.randn(m.running_mean.shape, generator=g)
            m.running_var = 0.5 + torch.rand(m.running_var.shape, generator=g)
    return model.eval()


def _save(obj, path) -> str:
    torch.save(obj, path)
    return str(path)


@pytest.fixture(scope="module")
def emo1m():
    torch.manual_seed(0)
    return _randomise_norms(mobilevision.create_model("emo_1m"))


# ---------------------------------------------------------------- sizes and keys

@pytest.mark.parametrize("name", list(OFFICIAL))
def test_parameter_count_exact(name):
    assert count_params(mobilevision.create_model(name)) == OFFICIAL[name][0]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(OFFICIAL))
def test_macs_match_the_papers_fvcore_count(name):
    # mobilevision.complexity follows fvcore's convention (conv/matmul/linear + BN/LN + pooling); it
    # also counts EMO's two x.mean((2, 3)) global pools, which fvcore skips: +0.03 to +0.12 %.
    macs = count_macs(mobilevision.create_model(name), (3, 224, 224))
    assert 0 <= macs / OFFICIAL[name][1] - 1 < 0.002, macs


@pytest.mark.parametrize("name, entries", [("emo_1m", 217), ("emo_2m", 258), ("emo_5m", 258), ("emo_6m", 258)])
def test_official_key_names(name, entries):
    sd = mobilevision.create_model(name).state_dict()
    assert len(sd) == entries
    expect = {"stage0.0.convs.0.0.weight": (24, 3, 3, 3), "stage0.0.convs.0.0.bias": (24,),
              "stage0.0.convs.0.1.running_var": (24,), "stage0.1.conv_local.conv.weight": (24, 1, 3, 3),
              "stage0.1.conv_local.norm.weight": (24,),
              "stage0.1.se.conv_reduce.weight": (24, 24, 1, 1), "stage0.1.se.conv_expand.bias": (24,),
              "stage0.1.proj.conv.weight": (24, 24, 1, 1), "stage1.0.norm.num_batches_tracked": (),
              "stage1.0.v.conv.weight": (96, 24, 1, 1), "stage1.0.v.conv.bias": (96,),
              "stage3.1.norm.norm.weight": None, "stage3.1.qk.conv.bias": None, "norm.norm.weight": None,
              "head.weight": None, "head.bias": (1000,)}
    for key, shape in expect.items():
        assert key in sd, key
        if shape is not None:
            assert tuple(sd[key].shape) == shape, key
    assert "stage3.0.qk.conv.weight" not in sd and "stage2.1.qk.conv.weight" not in sd
    assert not any(k.endswith("proj.conv.bias") or k.startswith("stage0.1.v.") for k in sd)
    if name == "emo_1m":
        assert tuple(sd["stage4.1.qk.conv.weight"].shape) == (336, 168, 1, 1)
        assert tuple(sd["stage4.0.v.conv.weight"].shape) == (560, 80, 1, 1)
        assert tuple(sd["stage3.1.conv_local.conv.weight"].shape) == (240, 1, 5, 5)
        assert tuple(sd["norm.norm.weight"].shape) == (168,) and tuple(sd["head.weight"].shape) == (1000, 168)
    if name == "emo_6m":
        assert tuple(sd["stage4.0.conv_local.conv.weight"].shape) == (1600, 1, 5, 5)


def test_model_cards():
    assert {"emo_1m", "emo_2m", "emo_5m", "emo_6m"} <= set(mobilevision.list_models("classify"))
    card = mobilevision.get_model_card("emo_5m")
    assert card.family == "emo" and card.input_size == (3, 224, 224) and card.interpolation == "bicubic"
    assert card.crop_pct == 0.875 and card.mean == (0.485, 0.456, 0.406) and card.num_classes == 1000


# ---------------------------------------------------------------- strided-grid window attention

def _partition_6d(x, n1, n2):
    """Spec §5 / official einops 'b c (h1 n1) (w1 n2) -> (b n1 n2) c h1 w1' as one 6-D permute."""
    b, c = x.shape[:2]
    return x.reshape(b, c, 7, n1, 7, n2).permute(0, 3, 5, 1, 2, 4).reshape(b * n1 * n2, c, 7, 7)


def _merge_6d(x, b, n1, n2):
    c = x.shape[1]
    return x.reshape(b, n1, n2, c, 7, 7).permute(0, 3, 4, 1, 5, 2).reshape(b, c, 7 * n1, 7 * n2)


def _partition_contiguous(x, n1, n2):
    """Swin-style windows: NOT what EMO does (kept to prove the test can tell them apart)."""
    b, c = x.shape[:2]
    return x.reshape(b, c, n1, 7, n2, 7).permute(0, 2, 4, 1, 3, 5).reshape(b * n1 * n2, c, 7, 7)


def _merge_contiguous(x, b, n1, n2):
    c = x.shape[1]
    return x.reshape(b, n1, n2, c, 7, 7).permute(0, 3, 1, 4, 2, 5).reshape(b, c, 7 * n1, 7 * n2)


def _reference_attention(block, x, partition=_partition_6d, merge=_merge_6d):
    """EMO window attention written independently from the spec: pad after the norm, no mask."""
    b, c, h, w = x.shape
    xp = F.pad(x, (0, (-w) % 7, 0, (-h) % 7))
    n1, n2 = xp.shape[2] // 7, xp.shape[3] // 7
    xw = partition(xp, n1, n2)
    heads, d = c // block.dim_head, block.dim_head
    q, k = F.conv2d(xw, block.qk.conv.weight, block.qk.conv.bias).reshape(-1, 2, heads, d, 49).permute(1, 0, 2, 4, 3)
    attn = torch.softmax((q @ k.transpose(-2, -1)) * d ** -0.5, dim=-1)
    out = (attn @ xw.reshape(-1, heads, d, 49).transpose(-1, -2)).transpose(-1, -2).reshape(-1, c, 7, 7)
    out = F.gelu(F.conv2d(out, block.v.conv.weight, block.v.conv.bias))
    return merge(out, b, n1, n2)[:, :, :h, :w]


@pytest.mark.parametrize("size, grids", [(224, [(2, 2), (1, 1)]), (256, [(3, 3), (2, 2)]), (200, [(2, 2), (1, 1)])])
def test_window_attention_is_strided_grid(emo1m, size, grids):
    """At the stage-3/4 maps of a 224/256/200 input: <=5-D partition == 6-D reference, bit for bit."""
    blocks = [emo1m.stage3[1], emo1m.stage4[1]]
    normed = []
    hooks = [blk.norm.register_forward_hook(lambda m, i, o: normed.append(o)) for blk in blocks]
    with torch.no_grad():
        emo1m(torch.randn(1, 3, size, size))
    for hook in hooks:
        hook.remove()
    for block, x, (n1, n2) in zip(blocks, normed, grids):
        xp = F.pad(x, (0, (-x.shape[3]) % 7, 0, (-x.shape[2]) % 7))
        assert xp.shape[2:] == (7 * n1, 7 * n2)
        windows = window_partition(xp, n1, n2)
        assert torch.equal(windows, _partition_6d(xp, n1, n2))
        assert torch.equal(window_merge(windows, 1, n1, n2), xp)
        assert torch.equal(window_merge(windows, 1, n1, n2), _merge_6d(windows, 1, n1, n2))
        with torch.no_grad():
            ours = block.attention(x)
            assert torch.allclose(ours, _reference_attention(block, x), rtol=0, atol=1e-6)
            if n1 * n2 > 1:  # a Swin-style partition is a different model
                swin = _reference_attention(block, x, _partition_contiguous, _merge_contiguous)
                assert (ours - swin).abs().max() > 1e-3


def _official_order(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, IRMB):
            m.channels_last = False
    return model


@pytest.mark.parametrize("n1, n2", [(1, 1), (2, 2), (3, 2), (1, 3)])
def test_channels_last_windows_are_the_official_windows(n1, n2):
    x = torch.randn(2, 5, 7 * n1, 7 * n2)
    windows = window_partition_last(x.permute(0, 2, 3, 1), n1, n2)
    assert torch.equal(windows, window_partition(x, n1, n2).flatten(2).transpose(1, 2))
    assert torch.equal(window_merge_last(windows, 2, n1, n2), x.permute(0, 2, 3, 1))


@pytest.mark.parametrize("size", [224, 256, 200, 160, 96])
def test_channels_last_attention_computes_the_official_op_order(emo1m, size):
    """The export layout (attention channels-last, 1x1 convs as linear layers) == the official NCHW op order."""
    assert all(m.channels_last for m in emo1m.modules() if isinstance(m, IRMB))
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        ours, official = emo1m(x), _official_order(emo1m)(x)
        assert (ours - official).abs().max() <= 1e-5 * official.abs().max()
        for block in (emo1m.stage3[1], emo1m.stage4[1]):
            feats = torch.randn(2, block.qk.conv.in_channels, size // 16, size // 16)
            assert torch.allclose(block.attention_last(feats), block.attention(block.norm(feats)), rtol=0, atol=1e-5)


@pytest.mark.slow
def test_tflite_graph_has_far_fewer_transposes_than_the_official_op_order(emo1m):
    """TFLite keeps tensors NHWC: the channels-last attention drops the layout transposes around the windows."""
    import litert_torch
    from ai_edge_litert.interpreter import Interpreter

    x = (torch.randn(1, 3, 224, 224),)

    def transposes(model) -> int:
        ops = Interpreter(model_content=litert_torch.convert(model.eval(), x).model_content())._get_ops_details()
        return sum(op["op_name"] == "TRANSPOSE" for op in ops)

    ours, official = transposes(emo1m), transposes(_official_order(emo1m))
    assert ours <= 0.6 * official, (ours, official)


# ---------------------------------------------------------------- forward API

def test_output_and_feature_shapes(emo1m):
    with torch.no_grad():
        pyramid = emo1m.forward_pyramid(torch.randn(2, 3, 256, 256))
        assert [tuple(f.shape) for f in pyramid] == [(2, 32, 64, 64), (2, 48, 32, 32), (2, 80, 16, 16), (2, 168, 8, 8)]
        assert emo1m.forward_head(pyramid[-1]).shape == (2, 1000)
        x = torch.randn(2, 3, 200, 200)
        assert emo1m.forward_features(x).shape == (2, 168, 7, 7) and emo1m(x).shape == (2, 1000)
        x = torch.randn(1, 3, 224, 224)
        features = emo1m.forward_features(x)
        assert features.shape == (1, 168, 7, 7) and torch.equal(features, emo1m.forward_pyramid(x)[-1])
        assert torch.allclose(emo1m.head(emo1m.norm(features).mean((2, 3))), emo1m(x), rtol=0, atol=1e-5)


@pytest.mark.slow
def test_torch_export_and_jit_trace_match_eager(emo1m):
    x = torch.randn(1, 3, 224, 224)
    program = torch.export.export(emo1m, (x,))
    ops = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert not any("einsum" in op or "unfold" in op or "scaled_dot_product" in op or "pad" in op for op in ops)
    with torch.no_grad():
        ref = emo1m(x)
        assert torch.allclose(program.module()(x), ref, atol=1e-5)
        with warnings.catch_warnings():  # torch 2.13 deprecates jit.trace; the Core ML path still uses it
            warnings.simplefilter("ignore", DeprecationWarning)
            traced = torch.jit.trace(emo1m, x)
        assert torch.allclose(traced(x), ref, atol=1e-5)


def test_drop_path_only_in_training():
    torch.manual_seed(0)
    model = mobilevision.create_model("emo_1m", drop_path_rate=0.5)
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))            # eval: deterministic
        model.train()
        assert not torch.equal(model(x), model(x))        # train: stochastic depth active
    rates = [b.drop_path.p for s in (model.stage1, model.stage2, model.stage3, model.stage4) for b in s]
    assert len(rates) == 15 and rates[0] == 0.0 and rates[-1] == pytest.approx(0.5) and rates == sorted(rates)
    default = mobilevision.create_model("emo_1m")
    assert default.stage4[2].drop_path.p == pytest.approx(0.04036) and default.stage0[1].drop_path.p == 0.0
    always = model.stage4[2].drop_path
    always.p = 1.0
    assert torch.equal(always(torch.ones(3, 2, 2, 2)), torch.zeros(3, 2, 2, 2))  # p = 1: dropped, no NaN


def test_every_parameter_gets_a_gradient():
    model = mobilevision.create_model("emo_1m", num_classes=10).train()
    torch.nn.functional.cross_entropy(model(torch.randn(2, 3, 64, 64)), torch.tensor([1, 2])).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_seeded_init_is_deterministic():
    torch.manual_seed(3)
    a = mobilevision.create_model("emo_1m").state_dict()
    torch.manual_seed(3)
    b = mobilevision.create_model("emo_1m").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    head = a["head.weight"]
    assert head.abs().max() <= 2.0 and 0.015 < head.std() < 0.025 and torch.equal(a["head.bias"], torch.zeros(1000))


# ---------------------------------------------------------------- official checkpoint formats

@pytest.mark.slow
def test_official_checkpoint_formats_reproduce_logits(emo1m, tmp_path):
    x = torch.randn(1, 3, 160, 160)  # stage 3/4 maps 10 and 5: padded windows, n1 = n2 = 2 in stage 3
    sd = emo1m.state_dict()
    with torch.no_grad():
        ref = emo1m(x)
    other = _randomise_norms(mobilevision.create_model("emo_1m"), seed=1)
    plain = _save(sd, tmp_path / "net.pth")
    trainer = _save({"net": sd, "net_E": None, "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]},
                     "epoch": 3}, tmp_path / "ckpt.pth")
    both = _save({"net": other.state_dict(), "net_E": sd}, tmp_path / "both.pth")
    ema_first = _save({"net": sd, "net_E": other.state_dict()}, tmp_path / "ema_first.pth")
    ddp = _save({f"module.{k}": v for k, v in sd.items()}, tmp_path / "ddp.pth")
    ddp_trainer = _save({"net": {f"module.{k}": v for k, v in sd.items()}, "net_E": None}, tmp_path / "ddp_ckpt.pth")
    cases = ((plain, None), (plain, "net_E"), (trainer, None), (trainer, "net"), (both, "net_E"),
             (ema_first, None), (ddp, None), (ddp_trainer, None))
    for path, key in cases:
        model = mobilevision.create_model("emo_1m", weights=path, checkpoint_key=key)
        assert not model.training
        with torch.no_grad():
            assert (model(x) - ref).abs().max().item() <= 1e-6, (path, key)
    with torch.no_grad():  # the other entry really is different weights
        assert (mobilevision.create_model("emo_1m", weights=both)(x) - ref).abs().max().item() > 1e-3


def test_checkpoint_key_errors(emo1m, tmp_path):
    trainer = _save({"net": emo1m.state_dict(), "net_E": None}, tmp_path / "ckpt.pth")
    with pytest.raises(WeightsError, match=r"no EMA weights \(net_E is None\); use key 'net'"):
        mobilevision.create_model("emo_1m", weights=trainer, checkpoint_key="net_E")
    with pytest.raises(WeightsError, match="must be 'net' or 'net_E'"):
        mobilevision.create_model("emo_1m", weights=trainer, checkpoint_key="model")


def test_wrong_variant_names_mismatched_keys(tmp_path):
    path = _save(mobilevision.create_model("emo_2m").state_dict(), tmp_path / "emo2m.pth")
    with pytest.raises(IncompatibleWeights) as info:
        mobilevision.create_model("emo_1m", weights=path)
    msg = str(info.value)
    assert "unexpected keys: stage1.2.norm.weight" in msg
    assert "shape mismatch: stage3.0.proj.conv.weight (120, 288, 1, 1) vs (80, 288, 1, 1)" in msg
    assert "\n" not in msg


@pytest.mark.parametrize("make, words", [
    (lambda p: None, "not found"),
    (lambda p: p.write_text("not a checkpoint\n" * 20), "cannot read checkpoint"),
    (lambda p: torch.save({"net": {"head.bias": torch.zeros(3)}, "args": _PickledObject()}, p),
     "Python objects beyond tensors"),
])
def test_unreadable_or_unsafe_files_are_refused(tmp_path, make, words):
    path = tmp_path / "net.pth"
    make(path)
    with pytest.raises(WeightsError, match=words):
        mobilevision.create_model("emo_1m", weights=str(path))


def test_new_class_count_fine_tune(emo1m, tmp_path):
    path = _save(emo1m.state_dict(), tmp_path / "net.pth")
    torch.manual_seed(5)
    model = mobilevision.create_model("emo_1m", weights=path, num_classes=10)
    assert model.head.weight.shape == (10, 168) and torch.equal(model.head.bias, torch.zeros(10))
    assert torch.equal(model.stage4[2].proj.conv.weight, emo1m.stage4[2].proj.conv.weight)
    assert torch.equal(model.norm.norm.weight, emo1m.norm.norm.weight)
    assert model.model_card.num_classes == 10 and model.model_card.labels is None
