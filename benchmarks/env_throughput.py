"""Environment steps per second: DSV4World-v0 (state and pixel observations) against the real
Gymnasium env of the same scene rendering 64x64 frames, stepped the same way, in one run.

    python benchmarks/env_throughput.py --scene Reacher-v5 --batches 1 16 64 256

For each batch size N: the world is one `DSV4WorldVector(num_envs=N)` (one batched model call per
step); the real env is `gymnasium.make_vec(scene, N, "sync", render_mode="rgb_array", 64x64)` with a
`render()` after every step, since a pixel policy needs the frame (at most 64 of them: one GL
context each; the sequential loop's rate does not depend on N). Same random actions for both.
Figures are medians over repeats; the ratio is world steps/s over real steps/s at the same N.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

# Before any real env renders: worldsim.envs picks the GL backend and loads Triton ahead of the
# first GL context (Triton segfaults when loaded after Mesa's EGL driver).
import worldsim.envs  # noqa: E402,F401

REAL_MAX = 64


def time_steps(step, reset, n_envs: int, steps: int, repeats: int) -> float:
    """Median env steps per second over `repeats` timed runs of `steps` batched steps."""
    rates = []
    reset()
    step()  # warm-up: allocations, lazy renderers, KV cache growth
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(n_envs * steps / (time.perf_counter() - t0))
    return statistics.median(rates)


def world_rate(scene: str, checkpoint: str | None, n: int, obs_type: str, steps: int, repeats: int) -> float:
    from worldsim.envs.world_env import DSV4WorldVector

    env = DSV4WorldVector(num_envs=n, scene=scene, checkpoint=checkpoint, obs_type=obs_type, device="cpu",
                          max_episode_steps=10**9)
    rng = np.random.default_rng(0)
    space = env.single_action_space
    try:
        return time_steps(lambda: env.step(rng.uniform(space.low, space.high, (n,) + space.shape)),
                          lambda: env.reset(seed=0), n, steps, repeats)
    finally:
        env.close()


def real_rate(scene: str, n: int, steps: int, repeats: int) -> float:
    env = gym.make_vec(scene, num_envs=n, vectorization_mode="sync", render_mode="rgb_array", width=64, height=64)
    rng = np.random.default_rng(0)
    space = env.single_action_space

    def step():
        env.step(rng.uniform(space.low, space.high, (n,) + space.shape))
        frames = env.render()
        assert frames[0].shape == (64, 64, 3)

    try:
        return time_steps(step, lambda: env.reset(seed=0), n, steps, repeats)
    finally:
        env.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scene", default="Reacher-v5", help="a Gymnasium MuJoCo scene with a world model")
    p.add_argument("--checkpoint", default=None, help="world-model checkpoint (default: the shipped one)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64, 256])
    p.add_argument("--steps", type=int, default=20, help="timed batched steps per repeat")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    import worldsim

    print(f"# {args.scene}, worldsim {worldsim.__version__}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch threads, {platform.processor() or platform.machine()}, "
          f"{time.strftime('%Y-%m-%d')}")
    print(f"{'N':>5} {'real env/s':>11} {'world state/s':>14} {'x real':>7} {'world pixels/s':>15} {'x real':>7}")
    for n in args.batches:
        steps = max(3, args.steps if n <= 64 else args.steps // 4)
        # The real envs step one after another, so their rate does not depend on N; past 64 the
        # renderers' GL contexts alone exhaust memory, so N > 64 reuses the rate measured at 64.
        real = real_rate(args.scene, min(n, REAL_MAX), steps, args.repeats)
        st = world_rate(args.scene, args.checkpoint, n, "state", steps, args.repeats)
        px = world_rate(args.scene, args.checkpoint, n, "pixels", steps, args.repeats)
        print(f"{n:>5} {real:>11.0f} {st:>14.0f} {st / real:>7.2f} {px:>15.0f} {px / real:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
