"""Saved Stable-Baselines3 agents as policies: `PPO.save(...)`'s .zip, acting deterministically.

An agent saved by `examples/train_in_world.py` sits beside a `settings.json` naming its algorithm and
scene, so `load_agent(path)` needs nothing else; any other SB3 .zip loads with its algorithm named.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from worldsim.core.extras import MissingExtra
from worldsim.envs import list_scenes, make_scene

SB3_ALGOS = ("ppo", "sac", "td3", "a2c")
SETTINGS = "settings.json"
# Keys of an SB3 .zip's `data` record that only one algorithm saves (A2C: a rollout algorithm without PPO's clip).
_ALGO_KEYS = (("clip_range", "ppo"), ("target_entropy", "sac"), ("policy_delay", "td3"), ("gae_lambda", "a2c"))


def saved_algorithm(path: str | Path) -> str | None:
    """The algorithm an SB3 .zip was saved by, read from its `data` record; None when the record does
    not say.

    Raises:
        ValueError: when `path` is not a zip archive holding SB3's `data` record.
    """
    try:
        with zipfile.ZipFile(path) as z:
            data = json.loads(z.read("data"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"agent {str(path)!r} is not an SB3 .zip (a save of PPO, SAC, ...): {exc}") from None
    return next((algo for key, algo in _ALGO_KEYS if isinstance(data, dict) and key in data), None)


def _scene_shapes(scene: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(observation shape, action shape) of a scene's state observations."""
    with make_scene(scene) as s:
        return (s.state_dim,), tuple(s.action_space.shape)


def check_agent_fits(model: Any, path: str | Path, scene: str, trained_on: str | None = None) -> None:
    """Refuse an agent whose observation or action shape is not the scene's, naming the scene it was
    trained on (`trained_on`, from its settings.json) or the scenes it fits.

    Raises:
        ValueError: naming both shapes and the scene.
    """
    obs, act = _scene_shapes(scene)
    got_obs, got_act = tuple(model.observation_space.shape), tuple(model.action_space.shape)
    if (got_obs, got_act) == (obs, act):
        return
    if trained_on is not None:
        hint = f"it was trained on {trained_on!r} (its {SETTINGS})"
    else:
        fits = [name for name in list_scenes() if _scene_shapes(name) == (got_obs, got_act)]
        hint = f"it fits {', '.join(fits)}" if fits else "it fits no worldsim scene"
    raise ValueError(f"agent {str(path)!r} observes shape {got_obs} and acts with shape {got_act}, but scene "
                     f"{scene!r} has observations {obs} and actions {act}: {hint}")


def sb3_policy(algo: str, path: str | Path, scene: str | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A saved Stable-Baselines3 agent (`PPO.save(...)`'s .zip) as a batched policy, acting deterministically.

    Args:
        scene: when given, the agent must observe and act as this scene's state observations do.

    Raises:
        ValueError: for an unknown algorithm, a missing file, a file another algorithm saved, or an
            agent of another scene.
        MissingExtra: without stable-baselines3 (the `rl` extra).
    """
    if algo not in SB3_ALGOS:
        raise ValueError(f"unknown agent algorithm {algo!r}; known: {', '.join(SB3_ALGOS)}")
    path = Path(path)
    if not path.exists():
        raise ValueError(f"agent {str(path)!r}: no such file (expected an SB3 .zip)")
    if not path.is_file():
        raise ValueError(f"agent {str(path)!r} is not a file (expected an SB3 .zip)")
    try:
        import stable_baselines3  # optional dependency: the `rl` extra
    except ImportError as exc:
        raise MissingExtra("SB3 agents", "stable-baselines3", "rl") from exc
    saved = saved_algorithm(path)
    if saved is not None and saved != algo:
        raise ValueError(f"agent {str(path)!r} was saved by {saved.upper()}, not {algo.upper()}: name its algorithm "
                         f"as {saved} (--algo {saved}, or {saved}:PATH as a policy)")
    try:
        model = getattr(stable_baselines3, algo.upper()).load(str(path), device="cpu")
    except Exception as exc:  # noqa: BLE001  (SB3 fails in many ways on a file it did not write for `algo`)
        raise ValueError(f"agent {str(path)!r} does not load as a {algo.upper()} agent "
                         f"({type(exc).__name__}: {exc})") from exc
    if scene is not None:
        check_agent_fits(model, path, scene, agent_settings(path).get("scene"))
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


def load_agent(path: str | Path, algo: str | None = None, scene: str | None = None
               ) -> Callable[[np.ndarray], np.ndarray]:
    """A saved agent as a policy; `algo` defaults to the one its `settings.json` names. With `scene`,
    the agent must fit that scene (`check_agent_fits`).

    Raises:
        ValueError: when neither `algo` nor a settings file names the algorithm, or as `sb3_policy`.
    """
    if not Path(path).exists():
        raise ValueError(f"agent {str(path)!r}: no such file (expected an SB3 .zip)")
    algo = algo or agent_settings(path).get("algo")
    if algo is None:
        raise ValueError(f"no {SETTINGS} beside {str(path)!r} names the agent's algorithm; name it "
                         f"({', '.join(SB3_ALGOS)})")
    return sb3_policy(algo, path, scene)
