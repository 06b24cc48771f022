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

A command's other flags (a trainer's `--data`, `--out`, `--channels`, `--preset`, `--init`, ...) are
added with `add_run_flag`, which makes them settable by the same file: `resolve_run` returns the config
and those flags' values, each from defaults < --config FILE < the command line, and `run_record` is
the whole run as one flat object, the file that reruns it (a trainer's `OUT.log/config.json`).
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


def add_config_file_flags(parser: argparse.ArgumentParser, whole_run: bool = False) -> None:
    """`--config FILE` (JSON, or YAML with pyyaml installed) and `--print-config`; `whole_run`: the file
    may also give the command's run flags (`add_run_flag`), and `--print-config` prints them too."""
    if whole_run:
        what = ("read the run's flags from this JSON or YAML file (keys: the flag names with _ for -, any but "
                "--quiet and --force; a run's OUT.log/config.json reruns it)")
        shown = "the whole run"
    else:
        what, shown = "read the config fields from this JSON or YAML file", "the resolved config"
    parser.add_argument("--config", default=None, metavar="FILE",
                        help=f"{what}; flags given on the command line override it (default: none, the defaults "
                             f"shown)")
    parser.add_argument("--print-config", action="store_true",
                        help=f"print {shown} as JSON (a file to start a --config from) and exit")


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

    Fields in `required` must come from the file or the command line, not from their defaults. The
    file may also hold the command's run flags (`add_run_flag`), which `resolve_run` reads."""
    known = sorted(f.name for f in dataclasses.fields(cls) if f.init)
    run_flags = getattr(args, "run_flags", None) or {}
    values: dict[str, Any] = {}
    if getattr(args, "config", None) is not None:
        values = load_config_file(args.config)
        unknown = sorted(set(values) - set(known) - set(run_flags))
        if unknown:
            raise ValueError(f"--config {args.config}: unknown key(s) {unknown} for {cls.__name__}; "
                             f"known keys are {sorted({*known, *run_flags})}")
        values = {k: v for k, v in values.items() if k in known}
    values.update({name: getattr(args, name) for name in known if hasattr(args, name)})
    missing = [flag_name(name) for name in required if name not in values]
    if missing:
        raise ValueError(f"{', '.join(missing)} is required (on the command line or in a --config file)")
    return cls.from_dict(values)


@dataclasses.dataclass(frozen=True)
class RunFlag:
    """A hand-written flag that `--config FILE` can also set (see `add_run_flag`)."""

    flag: str
    default: Any
    required: bool
    action: argparse.Action


def add_run_flag(parser: argparse.ArgumentParser, *flags: str, default: Any = None, required: bool = False,
                 shown: str | None = None, **kwargs: Any) -> None:
    """Add a flag that a `--config` file may also give, as the config fields may (`resolve_run` fills it).

    Left off the command line it is absent from the namespace, so a value in the file can be told from
    the default. `required`: it must come from the command line or the file. `shown`: the help's
    default text when the value alone would not say it (default: the value)."""
    action = parser.add_argument(*flags, default=argparse.SUPPRESS, **kwargs)
    if required:
        shown = "required, here or in --config"
    elif shown is None:
        shown = "default: " + ("none" if default is None else _format_default(default))
    action.help = f"{action.help} ({shown.replace('%', '%%')})"
    run_flags = {**(parser.get_default("run_flags") or {}), action.dest: RunFlag(flags[0], default, required, action)}
    parser.set_defaults(run_flags=run_flags, command_parser=parser)


def _file_value(flag: RunFlag, value: Any, source: str) -> Any:
    """A run flag's value from a config file, checked as the flag's own parser would check it."""
    action = flag.action
    where = f"--config {source}: {action.dest}"
    if value is None and flag.default is None:  # unset, as `--print-config` writes a flag not given
        return None
    if action.nargs == 0:  # store_true
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {value!r}")
        return value
    many = action.nargs in ("+", "*") or isinstance(action.nargs, int)
    items = value if many else [value]
    if many and not (isinstance(value, list) and value and
                     (not isinstance(action.nargs, int) or len(value) == action.nargs)):
        count = action.nargs if isinstance(action.nargs, int) else "one or more"
        raise ValueError(f"{where}: expected a list of {count} values, got {value!r}")
    kind = action.type or str
    for item in items:
        ok = isinstance(item, str) if kind is str else \
            (isinstance(item, (int, float) if kind is float else kind) and not isinstance(item, bool))
        if not ok or (action.choices is not None and item not in action.choices):
            wanted = f"one of {list(action.choices)}" if action.choices is not None else \
                {int: "an int", float: "a number"}.get(kind, "a string")
            raise ValueError(f"{where}: expected {wanted}, got {item!r}")
    items = [kind(item) for item in items]
    return items if many else items[0]


def resolve_run(cls: type[ConfigBase], args: argparse.Namespace) -> tuple[ConfigBase, dict[str, Any]]:
    """The config `cls` (as `resolve_config`) and the command's run flags, each from its default, then
    `args.config`'s file, then the command line. The run flags' values are also set on `args`.

    Raises:
        ValueError: for a bad or unknown value in the file.
        SystemExit: (a usage error, status 2) when a required run flag is given nowhere, unless
            `--print-config` only prints the run.
    """
    cfg = resolve_config(cls, args)
    run_flags: dict[str, RunFlag] = getattr(args, "run_flags", None) or {}
    file = load_config_file(args.config) if getattr(args, "config", None) is not None else {}
    run: dict[str, Any] = {}
    for dest, flag in run_flags.items():
        if hasattr(args, dest):
            run[dest] = getattr(args, dest)
        elif dest in file:
            run[dest] = _file_value(flag, file[dest], args.config)
        else:
            run[dest] = flag.default
        setattr(args, dest, run[dest])
    missing = [flag.flag for dest, flag in run_flags.items() if flag.required and run[dest] is None]
    if missing and not getattr(args, "print_config", False):
        args.command_parser.error(f"the following arguments are required: {', '.join(missing)} "
                                  f"(on the command line or in --config)")
    return cfg, run


def run_record(cfg: ConfigBase, run: dict[str, Any]) -> dict[str, Any]:
    """Every argument of a run as one flat object, the run flags first: a file `--config` reruns it from."""
    record = {k: list(v) if isinstance(v, tuple) else v for k, v in run.items()}
    return {**record, **cfg.to_dict()}
