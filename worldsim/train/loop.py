"""Pieces the trainers share: the learning-rate schedule, the identity of a run's data, and the
torchrun (DDP) plumbing."""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import torch

from worldsim.core.checkpoint import weights_sha256
from worldsim.core.config import ConfigBase
from worldsim.core.registry import resolve_checkpoint
from worldsim.core.runtime import resolve_device
from worldsim.envs.manifest import read_manifest


def cosine_lr(step: int, steps: int, warmup: int, lr: float) -> float:
    """Linear warm-up over `warmup` steps, then a cosine from `lr` down to 5% of it at `steps`."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, steps - warmup))
    return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


def run_config(cfg: ConfigBase) -> dict:
    """A training config as part of a run's identity: every field but `steps`, which a resume may raise."""
    return {k: v for k, v in cfg.to_dict().items() if k != "steps"}


def dataset_fingerprint(root: str | Path) -> str:
    """A dataset's content identity: the SHA-256 of its scene config hash, episode count and every
    shard's SHA-256, so a resume can tell the same data (under any path) from other data."""
    m = read_manifest(root)
    shards = sorted((name, rec["sha256"]) for name, rec in m["shards"].items())
    blob = json.dumps([m.get("scene_config_hash"), m["episodes"], shards]).encode()
    return hashlib.sha256(blob).hexdigest()


def data_identity(dirs) -> list[str]:
    """The fingerprints of a run's datasets, in the order given."""
    return [dataset_fingerprint(d) for d in dirs]


def checkpoint_identity(name_or_path: str | Path, kind: str) -> str:
    """The SHA-256 of the weights a run starts from (a checkpoint directory, or a scene's shipped one)."""
    return weights_sha256(resolve_checkpoint(name_or_path, kind))


def setup_distributed(device: str) -> tuple[bool, int, torch.device]:
    """Join the torchrun process group when WORLD_SIZE > 1 (gloo on CPU, nccl on CUDA).

    Returns (distributed, rank, device of this process).
    """
    dev = resolve_device(device)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False, 0, dev
    import torch.distributed as dist

    dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return True, dist.get_rank(), dev


def wrap_ddp(module: torch.nn.Module, dev: torch.device, find_unused: bool = False) -> torch.nn.Module:
    return torch.nn.parallel.DistributedDataParallel(
        module, device_ids=[dev.index] if dev.type == "cuda" else None, find_unused_parameters=find_unused
    )


def finish_distributed(model: torch.nn.Module) -> None:
    """Check that every rank holds the same weights, then leave the process group."""
    import torch.distributed as dist

    sums = torch.stack([p.detach().double().sum() for p in model.parameters()]).cpu()
    lo, hi = sums.clone(), sums.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    dist.destroy_process_group()
    if not torch.equal(lo, hi):
        bad = int((lo != hi).nonzero()[0])
        raise RuntimeError(f"DDP replicas disagree on parameter #{bad} after training")
