"""Wide ResNet-50-2 / -101-2 (torchvision sizes, key names, file loading, partial forward) and EfficientAD's
teacher-pretraining target Ψ (spec §2: a loop-by-loop reference, the literal unfold recipe on real
wide_resnet50_2 features, the two-pass channel normalisation)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mobilevision
from mobilevision.testing import randomise_batchnorm
from mobilevision.complexity import count_macs, count_params
from mobilevision.errors import IncompatibleWeights, WeightsError
from mobilevision.models.patch_target import (PatchDescriptorTarget, adaptive_pool_matrix,
                                              fit_channel_normalisation)
from mobilevision.models.wide_resnet import MEASURED, extract_resnet_state_dict

# torchvision's published sizes: params, and conv + fc GMACs (its "GFLOPS" column counts MACs).
KNOWN = {"wide_resnet50_2": (68_883_240, 11.398), "wide_resnet101_2": (126_886_696, 22.753)}

# torchvision key -> shape; a wide bottleneck is 2 x planes wide (layer1: 128, layer4: 1024), output 4 x planes.
KEYS_50 = {
    "conv1.weight": (64, 3, 7, 7), "bn1.weight": (64,), "bn1.bias": (64,), "bn1.running_mean": (64,),
    "bn1.running_var": (64,), "bn1.num_batches_tracked": (),
    "layer1.0.conv1.weight": (128, 64, 1, 1), "layer1.0.conv2.weight": (128, 128, 3, 3),
    "layer1.0.conv3.weight": (256, 128, 1, 1), "layer1.0.bn3.weight": (256,),
    "layer1.0.downsample.0.weight": (256, 64, 1, 1), "layer1.0.downsample.1.running_var": (256,),
    "layer1.2.conv1.weight": (128, 256, 1, 1),
    "layer2.0.conv1.weight": (256, 256, 1, 1), "layer2.0.conv2.weight": (256, 256, 3, 3),
    "layer2.0.downsample.0.weight": (512, 256, 1, 1), "layer2.3.conv3.weight": (512, 256, 1, 1),
    "layer3.0.conv2.weight": (512, 512, 3, 3), "layer3.5.conv3.weight": (1024, 512, 1, 1),
    "layer4.0.conv1.weight": (1024, 1024, 1, 1), "layer4.0.downsample.0.weight": (2048, 1024, 1, 1),
    "layer4.2.conv2.weight": (1024, 1024, 3, 3), "layer4.2.bn3.bias": (2048,),
    "fc.weight": (1000, 2048), "fc.bias": (1000,),
}
KEYS_101 = {"layer3.22.conv3.weight": (1024, 512, 1, 1), "layer3.22.bn2.running_mean": (512,),
            "layer3.0.downsample.1.weight": (1024,), "fc.weight": (1000, 2048)}
ABSENT = {"wide_resnet50_2": ("layer3.6.conv1.weight", "layer1.1.downsample.0.weight", "layer1.0.conv1.bias"),
          "wide_resnet101_2": ("layer3.23.conv1.weight", "layer4.3.conv1.weight", "layer2.1.downsample.0.weight")}


def _meta_model(name: str) -> nn.Module:
    """The registered model on the meta device: shapes and counts without allocating or initialising."""
    with torch.device("meta"):
        return mobilevision.create_model(name)


def _randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    return randomise_batchnorm(model, seed)


@pytest.fixture(scope="module")
def wrn50() -> nn.Module:
    torch.manual_seed(0)
    return _randomise_bn(mobilevision.create_model("wide_resnet50_2"))


@pytest.fixture(scope="module")
def wrn50_file(wrn50, tmp_path_factory):
    """wrn50's weights as a torchvision-format file: a plain state dict saved with torch.save."""
    path = tmp_path_factory.mktemp("weights") / "wide_resnet50_2-test.pth"
    torch.save(wrn50.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def maps_512(wrn50) -> dict[str, torch.Tensor]:
    """wrn50's layer2 / layer3 maps of one 512 x 512 image, computed once."""
    x = torch.randn(1, 3, 512, 512, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        return wrn50.intermediate(x, ("layer2", "layer3"))


# --------------------------------------------------------------------------------------------- network

@pytest.mark.slow
@pytest.mark.parametrize("name", ["wide_resnet50_2", "wide_resnet101_2"])
def test_params_macs_and_card(name):
    model = _meta_model(name)
    params, macs = MEASURED[name]
    assert count_params(model) == params == KNOWN[name][0]
    with torch.device("meta"):
        assert count_macs(model, (3, 224, 224)) == macs
        conv_fc = {nn.Conv2d, nn.Linear}
        own = sum(math.prod(m.weight.shape) * (math.prod(out.shape[2:]) if out.ndim == 4 else 1)
                  for m, out in _outputs(model, conv_fc))
    assert abs(own / 1e9 - KNOWN[name][1]) < 0.001
    card = mobilevision.get_model_card(name)
    assert (card.task, card.input_size, card.interpolation, card.crop_pct, card.classifier_prefixes) == \
           ("classify", (3, 224, 224), "bilinear", 0.875, ("fc.",))
    assert card.mean == (0.485, 0.456, 0.406) and card.std == (0.229, 0.224, 0.225)
    assert f"{params / 1e6:.2f}M params" in card.description and f"{macs / 1e9:.2f}G MACs" in card.description


def _outputs(model: nn.Module, types: set[type]) -> list[tuple[nn.Module, torch.Tensor]]:
    """(module, output) of every module of the given types in one 224 forward (meta device)."""
    seen: list[tuple[nn.Module, torch.Tensor]] = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((m, o))) for m in model.modules() if type(m) in types]
    try:
        model(torch.zeros(1, 3, 224, 224))
    finally:
        for h in hooks:
            h.remove()
    return seen


@pytest.mark.parametrize("name, keys, n_keys", [("wide_resnet50_2", KEYS_50, 320), ("wide_resnet101_2", KEYS_101, 626)])
def test_torchvision_key_names(name, keys, n_keys):
    model = _meta_model(name)
    sd = model.state_dict()
    assert len(sd) == n_keys
    for k, shape in keys.items():
        assert tuple(sd[k].shape) == shape, k
    for k in ABSENT[name]:
        assert k not in sd
    # ResNet V1.5: the stride sits on the 3x3 conv; the shortcut projection strides too.
    assert model.layer2[0].conv1.stride == (1, 1) and model.layer2[0].conv2.stride == (2, 2)
    assert model.layer2[0].downsample[0].stride == (2, 2) and model.layer1[0].conv2.stride == (1, 1)


@pytest.mark.slow
def test_torchvision_file_loads_identically(wrn50, wrn50_file):
    loaded = mobilevision.create_model("wide_resnet50_2", weights=str(wrn50_file))
    ref = wrn50.state_dict()
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, ref[k]), k
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(loaded(x), wrn50(x))


def test_old_files_without_bn_counters_and_no_checkpoint_key(wrn50):
    sd = {k: v for k, v in wrn50.state_dict().items() if not k.endswith("num_batches_tracked")}
    fixed = extract_resnet_state_dict(sd)
    assert set(fixed) == set(wrn50.state_dict()) and fixed["bn1.num_batches_tracked"].dtype == torch.long
    with pytest.raises(WeightsError, match="plain state dict"):
        extract_resnet_state_dict(sd, key="net")


@pytest.mark.slow
def test_wrong_architecture_fails(wrn50_file):
    with pytest.raises(IncompatibleWeights, match=r"missing keys: layer3\.6\."):
        mobilevision.create_model("wide_resnet101_2", weights=str(wrn50_file))


def test_features_head_and_intermediate(wrn50):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        feats = wrn50.forward_features(x)
        assert feats.shape == (2, 2048, 1, 1)
        assert torch.equal(wrn50.forward_head(feats), wrn50(x))
        assert wrn50.forward_head(feats, pre_logits=True).shape == (2, 2048)
        assert torch.equal(wrn50.intermediate(x, ("layer4",))["layer4"], feats)
        mid = wrn50.intermediate(x, ("layer3", "layer1"))
    assert list(mid) == ["layer3", "layer1"] and mid["layer1"].shape == (2, 256, 8, 8)
    with pytest.raises(ValueError, match="layer1"):
        wrn50.intermediate(x, ("fc",))


def test_intermediate_runs_only_as_far_as_needed(wrn50):
    def refuse(module, inputs):
        raise AssertionError("layer4 ran")

    hook = wrn50.layer4.register_forward_pre_hook(refuse)
    try:
        with torch.no_grad():
            wrn50.intermediate(torch.zeros(1, 3, 32, 32))
    finally:
        hook.remove()


@pytest.mark.slow
def test_intermediate_shapes_at_512(maps_512):
    assert maps_512["layer2"].shape == (1, 512, 64, 64)
    assert maps_512["layer3"].shape == (1, 1024, 32, 32)


# --------------------------------------------------------------------------------------------- target Ψ

class TinyExtractor(nn.Module):
    """Random small convs: 8-channel 'layer2' at stride 2, 16-channel 'layer3' at stride 4."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.layer2 = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.layer3 = nn.Conv2d(8, 16, 3, 2, 1)

    def intermediate(self, x: torch.Tensor, layers=("layer2", "layer3")) -> dict[str, torch.Tensor]:
        a = self.layer2(x)
        maps = {"layer2": a, "layer3": self.layer3(a)}
        return {n: maps[n] for n in layers}


class Cached(nn.Module):
    """An 'extractor' that returns fixed maps (to reuse wrn50's 512 features)."""

    def __init__(self, maps: dict[str, torch.Tensor]):
        super().__init__()
        self.maps = maps

    def intermediate(self, x: torch.Tensor, layers=("layer2", "layer3")) -> dict[str, torch.Tensor]:
        return {n: self.maps[n] for n in layers}


def _pool(values: list[float], n_out: int) -> list[float]:
    """PyTorch's adaptive average pooling, from its window formula."""
    n = len(values)
    out = []
    for i in range(n_out):
        a, b = math.floor(i * n / n_out), math.ceil((i + 1) * n / n_out)
        out.append(sum(values[a:b]) / (b - a))
    return out


def _bilinear(grid: list[list[float]], h: int, w: int) -> list[list[float]]:
    """Bilinear resize, align_corners=False: source = (dst + 0.5) * in/out - 0.5, clamped at 0."""
    hi, wi = len(grid), len(grid[0])

    def taps(d: int, n_in: int, n_out: int) -> tuple[int, int, float]:
        s = max((d + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = min(int(s), n_in - 1)
        return i0, min(i0 + 1, n_in - 1), s - i0

    out = []
    for y in range(h):
        y0, y1, ly = taps(y, hi, h)
        row = []
        for x in range(w):
            x0, x1, lx = taps(x, wi, w)
            top = grid[y0][x0] * (1 - lx) + grid[y0][x1] * lx
            bottom = grid[y1][x0] * (1 - lx) + grid[y1][x1] * lx
            row.append(top * (1 - ly) + bottom * ly)
        out.append(row)
    return out


def _loop_reference(f2: torch.Tensor, f3: torch.Tensor) -> torch.Tensor:
    """Spec §2 steps 1-6 for one image, with explicit loops over channels, offsets and locations."""
    f2, f3 = f2.double().tolist(), f3.double().tolist()
    (c2, h2, w2), (c3, h3, w3) = (len(f2), len(f2[0]), len(f2[0][0])), (len(f3), len(f3[0]), len(f3[0][0]))

    def at(f, c, y, x, h, w):
        return f[c][y][x] if 0 <= y < h and 0 <= x < w else 0.0  # zero padding 1

    # layer3: one patch grid per (c, kh, kw) slice, resized to layer2's grid.
    slices3 = {}
    for c in range(c3):
        for i in range(3):
            for j in range(3):
                grid = [[at(f3, c, y + i - 1, x + j - 1, h3, w3) for x in range(w3)] for y in range(h3)]
                slices3[c, i, j] = _bilinear(grid, h2, w2)
    out = torch.zeros(384, h2, w2, dtype=torch.float64)
    for y in range(h2):
        for x in range(w2):
            v2 = [at(f2, c, y + i - 1, x + j - 1, h2, w2) for c in range(c2) for i in range(3) for j in range(3)]
            v3 = [slices3[c, i, j][y][x] for c in range(c3) for i in range(3) for j in range(3)]
            out[:, y, x] = torch.tensor(_pool(_pool(v2, 1024) + _pool(v3, 1024), 384), dtype=torch.float64)
    return out


def _literal_reference(f2: torch.Tensor, f3: torch.Tensor) -> torch.Tensor:
    """Spec §2 literally with tensor ops: unfold, resize every patch slice, pool per location, pool the stack."""
    b, _, h2, w2 = f2.shape
    p2 = F.unfold(f2, 3, padding=1)                                         # (B, C2*9, H2*W2)
    p3 = F.unfold(f3, 3, padding=1).reshape(b, -1, *f3.shape[-2:])         # (B, C3*9, H3, W3)
    p3 = F.interpolate(p3, size=(h2, w2), mode="bilinear", align_corners=False).flatten(2)
    per_layer = [F.adaptive_avg_pool1d(p.transpose(1, 2).reshape(-1, 1, p.shape[1]), 1024) for p in (p2, p3)]
    stacked = torch.cat(per_layer, dim=2)                                   # (B*H2*W2, 1, 2048), layer-major
    psi = F.adaptive_avg_pool1d(stacked, 384).reshape(b, h2, w2, 384)
    return psi.permute(0, 3, 1, 2)


def test_target_matches_loop_reference():
    ext = _randomise_bn(TinyExtractor())
    target = PatchDescriptorTarget(ext)
    x = torch.randn(2, 3, 10, 14, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        maps = ext.intermediate(x)
        psi = target(x)
    assert maps["layer2"].shape == (2, 8, 5, 7) and maps["layer3"].shape == (2, 16, 3, 4)
    assert psi.shape == (2, 384, 5, 7)
    for n in range(2):
        ref = _loop_reference(maps["layer2"][n], maps["layer3"][n])
        assert (psi[n].double() - ref).abs().max() < 1e-5


@pytest.mark.slow
def test_target_on_wide_resnet50_at_512(maps_512):
    with torch.no_grad():
        psi = PatchDescriptorTarget(Cached(maps_512))(torch.zeros(1, 3, 512, 512))
        ref = _literal_reference(maps_512["layer2"], maps_512["layer3"])
    assert psi.shape == (1, 384, 64, 64)
    assert (psi - ref).abs().max() <= 1e-5 * ref.abs().max()


@pytest.mark.parametrize("n_in, n_out", [(4608, 1024), (9216, 1024), (2048, 384), (72, 1024), (10, 3)])
def test_adaptive_pool_matrix(n_in, n_out):
    v = torch.randn(3, 1, n_in, dtype=torch.float64, generator=torch.Generator().manual_seed(n_in))
    m = adaptive_pool_matrix(n_in, n_out)
    assert torch.allclose(v[:, 0] @ m.T, F.adaptive_avg_pool1d(v, n_out)[:, 0], atol=1e-12)


def test_target_keeps_extractor_in_eval():
    target = PatchDescriptorTarget(TinyExtractor()).train()
    assert target.training and not target.extractor.training
    with pytest.raises(ValueError, match="2 feature maps"):
        target.aggregate([torch.zeros(1, 8, 4, 4)])


# --------------------------------------------------------------------------------------------- normalisation

def _conv_target(seed: int = 0):
    torch.manual_seed(seed)
    conv = nn.Conv2d(3, 6, 3, padding=1)
    return lambda x: conv(x) * torch.arange(1.0, 7.0)[None, :, None, None] + 2.0


def test_two_pass_normalisation_equals_direct_statistics():
    fn = _conv_target()
    g = torch.Generator().manual_seed(7)
    batches = [torch.randn(4, 3, 9, 11, generator=g) for _ in range(5)]
    mean, std = fit_channel_normalisation(fn, batches)
    with torch.no_grad():
        y = torch.cat([fn(b) for b in batches]).double()
    assert mean.shape == std.shape == (6,)
    assert (mean.double() - y.mean(dim=(0, 2, 3))).abs().max() < 1e-5
    assert (std.double() - y.std(dim=(0, 2, 3), unbiased=False)).abs().max() < 1e-5


def test_two_pass_normalisation_weights_batches_equally_and_limits():
    fn = _conv_target(1)
    g = torch.Generator().manual_seed(8)
    batches = [torch.randn(n, 3, 8, 8, generator=g) for n in (1, 3, 2)]
    mean, std = fit_channel_normalisation(fn, batches)
    with torch.no_grad():
        outs = [fn(b).double() for b in batches]
    mu = torch.stack([o.mean(dim=(0, 2, 3)) for o in outs]).mean(0)
    var = torch.stack([((o - mu[None, :, None, None]) ** 2).mean(dim=(0, 2, 3)) for o in outs]).mean(0)
    assert (mean.double() - mu).abs().max() < 1e-5 and (std.double() - var.sqrt()).abs().max() < 1e-5

    # an endless iterator with limit: pass 1 takes batches until >= 4 images (1 + 3), pass 2 the next ones
    def endless():
        while True:
            yield from batches

    mean_l, _ = fit_channel_normalisation(fn, endless(), limit=4)
    assert (mean_l.double() - (outs[0].mean(dim=(0, 2, 3)) + outs[1].mean(dim=(0, 2, 3))) / 2).abs().max() < 1e-5
    with pytest.raises(TypeError, match="twice"):
        fit_channel_normalisation(fn, iter(batches))
    with pytest.raises(ValueError, match="no batches"):
        fit_channel_normalisation(fn, [])
