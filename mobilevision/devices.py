"""What ``--device`` means for the commands that run PyTorch (train, eval, isp) and for their Python
functions: one vocabulary and one default.

``auto`` (the default) is a GPU when torch sees one, else the CPU; ``cpu``; ``gpu`` or ``gpu:N`` (``cuda`` and
``cuda:N`` are the same). ``gpu`` means a GPU in ``mobilevision bench --device gpu`` too; ``npu`` and
``android`` exist only there, because only the runtimes reach them. Parsing is torch-free, so a bad value
fails before torch is imported.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from mobilevision.errors import MobileVisionError

if TYPE_CHECKING:
    import torch

TORCH_DEVICES = "auto (a GPU when torch sees one, else the CPU), cpu, gpu or gpu:N (cuda, cuda:N: the same)"
_NAME = re.compile(r"(auto|cpu|gpu|cuda)(?::([0-9]{1,3}))?")


def torch_device_name(value: str) -> str:
    """``value`` as torch names it: auto, cpu, cuda or cuda:N. ValueError (one line) for anything else."""
    text = str(value).strip().lower()
    m = _NAME.fullmatch(text)
    if m is None or (m.group(2) is not None and m.group(1) in ("auto", "cpu")):
        if text.split(":")[0] in ("npu", "android"):
            raise ValueError(f"{value!r}: this command runs PyTorch, on the CPU or a GPU; {text.split(':')[0]} is a "
                             "target of `mobilevision bench --device`")
        raise ValueError(f"{value!r} is not a device: use {TORCH_DEVICES}")
    kind = "cuda" if m.group(1) in ("gpu", "cuda") else m.group(1)
    return kind if m.group(2) is None else f"{kind}:{int(m.group(2))}"


def resolve_torch_device(value: str, local_rank: int = 0) -> "torch.device":
    """The torch device ``value`` names on this machine (``auto``: cuda when available, else cpu; ``gpu`` under
    torchrun: this process's GPU, cuda:LOCAL_RANK). A GPU this machine lacks is a one-line error."""
    import torch

    try:
        name = torch_device_name(value)
    except ValueError as e:
        raise MobileVisionError(f"--device {e}") from None
    if local_rank < 0:
        raise MobileVisionError(f"--device {value}: LOCAL_RANK {local_rank} is negative (torchrun sets 0, 1, ...)")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name.partition(":")[2] or local_rank)
        if index >= count:
            seen = "no CUDA GPU" if count == 0 else f"{count} CUDA GPU(s), numbered from 0"
            raise MobileVisionError(f"--device {value}: this machine's torch sees {seen} (use --device cpu, or auto)")
        name = f"cuda:{index}"
    return torch.device(name)
