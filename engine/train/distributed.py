"""Several processes training one run with DistributedDataParallel, as `torchrun` starts them.

torchrun gives every process its place in the environment: RANK (0..WORLD_SIZE-1 over all
machines), LOCAL_RANK (its GPU on this machine), WORLD_SIZE, MASTER_ADDR / MASTER_PORT (where
the processes meet). Without torchrun (or with one process) nothing here does anything: a
1-process run takes exactly the path it always took.

Rank 0 is the run's own process: it keeps status.json, writes metrics.jsonl, checkpoints,
snapshots and the log. The other ranks train their share of every batch and write nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from engine.config import ConfigError

# Rank 0 validates, snapshots and saves alone while the others wait at a barrier: a
# collective may wait this long before it gives up (torch's default for NCCL is 10 minutes).
TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> World:
        """This process's place as torchrun's environment gives it (one process without it)."""
        env = os.environ
        return cls(
            int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))
        )


def check_batch_size(batch_size: int, processes: int) -> None:
    if processes > 1 and batch_size < 2 * processes:
        raise ConfigError(
            f"batch_size {batch_size} is too small for {processes} processes: each takes "
            f"batch_size / {processes} images a step, and BatchNorm needs two; use at least "
            f"{2 * processes}"
        )


@contextmanager
def process_group(device: torch.device) -> Iterator[torch.device]:
    """The process group of a torchrun launch for the block (nccl on CUDA, gloo on the CPU);
    yields this process's device (its own GPU, cuda:LOCAL_RANK). Destroyed on the way out,
    errors included. One process: yields `device` and does nothing else."""
    world = World.from_env()
    if world.size == 1:
        yield device
        return
    if device.type == "cuda":
        if world.local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"process {world.local_rank} of this machine has no GPU: it has "
                f"{torch.cuda.device_count()}; start at most that many processes per machine"
            )
        device, backend = torch.device("cuda", world.local_rank), "nccl"
        torch.cuda.set_device(device)
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise RuntimeError(f"several processes need CUDA GPUs or the CPU, not {device.type}")
    dist.init_process_group(
        backend, timeout=TIMEOUT, device_id=device if device.type == "cuda" else None
    )
    try:
        yield device
    finally:
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """True in the process that writes the run folder: rank 0, or the only process."""
    return rank() == 0


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` summed over all processes, in place (and returned); itself with one process."""
    if world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def wrap(model: nn.Module) -> nn.Module:
    """What the training step calls: `model` in DistributedDataParallel when there are
    several processes (it averages gradients across them in backward), else `model`.
    Everything else (evaluation, snapshots, checkpoints) uses `model` itself: its state_dict
    has no "module." prefix, and a checkpoint loads alike whatever the number of processes."""
    if world_size() == 1:
        return model
    device = next(model.parameters()).device
    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
