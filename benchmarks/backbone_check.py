"""Does the transformer carry a world's rollout? Scramble its attention and MoE weights and compare a
state-observation rollout of `DSV4World-v0` with the intact world's.

    python benchmarks/backbone_check.py [--scenes Reacher-v5 InvertedPendulum-v5 bounce] [--steps 40]

For each world it prints the largest difference of observations and of rewards over the rollout
(same seed, same random actions, temperature 0). Zero would mean the transformer's output never
reaches what the env returns (the step function would be side models alone, as in the `mlp`
baselines' state: `--checkpoints worldsim:mlp-reacher ...` shows it).
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


def scrambled_copy(checkpoint: str, out: str) -> str:
    wm = WorldModel.from_pretrained(checkpoint).float()
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
    p.add_argument("--checkpoints", nargs="+", default=None,
                   help="one world per scene (a directory or worldsim:NAME; default: each scene's shipped world)")
    p.add_argument("--steps", type=int, default=40)
    args = p.parse_args()
    checkpoints = args.checkpoints or args.scenes
    if len(checkpoints) != len(args.scenes):
        raise SystemExit(f"--checkpoints needs one entry per scene ({len(args.scenes)}), got {len(checkpoints)}")
    torch.set_num_threads(1)
    print(f"{'scene':<22}{'world':<24}{'steps':>6}{'max |obs diff|':>16}{'max |reward diff|':>19}"
          "  transformer on the step path")
    for scene, ckpt in zip(args.scenes, checkpoints):
        with tempfile.TemporaryDirectory() as tmp:
            obs_a, rew_a = rollout(scene, ckpt, args.steps)
            obs_b, rew_b = rollout(scene, scrambled_copy(ckpt, os.path.join(tmp, "scrambled")), args.steps)
        n = min(len(rew_a), len(rew_b))
        d_obs = float(np.abs(obs_a[: n + 1] - obs_b[: n + 1]).max())
        d_rew = float(np.abs(rew_a[:n] - rew_b[:n]).max())
        carried = "yes" if d_obs > 0 or d_rew > 0 or len(rew_a) != len(rew_b) else "no"
        print(f"{scene:<22}{ckpt:<24}{n:>6}{d_obs:>16.3g}{d_rew:>19.3g}  {carried}")


if __name__ == "__main__":
    main()
