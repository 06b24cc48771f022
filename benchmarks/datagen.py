"""Dataset generation speed against the bare MuJoCo step-and-render rate, measured in the same run.

For each scene: the bare rate (step with random actions + render, one process, nothing else), then
`worldsim data generate` with 1 and with 2 workers (policy, bookkeeping, HDF5 with lzf, manifest).
Target: generation per worker >= 90% of the bare rate. Rates are medians over --repeats runs.

    python benchmarks/datagen.py [--scenes Reacher-v5 bounce] [--frames 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time

import numpy as np

from worldsim.envs import list_scenes, make_scene
from worldsim.envs.dataset import GenerateSpec, generate


def bare_rate(scene_name: str, frames: int) -> float:
    with make_scene(scene_name) as s:
        s.reset(seed=0)
        rng = np.random.default_rng(0)
        s.render()
        t0 = time.perf_counter()
        for _ in range(frames):
            r = s.step(rng.uniform(s.action_space.low, s.action_space.high))
            s.render()
            if r.terminated:
                s.reset()
        return frames / (time.perf_counter() - t0)


def generate_rate(scene_name: str, frames: int, workers: int) -> float:
    with make_scene(scene_name) as s:
        steps = min(s.max_episode_steps, 100)
    # The smooth policy keeps the pendulum up long enough to make whole episodes.
    episodes = max(2 * workers, round(frames / (steps + 1)))
    out = tempfile.mkdtemp(prefix="wsbench-")
    try:
        spec = GenerateSpec(scene=scene_name, out=f"{out}/ds", episodes=episodes, policy="random", seed=0,
                            workers=workers, shard_size=max(1, episodes // (2 * workers)), max_steps=steps)
        t0 = time.perf_counter()
        m = generate(spec, progress_bar=False)
        return m["stats"]["frames"] / (time.perf_counter() - t0)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", nargs="+", default=list_scenes())
    p.add_argument("--frames", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    print(f"{'scene':<22}{'bare fps':>10}{'gen 1w fps':>12}{'1w/bare':>9}{'gen 2w fps':>12}{'2w/(2*bare)':>13}")
    for name in args.scenes:
        bare = statistics.median(bare_rate(name, args.frames) for _ in range(args.repeats))
        g1 = statistics.median(generate_rate(name, args.frames, 1) for _ in range(args.repeats))
        g2 = statistics.median(generate_rate(name, args.frames, 2) for _ in range(args.repeats))
        print(f"{name:<22}{bare:>10.0f}{g1:>12.0f}{g1 / bare:>9.2f}{g2:>12.0f}{g2 / (2 * bare):>13.2f}", flush=True)


if __name__ == "__main__":
    main()
