"""EMO: exact sizes, official key names, strided-grid windows, official checkpoint formats."""
from __future__ import annotations

import pytest
import torch

import mobilevision
from mobilevision.complexity import count_macs, count_params
from mobilevision.errors import IncompatibleWeights, WeightsError
from mobilevision.models.emo import window_merge, window_partition

# Official figures (zhangzjn/EMO README and logs; fvcore MACs).
OFFICIAL = {"emo_1m": (1_361_168, 260.8e6), "emo_2m": (2_377_472, 439.4e6),
            "emo_5m": (5_108_848, 902.6e6), "emo_6m": (6_168_496, 960.8e6)}


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


@pytest.fixture(scope="module")
def emo1m():
    torch.manual_seed(0)
    return _randomise_norms(mobilevision.create_model("emo_1m"))


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_parameter_count_exact(name):
    assert count_params(mobilevision.create_model(name)) == OFFICIAL[name][0]


@pytest.mark.parametrize("name", ["emo_1m", "emo_6m"])
def test_macs_within_3_percent(name):
    macs = count_macs(mobilevision.create_model(name), (3, 224, 224))
    assert abs(macs / OFFICIAL[name][1] - 1) < 0.03, macs


@pytest.mark.parametrize("name, entries", [("emo_1m", 217), ("emo_2m", 258)])
def test_official_key_names(name, entries):
    sd = mobilevision.create_model(name).state_dict()
    assert len(sd) == entries
    expect = {"stage0.0.convs.0.0.weight": (24, 3, 3, 3), "stage0.0.convs.0.0.bias": (24,),
              "stage0.0.convs.0.1.running_var": (24,), "stage0.1.conv_local.conv.weight": (24, 1, 3, 3),
              "stage0.1.se.conv_reduce.weight": (24, 24, 1, 1), "stage0.1.se.conv_expand.bias": (24,),
              "stage0.1.proj.conv.weight": (24, 24, 1, 1), "stage1.0.norm.num_batches_tracked": (),
              "stage1.0.v.conv.weight": (96, 24, 1, 1), "stage1.0.v.conv.bias": (96,),
              "stage3.1.norm.norm.weight": None, "stage3.1.qk.conv.bias": None, "norm.norm.weight": None,
              "head.weight": None}
    for key, shape in expect.items():
        assert key in sd, key
        if shape is not None:
            assert tuple(sd[key].shape) == shape, key
    assert "stage3.0.qk.conv.weight" not in sd and "stage2.1.qk.conv.weight" not in sd
    assert not any(k.endswith("proj.conv.bias") for k in sd)
    if name == "emo_1m":
        assert tuple(sd["stage4.1.qk.conv.weight"].shape) == (336, 168, 1, 1)
        assert tuple(sd["stage4.0.v.conv.weight"].shape) == (560, 80, 1, 1)
        assert tuple(sd["stage3.1.conv_local.conv.weight"].shape) == (240, 1, 5, 5)


def _reference_partition(x, n1, n2):
    """The official einops pattern 'b c (h1 n1) (w1 n2) -> (b n1 n2) c h1 w1' as one 6-D permute."""
    b, c = x.shape[:2]
    return x.reshape(b, c, 7, n1, 7, n2).permute(0, 3, 5, 1, 2, 4).reshape(b * n1 * n2, c, 7, 7)


def _contiguous_partition(x, n1, n2):
    """Swin-style windows: NOT what EMO does (kept to prove the test can tell them apart)."""
    b, c = x.shape[:2]
    return x.reshape(b, c, n1, 7, n2, 7).permute(0, 2, 4, 1, 3, 5).reshape(b * n1 * n2, c, 7, 7)


@pytest.mark.parametrize("n1, n2", [(1, 1), (2, 2), (3, 3), (2, 3)])
def test_window_partition_is_strided_grid(n1, n2):
    x = torch.randn(2, 5, 7 * n1, 7 * n2)
    w = window_partition(x, n1, n2)
    assert torch.equal(w, _reference_partition(x, n1, n2))
    assert torch.equal(window_merge(w, 2, n1, n2), x)
    if n1 * n2 > 1:
        assert not torch.equal(w, _contiguous_partition(x, n1, n2))


def test_output_and_feature_shapes(emo1m):
    with torch.no_grad():
        for size in (224, 256, 200):
            x = torch.randn(2, 3, size, size)
            assert emo1m(x).shape == (2, 1000)
        pyramid = emo1m.forward_pyramid(torch.randn(1, 3, 224, 224))
    assert [tuple(f.shape[1:]) for f in pyramid] == [(32, 56, 56), (48, 28, 28), (80, 14, 14), (168, 7, 7)]
    with torch.no_grad():
        x = torch.randn(1, 3, 224, 224)
        assert torch.equal(emo1m.forward_head(emo1m.forward_features(x)), emo1m(x))


def _save(obj, path):
    torch.save(obj, path)
    return str(path)


def test_official_checkpoint_formats_reproduce_logits(emo1m, tmp_path):
    x = torch.randn(2, 3, 224, 224)
    sd = emo1m.state_dict()
    with torch.no_grad():
        ref = emo1m(x)
    other = _randomise_norms(mobilevision.create_model("emo_1m"), seed=1)
    plain = _save(sd, tmp_path / "net.pth")
    trainer = _save({"net": sd, "net_E": None, "optimizer": {"lr": 0.1}, "epoch": 3}, tmp_path / "ckpt.pth")
    both = _save({"net": other.state_dict(), "net_E": sd}, tmp_path / "both.pth")
    ddp = _save({f"module.{k}": v for k, v in sd.items()}, tmp_path / "ddp.pth")
    for path, key in ((plain, None), (trainer, None), (both, "net_E"), (ddp, None)):
        model = mobilevision.create_model("emo_1m", weights=path, checkpoint_key=key)
        with torch.no_grad():
            assert (model(x) - ref).abs().max().item() <= 1e-6, path


def test_checkpoint_errors(emo1m, tmp_path):
    trainer = _save({"net": emo1m.state_dict(), "net_E": None}, tmp_path / "ckpt.pth")
    with pytest.raises(WeightsError, match="net_E is None.*'net'"):
        mobilevision.create_model("emo_1m", weights=trainer, checkpoint_key="net_E")
    with pytest.raises(WeightsError, match="must be 'net' or 'net_E'"):
        mobilevision.create_model("emo_1m", weights=trainer, checkpoint_key="model")
    plain = _save(emo1m.state_dict(), tmp_path / "net.pth")
    with pytest.raises(WeightsError, match="plain state dict"):
        mobilevision.create_model("emo_1m", weights=plain, checkpoint_key="net_E")


def test_wrong_variant_names_mismatched_keys(tmp_path):
    path = _save(mobilevision.create_model("emo_2m").state_dict(), tmp_path / "emo2m.pth")
    with pytest.raises(IncompatibleWeights) as info:
        mobilevision.create_model("emo_1m", weights=path)
    msg = str(info.value)
    assert "unexpected keys: stage1.2." in msg and "shape mismatch" in msg and "\n" not in msg


def test_new_class_count_fine_tune(emo1m, tmp_path):
    path = _save(emo1m.state_dict(), tmp_path / "net.pth")
    model = mobilevision.create_model("emo_1m", weights=path, num_classes=10)
    assert model.head.out_features == 10
    assert torch.equal(model.stage4[2].proj.conv.weight, emo1m.stage4[2].proj.conv.weight)


def test_torch_export_matches_eager(emo1m):
    x = torch.randn(1, 3, 224, 224)
    program = torch.export.export(emo1m, (x,))
    with torch.no_grad():
        assert torch.allclose(program.module()(x), emo1m(x), atol=1e-5)


def test_drop_path_only_in_training():
    torch.manual_seed(0)
    model = mobilevision.create_model("emo_1m", drop_path_rate=0.5)
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))            # eval: deterministic
        model.train()
        assert not torch.equal(model(x), model(x))        # train: stochastic depth active
    rates = [b.drop_path.p for s in (model.stage1, model.stage2, model.stage3, model.stage4) for b in s]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.5) and rates == sorted(rates)


def test_seeded_init_is_deterministic():
    torch.manual_seed(3)
    a = mobilevision.create_model("emo_1m").state_dict()
    torch.manual_seed(3)
    b = mobilevision.create_model("emo_1m").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
