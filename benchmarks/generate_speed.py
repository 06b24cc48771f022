"""Wall time of one generated clip against the clip's own length and MuJoCo making the same clip.

    python benchmarks/generate_speed.py [--scene bounce] [--checkpoint DIR] [--seconds 10] [--repeats 3]
        [--threads 2] [--prompt "..."] [--candidates 16]

A row times, at batch 1 on `--threads` torch threads: the start (the prompt's tokens, the sampled
state, the first frame, and, where the prompt says what a ball hits first, the choice among
`--candidates` starts by their rollouts in the world; beside it the start with no choice), the
rollout (`seconds / dt` framed steps under zero actions), and decoding every frame, as `worldsim
generate` does before writing the video; beside it MuJoCo simulating and rendering the same clip from
the same generated start. The target is real time: a 10-second clip in under 10 s. Medians of
`--repeats` runs after one warm-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from worldsim.envs import make_scene  # noqa: E402
from worldsim.envs.captions import start_guides  # noqa: E402
from worldsim.envs.world_batch import load_world_model  # noqa: E402

PROMPT = "The red ball starts high on the left, moving right. The blue ball hits the floor first."


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scene", default="bounce")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompt", default=PROMPT)
    p.add_argument("--candidates", type=int, default=16)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    wm = load_world_model(args.scene, args.checkpoint, "cpu")
    scene = make_scene(args.scene, width=wm.cfg.tokenizer.image_size, height=wm.cfg.tokenizer.image_size)
    steps = int(np.ceil(args.seconds / scene.dt - 1e-9))
    first = "start, the first sampled (no choice by rollout)"
    rows: dict[str, list[float]] = {"start (prompt -> state, first frame)": [], first: [], "rollout (framed steps)": [],
                                    "decode every frame": [], "world total": [], "MuJoCo: simulate and render": []}
    for r in range(args.repeats + 1):
        t0 = time.perf_counter()
        clips = wm.generate(args.prompt, samples=1, steps=steps, seed=r, candidates=args.candidates,
                            **start_guides(scene))
        t1 = time.perf_counter()
        wm.decode(clips.tokens)
        t2 = time.perf_counter()
        s0 = clips.states[0, 0].double().numpy()
        t3 = time.perf_counter()
        scene.reset(seed=0, physics_state=scene.physics_from_state(s0))
        scene.render()
        zero = np.zeros(scene.action_space.shape)
        for _ in range(steps):
            scene.step(zero)
            scene.render()
        t4 = time.perf_counter()
        if r == 0:
            continue  # warm-up
        rows["start (prompt -> state, first frame)"].append(clips.seconds["prompt"])
        rows[first].append(wm.generate(args.prompt, samples=1, steps=0, seed=r, candidates=1,
                                       **start_guides(scene)).seconds["prompt"])
        rows["rollout (framed steps)"].append(clips.seconds["rollout"])
        rows["decode every frame"].append(t2 - t1)
        rows["world total"].append(t2 - t0)
        rows["MuJoCo: simulate and render"].append(t4 - t3)
    print(f"{args.scene}: one {args.seconds:g}-second clip ({steps} steps of {scene.dt:.4g} s), batch 1, "
          f"{args.threads} torch thread(s), median of {args.repeats}")
    print(f"| {'part':<48} | seconds | x real time ({args.seconds:g} s) |")
    print(f"|{'-' * 50}|--------:|-------------------:|")
    for name, ts in rows.items():
        med = statistics.median(ts)
        print(f"| {name:<48} | {med:7.2f} | {med / args.seconds:18.2f} |")


if __name__ == "__main__":
    main()
