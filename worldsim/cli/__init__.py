"""The `worldsim` command line. Every command has `--help`; `worldsim --version` prints the version.

One module per command group registers its subcommands (`add_parsers`) and runs them: `view` (scenes,
info, render, rollout, export), `models`, `data`, `train`, `tokenizer`, `evaluation` (eval), `runs` (the
training logs) and `agent`. The trainers' and `eval`'s flags are generated from their config dataclasses
(`worldsim.core.cli_config`), so each default is written once, in the dataclass, and every `--help` shows it.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from worldsim._version import __version__
from worldsim.cli import agent, data, evaluation, generate, models, play, runs, tokenizer, train, view
from worldsim.cli.common import HelpFormatter, positive_int
from worldsim.core.extras import MissingExtra
from worldsim.envs.world_batch import NoShippedWorld

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """An `ArgumentParser` whose help shows every default (its subparsers are of this class too)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="worldsim", description="A learned world-model simulator for robotics and RL.")
    p.add_argument("--version", action="version", version=f"worldsim {__version__}")
    p.add_argument("--debug", action="store_true", help="print the traceback of a failure instead of one line")
    p.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="CPU threads for torch (default: torch's own, one per core; one is often faster for "
                        "single rollouts and on a loaded machine)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    view.add_parsers(sub)
    models.add_parsers(sub)
    data.add_parsers(sub)
    train.add_parsers(sub)
    tokenizer.add_parsers(sub)
    evaluation.add_parsers(sub)
    runs.add_parsers(sub)
    agent.add_parsers(sub)
    play.add_parsers(sub)
    generate.add_parsers(sub)
    return p


def _resumes(args: argparse.Namespace) -> bool:
    """Whether the command resumes where an interrupt stopped it when rerun (the trainers, `data generate`)."""
    return args.command == "train" or (args.command == "data" and getattr(args, "data_command", None) == "generate")


def _expected_failure(exc: BaseException, resumes: bool = False) -> tuple[int, str] | None:
    """(exit code, one line) for a failure a user can meet and act on; None for a bug (traceback).
    `resumes`: the command resumes when rerun, which an interrupt's line then says."""
    if isinstance(exc, NoShippedWorld):  # its message speaks Python; every command that meets it has the flag
        return 2, exc.advice("--checkpoint DIR")
    if isinstance(exc, (ValueError, TypeError)):
        return 2, str(exc)
    if isinstance(exc, MissingExtra):
        return 1, str(exc)
    if isinstance(exc, FloatingPointError):
        return 1, str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return 130, "interrupted" + (" (rerun the same command to resume from its last saved state)" if resumes else "")
    if isinstance(exc, OSError):
        text = exc.strerror or str(exc)
        return 1, text if exc.filename is None else f"{text}: {exc.filename}"
    module = type(exc).__module__ or ""
    if module.split(".")[0] in ("mujoco", "OpenGL"):
        backend = os.environ.get("MUJOCO_GL", "unset")
        return 1, (f"rendering failed ({type(exc).__name__}: {exc}); MUJOCO_GL is {backend}: on a machine "
                   f"without a display use egl, or osmesa where EGL is missing")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    missing = [flag for dest, flag in getattr(args, "required_flags", ()) if getattr(args, dest, None) is None]
    if missing and not getattr(args, "print_config", False):
        args.command_parser.error(f"the following arguments are required: {', '.join(missing)}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        return int(args.func(args) or 0)
    except (Exception, KeyboardInterrupt) as exc:
        failure = None if args.debug else _expected_failure(exc, _resumes(args))
        if failure is None:
            raise
        code, line = failure
        print(f"worldsim: error: {line}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
