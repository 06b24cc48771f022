"""Tokenizer encode + decode throughput at batch 64, beside the MuJoCo render rate it replaces.

    python benchmarks/tokenizer.py [--checkpoint Reacher-v5] [--repeats 10] [--device auto]

Prints frames/s (median of --repeats) for encode, decode, and the round trip on batches of 64 real
Reacher frames, and MuJoCo's own step + render rate for the same scene in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from worldsim.core.runtime import resolve_device
from worldsim.envs import make_scene
from worldsim.model.tokenizer import Tokenizer


def median_rate(fn, n: int, repeats: int, sync) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return n / statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="Reacher-v5")
    p.add_argument("--scene", default="Reacher-v5")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    dev = resolve_device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    tok = Tokenizer.from_pretrained(args.checkpoint, device=dev)

    with make_scene(args.scene) as scene:
        scene.reset(seed=0)
        rng = np.random.default_rng(0)
        frames = []
        for _ in range(args.batch):
            scene.step(rng.uniform(scene.action_space.low, scene.action_space.high))
            frames.append(scene.render())

        def mujoco_steps() -> None:
            for _ in range(args.batch):
                scene.step(rng.uniform(scene.action_space.low, scene.action_space.high))
                scene.render()

        mj = median_rate(mujoco_steps, args.batch, max(3, args.repeats // 3), lambda: None)
    x = torch.from_numpy(np.stack(frames)).to(dev)
    codes = tok.encode(x)
    enc = median_rate(lambda: tok.encode(x), args.batch, args.repeats, sync)
    dec = median_rate(lambda: tok.decode(codes), args.batch, args.repeats, sync)
    both = median_rate(lambda: tok.decode(tok.encode(x)), args.batch, args.repeats, sync)
    print(f"device {dev}, batch {args.batch}, torch threads {torch.get_num_threads()}")
    print(f"{'what':<36}{'frames/s':>10}")
    print(f"{'encode':<36}{enc:>10.0f}")
    print(f"{'decode':<36}{dec:>10.0f}")
    print(f"{'encode + decode':<36}{both:>10.0f}")
    print(f"{'MuJoCo step + render (' + args.scene + ')':<36}{mj:>10.0f}")


if __name__ == "__main__":
    main()
