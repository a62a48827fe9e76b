"""EfficientAD: spec sizes and key names, from-the-spec functional references, padding switch,
autoencoder sizes, and the nelson1425 / anomalib weight formats through create_model."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import mobilevision
from mobilevision.complexity import EXTRA_FORMULAS, count_macs, count_params
from mobilevision.errors import IncompatibleWeights, InputMismatch, WeightsError
from mobilevision.models.efficientad import MEASURED, PDN, Autoencoder, pdn_output_size

NAMES = ("pdn_s", "pdn_s_student", "pdn_m", "pdn_m_student", "efficientad_autoencoder")
# Spec 1.6: params, GMACs unpadded / padded at 256 (layer-wise conv count, two decimals).
SPEC_SIZES = {"pdn_s": (2_694_144, 15.31, 18.78), "pdn_s_student": (4_267_392, 20.24, 25.22),
              "pdn_m": (8_026_624, 52.03, 63.18), "pdn_m_student": (11_615_488, 63.28, 77.87),
              "efficientad_autoencoder": (1_096_320, 2.39, 2.64)}
# Spec 1.1 / 1.2 / 1.3, rows as (Sequential index, kernel, out ch (None: 384 teacher / 768 student),
# pad when padded, ReLU, then a 2x2 average pool with pad 1 when padded).
SPEC_PDN = {
    "s": ((0, 4, 128, 3, True, True), (3, 4, 256, 3, True, True), (6, 3, 256, 1, True, False),
          (8, 4, None, 0, False, False)),
    "m": ((0, 4, 256, 3, True, True), (3, 4, 512, 3, True, True), (6, 1, 512, 0, True, False),
          (8, 3, 512, 1, True, False), (10, 4, None, 0, True, False), (12, 1, None, 0, False, False)),
}
# Spec 1.4: encoder (kernel, stride, pad, out), decoder resize targets at 256 and convs (kernel, pad, out).
SPEC_ENC = ((4, 2, 1, 32), (4, 2, 1, 32), (4, 2, 1, 64), (4, 2, 1, 64), (4, 2, 1, 64), (8, 1, 0, 64))
SPEC_DEC_SIZES = (3, 8, 15, 32, 63, 127)
SPEC_DEC = ((4, 2, 64),) * 6 + ((3, 1, 64), (3, 1, 384))
# Spec 6: nelson1425's autoencoder Sequential indices of EncConv-1..6, DecConv-1..8.
SPEC_AE_INDEX = (0, 2, 4, 6, 8, 10, 12, 16, 20, 24, 28, 32, 36, 38)


def _meta_macs(model: nn.Module, size: tuple[int, int], conv_only: bool = False) -> int:
    """mobilevision.complexity's count on meta tensors (shapes only: instant even for PDN-M)."""
    counter = FlopCounterMode(display=False, custom_mapping={} if conv_only else EXTRA_FORMULAS)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, *size, device="meta"))
    return counter.get_total_flops() // 2


def _on_meta(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return mobilevision.create_model(name, **kwargs)


def _randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Weights ~ 1.5 / sqrt(fan_in), random biases: O(1..10) outputs, so a wrong layer shows."""
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.data = torch.randn(p.shape, generator=g) * 1.5 / math.sqrt(p[0].numel())
    return model.eval()


def _image(h: int, w: int, n: int = 1, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _spec_pdn_forward(sd: dict[str, torch.Tensor], size: str, x: torch.Tensor, padding: bool) -> torch.Tensor:
    """PDN written with torch.nn.functional from the spec's layer table, weights by Sequential index."""
    for idx, kernel, _, pad, relu, pool in SPEC_PDN[size]:
        w = sd[f"{idx}.weight"]
        assert w.shape[-2:] == (kernel, kernel)
        x = F.conv2d(x, w, sd[f"{idx}.bias"], stride=1, padding=pad if padding else 0)
        if relu:
            x = F.relu(x)
        if pool:
            x = F.avg_pool2d(x, 2, 2, padding=1 if padding else 0, count_include_pad=True)
    return x


def _spec_pdn_sequential(size: str, out: int, padding: bool) -> nn.Sequential:
    """The reference repos' nn.Sequential layout (what teacher_small/medium.pth are state dicts of)."""
    layers: list[nn.Module] = []
    cin = 3
    for idx, kernel, cout, pad, relu, pool in SPEC_PDN[size]:
        assert len(layers) == idx
        cout = out if cout is None else cout
        layers.append(nn.Conv2d(cin, cout, kernel, padding=pad if padding else 0))
        layers += [nn.ReLU()] if relu else []
        layers += [nn.AvgPool2d(2, 2, padding=1 if padding else 0)] if pool else []
        cin = cout
    return nn.Sequential(*layers)


def _spec_ae_sequential(last: int) -> nn.Sequential:
    """nelson1425's autoencoder layout from the spec (resize targets fixed for a 256 input)."""
    layers: list[nn.Module] = []
    cin = 3
    for i, (k, s, p, cout) in enumerate(SPEC_ENC):
        layers += [nn.Conv2d(cin, cout, k, s, p)] + ([nn.ReLU()] if i < 5 else [])
        cin = cout
    for i, (k, p, cout) in enumerate(SPEC_DEC):
        target = SPEC_DEC_SIZES[i] if i < 6 else last
        if i < 7:
            layers.append(nn.Upsample(size=target, mode="bilinear", align_corners=False))
        layers += [nn.Conv2d(cin, cout, k, 1, p)] + ([nn.ReLU()] if i < 7 else [])
        layers += [nn.Dropout(0.2)] if i < 6 else []
        cin = cout
    assert [i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)] == list(SPEC_AE_INDEX)
    return nn.Sequential(*layers)


def _alb_pdn_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """anomalib's names: the n-th convolution is conv{n}."""
    order = sorted({int(k.split(".")[0]) for k in sd})
    return {f"conv{order.index(int(k.split('.')[0])) + 1}.{k.split('.')[1]}": v for k, v in sd.items()}


# ------------------------------------------------------------------------------------------- sizes

@pytest.mark.parametrize("name", NAMES)
def test_params_and_macs_match_the_spec(name):
    params, gmacs, gmacs_padded = SPEC_SIZES[name]
    assert count_params(_on_meta(name)) == params == MEASURED[name][0]
    for padding, spec, measured in ((False, gmacs, MEASURED[name][1]), (True, gmacs_padded, MEASURED[name][2])):
        model = _on_meta(name, padding=padding)
        assert round(_meta_macs(model, (256, 256), conv_only=True) / 1e9, 2) == spec
        assert _meta_macs(model, (256, 256)) == measured  # + the 2x2 average pools (fvcore convention)
    card = mobilevision.get_model_card(name)
    assert f"{params / 1e6:.2f}M params" in card.description
    assert f"{MEASURED[name][1] / 1e9:.2f}G MACs" in card.description


def test_meta_count_equals_count_macs():
    model = mobilevision.create_model("efficientad_autoencoder")
    assert count_macs(model, (3, 256, 256)) == _meta_macs(_on_meta("efficientad_autoencoder"), (256, 256))


@pytest.mark.parametrize("name, channels", [("pdn_s", 384), ("pdn_s_student", 768), ("pdn_m", 384),
                                            ("pdn_m_student", 768), ("efficientad_autoencoder", 384)])
def test_output_shapes_and_padding_switch(name, channels):
    x = torch.zeros(1, 3, 256, 256, device="meta")
    assert _on_meta(name)(x).shape == (1, channels, 56, 56)  # default: unpadded, as the references
    assert _on_meta(name, padding=True)(x).shape == (1, channels, 64, 64)


@pytest.mark.slow
@pytest.mark.parametrize("hw", [(256, 256), (257, 300), (320, 288), (511, 384), (512, 512)])
@pytest.mark.parametrize("padding", [False, True])
def test_autoencoder_output_follows_the_input_size(hw, padding):
    x = torch.zeros(1, 3, *hw, device="meta")
    pdn = _on_meta("pdn_s", padding=padding)(x).shape[-2:]
    ae = _on_meta("efficientad_autoencoder", padding=padding)(x).shape[-2:]
    h, w = hw  # spec 1.1 unpadded formula; ceil(H / 4) padded
    unpadded = tuple((((s - 3) // 2 - 3) // 2) - 5 for s in (h, w))
    expected = tuple(math.ceil(s / 4) for s in (h, w)) if padding else unpadded
    assert tuple(ae) == tuple(pdn) == expected == (pdn_output_size(h, padding), pdn_output_size(w, padding))


def test_autoencoder_rejects_inputs_below_256():
    with pytest.raises(InputMismatch, match="at least 256"):
        _on_meta("efficientad_autoencoder")(torch.zeros(1, 3, 250, 256, device="meta"))


# ------------------------------------------------------------------------------------------- keys

@pytest.mark.parametrize("name, size, out", [("pdn_s", "s", 384), ("pdn_s_student", "s", 768),
                                             ("pdn_m", "m", 384), ("pdn_m_student", "m", 768)])
def test_pdn_state_dict_is_the_reference_sequential(name, size, out):
    ours = {k: tuple(v.shape) for k, v in _on_meta(name).state_dict().items()}
    ref = {k: tuple(v.shape) for k, v in _spec_pdn_sequential(size, out, False).to("meta").state_dict().items()}
    assert list(ours) == list(ref) and ours == ref


def test_autoencoder_state_dict_names():
    keys = list(_on_meta("efficientad_autoencoder").state_dict())
    convs = [f"encoder.enconv{i}" for i in range(1, 7)] + [f"decoder.deconv{i}" for i in range(1, 9)]
    assert keys == [f"{c}.{p}" for c in convs for p in ("weight", "bias")]


# ------------------------------------------------------------------------------------------- function

@pytest.mark.slow
@pytest.mark.parametrize("size, out", [("s", 384), ("s", 768), ("m", 384), ("m", 768)])
@pytest.mark.parametrize("padding", [False, True])
def test_pdn_matches_the_functional_spec(size, out, padding):
    model = _randomise(PDN(size, out, padding=padding))
    x = _image(52, 60, n=2)
    with torch.no_grad():
        y = model(x)
        ref = _spec_pdn_forward(model.state_dict(), size, x, padding)
    assert y.shape == (2, out, pdn_output_size(52, padding), pdn_output_size(60, padding))
    assert y.abs().amax() > 1.0
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("padding", [False, True])
def test_autoencoder_matches_the_spec_sequential(padding, tmp_path):
    ref = _randomise(_spec_ae_sequential(64 if padding else 56), seed=2)
    path = tmp_path / "autoencoder.pth"
    torch.save(ref.state_dict(), path)  # nelson1425's Sequential keys 0 .. 38
    model = mobilevision.create_model("efficientad_autoencoder", weights=str(path), padding=padding)
    x = _image(256, 256)
    with torch.no_grad():
        y, y_ref = model(x), ref(x)
    assert y.abs().amax() > 1.0
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-5)


def test_autoencoder_dropout_only_in_training():
    model = _randomise(Autoencoder(), seed=3)
    x = _image(256, 256)
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))  # eval-mode equality is covered by the reference tests


# ------------------------------------------------------------------------------------------- weights

@pytest.mark.slow
@pytest.mark.parametrize("name, size, out", [("pdn_s", "s", 384), ("pdn_m", "m", 384), ("pdn_s_student", "s", 768)])
def test_official_and_anomalib_teacher_files_load(name, size, out, tmp_path):
    ref = _randomise(_spec_pdn_sequential(size, out, padding=False), seed=4)
    official, alb = tmp_path / "official.pth", tmp_path / "anomalib.pth"
    torch.save(ref.state_dict(), official)
    torch.save(_alb_pdn_keys(ref.state_dict()), alb)
    x = _image(48, 48, n=2)
    with torch.no_grad():
        expected = ref(x)
        for path in (official, alb):
            y = mobilevision.create_model(name, weights=str(path))(x)
            assert torch.equal(y, expected), path.name


def test_anomalib_full_model_checkpoint(tmp_path):
    teacher = _randomise(_spec_pdn_sequential("s", 384, False), seed=5)
    student = _randomise(_spec_pdn_sequential("s", 768, False), seed=6)
    ae = _randomise(_spec_ae_sequential(56), seed=7)
    ae_names = [f"ae.encoder.enconv{i}" for i in range(1, 7)] + [f"ae.decoder.deconv{i}" for i in range(1, 9)]
    ae_sd = {f"{ae_names[SPEC_AE_INDEX.index(int(k.split('.')[0]))]}.{k.split('.')[1]}": v
             for k, v in ae.state_dict().items()}
    sd = {**{f"teacher.{k}": v for k, v in _alb_pdn_keys(teacher.state_dict()).items()},
          **{f"student.{k}": v for k, v in _alb_pdn_keys(student.state_dict()).items()}, **ae_sd,
          "mean_std.mean": torch.zeros(1, 384, 1, 1), "mean_std.std": torch.zeros(1, 384, 1, 1),
          "quantiles.qa_st": torch.tensor(0.0)}
    path = tmp_path / "efficient_ad.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in sd.items()}}, path)  # Lightning layout
    small, x = _image(48, 48), _image(256, 256)  # the autoencoder needs 256
    with torch.no_grad():
        for name, ref, inp in (("pdn_s", teacher, small), ("pdn_s_student", student, small),
                               ("efficientad_autoencoder", ae, x)):
            assert torch.equal(mobilevision.create_model(name, weights=str(path))(inp), ref(inp)), name
        picked = mobilevision.create_model("pdn_s_student", weights=str(path), checkpoint_key="student")
        assert torch.equal(picked(small), student(small))
    with pytest.raises(IncompatibleWeights):  # the student's 768 channels do not fit the teacher
        mobilevision.create_model("pdn_s", weights=str(path), checkpoint_key="student")
    with pytest.raises(WeightsError, match="must be one of"):
        mobilevision.create_model("pdn_s", weights=str(path), checkpoint_key="net")


@pytest.mark.parametrize("name, weights_of", [("pdn_s", "pdn_m"), ("pdn_m", "pdn_s"), ("pdn_s", "pdn_s_student"),
                                              ("efficientad_autoencoder", "pdn_s")])
def test_wrong_architecture_is_rejected(name, weights_of, tmp_path):
    path = tmp_path / f"{weights_of}.pth"
    torch.save(mobilevision.create_model(weights_of).state_dict(), path)
    with pytest.raises(IncompatibleWeights, match="does not fit"):
        mobilevision.create_model(name, weights=str(path))


# ------------------------------------------------------------------------------------------- registry

def test_registry_cards():
    assert set(NAMES) <= set(mobilevision.list_models("anomaly"))
    for name in NAMES:
        card = mobilevision.get_model_card(name)
        assert (card.task, card.input_size, card.output_names) == ("anomaly", (3, 256, 256), ("features",))
        assert (card.num_classes, card.labels, card.label_set, card.crop_pct) == (0, None, None, 1.0)
        assert card.mean == (0.485, 0.456, 0.406) and card.std == (0.229, 0.224, 0.225)
    model = mobilevision.create_model("pdn_s", num_classes=0, padding=True)
    assert model.padding and not model.training and model.model_card.name == "pdn_s"
