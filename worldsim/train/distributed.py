"""The torchrun (DDP) plumbing of the training loop: join the process group, wrap a module, sum a
tensor over the ranks, and check the replicas agree before leaving."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import NamedTuple

import torch
import torch.distributed as dist

from worldsim.core.runtime import resolve_device


class Ranks(NamedTuple):
    """Where this process stands in a run: (distributed, rank, device of this process)."""

    distributed: bool
    rank: int
    device: torch.device


def setup_distributed(device: str) -> Ranks:
    """Join the torchrun process group when WORLD_SIZE > 1 (gloo on CPU, nccl on CUDA)."""
    dev = resolve_device(device)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Ranks(False, 0, dev)
    dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return Ranks(True, dist.get_rank(), dev)


def barrier(ranks: Ranks) -> None:
    """Wait for every rank (nothing to wait for in a single process)."""
    if ranks.distributed:
        dist.barrier()


def wrap_ddp(module: torch.nn.Module, dev: torch.device, find_unused: bool = False) -> torch.nn.Module:
    return torch.nn.parallel.DistributedDataParallel(
        module, device_ids=[dev.index] if dev.type == "cuda" else None, find_unused_parameters=find_unused
    )


def all_reduce_(tensor: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """Sum `tensor` over the ranks in place (unchanged in a single process); returns it."""
    if ranks.distributed:
        dist.all_reduce(tensor)
    return tensor


def finish_distributed(params: torch.nn.Module | Iterable[torch.nn.Parameter]) -> None:
    """Check that every rank holds the same `params` (a module's, or the given ones), then leave the
    process group."""
    if isinstance(params, torch.nn.Module):
        params = params.parameters()
    sums = torch.stack([p.detach().double().sum() for p in params]).cpu()
    lo, hi = sums.clone(), sums.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    # Every rank's pending work is done before any leaves: a rank that tears Gloo down while its peer
    # still talks to it can abort at exit.
    dist.barrier()
    dist.destroy_process_group()
    if not torch.equal(lo, hi):
        bad = int((lo != hi).nonzero()[0])
        raise RuntimeError(f"DDP replicas disagree on parameter #{bad} after training")
