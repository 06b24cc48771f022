"""How many CPU threads a world env's own torch work runs on, and staying safe after a fork.

torch's intra-op thread pool is process-wide. A batch of one or a few rows is a chain of small
operations that a second thread cannot speed up, and on a loaded machine the waiting threads of a
larger pool stall for seconds while they are descheduled; so small batches run on one thread. An
env never changes the caller's setting: it switches for its own work and switches back.

A process forked from one whose OpenMP pool already ran (the workers of Gymnasium's
`AsyncVectorEnv`, or SB3's `SubprocVecEnv`, under the default "fork" start method) hangs in its first
multi-threaded operation, so an env in a forked process runs on one thread.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch

# Batches up to this many rows run on one thread unless told otherwise.
SMALL_BATCH = 16

_forked = False


def _mark_forked() -> None:
    global _forked
    _forked = True


os.register_at_fork(after_in_child=_mark_forked)


def in_forked_process() -> bool:
    """Whether this process was forked from the one that imported worldsim."""
    return _forked


def pick_threads(num_threads: int | None, batch_size: int, device: torch.device) -> int | None:
    """The threads for an env's torch work: `num_threads`, or one for small batches; None: the caller's.

    Raises:
        ValueError: for a `num_threads` that is not an int >= 1 (or None).
    """
    if num_threads is not None and (isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer))
                                    or num_threads < 1):
        raise ValueError(f"num_threads must be an int >= 1 or None, got {num_threads!r}")
    if in_forked_process():
        if num_threads is not None and num_threads > 1:
            warnings.warn(f"num_threads={num_threads} in a forked process: running on one thread, as OpenMP "
                          "hangs after a fork; start the workers with the 'spawn' or 'forkserver' method to "
                          "use more", stacklevel=3)
        return 1
    if num_threads is not None:
        return int(num_threads)
    if device.type == "cpu" and batch_size <= SMALL_BATCH:
        return 1
    return None


class ThreadScope:
    """`with scope:` runs its body on `n` torch threads and then restores the caller's count (None: as is);
    on one thread in a process forked after the scope was made."""

    def __init__(self, n: int | None):
        self.n = n
        self._saved: list[int] = []

    def __enter__(self) -> ThreadScope:
        prev = torch.get_num_threads()
        self._saved.append(prev)
        n = 1 if in_forked_process() else self.n
        if n is not None and n != prev:
            torch.set_num_threads(n)
        return self

    def __exit__(self, *exc) -> None:
        prev = self._saved.pop()
        if torch.get_num_threads() != prev:
            torch.set_num_threads(prev)
