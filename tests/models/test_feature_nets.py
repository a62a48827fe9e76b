"""Feature networks of the unpaired ISP loss: structure, and every weight format they accept
(torchvision, MatConvNet .mat, pyiqa LPIPS, Hugging Face ViT in both key namings)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mobilevision.errors import IncompatibleWeights, WeightsError
from mobilevision.models.feature_nets import (HF_LAYER_NAMES, VGG19_CONVS, AlexNetFeatures, VGG19Features, ViTB16,
                                              load_feature_net)


@pytest.mark.slow
def test_vgg19_trunk_shapes_and_torchvision_file(tmp_path):
    torch.manual_seed(0)
    net = VGG19Features()
    assert [i for i, m in enumerate(net.features) if isinstance(m, torch.nn.Conv2d)] == list(VGG19_CONVS)
    assert net(torch.rand(1, 3, 64, 64)).shape == (1, 512, 4, 4)
    sd = dict(net.state_dict())
    sd["classifier.0.weight"] = torch.zeros(2, 2)            # torchvision files carry the classifier
    torch.save(sd, tmp_path / "vgg19.pth")
    loaded, pretrained = load_feature_net("vgg19", tmp_path / "vgg19.pth")
    assert pretrained and not any(p.requires_grad for p in loaded.parameters()) and not loaded.training
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(loaded(x), net(x))


@pytest.mark.slow
def test_vgg19_matconvnet_file_uses_the_reference_permutation(tmp_path):
    from scipy.io import savemat

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    layers = np.empty((1, 36), dtype=object)
    kernels = {}
    cin = 3
    for i in range(36):
        if i in VGG19_CONVS:
            cout = VGG19Features().features[i].out_channels
            k = rng.standard_normal((3, 3, cin, cout)).astype(np.float32) * 0.05
            b = rng.standard_normal((1, cout)).astype(np.float32) * 0.05
            kernels[i] = (k, b)
            weights = np.empty((1, 2), dtype=object)
            weights[0, 0], weights[0, 1] = k, b
            layers[0, i] = {"weights": weights, "name": f"conv{i}"}
            cin = cout
        else:
            layers[0, i] = {"weights": np.zeros((0, 0)), "name": f"layer{i}"}
    savemat(tmp_path / "vgg.mat", {"layers": layers})
    net, ok = load_feature_net("vgg19", tmp_path / "vgg.mat")
    assert ok and net.input_format == "matconvnet"
    k, b = kernels[0]
    torch.testing.assert_close(net.features[0].weight, torch.from_numpy(k).permute(3, 2, 0, 1))
    torch.testing.assert_close(net.features[0].bias, torch.from_numpy(b).reshape(-1))
    x = torch.rand(1, 3, 4, 4)
    assert torch.allclose(net.normalise(x), x * 255 - torch.tensor([123.68, 116.779, 103.939]).view(1, 3, 1, 1))


def test_alexnet_taps_and_lpips_keys(tmp_path):
    torch.manual_seed(0)
    net = AlexNetFeatures()
    taps = net(torch.rand(1, 3, 256, 256))
    assert [t.shape[1:] for t in taps] == [(64, 63, 63), (192, 31, 31), (384, 15, 15), (256, 15, 15), (256, 15, 15)]
    lpips = {f"net.slice{s}.{i}.{p}": v for (s, i) in ((1, 0), (2, 3), (3, 6), (4, 8), (5, 10))
             for p, v in (("weight", net.features[i].weight), ("bias", net.features[i].bias))}
    lpips["lin0.model.1.weight"] = torch.zeros(1, 64, 1, 1)   # LPIPS heads are ignored
    torch.save(lpips, tmp_path / "lpips.pth")
    loaded, _ = load_feature_net("alexnet", tmp_path / "lpips.pth")
    x = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(loaded(x)[3], net(x)[3])


def _hf_state_dict(vit: ViTB16, naming: str, prefix: str = "") -> dict[str, torch.Tensor]:
    """Our ViT's weights written back in a Hugging Face naming (the inverse of the loader's map)."""
    sd, names = vit.state_dict(), HF_LAYER_NAMES[naming]
    out = {prefix + "embeddings.patch_embeddings.projection.weight": sd["conv_proj.weight"],
           prefix + "embeddings.patch_embeddings.projection.bias": sd["conv_proj.bias"],
           prefix + "embeddings.cls_token": sd["class_token"],
           prefix + "embeddings.position_embeddings": sd["encoder.pos_embedding"],
           prefix + "layernorm.weight": sd["encoder.ln.weight"], prefix + "layernorm.bias": sd["encoder.ln.bias"]}
    for i in range(12):
        src, dst = f"encoder.layers.encoder_layer_{i}.", prefix + naming.format(i=i)
        for ours in ("ln_1", "ln_2", "mlp.0", "mlp.3", "self_attention.out_proj"):
            for p in ("weight", "bias"):
                out[f"{dst}{names[ours]}.{p}"] = sd[f"{src}{ours}.{p}"]
        for p in ("weight", "bias"):
            for q, chunk in zip("qkv", sd[f"{src}self_attention.in_proj_{p}"].chunk(3)):
                out[f"{dst}{names[q]}.{p}"] = chunk
    return out


@pytest.mark.slow
@pytest.mark.parametrize("naming,prefix", [("encoder.layer.{i}.", "vit."), ("layers.{i}.", "")])
def test_vit_loads_hugging_face_files(tmp_path, naming, prefix):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    vit = ViTB16().eval()
    save_file({k: v.contiguous() for k, v in _hf_state_dict(vit, naming, prefix).items()}, tmp_path / "m.safetensors")
    loaded, ok = load_feature_net("vit_b_16", tmp_path / "m.safetensors")
    assert ok and all(m.eps == 1e-12 for m in loaded.modules() if isinstance(m, torch.nn.LayerNorm))
    vit.set_eps(1e-12)
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        out = loaded(x)
        assert out.shape == (1, 197, 768)
        torch.testing.assert_close(out, vit(x))


@pytest.mark.slow
def test_vit_torchvision_file_and_bad_files(tmp_path):
    torch.manual_seed(0)
    vit = ViTB16()
    sd = {k.replace("mlp.0.", "mlp.linear_1.").replace("mlp.3.", "mlp.linear_2."): v for k, v in vit.state_dict().items()}
    sd["heads.head.weight"] = torch.zeros(1000, 768)
    torch.save(sd, tmp_path / "vit_b_16.pth")
    loaded, _ = load_feature_net("vit_b_16", tmp_path / "vit_b_16.pth")
    assert all(m.eps == 1e-6 for m in loaded.modules() if isinstance(m, torch.nn.LayerNorm))
    with pytest.raises(WeightsError, match="not found"):
        load_feature_net("vgg19", tmp_path / "missing.pth")
    with pytest.raises(IncompatibleWeights):
        load_feature_net("alexnet", tmp_path / "vit_b_16.pth")
    net, ok = load_feature_net("alexnet")
    assert ok is False and not net.training
