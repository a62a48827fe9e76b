"""Parameter and MAC counts, with torch's own flop counter (2 FLOPs per MAC)."""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: torch.nn.Module, input_size: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass on a batch-1 input of ``input_size`` (C, H, W)."""
    x = torch.zeros(1, *input_size)
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops() // 2
