"""The scene registry, built from the scene classes: `list_scenes()`, `make_scene(name, ...)`."""

from __future__ import annotations

from typing import Any

from worldsim.envs.bounce import BounceScene
from worldsim.envs.pendulum import InvertedPendulumScene
from worldsim.envs.pusher import PusherScene
from worldsim.envs.reacher import ReacherScene
from worldsim.envs.scene import Scene

_SCENES: dict[str, type[Scene]] = {cls.name: cls for cls in
                                   (InvertedPendulumScene, ReacherScene, PusherScene, BounceScene)}

SCENE_DESCRIPTIONS = {name: cls.description for name, cls in _SCENES.items()}


def list_scenes() -> list[str]:
    """Names of all registered scenes."""
    return list(_SCENES)


def scene_class(name: str) -> type[Scene]:
    """The class of scene `name`, for what it knows without being built (body read-out, options).

    Raises:
        ValueError: for an unknown name (the message lists the known ones).
    """
    if name not in _SCENES:
        raise ValueError(f"unknown scene {name!r}; known scenes: {', '.join(_SCENES)}")
    return _SCENES[name]


def make_scene(name: str, width: int = 64, height: int = 64, **kwargs: Any) -> Scene:
    """Build a scene by name.

    Args:
        name: one of `list_scenes()`.
        width, height: frame size, positive multiples of 16.
        **kwargs: scene options (e.g. `n_balls` for `bounce`).

    Raises:
        ValueError: for an unknown name (the message lists the known ones) or a bad option.
    """
    cls = scene_class(name)
    try:
        return cls(width=width, height=height, **kwargs)
    except TypeError as exc:
        raise ValueError(f"bad options for scene {name!r}: {exc}") from exc
