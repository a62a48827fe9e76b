"""mobilevision.complexity: torch's flop counter plus fvcore's charges for norms and pooling."""
from __future__ import annotations

import pytest
from torch import nn

from mobilevision.complexity import count_macs, count_params


class Mean(nn.Module):
    def __init__(self, dims: tuple[int, ...]):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return x.mean(self.dims)


@pytest.mark.parametrize("module, size, macs", [
    (nn.Conv2d(3, 8, 3, padding=1, bias=False), (3, 10, 10), 8 * 100 * 27),
    (nn.BatchNorm2d(3), (3, 10, 10), 2 * 300),  # inference, affine: scale and shift
    (nn.BatchNorm2d(3, affine=False), (3, 10, 10), 300),
    (nn.LayerNorm(10), (3, 10, 10), 5 * 300),
    (nn.LayerNorm(10, elementwise_affine=False), (3, 10, 10), 4 * 300),
    (nn.AdaptiveAvgPool2d(1), (3, 10, 10), 300),
    (nn.AdaptiveAvgPool2d(5), (3, 10, 10), 300),
    (nn.AvgPool2d(2), (3, 10, 10), 300),
    (nn.AvgPool2d(3, stride=1), (3, 10, 10), 3 * 64 * 9),  # overlapping windows read elements again
    (Mean((2, 3)), (3, 10, 10), 300),  # a global average pool, however it is written
    (Mean((-1, -2)), (3, 10, 10), 300),
    (Mean((1,)), (3, 10, 10), 0),  # other reductions are not pooling
    (nn.ReLU(), (3, 10, 10), 0),  # element-wise ops are not counted (as fvcore)
])
def test_op_charges(module, size, macs):
    assert count_macs(module, size) == macs


def test_counting_leaves_the_training_mode_alone():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).train()
    assert count_macs(model, (3, 4, 4)) == 4 * 16 * 3 + 2 * 64  # counted at inference (running stats)
    assert model.training and model[1].training
    assert count_params(model) == 4 * 3 + 4 + 4 + 4
