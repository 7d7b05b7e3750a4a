"""Training on several processes with PyTorch DDP: `torchrun --nproc_per_node=N -m pipnet_core train ...`.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; without them training runs as one process. Each
process takes a contiguous slice of every global batch (the config's batch_size), so N processes
see exactly the batches one process would and DDP's gradient average equals the one-process
gradient; only batch norm differs (each process normalises its own slice; SyncBatchNorm would need
CUDA). Rank 0 alone logs, validates and writes checkpoints. Backends: nccl on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from pipnet_core.base.errors import PipnetError


@dataclass(frozen=True)
class Workers:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def start() -> Workers:
    """This process's place: the device to train on (CUDA when present) and, under torchrun, its
    rank in the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank % torch.cuda.device_count()) if cuda else torch.device("cpu")
    if world == 1:
        return Workers(device=device)
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo")
    return Workers(dist.get_rank(), world, device)


def wrap(network: torch.nn.Module, workers: Workers) -> torch.nn.Module:
    if not workers.distributed:
        return network
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        network, device_ids=[workers.device.index] if workers.device.type == "cuda" else None
    )


def shard(indices: np.ndarray, batch_size: int, workers: Workers) -> np.ndarray:
    """This process's share of an epoch's sample order: its contiguous slice of every global
    batch (incomplete last batches are dropped, as one process drops them)."""
    if batch_size % workers.world:
        raise PipnetError(f"config: [train] batch_size = {batch_size} does not split over {workers.world} processes")
    steps = len(indices) // batch_size
    per_rank = batch_size // workers.world
    return indices[: steps * batch_size].reshape(steps, workers.world, per_rank)[:, workers.rank].reshape(-1)


def mean_over_workers(values: np.ndarray, workers: Workers) -> np.ndarray:
    """The mean of per-process values (each process's losses cover its slice of the batches)."""
    if not workers.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=workers.device)
    dist.all_reduce(tensor)
    return (tensor / workers.world).cpu().numpy()


def barrier(workers: Workers) -> None:
    if workers.distributed:
        dist.barrier()


def finish(workers: Workers) -> None:
    if workers.distributed:
        dist.destroy_process_group()
