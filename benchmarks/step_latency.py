"""Per-step latency of one `gym.make("DSV4World-v0")` env: median, 99th percentile and worst step, for
each thread count asked for (the env's own choice first: one thread at batch 1).

    python benchmarks/step_latency.py --obs-type state --steps 400 --threads 2

Run it on a loaded machine (e.g. beside a training job) to see what a second thread costs there: its
waiting threads are descheduled by the other work, and a step stalls until they are back.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import worldsim  # noqa: E402,F401


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scene", default="Reacher-v5")
    p.add_argument("--obs-type", default="state", choices=("state", "pixels"))
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--threads", type=int, nargs="*", default=[2], help="num_threads values beside the default")
    args = p.parse_args()
    print(f"# {args.scene}, obs {args.obs_type}, {args.steps} steps, torch {torch.__version__}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"{'num_threads':>12} {'median ms':>10} {'p99 ms':>8} {'worst ms':>9}")
    for n in [None, *args.threads]:
        env = gym.make("DSV4World-v0", scene=args.scene, obs_type=args.obs_type, max_episode_steps=10**9,
                       num_threads=n)
        env.reset(seed=0)
        action = np.zeros(env.action_space.shape)
        env.step(action)
        times = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            env.step(action)
            times.append(time.perf_counter() - t0)
        env.close()
        ms = 1e3 * np.array(times)
        label = "default (1)" if n is None else str(n)
        print(f"{label:>12} {np.median(ms):>10.1f} {np.percentile(ms, 99):>8.1f} {ms.max():>9.1f}", flush=True)


if __name__ == "__main__":
    main()
