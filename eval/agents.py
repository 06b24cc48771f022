"""Saved Stable-Baselines3 agents as policies: `PPO.save(...)`'s .zip, acting deterministically.

An agent saved by `examples/train_in_world.py` sits beside a `settings.json` naming its algorithm and
scene, so `load_agent(path)` needs nothing else; any other SB3 .zip loads with its algorithm named.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from worldsim.core.extras import MissingExtra

SB3_ALGOS = ("ppo", "sac", "td3", "a2c")
SETTINGS = "settings.json"


def sb3_policy(algo: str, path: str | Path) -> Callable[[np.ndarray], np.ndarray]:
    """A saved Stable-Baselines3 agent (`PPO.save(...)`'s .zip) as a batched policy, acting deterministically.

    Raises:
        ValueError: for an unknown algorithm or a path that is not a file.
        MissingExtra: without stable-baselines3 (the `rl` extra).
    """
    if algo not in SB3_ALGOS:
        raise ValueError(f"unknown agent algorithm {algo!r}; known: {', '.join(SB3_ALGOS)}")
    if not Path(path).is_file():
        raise ValueError(f"agent {str(path)!r} is not a file (expected an SB3 .zip)")
    try:
        import stable_baselines3  # optional dependency: the `rl` extra
    except ImportError as exc:
        raise MissingExtra("SB3 agents", "stable-baselines3", "rl") from exc
    model = getattr(stable_baselines3, algo.upper()).load(str(path), device="cpu")
    return lambda obs: model.predict(np.asarray(obs, dtype=np.float32), deterministic=True)[0]


def agent_settings(path: str | Path) -> dict[str, Any]:
    """The `settings.json` beside a saved agent (its algorithm, scene and training settings); {} without one.

    Raises:
        ValueError: for a settings file that is not a JSON object.
    """
    file = Path(path).parent / SETTINGS
    if not file.is_file():
        return {}
    try:
        settings = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{file} is not JSON: {exc}") from exc
    if not isinstance(settings, dict):
        raise ValueError(f"{file} must hold a JSON object, got {type(settings).__name__}")
    return settings


def load_agent(path: str | Path, algo: str | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A saved agent as a policy; `algo` defaults to the one its `settings.json` names.

    Raises:
        ValueError: when neither `algo` nor a settings file names the algorithm, or as `sb3_policy`.
    """
    algo = algo or agent_settings(path).get("algo")
    if algo is None:
        raise ValueError(f"no {SETTINGS} beside {str(path)!r} names the agent's algorithm; name it "
                         f"({', '.join(SB3_ALGOS)})")
    return sb3_policy(algo, path)
