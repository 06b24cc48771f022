"""Resumable training state: weights, optimiser, step and RNG, in safetensors + JSON (no pickles).

    OUT.train/
      model.safetensors + config.json     a normal checkpoint (see `worldsim.core.checkpoint`), whose
                                          `extra` holds the step, the optimiser's param groups, the
                                          NumPy RNG state and the run's identity
      optimizer.safetensors               the optimiser's per-parameter tensors, keyed "{index}/{name}"

All files are written into one new directory that replaces the old one atomically, so a kill at any
instant leaves the last whole state. A run resumes only when its identity (data, configs, training
arguments but the step count) is the one the state was begun with: `data_identity` and
`checkpoint_identity` give the content hashes of the data and starting weights that identity holds.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldsim.core.checkpoint import (
    OPT_FILE,
    WEIGHTS_FILE,
    check_checkpoint_target,
    load_checkpoint,
    load_checkpoint_extra,
    load_state_into,
    read_tensors,
    recover_checkpoint,
    save_checkpoint,
    weights_sha256,
)
from worldsim.core.config import ConfigBase
from worldsim.core.registry import resolve_checkpoint
from worldsim.envs.manifest import read_manifest
from worldsim.train.metrics_log import check_log_target, log_dir_for


def state_dir_for(out: str | Path) -> Path:
    """Where the training state of a run writing `out` lives: `OUT.train` beside it."""
    out = Path(out)
    return out.with_name(out.name + ".train")


def prepare_outputs(out: str | Path, kind: str, *, force: bool = False) -> Path:
    """Check a trainer's output, training-state and log paths (`OUT.log`, see `worldsim.train.metrics_log`)
    before any work, and clean up after a killed save of the first two; returns the training-state directory.

    Raises:
        ValueError / OSError: when any path holds something the run would destroy, or cannot be written.
    """
    out = Path(out)
    state = state_dir_for(out)
    for path in (out, state):
        recover_checkpoint(path)
    check_checkpoint_target(out, kind, force=force)
    check_checkpoint_target(state, f"{kind}-train", what="training state")
    check_log_target(log_dir_for(out))
    return state


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


def has_train_state(state_dir: str | Path) -> bool:
    return (Path(state_dir) / WEIGHTS_FILE).is_file()


def check_steps_not_past(state_dir: str | Path, steps: int) -> None:
    """Refuse a rerun asking for fewer steps than its training state has taken: nothing would train,
    and the model would be rewritten recording `steps` beside the state's larger step.

    Raises:
        ValueError: naming the state's step and the steps asked for.
    """
    if not has_train_state(state_dir):
        return
    try:
        done = int(load_checkpoint_extra(state_dir)["step"])
    except (ValueError, KeyError, TypeError):
        return  # not a readable state: the trainer's resume names what is wrong with it
    if steps < done:
        raise ValueError(f"{state_dir} is already at step {done}, past --steps {steps}: rerun with --steps {done} or "
                         f"more to resume it (or choose a new --out to train from the start)")


def _plain(x: Any) -> Any:
    """`x` as it reads back from JSON (tuples become lists), for comparisons with a saved record."""
    return json.loads(json.dumps(x, sort_keys=True, default=str))


def check_same_run(state_dir: str | Path, begun: dict[str, Any], now: dict[str, Any]) -> None:
    """Refuse to resume `state_dir` unless the run's identity `now` is the one it was begun with,
    naming every difference."""
    if not begun:
        raise ValueError(f"{state_dir} records no run identity (it predates them), so a resume cannot be "
                         f"checked; delete {state_dir} to start over")
    a, b = _plain(begun), _plain(now)
    diffs = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
                sub = sorted(k for k in set(a[key]) | set(b[key]) if a[key].get(k) != b[key].get(k))
                diffs += [f"{key}.{k}: begun with {a[key].get(k)!r}, asked for {b[key].get(k)!r}" for k in sub]
            else:
                diffs.append(f"{key}: begun with {a.get(key)!r}, asked for {b.get(key)!r}")
    if diffs:
        raise ValueError(f"{state_dir} holds another run ({'; '.join(diffs)}); only --steps may change on a "
                         f"resume. Use a new --out, or delete {state_dir} to start over")


def save_train_state(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, config: ConfigBase,
                     *, kind: str, step: int, rng: np.random.Generator, run: dict[str, Any],
                     extra: dict[str, Any] | None = None) -> None:
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
            "numpy_rng": rng.bit_generator.state, "run": _plain(run), **(extra or {})}
    save_checkpoint(path, model, config, kind=f"{kind}-train", extra=meta, files={OPT_FILE: tensors})


def load_train_state(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     config_cls: type[ConfigBase], *, kind: str, run: dict[str, Any]
                     ) -> tuple[int, np.random.Generator, dict[str, Any]]:
    """Restore model, optimiser and RNG from `path`, refusing another run's state; returns (step,
    numpy generator, extra)."""
    path = Path(path)
    ck = load_checkpoint(path, kind=f"{kind}-train", config_cls=config_cls)
    check_same_run(path, ck.extra.get("run", {}), run)
    if ck.config != getattr(model, "cfg", ck.config):
        raise ValueError(f"{path}: training state was made with another config; use a new --out or delete it")
    if not (path / OPT_FILE).is_file():
        raise ValueError(f"{path}: missing {OPT_FILE}; delete {path} to restart")
    load_state_into(model, ck.tensors, source=str(path))
    tensors = read_tensors(path / OPT_FILE)
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
