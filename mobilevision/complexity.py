"""Parameter and MAC counts with torch's own flop counter, extended to the convention the papers used.

torch's ``FlopCounterMode`` counts convolutions and matrix products (2 FLOPs per MAC). The EMO and
SkipNet papers counted with fvcore, which also charges normalisation and average pooling. The
extra formulas below reproduce fvcore's convention, so the paper numbers can be checked directly:

- batch norm at inference: 2 MACs per element with an affine transform, 1 without (5 / 4 in training);
- layer norm: 5 MACs per element with an affine transform, 4 without;
- average pooling: 1 MAC per window element read (adaptive, fixed-window, and a mean over H, W, channels
  first or last);
- element-wise activations, additions and products: not counted (fvcore does not either).

One difference from fvcore: a global average written as ``x.mean((2, 3))`` counts like
``adaptive_avg_pool2d(x, 1)`` here (fvcore skips ``aten::mean``), and fixed-window
``avg_pool2d`` counts too. Both are a few hundred thousand MACs at most on the zoo's models.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

aten = torch.ops.aten


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: torch.nn.Module, input_size: tuple[int, ...], inputs: tuple[torch.Tensor, ...] | None = None) -> int:
    """Multiply-accumulates of one inference forward pass on a batch-1 input of ``input_size`` (C, H, W), or on
    ``inputs`` (one tensor per input of a model with several)."""
    args = tuple(inputs) if inputs is not None else (torch.zeros(1, *input_size),)
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False, custom_mapping=EXTRA_FORMULAS)
    try:
        with counter:
            model(*args)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


# Each formula gets the op's arguments with tensors replaced by their shapes (None stays None) and
# returns FLOPs, i.e. 2 x MACs, the unit FlopCounterMode adds up.

def _batch_norm(x: Any, weight: Any, bias: Any, running_mean: Any, running_var: Any, training: bool,
                *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    per_element = (5 if weight is not None else 4) if training else (2 if weight is not None else 1)
    return 2 * per_element * math.prod(x)


def _batch_norm_no_training(x: Any, weight: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return 2 * (2 if weight is not None else 1) * math.prod(x)


def _layer_norm(x: Any, normalized_shape: Any, weight: Any = None, *args: Any, out_shape: Any = None,
                **kwargs: Any) -> int:
    return 2 * (5 if weight is not None else 4) * math.prod(x)


def _adaptive_avg_pool(x: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return 2 * math.prod(x)


def _avg_pool2d(x: Any, kernel_size: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    kernel = list(kernel_size) * (2 if len(kernel_size) == 1 else 1)
    return 2 * math.prod(out_shape) * math.prod(kernel)


def _spatial_mean(x: Any, dim: Any = None, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """A mean over H and W of an (N, C, H, W) or, channels-last, (N, H, W, C) tensor is a global average pool;
    other means are not counted."""
    if dim is None or len(x) != 4:
        return 0
    return 2 * math.prod(x) if {d % 4 for d in dim} in ({2, 3}, {1, 2}) else 0


# Keyed by overload packet, as FlopCounterMode looks them up.
EXTRA_FORMULAS = {
    aten.native_batch_norm: _batch_norm,
    aten._native_batch_norm_legit: _batch_norm,
    aten._native_batch_norm_legit_no_training: _batch_norm_no_training,
    aten.native_layer_norm: _layer_norm,
    aten._adaptive_avg_pool2d: _adaptive_avg_pool,
    aten.avg_pool2d: _avg_pool2d,
    aten.mean: _spatial_mean,
}
