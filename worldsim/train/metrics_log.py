"""A run's training log: `OUT.log/metrics.jsonl`, one JSON object a line, and TensorBoard event files
beside it when the `tensorboard` package is installed.

    OUT/        the model (written at the end)
    OUT.train/  the resumable training state (replaced whole at each save)
    OUT.log/    metrics.jsonl, config.json (every argument of the run, resolved: `--config` reruns
                it), and events.out.tfevents.* with TensorBoard

The log lives beside the checkpoint and the state rather than inside either, since both are
replaced whole by every save and a log grows line by line. A line reads

    {"step": 250, "lr": 0.00098, "loss": 2.31, ..., "val_loss": 2.40, "val_maxvio": 0.61, ...,
     "steps_per_s": 3.2, "time": 1767225600.0}

`step` is the number of optimiser steps taken; the training figures are their means over the steps
since the previous line; `lr` is the last of those steps' learning rate; `val_*` (and the other
held-out figures) appear on the lines of the steps that validated; `steps_per_s` is the training
throughput over those steps (validation and saves left out); `time` is the Unix time of the line. A
figure that is not finite is written as null. Only rank 0 of a distributed run writes. A resumed run
first drops the lines past its training state's step, so the log never holds a step twice.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import time
from pathlib import Path
from typing import Any

import torch

from worldsim.core.outputs import check_writable, replacing

try:
    from torch.utils.tensorboard import SummaryWriter  # optional dependency: `pip install tensorboard`
except ImportError:
    SummaryWriter = None

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
LOG_SUFFIX = ".log"
_EVENTS_PREFIX = "events.out.tfevents."
# The temporary names `replacing` writes the two files under.
_TMP_PREFIXES = (f".{METRICS_FILE}.tmp-", f".{CONFIG_FILE}.tmp-")


def log_dir_for(out: str | Path) -> Path:
    """Where the log of a run writing `out` lives: `OUT.log` beside it."""
    out = Path(out)
    return out.with_name(out.name + LOG_SUFFIX)


def _is_log_file(entry: Path) -> bool:
    name = entry.name
    own = name in (METRICS_FILE, CONFIG_FILE) or name.startswith((_EVENTS_PREFIX, *_TMP_PREFIXES))
    return entry.is_file() and own


def check_log_target(path: str | Path) -> None:
    """Refuse, before any work, a log directory that holds anything but a log's own files (a file in
    its place, or a folder with other files, is never written into); the path must be writable.

    Raises:
        ValueError / OSError: naming the path and what was found there.
    """
    path = Path(path)
    where = f"training log {str(path)!r}"
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise ValueError(f"{where} is a file, not a log directory; refusing to write there (move it away)")
    if path.is_dir():
        foreign = sorted(e.name for e in path.iterdir() if not _is_log_file(e))
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise ValueError(f"{where} holds {shown}, which no training log holds; refusing to write there "
                             f"(move those files away)")
    check_writable(path, "training log")


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The lines of a metrics.jsonl, in order; a line that is not a JSON object with an int `step` (the
    tail of a killed write) is skipped."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), int):
            records.append(rec)
    return records


def truncate_metrics(path: str | Path, step: int) -> None:
    """Keep only the lines of `path` up to `step` (and no broken ones), rewriting it atomically when
    that drops any."""
    path = Path(path)
    if not path.is_file():
        return
    kept = [r for r in read_metrics(path) if r["step"] <= step]
    text = "".join(json.dumps(r) + "\n" for r in kept)
    if text == path.read_text():
        return
    with replacing(path) as tmp:
        tmp.write_text(text)


def _number(v: Any) -> float | int | None:
    """A figure as JSON takes it: a number, or None when it is not finite."""
    if isinstance(v, torch.Tensor):
        v = v.item()
    if isinstance(v, numbers.Integral):
        return int(v)
    v = float(v)
    return v if math.isfinite(v) else None


def _numeric(v: Any) -> bool:
    return isinstance(v, numbers.Real) or (isinstance(v, torch.Tensor) and v.numel() == 1)


def write_run_config(directory: Path, config: dict[str, Any]) -> Path:
    """The run's resolved arguments as `config.json`, a file `--config` reruns the run from (written whole):
    from the CLI every argument (`worldsim.core.cli_config.run_record`), else the train config."""
    path = directory / CONFIG_FILE
    with replacing(path) as tmp:
        tmp.write_text(json.dumps(config, indent=2) + "\n")
    return path


class MetricsLog:
    """The log of a run in `directory`, continued from `step` (lines past it dropped first).

    `add(logs)` after each optimiser step, `write(step, lr, held_out)` for a line, `restart()` once the
    work after a line (validation, saving) is done, so that throughput counts training steps alone."""

    def __init__(self, directory: str | Path, step: int, config: dict[str, Any] | None = None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        for leftover in (f for prefix in _TMP_PREFIXES for f in self.dir.glob(f"{prefix}*")):
            leftover.unlink(missing_ok=True)
        if config is not None:
            write_run_config(self.dir, config)
        self.path = self.dir / METRICS_FILE
        truncate_metrics(self.path, step)
        self._fh = open(self.path, "a")
        # purge_step hides the events a killed run wrote past the resumed step.
        self._tb = None if SummaryWriter is None else SummaryWriter(str(self.dir), purge_step=step + 1)
        self._sums: dict[str, Any] = {}
        self._counts: dict[str, int] = {}
        self._since, self._clock, self._last = step, time.perf_counter(), time.perf_counter()

    def add(self, logs: dict[str, Any]) -> None:
        """Count one step's training figures (numbers or one-element tensors; others are left out)."""
        for k, v in logs.items():
            if _numeric(v):
                self._sums[k] = self._sums.get(k, 0.0) + (v.detach().float() if isinstance(v, torch.Tensor) else v)
                self._counts[k] = self._counts.get(k, 0) + 1
        self._last = time.perf_counter()

    def write(self, step: int, lr: float, held_out: dict[str, Any] | None = None, *, sync: bool = False
              ) -> dict[str, Any]:
        """Write the line of `step` (fsynced with `sync`) and return it."""
        record: dict[str, Any] = {"step": step, "lr": _number(lr)}
        record.update({k: _number(s / self._counts[k]) for k, s in self._sums.items()})
        record.update({k: _number(v) for k, v in (held_out or {}).items() if _numeric(v)})
        seconds = self._last - self._clock
        record["steps_per_s"] = _number((step - self._since) / seconds) if seconds > 0 else None
        record["time"] = time.time()
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        if sync:
            os.fsync(self._fh.fileno())
        if self._tb is not None:
            for k, v in record.items():
                if k not in ("step", "time") and v is not None:
                    self._tb.add_scalar(k, v, step, walltime=record["time"])
            if sync:
                self._tb.flush()
        self._sums, self._counts, self._since = {}, {}, step
        return record

    def restart(self) -> None:
        """Start the next line's throughput clock."""
        self._clock = self._last = time.perf_counter()

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NoLog:
    """What a run without a log (no state directory, or not rank 0) writes: nothing."""

    def add(self, logs: dict[str, Any]) -> None:
        pass

    def write(self, step: int, lr: float, held_out: dict[str, Any] | None = None, *, sync: bool = False) -> None:
        pass

    def restart(self) -> None:
        pass

    def __enter__(self) -> NoLog:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def metrics_path(run: str | Path) -> Path:
    """The metrics.jsonl of `run`: the file itself, a log directory, or a run's `OUT` (its `OUT.log`).

    Raises:
        ValueError: when none of those holds one.
    """
    run = Path(run)
    for candidate in (run, run / METRICS_FILE, log_dir_for(run) / METRICS_FILE):
        if candidate.is_file():
            return candidate
    raise ValueError(f"run {str(run)!r}: no {METRICS_FILE} at {run}, {run / METRICS_FILE} or "
                     f"{log_dir_for(run) / METRICS_FILE}")
