"""Fidelity of bf16 inference against fp32, per shipped world, on `worldsim eval`'s paired episodes.

    python benchmarks/precision_fidelity.py [--scenes Reacher-v5 InvertedPendulum-v5 bounce Pusher-v5]
        [--episodes 32] [--seed 1000] [--policy scripted]

Each world is scored twice on the same MuJoCo episodes (framed rollouts): in fp32 and after
`WorldModel.set_precision("bf16")`, which runs the frame tokens and the decoder in bf16 and the physics
tokens in fp32, so the state columns must match fp32's exactly and the PSNR column shows what bf16 costs
the frames. The table gives the valid horizon, the state nRMSE at step 50 (or the episode's last step),
its bf16/fp32 ratio, the frame PSNR there, and the seconds each evaluation took (on a CPU without bf16
matrix units bf16 is emulated and slow, so read speed from benchmarks/env_throughput.py on a machine
that has them). The issue's bar: the same valid horizon and the nRMSE within 2% of fp32's.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import torch  # noqa: E402

from worldsim.core.precision import bf16_native  # noqa: E402
from worldsim.eval.harness import EvalConfig, evaluate  # noqa: E402
from worldsim.model import WorldModel  # noqa: E402

HORIZONS = {"Reacher-v5": 50, "InvertedPendulum-v5": 240, "bounce": 240, "Pusher-v5": 100}


def at(by_h: dict, name: str, h: int) -> float:
    """A metric's value at the largest report horizon <= h; NaN when absent."""
    table = {int(k): v for k, v in by_h.get(name, {}).items()}
    keys = [k for k in sorted(table) if k <= h]
    return float("nan") if not keys or table[keys[-1]] is None else float(table[keys[-1]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", nargs="+", default=list(HORIZONS))
    ap.add_argument("--episodes", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--policy", default="scripted")
    args = ap.parse_args()
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    print(f"{args.episodes} episodes, seed {args.seed}, {args.policy} actions, {torch.get_num_threads()} thread(s), "
          f"bf16 matrix units on this CPU: {bf16_native('cpu')}, {time.strftime('%Y-%m-%d')}")
    print("| world | precision | valid horizon | state nRMSE at h | bf16 / fp32 | PSNR at h | eval s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for scene in args.scenes:
        h = HORIZONS.get(scene, 50)
        cfg = EvalConfig(scene=scene, episodes=args.episodes, horizon=h, seed=args.seed, policy=args.policy,
                         perturbation=0.0)
        wm = WorldModel.from_pretrained(scene).eval()
        truth, base = None, None
        for precision in ("fp32", "bf16"):
            wm.set_precision(precision)
            t0 = time.perf_counter()
            result = evaluate(wm, cfg, truth=truth)
            wall = time.perf_counter() - t0
            truth, m = result.truth, result.report["metrics"]
            hh = min(h, result.report["horizon"])
            nrmse = at(m, "state_nrmse", hh)
            base = nrmse if base is None else base
            print(f"| {scene} (h={hh}) | {precision} | {at(m, 'valid_horizon', hh):.1f} | {nrmse:.4f} | "
                  f"{nrmse / base:.3f} | {at(m, 'psnr', hh):.2f} | {wall:.0f} |", flush=True)


if __name__ == "__main__":
    main()
