"""The paper's tiny ISP generators (spec §3): exact layers, key names, parameter counts, a from-the-spec
functional reference, the packed -> 3-plane split of RMFA-Net, and the released-file format."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import mobilevision
from mobilevision.models.isp import RMFANet, ThreeConvISP, packed_to_planes

PARAMS = {"efficientisp": 3_060, "robustisp": 1_616, "rmfa_net_tiny": 29_223}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_counts_and_shapes(name):
    model = mobilevision.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name]
    card = mobilevision.get_model_card(name)
    assert card.task == "isp" and card.input_size == (4, 224, 224) and card.raw_black_level is not None
    with torch.no_grad():
        y = model(torch.rand(2, 4, 20, 28))
    assert y.shape == (2, 3, 40, 56) and float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_three_conv_isp_matches_the_spec_by_hand():
    torch.manual_seed(0)
    net = ThreeConvISP((12, 12)).eval()
    sd = net.state_dict()
    assert sorted(sd) == sorted(f"conv{i}.{k}" for i in (1, 2, 3) for k in ("weight", "bias"))
    x = torch.randn(1, 4, 9, 11)
    c = torch.tanh(F.conv2d(x, sd["conv1.weight"], sd["conv1.bias"], padding=1))
    c = F.relu(F.conv2d(c, sd["conv2.weight"], sd["conv2.bias"], padding=1))
    c = F.relu(F.conv2d(c, sd["conv3.weight"], sd["conv3.bias"], padding=1))
    # pixel shuffle by hand (CRD): output (k, 2i + a, 2j + b) = input channel 4k + 2a + b at (i, j)
    ref = torch.zeros(1, 3, 18, 22)
    for k in range(3):
        for a in range(2):
            for b in range(2):
                ref[0, k, a::2, b::2] = c[0, 4 * k + 2 * a + b]
    torch.testing.assert_close(net(x), ref, rtol=0, atol=1e-6)
    assert [m.out_channels for m in ThreeConvISP((16, 4)).children()] == [16, 4, 12]


def test_rmfa_keys_and_block_structure():
    keys = set(RMFANet(2, 16).state_dict())
    expected = {"input_module.0.weight", "input_module.1.bias", "rmfa_blocks.1.texture_module.high_freq.0.weight",
                "rmfa_blocks.0.texture_module.low_freq.0.bias", "rmfa_blocks.0.tone_mapping.level1.1.weight",
                "rmfa_blocks.0.tone_mapping.level2.1.weight", "rmfa_blocks.0.tone_mapping.level3.0.weight",
                "rmfa_blocks.0.fusion.0.weight", "rmfa_blocks.0.channel_attention.fc.0.weight",
                "rmfa_blocks.0.channel_attention.fc.2.weight", "rmfa_blocks.0.spatial_attention.conv.weight",
                "output_module.0.weight"}
    assert expected <= keys
    assert "rmfa_blocks.0.channel_attention.fc.0.bias" not in keys  # the attention convs have no bias
    per_block = sum(p.numel() for n, p in RMFANet(2, 16).named_parameters() if n.startswith("rmfa_blocks.0."))
    assert per_block == 13_010


def test_rmfa_tone_mapping_by_hand():
    torch.manual_seed(1)
    tm = RMFANet(1, 16).rmfa_blocks[0].tone_mapping.eval()
    x = torch.randn(1, 16, 12, 16)
    sd = tm.state_dict()
    x1 = F.relu(F.conv2d(F.avg_pool2d(x, 2), sd["level1.1.weight"], sd["level1.1.bias"], padding=1))
    x2 = F.relu(F.conv2d(F.avg_pool2d(x1, 2), sd["level2.1.weight"], sd["level2.1.bias"], padding=1))
    x3 = F.relu(F.conv2d(x2, sd["level3.0.weight"], sd["level3.0.bias"], padding=1))
    up = lambda t: F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)  # noqa: E731
    torch.testing.assert_close(tm(x), x - up(x1 + up(x3)))


def test_packed_to_planes_is_the_rggb_split():
    packed = torch.rand(2, 4, 3, 5)
    planes = packed_to_planes(packed)
    b, g_r, r, g_b = packed.unbind(1)
    assert planes.shape == (2, 3, 6, 10)
    assert torch.equal(planes[:, 0, 0::2, 0::2], r) and torch.equal(planes[:, 2, 1::2, 1::2], b)
    assert torch.equal(planes[:, 1, 0::2, 1::2], g_r) and torch.equal(planes[:, 1, 1::2, 0::2], g_b)
    ones = torch.ones_like(r)
    for k, sites in ((0, ((0, 1), (1, 0), (1, 1))), (1, ((0, 0), (1, 1))), (2, ((0, 0), (0, 1), (1, 0)))):
        for i, j in sites:
            assert torch.equal(planes[:, k, i::2, j::2], ones)


def test_released_file_format_loads_strictly(tmp_path):
    """The official files are plain state dicts of the bare generator; ours carry a ``generator.`` prefix."""
    torch.manual_seed(2)
    bare = RMFANet(2, 16)
    path = tmp_path / "RMFA_TINY_unpaired.pth"
    torch.save(bare.state_dict(), path)
    model = mobilevision.create_model("rmfa_net_tiny", weights=str(path))
    for k, v in bare.state_dict().items():
        assert torch.equal(model.state_dict()[f"generator.{k}"], v)
    packed = torch.rand(1, 4, 8, 8)
    torch.testing.assert_close(model(packed), bare(packed_to_planes(packed)).clamp(0, 1))
    # the wrong generator's file is refused with a message naming it
    with pytest.raises(mobilevision.errors.IncompatibleWeights):
        mobilevision.create_model("efficientisp", weights=str(path))
