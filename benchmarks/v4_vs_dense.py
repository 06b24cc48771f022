"""V4 against dense, side by side, on held-out episodes.

    python benchmarks/v4_vs_dense.py --data data/reacher --models v4=runs/reacher-v4 dense=runs/reacher-dense \
        [nobias=runs/reacher-v4-nobias] [--heldout data/reacher-heldout] [--episodes 32] [--horizon 50]

For each model: FLOPs per environment step (KV-cached, full window, counted), parameters (total and
active), one-step next-frame token accuracy and state nRMSE (teacher-forced, every window of the
held-out episodes), the open-loop state nRMSE after `--horizon` steps (context: the first frame
only, then the recorded actions), and the MoE load over every held-out window (MaxVio of the worst
layer, min load, dead experts), and the rollout rate: batch-`--batch` KV-cached steps per second with
frames (pixel observations) and without (state observations), medians of 3 timed runs in this
process. The held-out episodes are `--heldout` (a dataset generated with a
seed training never used), or else the last 10% of `--data`, which training never saw.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from worldsim.envs.loader import EpisodeDataset, WindowSampler, split_episodes
from worldsim.envs.manifest import read_manifest
from worldsim.model.stats import world_model_info
from worldsim.model.world_model import WorldModel
from worldsim.train.dynamics import DynamicsTrainConfig, encode_dataset, evaluate_batches


def one_step(wm: WorldModel, data: EpisodeDataset, batch: int = 64) -> dict[str, float]:
    """Teacher-forced figures and the MoE load over every window of `data`, through the trainer's own
    held-out evaluation."""
    cfg = DynamicsTrainConfig(batch_size=batch)
    sampler = WindowSampler(data, T=wm.cfg.dynamics.context + 1, seed=0, keys=("codes",))
    n = sampler.num_windows
    v = evaluate_batches(wm, (sampler.windows(np.arange(i, min(i + batch, n))) for i in range(0, n, batch)), cfg)
    out = {"token_acc_1step": v["val_token_acc"], "state_nrmse_1step": float(np.sqrt(v["val_state_mse"])),
           "windows": n}
    for k in ("maxvio", "min_load", "dead_experts"):
        if f"val_{k}" in v:
            out[k] = v[f"val_{k}"]
    return out


@torch.no_grad()
def open_loop(wm: WorldModel, data: EpisodeDataset, horizon: int, episodes: int) -> dict[str, float]:
    """nRMSE of the state after `horizon` open-loop steps from each episode's first frame."""
    eps = [i for i in range(len(data)) if data.lengths[i] > horizon][:episodes]
    if not eps:
        raise ValueError(f"no held-out episode is longer than {horizon} steps")
    std = torch.from_numpy(np.maximum(data.state_std, 1e-3))
    codes = torch.stack([torch.from_numpy(data.episode(i)["codes"][: horizon + 1].astype(np.int64)) for i in eps])
    states = torch.stack([torch.from_numpy(data.episode(i)["states"][: horizon + 1]).float() for i in eps])
    actions = torch.stack([torch.from_numpy(data.episode(i)["actions"][:horizon]).float() for i in eps])
    g = wm.cfg.dynamics.grid
    h = wm.start(codes[:, :1].view(len(eps), 1, g, g), states[:, :1])
    errs = []
    for t in range(horizon):
        _, s, _, _ = wm.step(h, actions[:, t])
        errs.append((((s.cpu() - states[:, t + 1]) / std) ** 2).mean(-1).sqrt())
    errs = torch.stack(errs, 1)  # [E, H]
    return {f"state_nrmse_{horizon}step": float(errs[:, -1].mean()),
            f"state_nrmse_mean_1_{horizon}": float(errs.mean()), "open_loop_episodes": len(eps)}


@torch.no_grad()
def rollout_rate(wm: WorldModel, data: EpisodeDataset, batch: int, frames: bool, steps: int = 20,
                 repeats: int = 3) -> float:
    """Median steps per second of `batch` open-loop rollouts from the first episode's first step
    (with or without frames), under its recorded actions."""
    ep = data.episode(0)
    g = wm.cfg.dynamics.grid
    codes = torch.from_numpy(ep["codes"][:1].astype(np.int64)).view(1, 1, g, g).expand(batch, 1, g, g)
    state = torch.from_numpy(ep["states"][:1]).float()[None].expand(batch, 1, -1)
    actions = torch.from_numpy(ep["actions"][:steps]).float()
    rates = []
    for _ in range(repeats + 1):  # the first run warms up
        h = wm.start(codes if frames else None, state)
        t0 = time.perf_counter()
        for t in range(steps):
            wm.step(h, actions[t % len(actions)].expand(batch, -1))
        rates.append(steps / (time.perf_counter() - t0))
    return statistics.median(rates[1:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--models", nargs="+", required=True, help="name=checkpoint pairs")
    p.add_argument("--heldout", default=None,
                   help="a dataset of fresh episodes to evaluate on (default: the last 10%% of --data)")
    p.add_argument("--episodes", type=int, default=32, help="open-loop episodes")
    p.add_argument("--horizon", type=int, default=50)
    p.add_argument("--batch", type=int, default=64, help="rollouts stepped together for the rollout rate")
    args = p.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    torch.manual_seed(0)
    if args.heldout:
        data = EpisodeDataset(args.heldout)
        if read_manifest(args.heldout)["scene"] != read_manifest(args.data)["scene"]:
            raise ValueError(f"--heldout {args.heldout} holds another scene than --data {args.data}")
    else:
        _, val_ep = split_episodes(read_manifest(args.data)["episodes"], 0.1)
        data = EpisodeDataset(args.data, val_ep)
    rows = {}
    for spec in args.models:
        name, path = spec.split("=", 1)
        wm = WorldModel.from_pretrained(path)
        if "codes" not in data.arrays:
            data.add_array("codes", encode_dataset(data, wm.tokenizer))
        info = world_model_info(wm)
        rows[name] = {"flops_per_step": info["flops_per_step"], "params_total": info["params_total"],
                      "params_active": info["params_active"], **one_step(wm, data),
                      **open_loop(wm, data, args.horizon, args.episodes),
                      f"steps_per_s_b{args.batch}_frames": rollout_rate(wm, data, args.batch, True),
                      f"steps_per_s_b{args.batch}_no_frames": rollout_rate(wm, data, args.batch, False)}
    names = list(rows)
    keys = list(rows[names[0]])
    print(f"held-out episodes: {args.heldout or args.data + ' (last 10%)'} ({len(data)} episodes)")
    print(f"{'metric':<26}" + "".join(f"{n:>16}" for n in names))
    for k in keys:
        cells = []
        for n in names:
            v = rows[n].get(k)
            cells.append(f"{'-':>16}" if v is None else f"{v:>16.4g}" if isinstance(v, float) else f"{v:>16}")
        print(f"{k:<26}" + "".join(cells))
    if "dense" in rows:
        base = rows["dense"]
        for n in names:
            if n == "dense":
                continue
            r = rows[n]
            key = f"state_nrmse_{args.horizon}step"
            rate = f"steps_per_s_b{args.batch}_frames"
            print(f"{n} vs dense: {1 - r['flops_per_step'] / base['flops_per_step']:.1%} fewer FLOPs per step; "
                  f"{r[rate] / base[rate]:.2f}x the batch-{args.batch} rollout steps/s with frames; "
                  f"{args.horizon}-step state nRMSE {r[key] / base[key] - 1:+.1%}")


if __name__ == "__main__":
    main()
