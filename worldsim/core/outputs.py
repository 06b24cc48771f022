"""Writing outputs without ever losing what is there: writability probes, the user's umask, fsync, an
atomic swap of two directories, and the SHA-256 of a file written (to record it, and check it on load).

`replacing(path)` gives a temporary name beside a file to write, renamed onto `path` (fsynced) only when
the block succeeds, so `path` holds the old file or the new one, never a part.

`exchange_dirs(new, old)` swaps two directory entries in one `renameat2(RENAME_EXCHANGE)` call where
the kernel and filesystem offer it (Linux), so the target name always holds a whole directory; where
they do not, it falls back to two renames, and `worldsim.core.checkpoint.recover_checkpoint` repairs the
gap a kill between them leaves.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# A test sets this to a stage name ("written", "moved-aside", "swapped"): the process kills itself with
# SIGKILL when a save reaches that stage, as a `kill -9` at that instant would.
KILL_AT_ENV = "WORLDSIM_TEST_KILL_AT"

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def kill_point(stage: str) -> None:
    """Die here, uncleanly, when the test hook asks for this stage."""
    if os.environ.get(KILL_AT_ENV) == stage:
        os.kill(os.getpid(), signal.SIGKILL)


def current_umask() -> int:
    """The process's umask (read by setting and restoring it: the only portable way)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(root: Path) -> None:
    """Give `root` and everything under it the modes a plain `mkdir` / `open` would have: temporary
    directories are created 0700 and some writers create files 0600, whatever the user's umask."""
    mask = current_umask()
    for dirpath, _, filenames in os.walk(root):
        os.chmod(dirpath, 0o777 & ~mask)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o666 & ~mask)


def nearest_existing(path: Path) -> Path:
    """`path` or its closest ancestor that exists."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_writable(path: str | Path, what: str = "--out") -> None:
    """Refuse, before any work, an output path that cannot be written: a real probe file is created
    and removed in `path` (a directory), in the directory of `path` (an existing file, to be replaced),
    or in its nearest existing ancestor."""
    base = nearest_existing(Path(path))
    if base.is_file() and base == Path(os.path.abspath(path)):
        base = base.parent
    if not base.is_dir():
        return  # a file in the way: the caller's own check names it
    try:
        with tempfile.TemporaryFile(dir=base, prefix=".worldsim-probe-"):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OSError(exc.errno, f"{what} {str(path)!r} cannot be written ({base}: {reason})") from None


def check_new_file(out: str | Path, suffix: str, *, force: bool = False, what: str = "--out") -> Path:
    """Refuse, before any work, a file output that would be lost: a path not ending in `suffix`, a
    directory, an existing file (unless `force`), or a place that cannot be written.

    Raises:
        ValueError: naming the flag `what` and what was wrong.
        OSError: when the place cannot be written.
    """
    out = Path(out)
    where = f"{what} {str(out)!r}"
    if out.suffix.lower() != suffix:
        raise ValueError(f"{where} must end in {suffix}")
    if out.is_dir():
        raise ValueError(f"{where} is a directory; refusing to replace it (choose another {what})")
    if out.exists() and not force:
        raise ValueError(f"{where} exists; refusing to overwrite it (choose another {what}, or pass --force to "
                         f"replace it)")
    check_writable(out, what)
    return out


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, as hex, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fsync_tree(root: Path) -> None:
    """fsync every file under `root`, then the directories themselves."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as fh:
                os.fsync(fh.fileno())
        fsync_dir(Path(dirpath))


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _renameat2_exchange(a: Path, b: Path) -> bool:
    """Swap `a` and `b` atomically; False when the platform or filesystem cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def exchange_dirs(new: Path, target: Path, aside: Path) -> None:
    """Put directory `new` at `target` (which exists) and the old `target` at `new`'s name, in one
    atomic step where possible; else via `aside`, a free name the old one waits at between two renames.
    Afterwards the old directory is at `new`'s name (atomic path) or at `aside` (fallback)."""
    if _renameat2_exchange(new, target):
        kill_point("swapped")
        return
    os.replace(target, aside)
    kill_point("moved-aside")
    os.replace(new, target)
    kill_point("swapped")


def replace_dir(new: Path, target: Path) -> None:
    """Put the whole directory `new` (fsynced by the caller) at `target`, which is absent or the earlier
    output the caller has checked may go; the earlier one is removed after the switch."""
    if not target.exists():
        os.replace(new, target)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    exchange_dirs(new, target, aside / "x")  # the old directory ends at `new`'s name, or under `aside`
    shutil.rmtree(new, ignore_errors=True)
    shutil.rmtree(aside, ignore_errors=True)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    """Whether another live process has this pid (our own counts as not: its leftovers are ours)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` (`.NAME.tmp-PID` plus its suffix, which writers that go by the
    suffix need) for the block to write; when the block succeeds it is fsynced and renamed onto `path`,
    when it fails it is removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
