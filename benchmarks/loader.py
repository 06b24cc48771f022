"""Training-window loader speed against the training step it feeds, measured in the same run.

Loads a dataset, then times (median over --repeats) `WindowSampler.sample(B)` for windows of T frames
beside one tokenizer training step on the same number of frames (the cheapest model step that
consumes them). "Training never waits" means the loader's share of a step is small.

    python benchmarks/loader.py --data data/reacher [--batch 8] [--T 16] [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from worldsim.envs.loader import EpisodeDataset, WindowSampler
from worldsim.model.tokenizer import Tokenizer


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--T", type=int, default=16)
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args()

    t0 = time.perf_counter()
    data = EpisodeDataset(args.data)
    load_s = time.perf_counter() - t0
    sampler = WindowSampler(data, T=args.T, seed=0)
    n = args.batch * args.T
    loader_s = median_time(lambda: sampler.sample(args.batch), args.repeats)

    model = Tokenizer()
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    frames = sampler.sample(args.batch)["frames"].reshape(n, *data.arrays["frames"].shape[1:])

    def train_step() -> None:
        loss, _ = model(frames)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step_s = median_time(train_step, max(3, args.repeats // 4))
    print(f"dataset {args.data}: {len(data)} episodes, {data.num_frames} frames, loaded and verified in {load_s:.1f} s")
    print(f"{'what':<40}{'median ms':>11}{'frames/s':>12}")
    print(f"{f'sample {args.batch} windows x {args.T} frames':<40}{loader_s * 1e3:>11.2f}{n / loader_s:>12.0f}")
    print(f"{f'tokenizer train step on {n} frames':<40}{step_s * 1e3:>11.2f}{n / step_s:>12.0f}")
    print(f"loader time / step time: {loader_s / step_s:.4f}")


if __name__ == "__main__":
    main()
