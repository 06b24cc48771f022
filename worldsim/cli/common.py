"""What the command modules share: the help formatter, required flags, and resolving a config."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from worldsim.core.checkpoint import load_checkpoint_config
from worldsim.core.cli_config import resolve_config
from worldsim.core.config import ConfigBase
from worldsim.core.registry import resolve_checkpoint

DEVICE_HELP = "auto, cpu, cuda or cuda:N"
PRECISION_HELP = ("the world's inference precision: bf16 runs its frames (not its physics) in bfloat16; auto picks it "
                  "on a GPU with bf16 or a CPU with AMX (WorldModel.set_precision)")
FORCE_HELP = ("replace a checkpoint of another kind at --out (a directory holding anything but a checkpoint is "
              "never replaced)")

FORCE_FILE_HELP = "replace an existing file at --out (a directory is never replaced)"


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0 (a frame rate of 0 is refused, never read as "the default")."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: an int >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}")
    return value


class HelpFormatter(argparse.HelpFormatter):
    """Appends `(default: X)` to an option's help unless the help already says its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "(default" in text or default is None or default is argparse.SUPPRESS or \
                isinstance(action, (argparse._StoreConstAction, argparse._VersionAction, argparse._HelpAction)):
            return text
        if isinstance(default, (list, tuple)):
            default = " ".join(str(v) for v in default) or "none"
        return f"{text} (default: {str(default).replace('%', '%%')})"


def add_required(parser: argparse.ArgumentParser, *flags: str, **kwargs: Any) -> None:
    """An option that must be given unless `--print-config` is: argparse cannot say "unless", so `main`
    checks it (same usage error, exit status 2)."""
    action = parser.add_argument(*flags, default=None, **kwargs)
    action.help = f"{action.help} (required)"
    required = parser.get_default("required_flags") or ()
    parser.set_defaults(required_flags=(*required, (action.dest, flags[0])), command_parser=parser)


def config_or_print(cls: type[ConfigBase], args: argparse.Namespace, **kwargs: Any) -> ConfigBase | None:
    """The resolved `cls` (defaults < --config FILE < flags); with --print-config, print it and return None."""
    cfg = resolve_config(cls, args, **kwargs)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return None
    return cfg


def world_frame_size(scene: str, checkpoint: str | None) -> int | None:
    """The side in pixels of the frames a world renders (its tokenizer's image size), read from its
    config.json before the world loads, so a video's size can be checked first; None when the world
    cannot be found (its load then says why)."""
    try:
        cfg = load_checkpoint_config(resolve_checkpoint(checkpoint or scene, "world_model"))
        return int(cfg["tokenizer"]["image_size"])
    except (ValueError, KeyError, TypeError):
        return None
