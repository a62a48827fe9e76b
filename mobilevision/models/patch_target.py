"""EfficientAD's teacher-pretraining target Ψ: PatchCore-style aggregation of backbone features.

Spec: /work/shared/specs/efficientad.md §2 "Teacher pretraining". From the extractor's layer2 and
layer3 maps: (1) take each location's 3x3 neighbourhood (unfold, stride 1, zero padding 1), C·9
values in (c, kh, kw) order; (2) resize the deeper layers' patch grids bilinearly (align_corners=False)
to the first layer's grid; (3) per location and layer, adaptive-avg-pool (1-D) the C·9 values to 1024;
(4) concatenate the layers (layer-major) and adaptive-avg-pool to 384. With wide_resnet101_2 at
512x512 this is a 384 x 64 x 64 map.

Every step is linear, so the same numbers are computed without materialising the patches: steps
(3)-(4) are fixed matrices over the (c, kh, kw) axis, applying them to the unfolded 3x3 neighbourhoods
is a 3x3 convolution (padding 1) with weights ``P_out[:, layer block] @ P_layer``, and a channel-mixing
matrix commutes with a per-channel spatial resize. Ψ = Σ_layers resize(conv3x3(f_layer, W_layer)): the
result equals the literal recipe up to float rounding (tests compare it with a loop-by-loop reference),
at a fraction of the memory (the literal form holds B x 9216 x 64 x 64 values for layer3).

:func:`fit_channel_normalisation` computes the per-channel μ / σ of §2 (and §3's teacher normalisation)
in two passes, as nelson1425/EfficientAD does.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

PATCH_SIZE = 3          # neighbourhood per location (PatchCore's patchsize 3, stride 1)
LAYER_DIM = 1024        # per-layer pooled descriptor length (step 4)
TARGET_CHANNELS = 384   # Ψ's channels (step 5), the PDN teacher's output width
TARGET_LAYERS = ("layer2", "layer3")


def adaptive_pool_matrix(n_in: int, n_out: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(n_out, n_in) matrix M with ``M @ v == F.adaptive_avg_pool1d(v, n_out)``: row i averages
    v[floor(i·n_in/n_out) : ceil((i+1)·n_in/n_out)], PyTorch's adaptive window."""
    m = torch.zeros(n_out, n_in, dtype=dtype)
    for i in range(n_out):
        start = (i * n_in) // n_out
        end = -((-(i + 1) * n_in) // n_out)
        m[i, start:end] = 1.0 / (end - start)
    return m


def aggregation_weights(channels: Sequence[int], layer_dim: int = LAYER_DIM, out_channels: int = TARGET_CHANNELS,
                        patch_size: int = PATCH_SIZE) -> list[torch.Tensor]:
    """Per layer, the (out_channels, C, k, k) float64 conv weight equal to steps 4-5 on its unfolded k x k patches."""
    final = adaptive_pool_matrix(layer_dim * len(channels), out_channels)
    weights = []
    for i, c in enumerate(channels):
        per_layer = adaptive_pool_matrix(c * patch_size * patch_size, layer_dim)
        w = final[:, i * layer_dim:(i + 1) * layer_dim] @ per_layer
        weights.append(w.reshape(out_channels, c, patch_size, patch_size))
    return weights


class PatchDescriptorTarget(nn.Module):
    """Ψ of EfficientAD §2 on ImageNet-normalised images: ``extractor.intermediate(x, layers)`` maps,
    aggregated to (B, 384, H1, W1) on the first layer's grid (H/8 x W/8 for layer2 of a ResNet).

    The extractor is a fixed target: it stays in eval mode even when this module is put in training
    mode. Wrap calls in ``torch.no_grad()`` when only the target values are needed.
    """

    def __init__(self, extractor: nn.Module, layers: Sequence[str] = TARGET_LAYERS, layer_dim: int = LAYER_DIM,
                 out_channels: int = TARGET_CHANNELS, patch_size: int = PATCH_SIZE):
        super().__init__()
        if not layers:
            raise ValueError("PatchDescriptorTarget needs at least one layer")
        if patch_size % 2 != 1:
            raise ValueError(f"patch_size must be odd (same-size unfold with padding (k-1)/2), got {patch_size}")
        self.extractor = extractor.eval()
        self.layers = tuple(layers)
        self.layer_dim, self.out_channels, self.patch_size = layer_dim, out_channels, patch_size
        self._weights: dict[tuple[Any, ...], list[torch.Tensor]] = {}

    def train(self, mode: bool = True) -> "PatchDescriptorTarget":
        super().train(mode)
        self.extractor.eval()
        return self

    def _weights_for(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        ref = features[0]
        key = (tuple(f.shape[1] for f in features), ref.device, ref.dtype)
        if key not in self._weights:
            self._weights[key] = [w.to(device=ref.device, dtype=ref.dtype) for w in aggregation_weights(
                key[0], self.layer_dim, self.out_channels, self.patch_size)]
        return self._weights[key]

    def aggregate(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Ψ from the layer maps (B, C_i, H_i, W_i), first one the reference grid: (B, out_channels, H_0, W_0)."""
        if len(features) != len(self.layers):
            raise ValueError(f"expected {len(self.layers)} feature maps ({', '.join(self.layers)}), got {len(features)}")
        size = tuple(features[0].shape[-2:])
        out = None
        for f, w in zip(features, self._weights_for(features)):
            y = F.conv2d(f, w, padding=self.patch_size // 2)
            if tuple(y.shape[-2:]) != size:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            out = y if out is None else out + y
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Ψ of an ImageNet-normalised batch (B, 3, H, W)."""
        maps = self.extractor.intermediate(x, self.layers)
        return self.aggregate([maps[name] for name in self.layers])


@torch.no_grad()
def fit_channel_normalisation(target_fn: Callable[[Any], torch.Tensor], batches: Iterable[Any],
                              limit: int | None = None, eps: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (mean, std), each of shape (C,), of ``target_fn(batch)`` -> (B, C, H, W) in two passes:
    μ = mean of per-batch channel means; σ = sqrt(mean of per-batch mean squared deviations from μ).

    ``batches`` is iterated twice, so pass a list or a DataLoader; an endless one-shot iterator works
    with ``limit``, and then (as nelson1425's code) the second pass sees the next batches. ``limit``
    stops each pass at the batch that brings the image count to at least ``limit``. Batches are weighted
    equally, so with equal-size batches (or ``limit`` = None over one dataset pass) this is the plain
    statistic. ``eps`` is added to σ. Run the networks in eval mode.
    """
    if limit is None and iter(batches) is batches:
        raise TypeError("fit_channel_normalisation iterates the batches twice: pass a list or a DataLoader, "
                        "or give limit= with an endless iterator")

    def one_pass(stat: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        total, n_batches, n_images = None, 0, 0
        for batch in batches:
            out = target_fn(batch)
            if out.ndim != 4:
                raise ValueError(f"target_fn must return (B, C, H, W), got shape {tuple(out.shape)}")
            s = stat(out.float()).double()
            total = s if total is None else total + s
            n_batches += 1
            n_images += out.shape[0]
            if limit is not None and n_images >= limit:
                break
        if total is None:
            raise ValueError("fit_channel_normalisation got no batches")
        return total / n_batches

    mean = one_pass(lambda y: y.mean(dim=(0, 2, 3)))
    mean32 = mean.float()
    var = one_pass(lambda y: (y - mean32.to(y.device)[None, :, None, None]).square().mean(dim=(0, 2, 3)))
    return mean.float(), (var.sqrt() + eps).float()
