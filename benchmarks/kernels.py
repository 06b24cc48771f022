"""The kernels against their baselines, at the dynamics model's shapes, in one run.

    python benchmarks/kernels.py [--presets v4 v4-gpu] [--batch 16] [--capacities 0.7 0.4] [--dtype bf16]

On a CUDA device, forward and forward+backward times (median of triton.testing.do_bench) and TFLOP/s of:
- attention: the Triton pruned kernel on the kept tokens at each capacity, and at capacity 1;
  `scaled_dot_product_attention` with the flash backend on all tokens (flash takes no block-causal mask,
  so this is full attention over the unpruned sequence: more work than block-causal, the issue's
  baseline); SDPA with the block-causal boolean mask (the pre-kernel model path); the fp32 reference.
- MoE FFN: the grouped Triton kernel, `torch._grouped_mm` (where it exists and runs), the per-expert
  loop (the reference).
- token selection, gather and gated scatter: Triton against the PyTorch ops.
FLOPs count the useful multiply-adds only: visible (query, key) pairs for attention (4 * hd per pair
forward, 3.5x that with the backward), 6 * N * K * D * F for the MoE forward (3x with the backward).

On a CPU the same table holds the PyTorch paths at the model's shapes (what "auto" runs there) and
the Triton kernels under the interpreter at tiny sizes, labelled as such: the interpreter runs each
program through numpy and its times say nothing about a GPU.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import statistics
import time

import torch
import torch.nn.functional as F

ON_CUDA = torch.cuda.is_available()
if not ON_CUDA:  # the interpreter must be on before the kernel modules are imported
    os.environ.setdefault("TRITON_INTERPRET", "1")

from worldsim.kernels import (  # noqa: E402
    gather_tokens,
    hierarchical_topk,
    moe_ffn,
    pruned_attention,
    scatter_tokens,
    select_tokens,
)
from worldsim.kernels.attention.reference import pruned_attention_sdpa  # noqa: E402
from worldsim.model.dynamics import preset_config  # noqa: E402

ROWS: list[dict] = []
TRITON = "triton" if ON_CUDA else "triton INTERPRETER (not a speed)"


def timed(fn, reps: int) -> float:
    """Median milliseconds of fn()."""
    if ON_CUDA:
        import triton.testing

        return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def measure(op: str, impl: str, shape: str, fwd, inputs, flops_fwd: float, bwd_factor: float, reps: int) -> None:
    """Time fwd() and fwd + backward through `inputs`; a failure is recorded as the row's note."""
    row = dict(op=op, impl=impl, shape=shape, fwd_ms=math.nan, fwd_tf=math.nan, all_ms=math.nan, all_tf=math.nan,
               note="")
    try:
        with torch.no_grad():
            row["fwd_ms"] = timed(fwd, reps)
        row["fwd_tf"] = flops_fwd / row["fwd_ms"] / 1e9
        if inputs:
            out = fwd()
            g = torch.randn_like(out)

            def both():
                torch.autograd.grad(fwd(), inputs, g, allow_unused=True)

            row["all_ms"] = timed(both, reps)
            row["all_tf"] = flops_fwd * bwd_factor / row["all_ms"] / 1e9
    except Exception as e:  # a baseline that does not run here (e.g. _grouped_mm on an older GPU)
        row["note"] = f"{type(e).__name__}: {str(e).splitlines()[0][:70]}"
    ROWS.append(row)


def attention_rows(b: int, h: int, hd: int, steps: int, per_step: int, capacities: list[float], dtype,
                   reps: int, impls: set[str]) -> None:
    """impls among: flash, sdpa, reference, triton."""
    dev = "cuda" if ON_CUDA else "cpu"
    full = steps * per_step

    def pairs(m: int) -> int:  # visible (query, key) pairs of block-causal attention, m tokens a step
        return m * m * steps * (steps + 1) // 2

    def inputs(length: int) -> list[torch.Tensor]:
        return [torch.randn(b, h, length, hd, device=dev, dtype=dtype, requires_grad=True) for _ in range(3)]

    shape = f"B{b} H{h} hd{hd} T{steps} S{per_step}"
    step = torch.arange(steps, device=dev).repeat_interleave(per_step)
    q, k, v = inputs(full)
    if "flash" in impls:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        def flash():
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                return F.scaled_dot_product_attention(q, k, v)

        measure("attention", "sdpa flash, all tokens, full (no mask)", f"{shape} L{full}", flash, [q, k, v],
                4 * b * h * full * full * hd, 3.5, reps)
    if "sdpa" in impls:
        measure("attention", "sdpa + block-causal bool mask, all tokens", f"{shape} L{full}",
                lambda: pruned_attention_sdpa(q, k, v, step, step), [q, k, v], 4 * b * h * pairs(per_step) * hd, 3.5,
                reps)
    for cap in capacities:
        m = 2 + max(1, math.ceil(cap * (per_step - 2)))
        kept_step = torch.arange(steps, device=dev).repeat_interleave(m)
        q, k, v = inputs(steps * m)
        label = f"{shape} L{steps * m} (capacity {cap})"
        for impl in ("reference", "triton"):
            if impl in impls:
                be = "torch" if impl == "reference" else "triton"
                measure("attention", impl if impl == "reference" else TRITON, label,
                        lambda q=q, k=k, v=v, s=kept_step, be=be: pruned_attention(q, k, v, s, s, backend=be),
                        [q, k, v], 4 * b * h * pairs(m) * hd, 3.5, reps)


def moe_grouped_mm(x, w_gate, w_up, w_down, index, weight):
    """The MoE FFN through torch._grouped_mm: sort by expert, three grouped GEMMs, weighted index_add."""
    k = index.shape[1]
    order = torch.argsort(index.reshape(-1), stable=True)
    tok = order // k
    offs = torch.cumsum(torch.bincount(index.reshape(-1), minlength=w_gate.shape[0]), 0).to(torch.int32)
    xs = x[tok]
    h = F.silu(torch._grouped_mm(xs, w_gate, offs=offs)) * torch._grouped_mm(xs, w_up, offs=offs)
    y = torch._grouped_mm(h, w_down, offs=offs) * weight.reshape(-1)[order, None]
    return torch.zeros_like(x).index_add_(0, tok, y)


def moe_rows(n: int, d: int, f: int, e: int, groups: int, top_groups: int, top_k: int, dtype, reps: int,
             impls: set[str]) -> None:
    """impls among: loop, grouped_mm, triton (each also times the router with the same backend)."""
    dev = "cuda" if ON_CUDA else "cpu"
    x = torch.randn(n, d, device=dev, dtype=dtype, requires_grad=True)
    ws = [(torch.randn(e, a, c, device=dev, dtype=dtype) * a**-0.5).requires_grad_()
          for a, c in ((d, f), (d, f), (f, d))]  # w_gate, w_up, w_down
    affinity = torch.rand(n, e, device=dev, requires_grad=True)
    bias = torch.zeros(e, device=dev)
    index, weight = hierarchical_topk(affinity.detach(), bias, groups, top_groups, top_k)
    weight = weight.to(dtype).requires_grad_()
    shape, flops = f"N{n} D{d} F{f} E{e} K{top_k}", 6 * n * top_k * d * f
    if "loop" in impls:
        measure("moe ffn", "per-expert loop (reference)", shape,
                lambda: moe_ffn(x, *ws, index, weight, backend="torch"), [x, *ws, weight], flops, 3, reps)
        measure("router top-k", "reference", f"N{n} E{e} G{groups}",
                lambda: hierarchical_topk(affinity, bias, groups, top_groups, top_k, backend="torch")[1], [affinity],
                0, 1, reps)
    if "grouped_mm" in impls:
        measure("moe ffn", "torch._grouped_mm", shape, lambda: moe_grouped_mm(x, *ws, index, weight),
                [x, *ws, weight], flops, 3, reps)
    if "triton" in impls:
        measure("moe ffn", TRITON, shape, lambda: moe_ffn(x, *ws, index, weight, backend="triton"),
                [x, *ws, weight], flops, 3, reps)
        measure("router top-k", TRITON, f"N{n} E{e} G{groups}",
                lambda: hierarchical_topk(affinity, bias, groups, top_groups, top_k, backend="triton")[1], [affinity],
                0, 1, reps)


def gather_rows(b: int, steps: int, per_step: int, d: int, cap: float, dtype, reps: int, impls: set[str]) -> None:
    """impls among: reference, triton: top-capacity selection, gather, gated scatter."""
    dev = "cuda" if ON_CUDA else "cpu"
    n = per_step - 2
    k = max(1, math.ceil(cap * n))
    x = torch.randn(b, steps * per_step, d, device=dev, dtype=dtype, requires_grad=True)
    score = torch.randn(b, steps, n, device=dev)
    _, index = select_tokens(score, k)
    values = torch.randn(b, index.shape[1], d, device=dev, dtype=dtype, requires_grad=True)
    gate = torch.rand(b, index.shape[1], device=dev, dtype=dtype, requires_grad=True)
    shape = f"B{b} L{steps * per_step} D{d} kept {index.shape[1]}"
    for impl in ("reference", "triton"):
        if impl not in impls:
            continue
        be, name = ("torch", impl) if impl == "reference" else ("triton", TRITON)
        measure("select top-capacity", name, f"B{b} T{steps} N{n} k{k}",
                lambda be=be: select_tokens(score, k, backend=be)[1], [], 0, 1, reps)
        measure("gather", name, shape, lambda be=be: gather_tokens(x, index, backend=be), [x], 0, 1, reps)
        measure("gated scatter", name, shape, lambda be=be: scatter_tokens(x, index, values, gate, backend=be),
                [x, values, gate], 0, 1, reps)


def print_table() -> None:
    cols = ["op", "impl", "shape", "fwd ms", "fwd TFLOP/s", "fwd+bwd ms", "fwd+bwd TFLOP/s", "note"]
    def fmt(v: float, digits: int) -> str:
        return "-" if math.isnan(v) or v == 0 else f"{v:.{digits}g}"

    lines = [[r["op"], r["impl"], r["shape"], fmt(r["fwd_ms"], 4), fmt(r["fwd_tf"], 3), fmt(r["all_ms"], 4),
              fmt(r["all_tf"], 3), r["note"]] for r in ROWS]
    widths = [max(len(c), *(len(line[i]) for line in lines)) for i, c in enumerate(cols)]
    print(" | ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("-+-".join("-" * w for w in widths))
    for line in lines:
        print(" | ".join(c.ljust(w) for c, w in zip(line, widths)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["v4", "v4-gpu"], help="dynamics presets whose shapes to use")
    p.add_argument("--batch", type=int, default=16, help="sequences per batch (the trainer's default)")
    p.add_argument("--capacities", type=float, nargs="+", default=[0.7], help="besides each preset's own, and 1")
    p.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default="bf16", help="on CUDA; a CPU uses fp32")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions on a CPU (CUDA uses do_bench)")
    args = p.parse_args()
    import triton

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    if ON_CUDA:
        device = torch.cuda.get_device_name()
    else:
        dtype = torch.float32
        device = f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads); Triton rows run the INTERPRETER"
    print(f"{datetime.date.today()} | {device} | torch {torch.__version__} | triton {triton.__version__} | {dtype}")
    torch_impls = {"attn": {"sdpa", "reference"}, "moe": {"loop"}, "gather": {"reference"}}
    gpu_impls = {"attn": {"flash", "sdpa", "reference", "triton"}, "moe": {"loop", "grouped_mm", "triton"},
                 "gather": {"reference", "triton"}}
    for name in args.presets:
        cfg = preset_config(name, frame_head="joint")  # the frame head's form changes no kernel's shape
        caps = sorted({*args.capacities, cfg.capacity, 1.0}, reverse=True)
        impls = gpu_impls if ON_CUDA else torch_impls
        print(f"preset {name}: width {cfg.width}, {cfg.heads} heads, {cfg.tokens_per_step} tokens a step, context "
              f"{cfg.context}, capacity {cfg.capacity}, {cfg.experts} experts of {cfg.expert_hidden}, top-{cfg.top_k}")
        attention_rows(args.batch, cfg.heads, cfg.width // cfg.heads, cfg.context, cfg.tokens_per_step, caps, dtype,
                       args.reps, impls["attn"])
        kept = args.batch * cfg.context * (cfg.kept_frame_tokens + 2)  # tokens through a pruned layer's FFN
        moe_rows(kept, cfg.width, cfg.expert_hidden, cfg.experts, cfg.expert_groups, cfg.top_groups, cfg.top_k,
                 dtype, args.reps, impls["moe"])
        gather_rows(args.batch, cfg.context, cfg.tokens_per_step, cfg.width, cfg.capacity, dtype, args.reps,
                    impls["gather"])
    if not ON_CUDA:  # the kernels themselves, interpreted, at sizes the interpreter gets through in seconds
        attention_rows(1, 1, 16, 2, 10, [0.7], dtype, 1, {"triton"})
        moe_rows(32, 32, 16, 4, 2, 1, 2, dtype, 1, {"triton"})
        gather_rows(1, 2, 10, 32, 0.7, dtype, 1, {"triton"})
    print_table()


if __name__ == "__main__":
    main()
