"""Does the transformer carry a world's rollout? Scramble its attention and MoE weights and compare a
state-observation rollout of `DSV4World-v0` with the intact world's.

    python benchmarks/backbone_check.py [--scenes Reacher-v5 InvertedPendulum-v5 bounce] [--steps 40]

For each world it prints the largest difference of observations and of rewards over the rollout
(same seed, same random actions, temperature 0). Zero means the transformer's output never reaches
what the env returns: the step function is the side models alone.
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import worldsim  # noqa: E402,F401  (registers DSV4World-v0)
from worldsim.model import WorldModel  # noqa: E402


def rollout(scene: str, checkpoint: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    env = gym.make("DSV4World-v0", scene=scene, checkpoint=checkpoint, obs_type="state", temperature=0.0,
                   max_episode_steps=steps)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    low, high = env.action_space.low, env.action_space.high
    observations, rewards = [obs], []
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(rng.uniform(low, high).astype(np.float32))
        observations.append(obs), rewards.append(reward)
        if terminated or truncated:
            break
    env.close()
    return np.stack(observations), np.asarray(rewards)


def scrambled_copy(scene: str, out: str) -> str:
    wm = WorldModel.from_pretrained(scene).float()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in wm.dynamics.named_parameters():
            if ".attn." in name or ".ffn." in name:
                p.copy_(torch.randn(p.shape, generator=g) * p.std().clamp_min(1e-3))
    wm.save(out)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenes", nargs="+", default=["Reacher-v5", "InvertedPendulum-v5", "bounce"])
    p.add_argument("--steps", type=int, default=40)
    args = p.parse_args()
    torch.set_num_threads(1)
    print(f"{'scene':<22}{'steps':>6}{'max |obs diff|':>16}{'max |reward diff|':>19}  transformer on the step path")
    for scene in args.scenes:
        with tempfile.TemporaryDirectory() as tmp:
            obs_a, rew_a = rollout(scene, scene, args.steps)
            obs_b, rew_b = rollout(scene, scrambled_copy(scene, os.path.join(tmp, "scrambled")), args.steps)
        n = min(len(rew_a), len(rew_b))
        d_obs = float(np.abs(obs_a[: n + 1] - obs_b[: n + 1]).max())
        d_rew = float(np.abs(rew_a[:n] - rew_b[:n]).max())
        carried = "yes" if d_obs > 0 or d_rew > 0 or len(rew_a) != len(rew_b) else "no"
        print(f"{scene:<22}{n:>6}{d_obs:>16.3g}{d_rew:>19.3g}  {carried}")


if __name__ == "__main__":
    main()
