"""Command-line flags generated from a config dataclass: the config is the CLI (cleanrl's `Args`).

    @dataclass(frozen=True)
    class TrainConfig(ConfigBase):
        batch_size: int = 32
        \"\"\"frames per step (per process)\"\"\"

    add_config_flags(parser, TrainConfig)     # --batch-size N  frames per step (per process) (default: 32)
    add_config_file_flags(parser)             # --config FILE, --print-config
    cfg = resolve_config(TrainConfig, args)   # defaults < --config FILE < flags on the command line

Each field gets one flag, `--batch-size` for `batch_size`; its help is the string literal right after
the field in the class source (inherited fields use the nearest class that documents them), and shows
the field's default. Bools are `--x/--no-x`, tuples take several values, `Literal`s are choices.
A flag left off the command line is absent from the namespace (its argparse default is `SUPPRESS`), so
`resolve_config` can tell it from a value in the file.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import json
import re
import textwrap
import types
import typing
from pathlib import Path
from typing import Any

from worldsim.core.config import ConfigBase

try:
    import yaml  # optional dependency: `pip install worldsim[yaml]` for YAML config files
except ImportError:
    yaml = None

if yaml is not None:
    class _ConfigLoader(yaml.SafeLoader):
        """PyYAML's safe loader, reading floats as YAML 1.2 does: YAML 1.1 wants a dot in a float, so
        `lr: 1e-3` would come as the string "1e-3" and be refused as a float field's value."""

    _ConfigLoader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
        list("-+0123456789."),
    )


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Each field's docstring (the string literal right after it in the class body), over the MRO."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is ConfigBase:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0].body
        for node, after in zip(body, body[1:]):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and \
                    isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) and \
                    isinstance(after.value.value, str):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


_METAVARS = {int: "N", float: "X", str: "TEXT"}


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def _format_default(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return " ".join(str(v) for v in value) or "(none)"
    return str(value)


def _flag_kwargs(tp: Any) -> dict[str, Any]:
    """argparse keyword arguments for a field annotated `tp`."""
    origin, targs = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in targs if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"no flag for the annotation {tp!r}")
        return _flag_kwargs(inner[0])
    if origin is typing.Literal:
        return {"choices": targs, "type": type(targs[0])}
    if tp is bool:
        return {"action": argparse.BooleanOptionalAction}
    if origin in (tuple, list):
        if origin is tuple and targs and targs[-1] is not Ellipsis:
            return {"type": targs[0], "nargs": len(targs)}
        return {"type": targs[0] if targs else str, "nargs": "+"}
    if tp in (int, float, str):
        return {"type": tp}
    raise TypeError(f"no flag for the annotation {tp!r}")


def add_config_flags(parser: argparse.ArgumentParser, cls: type[ConfigBase], *, skip: tuple[str, ...] = (),
                     choices: dict[str, tuple] | None = None, required: tuple[str, ...] = (),
                     title: str | None = None) -> None:
    """Add one flag per init field of the config dataclass `cls` (but `skip`), in a group of their own.

    Help comes from the field docstrings and shows the default; `choices` adds choices to str fields;
    fields in `required` say so instead of their default (`resolve_config` checks them).
    """
    hints, docs = typing.get_type_hints(cls), field_docs(cls)
    group = parser.add_argument_group(title or f"{cls.__name__} (also settable by --config FILE)")
    for f in dataclasses.fields(cls):
        if not f.init or f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        kwargs = _flag_kwargs(hints[f.name])
        if choices and f.name in choices:
            kwargs["choices"] = choices[f.name]
        metavar = None if "choices" in kwargs or "action" in kwargs else _METAVARS.get(kwargs["type"], "VALUE")
        doc = docs.get(f.name, f.name.replace("_", " ")).replace("%", "%%")
        shown = "required, here or in --config" if f.name in required else f"default: {_format_default(default)}"
        group.add_argument(flag_name(f.name), dest=f.name, default=argparse.SUPPRESS, metavar=metavar,
                           help=f"{doc} ({shown.replace('%', '%%')})", **kwargs)


def add_config_file_flags(parser: argparse.ArgumentParser) -> None:
    """`--config FILE` (JSON, or YAML with pyyaml installed) and `--print-config`."""
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="read the config fields from this JSON or YAML file; flags given on the command "
                             "line override it (default: none, the defaults shown)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config as JSON (a file to start a --config from) and exit")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """The object in a JSON (`.json`) or YAML (`.yaml`, `.yml`) config file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--config {path}: " + ("is a directory, not a config file" if path.is_dir() else
                                                  "no such file"))
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        if yaml is None:
            raise ValueError(f"--config {path}: reading YAML needs pyyaml (pip install 'worldsim[yaml]'), "
                             f"or write the file as JSON")
        try:
            data = yaml.load(text, Loader=_ConfigLoader)  # noqa: S506  (a SafeLoader)
        except yaml.YAMLError as exc:
            raise ValueError(f"--config {path}: not valid YAML ({exc})") from exc
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--config {path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected an object of config fields, got {type(data).__name__}")
    return data


def resolve_config(cls: type[ConfigBase], args: argparse.Namespace, required: tuple[str, ...] = ()) -> ConfigBase:
    """`cls` from its defaults, then `args.config`'s file, then the flags given on the command line.

    Fields in `required` must come from the file or the command line, not from their defaults."""
    known = sorted(f.name for f in dataclasses.fields(cls) if f.init)
    values: dict[str, Any] = {}
    if getattr(args, "config", None) is not None:
        values = load_config_file(args.config)
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"--config {args.config}: unknown key(s) {unknown} for {cls.__name__}; "
                             f"known keys are {known}")
    values.update({name: getattr(args, name) for name in known if hasattr(args, name)})
    missing = [flag_name(name) for name in required if name not in values]
    if missing:
        raise ValueError(f"{', '.join(missing)} is required (on the command line or in a --config file)")
    return cls.from_dict(values)
