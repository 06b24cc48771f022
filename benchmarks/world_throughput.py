"""Batched world steps per second for each shipped world, with state and with pixel observations, in fp32
and bf16, at thousands of envs: the table `benchmarks/gpu.sh` prints on a CUDA machine.

    python benchmarks/world_throughput.py [--envs 1024 4096 16384] [--worlds Reacher-v5 ...] [--device auto]
        [--precision fp32 bf16] [--steps 20] [--repeats 3] [--budget-s 300]

A row times what a `DSV4WorldVector` step asks of the device for N envs: one KV-cached `WorldModel.step`
(frameless for state observations; framed for pixels, plus decoding every frame), from N starts on
the world's own held states (the statistics' mean, so no MuJoCo reset runs), under random actions in
the scene's action range. Host-side env work (the numpy reward and termination of the predicted state, the
observation copies) is not in it: `benchmarks/env_throughput.py` measures the env whole on a CPU.
Rates are medians of `--repeats` timed runs of `--steps` steps after one warm-up run, with the device
synchronised around each. A row that would push the whole run past `--budget-s` seconds is skipped and
printed as such, so the script ends in time; a size that runs out of memory is reported and skipped.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import torch  # noqa: E402

from worldsim.core.precision import bf16_native  # noqa: E402
from worldsim.core.registry import SHIPPED  # noqa: E402
from worldsim.core.runtime import resolve_device  # noqa: E402
from worldsim.envs import make_scene  # noqa: E402
from worldsim.model.world_model import WorldModel  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def world_rate(wm: WorldModel, n: int, pixels: bool, steps: int, repeats: int, decode: bool = True) -> float:
    """Env steps per second of N rollouts: a `step` per env step, framed for `pixels` (and then, with
    `decode`, a decode of every frame)."""
    cfg, dev = wm.cfg.dynamics, wm.device
    g = torch.Generator(device="cpu").manual_seed(0)
    codes = torch.randint(0, cfg.codebook_size, (n, 1, cfg.grid, cfg.grid), generator=g).to(dev) if pixels else None
    states = wm.state_mean.expand(n, 1, -1).clone()
    scene = make_scene(wm.cfg.scene)
    low, high = (torch.as_tensor(b, dtype=torch.float32) for b in (scene.action_space.low, scene.action_space.high))
    scene.close()
    actions = (torch.rand(steps, n, cfg.action_dim, generator=g) * (high - low) + low).to(dev)
    rates = []
    for _ in range(repeats + 1):  # the first run warms up (allocations, kernel compilation)
        h = wm.start(codes, states)
        sync(dev)
        t0 = time.perf_counter()
        for t in range(steps):
            tokens, _, _, _ = wm.step(h, actions[t])
            if pixels and decode:
                wm.decode(tokens)
        sync(dev)
        rates.append(n * steps / (time.perf_counter() - t0))
    return statistics.median(rates[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--envs", type=int, nargs="+", default=[1024, 4096, 16384])
    ap.add_argument("--worlds", nargs="+", default=None, help="shipped worlds by scene (default: all)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", nargs="+", choices=("fp32", "bf16"), default=None,
                    help="default: fp32, and bf16 where the device computes it natively")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget-s", type=float, default=300.0, help="skip rows once the run has taken this long")
    args = ap.parse_args()
    device = resolve_device(args.device)
    precisions = args.precision or (["fp32", "bf16"] if bf16_native(device) else ["fp32"])
    worlds = args.worlds or sorted(SHIPPED.get("world_model", {}))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{time.strftime('%Y-%m-%d')} | {name} | torch {torch.__version__} | {args.steps} steps x "
          f"{args.repeats} repeats, medians")
    print("| world | precision | envs | state obs steps/s | pixel obs steps/s |")
    print("|---|---|---:|---:|---:|")
    start = time.perf_counter()
    for world in worlds:
        wm = WorldModel.from_pretrained(world, device=device).eval()
        for precision in precisions:
            wm.set_precision(precision)
            for n in args.envs:
                cells = []
                for pixels in (False, True):
                    if time.perf_counter() - start > args.budget_s:
                        cells.append("skipped (time budget)")
                        continue
                    try:
                        cells.append(f"{world_rate(wm, n, pixels, args.steps, args.repeats):.0f}")
                    except torch.OutOfMemoryError:
                        cells.append("out of memory")
                        if device.type == "cuda":
                            torch.cuda.empty_cache()
                print(f"| {world} | {precision} | {n} | {cells[0]} | {cells[1]} |", flush=True)
        del wm
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
