"""PyTorch DDP as launched by ``torchrun``: one process per device, settings from the environment.

    torchrun --nproc_per_node 4 -m mobilevision.cli train classify --model emo_1m ...

``torchrun`` sets RANK / LOCAL_RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT; a plain
``python`` launch is a world of one and never touches torch.distributed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from mobilevision.errors import MobileVisionError, TrainingError


@dataclass(frozen=True)
class World:
    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def mean(self, values: list[float]) -> list[float]:
        """Element-wise mean of ``values`` over all processes."""
        if not self.distributed:
            return values
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)
        return (t / self.size).tolist()


def pick_device(requested: str, world: World) -> torch.device:
    """``auto``: this process's GPU under torchrun (cuda:LOCAL_RANK), else cuda if present, else cpu (see
    ``mobilevision.devices``)."""
    from mobilevision.devices import resolve_torch_device

    try:
        return resolve_torch_device(requested, world.local_rank)
    except MobileVisionError as e:
        raise TrainingError(str(e)) from None


def init_world() -> World:
    """Join the process group torchrun set up (gloo on CPU, nccl on GPUs); a world of one otherwise."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    world = World(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), size)
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group(backend=backend)
    return world


def shutdown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()
