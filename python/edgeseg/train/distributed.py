"""Ranks and devices of a run: DDP under torchrun (NCCL on GPUs, gloo on CPU; only rank 0
writes files) and the choice of the torch device behind ``--device``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist

from edgeseg.errors import TrainingError

__all__ = ["Dist", "agree_max", "all_reduce", "init_dist", "resolve_device"]


@dataclass
class Dist:
    """This process's place in a run: rank, world size and local rank (one process: 0/1/0)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def on(self) -> bool:
        return self.world > 1


def init_dist(device_kind: str) -> Dist:
    """The process group torchrun's environment describes (none: a single process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
    return Dist(rank, world, local)


def all_reduce(t: torch.Tensor, d: Dist) -> torch.Tensor:
    """``t`` summed over the ranks, in place (unchanged in a single process)."""
    if d.on:
        dist.all_reduce(t)
    return t


def agree_max(value: int, d: Dist, device: torch.device) -> int:
    """The largest ``value`` over the ranks (a decision every rank must share)."""
    if not d.on:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def resolve_device(name: str, d: Optional[Dist] = None) -> torch.device:
    """The torch device for ``--device`` (auto, cpu, cuda, cuda:N); under DDP ``cuda`` is
    the local rank's GPU."""
    d = d or Dist()
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda") or name == "auto":
        if not torch.cuda.is_available():
            if name == "auto":
                return torch.device("cpu")
            built = torch.version.cuda
            why = (
                "this torch build has no CUDA (CPU wheel)"
                if not built
                else f"torch {torch.__version__} (CUDA {built}) sees no GPU"
            )
            raise TrainingError(f"--device {name}: {why}; use --device cpu or auto")
        if name.startswith("cuda:"):
            return torch.device(name)
        return torch.device("cuda", d.local_rank % torch.cuda.device_count())
    raise TrainingError(f"--device {name!r}: use auto, cpu or cuda")
