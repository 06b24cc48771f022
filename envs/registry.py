"""The scene registry: `list_scenes()` and `make_scene(name, ...)`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from worldsim.envs.bounce import BounceScene
from worldsim.envs.gym_scenes import InvertedPendulumScene, PusherScene, ReacherScene
from worldsim.envs.scene import Scene

_SCENES: dict[str, Callable[..., Scene]] = {
    "InvertedPendulum-v5": InvertedPendulumScene,
    "Reacher-v5": ReacherScene,
    "Pusher-v5": PusherScene,
    "bounce": BounceScene,
}

SCENE_DESCRIPTIONS = {
    "InvertedPendulum-v5": "Gymnasium's cart-pole balancing task (side view)",
    "Reacher-v5": "Gymnasium's two-link arm reaching a target (top view)",
    "Pusher-v5": "Gymnasium's 7-DoF arm pushing a puck to a goal (top view)",
    "bounce": "1-3 balls bouncing in a walled box under gravity (ours, MJCF)",
}


def list_scenes() -> list[str]:
    """Names of all registered scenes."""
    return list(_SCENES)


def make_scene(name: str, width: int = 64, height: int = 64, **kwargs: Any) -> Scene:
    """Build a scene by name.

    Args:
        name: one of `list_scenes()`.
        width, height: frame size, positive multiples of 16.
        **kwargs: scene options (e.g. `n_balls` for `bounce`).

    Raises:
        ValueError: for an unknown name (the message lists the known ones) or a bad option.
    """
    if name not in _SCENES:
        raise ValueError(f"unknown scene {name!r}; known scenes: {', '.join(_SCENES)}")
    try:
        return _SCENES[name](width=width, height=height, **kwargs)
    except TypeError as exc:
        raise ValueError(f"bad options for scene {name!r}: {exc}") from exc
