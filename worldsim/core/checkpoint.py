"""Checkpoints: a directory with `model.safetensors` and `config.json`. Nothing here unpickles.

    ckpt/
      model.safetensors   the tensors (fp32, or fp16 where a caller asks for it)
      config.json         {"format_version", "worldsim_version", "kind", "config", "extra", "files"}
      (more .safetensors) files a caller adds (a training state's optimizer.safetensors)

`files` holds the size and SHA-256 of every weights file; a load verifies them and refuses tensors
that are not finite, naming the file.

`save_checkpoint` writes the whole new directory beside the old one (fsynced), switches the two with
one atomic rename (`worldsim.core.outputs.exchange_dirs`) and removes the old one after, so a kill at any
instant leaves the old checkpoint or the new one. `recover_checkpoint` cleans what a killed save
leaves behind, and puts a whole directory back at the name if a kill came between the two renames of
the fallback path. A save refuses a target that holds anything but a checkpoint of its own kind.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from worldsim._version import __version__
from worldsim.core.config import ConfigBase
from worldsim.core.outputs import (
    apply_umask,
    check_writable,
    exchange_dirs,
    file_sha256,
    fsync_dir,
    fsync_tree,
    kill_point,
    pid_alive,
    remove_tree,
)

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
OPT_FILE = "optimizer.safetensors"
# The only files a checkpoint directory holds; a directory with anything else is not replaced.
CHECKPOINT_FILES = (WEIGHTS_FILE, CONFIG_FILE, OPT_FILE)


@dataclass
class Checkpoint:
    """What `load_checkpoint` returns: the tensors, the parsed config and the rest of config.json."""

    tensors: dict[str, torch.Tensor]
    config: ConfigBase | dict[str, Any]
    kind: str
    extra: dict[str, Any]
    worldsim_version: str
    path: Path


# --- what a save may replace ------------------------------------------------------------------


def check_checkpoint_target(path: str | Path, kind: str, *, force: bool = False, what: str = "--out") -> None:
    """Refuse, before any work, a checkpoint output path that holds something a save would destroy.

    Written only when `path` is absent, an empty directory, or a checkpoint directory of `kind` (with
    `force`, a checkpoint of any kind). A file, a dataset, or a directory holding anything but a
    checkpoint's own files is refused whatever `force` says. The path must also be writable.

    Raises:
        ValueError: naming the path and what was found there.
        OSError: when the path cannot be written.
    """
    path = Path(path)
    where = f"{what} {str(path)!r}"
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise ValueError(f"{where} is a file, not a checkpoint directory; refusing to replace it "
                         f"(choose another {what})")
    if path.is_dir():
        entries = sorted(path.iterdir())
        foreign = [e.name for e in entries if e.name not in CHECKPOINT_FILES or not e.is_file()]
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise ValueError(f"{where} holds {shown}, which no worldsim checkpoint holds; refusing to replace "
                             f"it (choose another {what}, or move those files away)")
        if entries:
            found = _kind_of(path)
            if found is None:
                raise ValueError(f"{where} holds checkpoint files but no readable {CONFIG_FILE}; refusing to "
                                 f"replace it (choose another {what})")
            if found != kind and not force:
                raise ValueError(f"{where} holds a {found!r} checkpoint, and this writes a {kind!r} one; refusing "
                                 f"to replace it (choose another {what}, or pass --force to replace it)")
    check_writable(path, what)


def _kind_of(path: Path) -> str | None:
    try:
        meta = json.loads((path / CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return str(meta.get("kind")) if isinstance(meta, dict) and "kind" in meta else None


# --- saving -----------------------------------------------------------------------------------


def save_checkpoint(
    path: str | Path,
    tensors: dict[str, torch.Tensor] | torch.nn.Module,
    config: ConfigBase,
    *,
    kind: str,
    extra: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
    keep_fp32: tuple[str, ...] = (),
    files: dict[str, dict[str, torch.Tensor]] | None = None,
    force: bool = False,
) -> Path:
    """Write a checkpoint directory atomically.

    Args:
        path: the checkpoint directory to create, or to replace when it holds a checkpoint of `kind`.
        tensors: a state dict, or a module whose `state_dict()` is saved.
        config: the frozen config the tensors were made with.
        kind: what the checkpoint holds (`"tokenizer"`, `"dynamics"`, ...), checked on load.
        extra: JSON-serialisable extras (training step, metrics, the command that made it).
        dtype: cast floating tensors to this dtype before saving (e.g. `torch.float16`).
        keep_fp32: names (or name prefixes) of tensors that `dtype` leaves in float32.
        files: more safetensors files to write into the directory, by file name (in `CHECKPOINT_FILES`).
        force: replace a checkpoint of another kind (never anything that is not a checkpoint).
    """
    if not isinstance(config, ConfigBase):
        raise TypeError(f"config must be a worldsim ConfigBase, got {type(config).__name__}")
    files = dict(files or {})
    bad = [n for n in files if n not in CHECKPOINT_FILES or n in (WEIGHTS_FILE, CONFIG_FILE)]
    if bad:
        raise ValueError(f"files may be {[OPT_FILE]}, got {bad}")
    path = Path(path)
    recover_checkpoint(path)
    check_checkpoint_target(path, kind, force=force, what="checkpoint path")
    out = {WEIGHTS_FILE: _prepared(tensors, dtype, keep_fp32)}
    out.update({name: _prepared(t, None, ()) for name, t in files.items()})
    meta = {
        "format_version": FORMAT_VERSION,
        "worldsim_version": __version__,
        "kind": kind,
        "config_class": type(config).__name__,
        "config": config.to_dict(),
        "extra": extra or {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))
    try:
        _write_whole(tmp, out, meta)
        if path.exists():
            aside = path.parent / f".{path.name}.old-{os.getpid()}-{tmp.name.rsplit('-', 1)[-1]}"
            exchange_dirs(tmp, path, aside)
            remove_tree(tmp)
            remove_tree(aside)
        else:
            os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        remove_tree(tmp)
        raise
    return path


def _write_whole(tmp: Path, files: dict[str, dict[str, torch.Tensor]], meta: dict[str, Any]) -> None:
    """Write the safetensors `files` and config.json (with their checksums) into `tmp`, fsynced."""
    records = {}
    for name, t in files.items():
        save_file(t, str(tmp / name), metadata={"format": "pt", "kind": meta["kind"]})
        records[name] = {"bytes": (tmp / name).stat().st_size, "sha256": file_sha256(tmp / name)}
    meta = {**meta, "files": records}
    # config.json goes in last: a directory with it and matching files is a whole checkpoint.
    (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    apply_umask(tmp)
    fsync_tree(tmp)
    kill_point("written")


def _prepared(tensors: dict[str, torch.Tensor] | torch.nn.Module, dtype: torch.dtype | None,
              keep_fp32: tuple[str, ...]) -> dict[str, torch.Tensor]:
    state = tensors.state_dict() if isinstance(tensors, torch.nn.Module) else dict(tensors)
    out: dict[str, torch.Tensor] = {}
    for name, t in state.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"tensor {name!r} is a {type(t).__name__}, expected a torch.Tensor")
        t = t.detach().to("cpu")
        if dtype is not None and t.is_floating_point():
            t = t.float() if name.startswith(keep_fp32) else t.to(dtype)
        out[name] = t.contiguous()
    return out


_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<what>tmp|old)-(?P<pid>\d+)-[^-/]+$")


def recover_checkpoint(path: str | Path) -> None:
    """Clean up after a killed save of `path`: temporary and set-aside directories of dead processes
    are removed, and when `path` itself is missing (a kill between the fallback's two renames) the
    newest whole checkpoint among them is put back at `path` first."""
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        return
    left = []
    for entry in parent.iterdir():
        m = _LEFTOVER.match(entry.name)
        if m and m["name"] == path.name and entry.is_dir() and not pid_alive(int(m["pid"])):
            left.append((m["what"], entry))
    if not left:
        return
    if not path.exists():
        # The new directory (tmp) is newer than the set-aside old one; either is a whole checkpoint.
        for _, entry in sorted(left, key=lambda x: x[0] != "tmp"):
            if _is_whole(entry):
                os.replace(entry, path)
                fsync_dir(parent)
                break
    for _, entry in left:
        if entry.exists():
            remove_tree(entry)


def _is_whole(path: Path) -> bool:
    try:
        meta = json.loads((path / CONFIG_FILE).read_text())
        if not isinstance(meta, dict) or "files" not in meta:
            return False
        _verify_files(path, meta)
    except (OSError, ValueError, TypeError, AttributeError):
        return False
    return True


# --- loading ----------------------------------------------------------------------------------


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
            corrupt (its size or SHA-256 differs from config.json's), a tensor is not finite, the
            format version or kind is not the expected one, or the config does not parse.
    """
    weights, meta, config = _read_meta(path, kind, config_cls)
    _verify_files(Path(path), meta)
    tensors = read_tensors(weights, map_location)
    return Checkpoint(
        tensors=tensors,
        config=config,
        kind=str(meta.get("kind")),
        extra=dict(meta.get("extra", {})),
        worldsim_version=str(meta.get("worldsim_version")),
        path=Path(path),
    )


def read_tensors(file: str | Path, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of one safetensors file, every floating one checked finite."""
    try:
        tensors = load_file(str(file), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{file}: not a readable safetensors file (truncated or corrupt?): {exc}") from exc
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ValueError(f"{file}: tensor(s) {shown} hold NaN or infinite values; refusing to load them")
    return tensors


def _verify_files(path: Path, meta: dict[str, Any]) -> None:
    """Check every file config.json lists against its recorded size and SHA-256."""
    records = meta.get("files")
    if records is None:
        warnings.warn(f"{path}: {CONFIG_FILE} records no checksums (written before worldsim recorded them); "
                      f"its weights are loaded unverified", stacklevel=3)
        return
    if not isinstance(records, dict) or WEIGHTS_FILE not in records:
        raise ValueError(f"{path / CONFIG_FILE}: 'files' must list {WEIGHTS_FILE} with its bytes and sha256")
    for name, rec in records.items():
        if name not in CHECKPOINT_FILES or name == CONFIG_FILE:
            raise ValueError(f"{path / CONFIG_FILE}: 'files' lists {name!r}; a checkpoint holds only "
                             f"{CHECKPOINT_FILES}")
        if not isinstance(rec, dict) or not isinstance(rec.get("sha256"), str) or not isinstance(rec.get("bytes"), int):
            raise ValueError(f"{path / CONFIG_FILE}: files[{name!r}] must hold 'bytes' (int) and 'sha256' (str)")
        f = path / name
        if not f.is_file():
            raise ValueError(f"{f}: missing (listed in {CONFIG_FILE})")
        size = f.stat().st_size
        if size != rec["bytes"]:
            raise ValueError(f"{f}: {size} bytes, {CONFIG_FILE} says {rec['bytes']} (truncated or corrupt)")
        if file_sha256(f) != rec["sha256"]:
            raise ValueError(f"{f}: SHA-256 differs from the one in {CONFIG_FILE} (the file is corrupt)")


def load_checkpoint_config(path: str | Path, *, kind: str | None = None,
                           config_cls: type[ConfigBase] | None = None) -> ConfigBase | dict[str, Any]:
    """A checkpoint's config alone (checked as `load_checkpoint` checks it), without reading its tensors."""
    return _read_meta(path, kind, config_cls)[2]


def load_checkpoint_extra(path: str | Path, *, kind: str | None = None) -> dict[str, Any]:
    """A checkpoint's `extra` (its training record) alone, checked as `load_checkpoint` checks it."""
    return dict(_read_meta(path, kind, None)[1].get("extra", {}))


def weights_sha256(path: str | Path) -> str:
    """The SHA-256 of a checkpoint's weights file: the recorded one, else computed."""
    path = Path(path)
    rec = _read_meta(path, None, None)[1].get("files", {}).get(WEIGHTS_FILE)
    return rec["sha256"] if isinstance(rec, dict) and "sha256" in rec else file_sha256(path / WEIGHTS_FILE)


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
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{cfg_file}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        got = meta.get("format_version") if isinstance(meta, dict) else meta
        raise ValueError(f"{cfg_file}: expected format_version {FORMAT_VERSION}, got {got!r}")
    for field, tp in (("kind", str), ("config", dict), ("extra", dict)):
        if field not in meta:
            raise ValueError(f"{cfg_file}: missing field {field!r}")
        if not isinstance(meta[field], tp):
            raise ValueError(f"{cfg_file}: field {field!r} must be a {tp.__name__}, got {type(meta[field]).__name__}")
    if kind is not None and meta["kind"] != kind:
        raise ValueError(f"{path}: expected a {kind!r} checkpoint, got {meta['kind']!r}")
    config: ConfigBase | dict[str, Any] = meta["config"]
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
