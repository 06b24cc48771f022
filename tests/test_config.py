from dataclasses import FrozenInstanceError, dataclass, field
from typing import Literal

import pytest

from worldsim.core.config import ConfigBase, check_positive


@dataclass(frozen=True)
class Inner(ConfigBase):
    levels: tuple[int, ...] = (8, 5, 5, 5)
    name: str = "fsq"


@dataclass(frozen=True)
class Outer(ConfigBase):
    width: int = 64
    lr: float = 3e-4
    mode: Literal["v4", "dense"] = "v4"
    prune: bool = True
    capacity: float | None = 0.7
    inner: Inner = field(default_factory=Inner)

    def __post_init__(self):
        check_positive("Outer", width=self.width, lr=self.lr)
        if self.capacity is not None and not 0 < self.capacity <= 1:
            raise ValueError(f"Outer.capacity must be in (0, 1], got {self.capacity!r}")


def test_round_trip(tmp_path):
    c = Outer(width=32, capacity=None, inner=Inner(levels=(7, 5)))
    assert Outer.from_json(c.to_json()) == c
    c.to_json(tmp_path / "c.json")
    assert Outer.from_json(tmp_path / "c.json") == c


def test_frozen():
    with pytest.raises(FrozenInstanceError):
        Outer().width = 3


def test_unknown_key_is_an_error():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['widht'\]"):
        Outer.from_dict({"widht": 3})
    with pytest.raises(ValueError, match="unknown key"):
        Outer.from_dict({"inner": {"levls": [8]}})


@pytest.mark.parametrize(
    "data, match",
    [
        ({"width": "64"}, "Outer.width: expected an int"),
        ({"width": 64.0}, "Outer.width: expected an int"),
        ({"width": True}, "Outer.width: expected an int"),
        ({"lr": "fast"}, "Outer.lr: expected a float"),
        ({"mode": "sparse"}, r"Outer.mode: expected one of \['v4', 'dense'\]"),
        ({"inner": {"levels": [8, "5"]}}, "Inner.levels"),
        ({"prune": 1}, "Outer.prune: expected a bool"),
    ],
)
def test_wrong_type_names_the_field(data, match):
    with pytest.raises((TypeError, ValueError), match=match):
        Outer.from_dict(data)


def test_post_init_names_the_bad_value():
    with pytest.raises(ValueError, match=r"Outer.width must be > 0, got -1"):
        Outer(width=-1)
    with pytest.raises(ValueError, match=r"capacity must be in \(0, 1\], got 1.5"):
        Outer.from_dict({"capacity": 1.5})


def test_bad_json_text():
    with pytest.raises(ValueError, match="not valid JSON"):
        Outer.from_json("{not json")
    with pytest.raises(ValueError, match="expected JSON text or a file"):
        Outer.from_json("/no/such/file.json")
