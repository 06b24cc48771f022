"""V4 against its dense baseline in wall time and FLOPs, with frames and without, at the batch sizes users
step, plus one MoE layer against a dense FFN of its active size, alone, by token count.

    python benchmarks/v4_dense_speed.py [--world Reacher-v5] [--batches 1 16 64] [--precision fp32 bf16]

"v4" is the shipped world (v4-lite: pruned frame tokens, hierarchical MoE); "dense" is dense-lite at the
same width, depth and heads (a dense FFN of the MoE's active size, no pruning), with fresh weights: wall
time does not depend on the values, except through the MoE's routing, which is the trained world's.
Rates are KV-cached `WorldModel.step` calls per second (one per env step, the rollout a
`DSV4WorldVector` steps; no decoding), medians of `--repeats` timed runs of `--steps` steps, on the
process's threads (`OMP_NUM_THREADS`, printed). FLOPs per env step are counted
(`worldsim.model.stats.flops_per_step`: the experts each token is routed to). bf16 rows run only with
`--precision bf16`; on a CPU without bf16 matrix units they are emulated and slow.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch
from world_throughput import world_rate  # benchmarks/world_throughput.py, beside this script

from worldsim.core.precision import bf16_native
from worldsim.kernels import hierarchical_topk
from worldsim.model import moe as moe_module
from worldsim.model.dynamics import preset_config
from worldsim.model.stats import flops_per_step
from worldsim.model.world_model import WorldModel


def dense_twin(wm: WorldModel) -> WorldModel:
    """dense-lite at the world's sizes, fresh weights, the world's tokenizer and statistics."""
    d = wm.cfg.dynamics
    keep = {f: getattr(d, f) for f in ("state_dim", "action_dim", "grid", "codebook_size", "width", "layers",
                                       "heads", "context", "code_levels", "state_head")}
    cfg = dataclasses.replace(wm.cfg, preset="dense-lite", dynamics=preset_config("dense-lite", **keep))
    twin = WorldModel(cfg).eval()
    twin.load_state_dict({k: v for k, v in wm.state_dict().items() if not k.startswith("dynamics.")}, strict=False)
    return twin


def median_us(fn, reps: int = 200, repeats: int = 5) -> float:
    for _ in range(10):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        times.append((time.perf_counter() - t0) / reps * 1e6)
    return statistics.median(times)


@torch.no_grad()
def moe_table(wm: WorldModel, tokens: list[int]) -> None:
    """One trained MoE layer at N tokens (routing, the routed experts and the shared one) against a dense
    SwiGLU of its active size. The layer alone keeps its weights in cache, as a step of four layers and
    two streams does not; the step rates above are the figures that count."""
    layer = wm.dynamics.moe_layers()[0]
    d = layer.w_gate.shape[1]
    dense = moe_module.SwiGLU(d, layer.shared.gate.weight.shape[0] + layer.top_k * layer.w_gate.shape[2]).eval()
    print(f"\nOne MoE layer (E={layer.experts}, top-{layer.top_k}, shared {layer.shared.gate.weight.shape[0]}) against "
          f"a dense FFN of its active size, microseconds, median of 5 x 200 calls")
    print("| tokens | MoE: routing | MoE: whole layer | dense FFN | MoE / dense |")
    print("|---:|---:|---:|---:|---:|")
    for n in tokens:
        x = torch.randn(n, d)

        def route(x=x):
            aff = torch.sigmoid(layer.router(x).float())
            return hierarchical_topk(aff, layer.bias, layer.groups, layer.top_groups, layer.top_k)

        r, m, dn = median_us(route), median_us(lambda x=x: layer(x)), median_us(lambda x=x: dense(x))
        print(f"| {n} | {r:.0f} | {m:.0f} | {dn:.0f} | {m / dn:.2f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--world", default="Reacher-v5", help="a shipped world (scene name) or a checkpoint of v4-lite")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--moe-tokens", type=int, nargs="*", default=[2, 8, 16, 32, 64, 128])
    args = ap.parse_args()
    v4 = WorldModel.from_pretrained(args.world).eval()
    dense = dense_twin(v4)
    print(f"{args.world} ({v4.cfg.preset}) against dense-lite at its sizes; torch threads {torch.get_num_threads()}; "
          f"bf16 matrix units on this CPU: {bf16_native('cpu')}; {time.strftime('%Y-%m-%d')}")
    flops = {(n, f): flops_per_step(m, frames=f) for n, m in (("v4", v4), ("dense", dense)) for f in (True, False)}
    print("| precision | rollout | batch | v4 steps/s | dense steps/s | v4 / dense | v4 MFLOP/step | dense MFLOP/step "
          "| fewer FLOPs |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for precision in args.precision:
        v4.set_precision(precision)
        dense.set_precision(precision)
        for frames in (False, True):
            fv, fd = flops[("v4", frames)], flops[("dense", frames)]
            for b in args.batches:
                rv = world_rate(v4, b, frames, args.steps, args.repeats, decode=False)
                rd = world_rate(dense, b, frames, args.steps, args.repeats, decode=False)
                print(f"| {precision} | {'frames' if frames else 'no frames'} | {b} | {rv:.0f} | {rd:.0f} | "
                      f"{rv / rd:.2f} | {fv / 1e6:.2f} | {fd / 1e6:.2f} | {1 - fv / fd:.1%} |", flush=True)
    v4.set_precision("fp32")
    if args.moe_tokens:
        moe_table(v4, args.moe_tokens)


if __name__ == "__main__":
    main()
