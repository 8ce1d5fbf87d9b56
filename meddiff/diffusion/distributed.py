"""Process layout for training: one process (default) or torchrun + DDP.

Under ``torchrun --nproc_per_node N meddiff ...`` the environment carries WORLD_SIZE / RANK / LOCAL_RANK;
:func:`distributed_context` then joins the process group (NCCL on CUDA, Gloo on CPU) and pins each process
to its GPU. Rank 0 alone writes checkpoints and logs.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from meddiff.errors import ConfigError

logger = logging.getLogger(__name__)


def resolve_device(device: str) -> torch.device:
    """ "auto" -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available; use 'auto' or 'cpu'")
    return resolved


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits: ``world_size`` processes, this one is ``rank`` and computes on ``device``."""

    world_size: int
    rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def mean(self, value: float) -> float:
        """Mean of a scalar over all processes (the value itself in a single process)."""
        if not self.distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world_size


@contextlib.contextmanager
def distributed_context(device: str) -> Iterator[DistributedContext]:
    """Single process unless WORLD_SIZE > 1; then init (and finally destroy) the default process group."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    resolved = resolve_device(device)
    if world_size <= 1:
        yield DistributedContext(world_size=1, rank=0, device=resolved)
        return
    rank = int(os.environ["RANK"])
    if resolved.type == "cuda":
        resolved = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(resolved)
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo")
    logger.info("process %d of %d on %s", rank, world_size, resolved)
    try:
        yield DistributedContext(world_size=world_size, rank=rank, device=resolved)
    finally:
        if owns_group:
            dist.destroy_process_group()
