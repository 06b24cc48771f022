"""Dataset generation speed against the bare MuJoCo step-and-render rate, measured in the same run.

For each scene: the bare rate (the scripted policy acting, step, render: one process, nothing else),
then `worldsim data generate` with the same policy and 1 and 2 workers (adding bookkeeping, HDF5 with
lzf, the manifest). "per worker" is frames / worker-seconds spent on shards (writing included,
process start-up excluded); "wall" is frames / elapsed time of the whole command, start-up included.
Target: generation per worker >= 90% of the bare rate. Rates are medians over --repeats runs.

    python benchmarks/datagen.py [--scenes Reacher-v5 bounce] [--frames 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time

from worldsim.envs import list_scenes, make_scene
from worldsim.envs.dataset import GenerateSpec, generate
from worldsim.envs.policies import make_policy

POLICY = "scripted"  # keeps the pendulum up, so episodes are long in both measurements


def bare_rate(scene_name: str, frames: int) -> float:
    with make_scene(scene_name) as s:
        steps = min(s.max_episode_steps, 100)
        policy = make_policy(POLICY)
        s.reset(seed=0)
        policy.reset(s, 0)
        s.render()
        t0 = time.perf_counter()
        t = 0
        for i in range(frames):
            r = s.step(policy.act(s))
            s.render()
            t += 1
            if r.terminated or t == steps:
                s.reset(seed=i)
                policy.reset(s, i)
                s.render()
                t = 0
        return frames / (time.perf_counter() - t0)


def generate_rate(scene_name: str, frames: int, workers: int) -> tuple[float, float]:
    with make_scene(scene_name) as s:
        steps = min(s.max_episode_steps, 100)
    # The smooth policy keeps the pendulum up long enough to make whole episodes.
    episodes = max(2 * workers, round(frames / (steps + 1)))
    out = tempfile.mkdtemp(prefix="wsbench-")
    try:
        spec = GenerateSpec(scene=scene_name, out=f"{out}/ds", episodes=episodes, policy=POLICY, seed=0,
                            workers=workers, shard_size=max(1, episodes // (2 * workers)), max_steps=steps)
        t0 = time.perf_counter()
        m = generate(spec, progress_bar=False)
        wall = m["stats"]["frames"] / (time.perf_counter() - t0)
        per_worker = m["stats"]["frames"] / sum(r["seconds"] for r in m["shards"].values())
        return per_worker, wall
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", nargs="+", default=list_scenes())
    p.add_argument("--frames", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    print(f"{'scene':<21}{'bare fps':>9}{'1w per-worker':>14}{'/bare':>7}{'1w wall':>9}"
          f"{'2w per-worker':>14}{'/bare':>7}{'2w wall':>9}")
    for name in args.scenes:
        bare = statistics.median(bare_rate(name, args.frames) for _ in range(args.repeats))
        r1 = [generate_rate(name, args.frames, 1) for _ in range(args.repeats)]
        r2 = [generate_rate(name, args.frames, 2) for _ in range(args.repeats)]
        p1, w1 = statistics.median(r[0] for r in r1), statistics.median(r[1] for r in r1)
        p2, w2 = statistics.median(r[0] for r in r2), statistics.median(r[1] for r in r2)
        print(f"{name:<21}{bare:>9.0f}{p1:>14.0f}{p1 / bare:>7.2f}{w1:>9.0f}{p2:>14.0f}{p2 / bare:>7.2f}{w2:>9.0f}",
              flush=True)


if __name__ == "__main__":
    main()
