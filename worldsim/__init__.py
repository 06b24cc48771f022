"""worldsim: a learned world-model simulator for robotics and RL.

Importing `worldsim` is cheap; the subpackages (`worldsim.envs`, `worldsim.model`, ...) load on use.
"""

from worldsim._version import __version__
from worldsim.runtime import resolve_device, seed_everything

__all__ = ["__version__", "resolve_device", "seed_everything"]
