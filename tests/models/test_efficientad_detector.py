"""The fused EfficientAD detector: the paper's map arithmetic in nelson1425's order, in one graph."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import mobilevision
from mobilevision.models.efficientad import EfficientADDetector


@pytest.fixture(scope="module")
def detector():
    torch.manual_seed(0)
    d = mobilevision.create_model("efficientad_s").eval()
    with torch.no_grad():
        d.teacher_mean.normal_(0, 0.1)
        d.teacher_std.uniform_(0.5, 2.0)
        d.quantiles_st.copy_(torch.tensor([1e-4, 5e-4]))
        d.quantiles_ae.copy_(torch.tensor([2e-4, 3e-4]))
    return d


@pytest.mark.slow
def test_forward_is_the_papers_map_arithmetic(detector):
    image = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        amap, score = detector(image)
        x = (image - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        t = (detector.teacher(x) - detector.teacher_mean) / detector.teacher_std
        s, a = detector.student(x), detector.autoencoder(x)
        m_st = ((t - s[:, :384]) ** 2).mean(1, keepdim=True)
        m_ae = ((a - s[:, 384:]) ** 2).mean(1, keepdim=True)
        m = 0.5 * 0.1 * (m_st - 1e-4) / 4e-4 + 0.5 * 0.1 * (m_ae - 2e-4) / 1e-4
        assert m.shape[-2:] == (56, 56)
        m = F.interpolate(F.pad(m, (4, 4, 4, 4)), size=(256, 256), mode="bilinear", align_corners=False)
    assert amap.shape == (2, 1, 256, 256) and score.shape == (2,)
    torch.testing.assert_close(amap, m, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(score, m.amax(dim=(1, 2, 3)))
    assert (score >= 0).all()  # the zero border comes after normalisation: the score is max(0, interior)


@pytest.mark.slow
def test_padded_detector_has_no_border():
    d = EfficientADDetector("s", padding=True).eval()
    with torch.no_grad():
        st, ae = d.raw_maps(torch.rand(1, 3, 256, 256))
        amap, _ = d(torch.rand(1, 3, 256, 256))
    assert st.shape[-2:] == (64, 64) and ae.shape == st.shape and amap.shape == (1, 1, 256, 256)


@pytest.mark.slow
def test_map_follows_other_input_sizes(detector):
    with torch.no_grad():
        amap, score = detector(torch.rand(1, 3, 320, 288))
    assert amap.shape == (1, 1, 320, 288) and score.shape == (1,)


def test_fit_quantiles_maps_q_a_to_0_and_q_b_to_0_1(detector):
    d = EfficientADDetector("s").eval()
    gen = torch.Generator().manual_seed(2)
    st, ae = torch.rand(10, 1, 56, 56, generator=gen), 3 * torch.rand(10, 1, 56, 56, generator=gen)
    d.fit_quantiles(st, ae)
    torch.testing.assert_close(d.quantiles_st, torch.quantile(st.flatten().double(), torch.tensor([0.9, 0.995],
                               dtype=torch.float64)).float())
    norm = 0.1 * (ae - d.quantiles_ae[0]) / (d.quantiles_ae[1] - d.quantiles_ae[0])
    assert abs((norm <= 0).float().mean().item() - 0.9) < 0.002
    assert abs((norm <= 0.1).float().mean().item() - 0.995) < 0.002


@pytest.mark.slow
def test_statistics_travel_with_the_weights(detector, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "det.safetensors"
    save_file({k: v.contiguous() for k, v in detector.state_dict().items()}, str(path))
    loaded = mobilevision.create_model("efficientad_s", weights=str(path)).eval()
    image = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        torch.testing.assert_close(loaded(image)[0], detector(image)[0])
    assert {"teacher_mean", "teacher_std", "quantiles_st", "quantiles_ae"} <= set(detector.state_dict())


def test_card_describes_one_image_in_graph():
    card = mobilevision.get_model_card("efficientad_m")
    assert card.task == "anomaly" and card.output_names == ("anomaly_map", "score")
    assert card.mean == (0.0, 0.0, 0.0) and card.std == (1.0, 1.0, 1.0) and card.resize_mode == "stretch"
