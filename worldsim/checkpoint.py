"""Checkpoints: a directory with `model.safetensors` and `config.json`. Nothing here unpickles.

    ckpt/
      model.safetensors   the tensors (fp32, or fp16 where a caller asks for it)
      config.json         {"format_version", "worldsim_version", "kind", "config", "extra"}

`save_checkpoint` writes into a temporary sibling directory and renames it into place, so a kill at
any moment leaves either the old checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from worldsim._version import __version__
from worldsim.config import ConfigBase

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


@dataclass
class Checkpoint:
    """What `load_checkpoint` returns: the tensors, the parsed config and the rest of config.json."""

    tensors: dict[str, torch.Tensor]
    config: ConfigBase | dict[str, Any]
    kind: str
    extra: dict[str, Any]
    worldsim_version: str


def save_checkpoint(
    path: str | Path,
    tensors: dict[str, torch.Tensor] | torch.nn.Module,
    config: ConfigBase,
    *,
    kind: str,
    extra: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
    keep_fp32: tuple[str, ...] = (),
) -> Path:
    """Write a checkpoint directory atomically.

    Args:
        path: the checkpoint directory to create or replace.
        tensors: a state dict, or a module whose `state_dict()` is saved.
        config: the frozen config the tensors were made with.
        kind: what the checkpoint holds (`"tokenizer"`, `"dynamics"`, ...), checked on load.
        extra: JSON-serialisable extras (training step, metrics, the command that made it).
        dtype: cast floating tensors to this dtype before saving (e.g. `torch.float16`).
        keep_fp32: names (or name prefixes) of tensors that `dtype` leaves in float32.
    """
    if not isinstance(config, ConfigBase):
        raise TypeError(f"config must be a worldsim ConfigBase, got {type(config).__name__}")
    state = tensors.state_dict() if isinstance(tensors, torch.nn.Module) else dict(tensors)
    out: dict[str, torch.Tensor] = {}
    for name, t in state.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"tensor {name!r} is a {type(t).__name__}, expected a torch.Tensor")
        t = t.detach().to("cpu")
        if dtype is not None and t.is_floating_point():
            t = t.float() if name.startswith(keep_fp32) else t.to(dtype)
        out[name] = t.contiguous()
    meta = {
        "format_version": FORMAT_VERSION,
        "worldsim_version": __version__,
        "kind": kind,
        "config_class": type(config).__name__,
        "config": config.to_dict(),
        "extra": extra or {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        save_file(out, str(tmp / WEIGHTS_FILE), metadata={"format": "pt", "kind": kind})
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        _fsync_dir(tmp)
        if path.exists():
            # Swap: the old directory moves aside first, so the target name always holds a whole one.
            old = path.parent / f".{path.name}.old-{os.getpid()}"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _fsync_dir(path: Path) -> None:
    for f in path.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())


def load_checkpoint(
    path: str | Path,
    *,
    kind: str | None = None,
    config_cls: type[ConfigBase] | None = None,
    map_location: str | torch.device = "cpu",
) -> Checkpoint:
    """Read a checkpoint directory written by `save_checkpoint`.

    Raises:
        ValueError: when the path is not a safetensors checkpoint directory, a file is truncated or
            corrupt, the format version or kind is not the expected one, or the config does not parse.
    """
    weights, meta, config = _read_meta(path, kind, config_cls)
    try:
        tensors = load_file(str(weights), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{weights}: not a readable safetensors file (truncated or corrupt?): {exc}") from exc
    return Checkpoint(
        tensors=tensors,
        config=config,
        kind=str(meta.get("kind")),
        extra=dict(meta.get("extra", {})),
        worldsim_version=str(meta.get("worldsim_version")),
    )


def load_checkpoint_config(path: str | Path, *, kind: str | None = None,
                           config_cls: type[ConfigBase] | None = None) -> ConfigBase | dict[str, Any]:
    """A checkpoint's config alone (checked as `load_checkpoint` checks it), without reading its tensors."""
    return _read_meta(path, kind, config_cls)[2]


def load_checkpoint_extra(path: str | Path, *, kind: str | None = None) -> dict[str, Any]:
    """A checkpoint's `extra` (its training record) alone, checked as `load_checkpoint` checks it."""
    return dict(_read_meta(path, kind, None)[1].get("extra", {}))


def _read_meta(path: str | Path, kind: str | None, config_cls: type[ConfigBase] | None
               ) -> tuple[Path, dict[str, Any], ConfigBase | dict[str, Any]]:
    """(weights file, config.json contents, parsed config) of a checkpoint directory, checked."""
    path = Path(path)
    if path.is_file():
        raise ValueError(
            f"{path}: expected a checkpoint directory holding {WEIGHTS_FILE} and {CONFIG_FILE}, got a file "
            "(worldsim loads only safetensors, never pickles)"
        )
    if not path.is_dir():
        raise ValueError(f"{path}: no such checkpoint directory")
    weights, cfg_file = path / WEIGHTS_FILE, path / CONFIG_FILE
    if not weights.is_file():
        found = sorted(p.name for p in path.iterdir())
        raise ValueError(f"{path}: expected {WEIGHTS_FILE} (safetensors), found {found}")
    if not cfg_file.is_file():
        raise ValueError(f"{path}: missing {CONFIG_FILE}")
    try:
        meta = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{cfg_file}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        got = meta.get("format_version") if isinstance(meta, dict) else meta
        raise ValueError(f"{cfg_file}: expected format_version {FORMAT_VERSION}, got {got!r}")
    if kind is not None and meta.get("kind") != kind:
        raise ValueError(f"{path}: expected a {kind!r} checkpoint, got {meta.get('kind')!r}")
    config: ConfigBase | dict[str, Any] = meta.get("config", {})
    if config_cls is not None:
        if meta.get("config_class") not in (None, config_cls.__name__):
            raise ValueError(f"{cfg_file}: expected a {config_cls.__name__}, got {meta.get('config_class')}")
        try:
            config = config_cls.from_dict(meta["config"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{cfg_file}: bad config: {exc}") from exc
    return weights, meta, config


def load_state_into(module: torch.nn.Module, tensors: dict[str, torch.Tensor], *, source: str = "") -> None:
    """Load `tensors` into `module`, naming every missing, unexpected or mis-shaped tensor.

    Floating tensors are cast to the dtype of the parameter they fill (fp16 files load into fp32 modules).
    """
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    mismatched = [
        f"{k}: checkpoint {tuple(tensors[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(tensors))
        if tensors[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing tensors {missing}")
    if unexpected:
        problems.append(f"unexpected tensors {unexpected}")
    if mismatched:
        problems.append(f"mismatched shapes [{'; '.join(mismatched)}]")
    if problems:
        where = f"{source}: " if source else ""
        raise ValueError(f"{where}checkpoint does not fit the model: " + "; ".join(problems))
    cast = {k: (v.to(expected[k].dtype) if v.is_floating_point() else v) for k, v in tensors.items()}
    module.load_state_dict(cast, strict=True)
