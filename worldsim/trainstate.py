"""Resumable training state: weights, optimiser, step and RNG, in safetensors + JSON (no pickles).

    RUN/
      model.safetensors + config.json     a normal checkpoint (see `worldsim.checkpoint`), whose
                                          `extra` holds the step, the optimiser's param groups and
                                          the NumPy RNG state
      optimizer.safetensors               the optimiser's per-parameter tensors, keyed "{index}/{name}"

Written with the same temporary-directory-and-rename as checkpoints, so a kill keeps the last one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from worldsim.checkpoint import load_checkpoint, load_state_into, save_checkpoint
from worldsim.config import ConfigBase

OPT_FILE = "optimizer.safetensors"


def save_train_state(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, config: ConfigBase,
                     *, kind: str, step: int, rng: np.random.Generator, extra: dict[str, Any] | None = None) -> None:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for idx, state in sd["state"].items():
        for name, v in state.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{idx}/{name}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{idx}/{name}"] = v
    tensors["rng/torch"] = torch.get_rng_state()
    meta = {"step": step, "param_groups": sd["param_groups"], "opt_scalars": scalars,
            "numpy_rng": rng.bit_generator.state, **(extra or {})}
    path = Path(path)
    save_checkpoint(path, model, config, kind=f"{kind}-train", extra=meta)
    # The optimiser file goes in after the rename; a kill between the two is caught on load.
    tmp = path / f".{OPT_FILE}.tmp-{os.getpid()}"
    save_file(tensors, str(tmp))
    os.replace(tmp, path / OPT_FILE)


def load_train_state(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     config_cls: type[ConfigBase], *, kind: str) -> tuple[int, np.random.Generator, dict[str, Any]]:
    """Restore model, optimiser and RNG from `path`; returns (step, numpy generator, extra)."""
    path = Path(path)
    ck = load_checkpoint(path, kind=f"{kind}-train", config_cls=config_cls)
    if ck.config != getattr(model, "cfg", ck.config):
        raise ValueError(f"{path}: training state was made with another config; use a new --out or delete it")
    if not (path / OPT_FILE).is_file():
        raise ValueError(f"{path}: missing {OPT_FILE} (the run was killed while saving); delete {path} to restart")
    load_state_into(model, ck.tensors, source=str(path))
    tensors = load_file(str(path / OPT_FILE))
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("rng/"):
            continue
        idx, name = key.split("/", 1)
        state.setdefault(int(idx), {})[name] = v
    for key, v in ck.extra["opt_scalars"].items():
        idx, name = key.split("/", 1)
        state.setdefault(int(idx), {})[name] = v
    optimizer.load_state_dict({"state": state, "param_groups": ck.extra["param_groups"]})
    torch.set_rng_state(tensors["rng/torch"])
    rng = np.random.default_rng()
    rng.bit_generator.state = ck.extra["numpy_rng"]
    return int(ck.extra["step"]), rng, ck.extra
