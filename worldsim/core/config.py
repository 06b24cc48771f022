"""Typed, frozen configs with defaults in code and strict JSON round trips.

Every config in worldsim is a frozen dataclass that inherits `ConfigBase`. Cross-field checks live
in `__post_init__` and name the bad value. `from_json` refuses unknown keys and wrong types instead
of dropping or coercing them, so a checkpoint can never be loaded with a config it was not made with.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C", bound="ConfigBase")


def _check_value(cls_name: str, name: str, tp: Any, value: Any) -> Any:
    """Check `value` against the annotation `tp`; return it converted from JSON form (lists → tuples)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    where = f"{cls_name}.{name}"
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in args:
            try:
                return _check_value(cls_name, name, arg, value)
            except (TypeError, ValueError) as exc:
                errors.append(str(exc))
        raise TypeError(f"{where}: expected {tp}, got {value!r}")
    if tp is type(None):
        if value is not None:
            raise TypeError(f"{where}: expected None, got {value!r}")
        return None
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            items = [_check_value(cls_name, name, args[0], v) for v in value]
        elif origin is tuple and args:
            if len(args) != len(value):
                raise ValueError(f"{where}: expected {len(args)} items, got {len(value)}")
            items = [_check_value(cls_name, name, a, v) for a, v in zip(args, value)]
        else:
            inner = args[0] if args else Any
            items = [_check_value(cls_name, name, inner, v) for v in value]
        return tuple(items) if origin is tuple else list(items)
    if isinstance(tp, type) and issubclass(tp, ConfigBase):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise TypeError(f"{where}: expected an object for {tp.__name__}, got {value!r}")
        return tp.from_dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{where}: expected a float, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{where}: expected an int, got {type(value).__name__} {value!r}")
        return value
    if tp in (bool, str):
        if not isinstance(value, tp):
            raise TypeError(f"{where}: expected a {tp.__name__}, got {type(value).__name__} {value!r}")
        return value
    raise TypeError(f"{where}: unsupported annotation {tp!r}")


@dataclasses.dataclass(frozen=True)
class ConfigBase:
    """Base class of all worldsim configs: strict `from_dict`/`from_json`, plain `to_dict`/`to_json`."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, ConfigBase):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    def to_json(self, path: str | Path | None = None) -> str:
        """Return the config as JSON text; also write it to `path` when given."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Build a config from a dict, refusing unknown keys and values of the wrong type."""
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown key(s) {unknown}; known keys are {sorted(fields)}")
        kwargs = {name: _check_value(cls.__name__, name, hints[name], value) for name, value in data.items()}
        return cls(**kwargs)

    @classmethod
    def from_json(cls: type[C], text_or_path: str | Path) -> C:
        """Parse JSON text, or read it from a path, into this config class."""
        if isinstance(text_or_path, Path) or not str(text_or_path).lstrip().startswith("{"):
            path = Path(text_or_path)
            if not path.is_file():
                raise ValueError(f"{cls.__name__}.from_json: expected JSON text or a file, got {str(path)!r}")
            text = path.read_text()
        else:
            text = str(text_or_path)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{cls.__name__}.from_json: not valid JSON ({exc})") from exc
        return cls.from_dict(data)

    def replace(self: C, **changes: Any) -> C:
        """A copy with some fields changed, validated again."""
        return dataclasses.replace(self, **changes)


def check_positive(cls_name: str, **values: float) -> None:
    """Raise `ValueError` naming the first value that is not > 0."""
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{cls_name}.{name} must be > 0, got {value!r}")
