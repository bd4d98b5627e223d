"""Devices and multi-process training under ``torchrun`` (DDP): the process group, sharded loaders,
reductions, barriers."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from petseg.training.config import TrainConfig
from petseg.training.seeds import seed_worker

__all__ = ["DistributedContext", "all_reduce_sum", "barrier", "init_distributed", "process_device", "select_device",
           "train_loader", "val_loader"]


def select_device(preference: str = "auto") -> torch.device:
    """``"auto"`` -> cuda if available, else mps, else cpu; any other string is used as given."""
    if preference != "auto":
        return torch.device(preference)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclasses.dataclass
class DistributedContext:
    """This process's place in a torchrun job (rank 0 of 1 without one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_preference: str) -> DistributedContext:
    """Join the torchrun process group if ``WORLD_SIZE > 1`` (or reuse an initialised one)."""
    import torch.distributed as dist

    if not dist.is_available():
        return DistributedContext()
    if dist.is_initialized():
        rank = dist.get_rank()
        return DistributedContext(rank, dist.get_world_size(), int(os.environ.get("LOCAL_RANK", rank)))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    use_cuda = torch.cuda.is_available() and device_preference in ("auto", "cuda")
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistributedContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")),
                               owns_group=True)


def process_device(config: TrainConfig, context: DistributedContext) -> torch.device:
    """The device this process trains on: ``config.device``, the local GPU under DDP (MPS falls back to CPU)."""
    device = select_device(config.device)
    if context.enabled:
        if device.type == "cuda":
            device = torch.device("cuda", context.local_rank)
            torch.cuda.set_device(device)
        elif device.type == "mps":
            device = torch.device("cpu")  # no DDP backend for MPS
    return device


def all_reduce_sum(values: list[float], context: DistributedContext, device: torch.device) -> list[float]:
    """``values`` summed over every process (unchanged without DDP)."""
    if not context.enabled:
        return values
    import torch.distributed as dist

    reduce_device = device if dist.get_backend() == "nccl" else torch.device("cpu")
    tensor = torch.tensor(values, dtype=torch.float64, device=reduce_device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().tolist()


def barrier(context: DistributedContext) -> None:
    """Wait for every process (nothing without DDP)."""
    if context.enabled:
        import torch.distributed as dist

        dist.barrier()


def train_loader(dataset: Dataset, config: TrainConfig, context: DistributedContext,
                 generator: torch.Generator, device: torch.device) -> tuple[DataLoader, Any]:
    """The shuffled training loader (sharded by a DistributedSampler under DDP) and its sampler (or None)."""
    sampler = None
    if context.enabled:
        sampler = DistributedSampler(dataset, num_replicas=context.world_size, rank=context.rank, shuffle=True,
                                     seed=config.seed, drop_last=False)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=config.num_workers, worker_init_fn=seed_worker, generator=generator,
                        pin_memory=device.type == "cuda", drop_last=False)
    return loader, sampler


def val_loader(dataset: Dataset, config: TrainConfig, context: DistributedContext,
               device: torch.device) -> DataLoader:
    """The validation loader of this process's shard."""
    if context.enabled:  # an unpadded shard per process, so the summed metrics are exact
        dataset = Subset(dataset, list(range(context.rank, len(dataset), context.world_size)))
    return DataLoader(dataset, batch_size=config.eval_batch_size or config.batch_size, shuffle=False,
                      num_workers=config.num_workers, worker_init_fn=seed_worker,
                      pin_memory=device.type == "cuda")
