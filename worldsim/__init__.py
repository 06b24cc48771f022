"""worldsim: a learned world-model simulator for robotics and RL.

Importing `worldsim` registers `DSV4World-v0` with Gymnasium by entry-point strings, so the model and
the scenes load only when an env is made.
"""

from gymnasium.envs.registration import register, registry

from worldsim._version import __version__
from worldsim.core.runtime import resolve_device, seed_everything

__all__ = ["__version__", "resolve_device", "seed_everything"]


def _register_envs() -> None:
    """Register `DSV4World-v0` with Gymnasium (entry points are strings: nothing heavy is imported)."""
    if "DSV4World-v0" not in registry:
        register(
            id="DSV4World-v0",
            entry_point="worldsim.envs.world_env:DSV4World",
            vector_entry_point="worldsim.envs.world_env:DSV4WorldVector",
        )


_register_envs()
