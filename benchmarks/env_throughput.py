"""Environment steps per second: DSV4World-v0 (state and pixel observations) against the real
Gymnasium env of the same scene rendering 64x64 frames, stepped the same way, in one run; and the
tokenizer's decoder against one at the encoder's widths (the decoder it replaced).

    python benchmarks/env_throughput.py --scene Reacher-v5 --batches 1 16 64 256 [--threads N] [--precision fp32 bf16]

Row "gym.make": one `gym.make("DSV4World-v0")` against one `gym.make(scene, render_mode="rgb_array")`
with a `render()` after every step. Row N: one `DSV4WorldVector(num_envs=N)` (one batched model call
per step) against `gymnasium.make_vec(scene, N, "sync", render_mode="rgb_array", 64x64)` with a
`render()` after every step, since a pixel policy needs the frame (at most 64 of them: one GL context
each; the sequential loop's rate does not depend on N). Same random actions for both. The env picks
its own threads (one for up to 16 rows) unless `--threads` is given; the decoder table runs on the
process's threads. Figures are medians over repeats; the ratio is world steps/s over real steps/s.
Each world row is timed in each `--precision` (the env's `precision=`), and the profile splits a pixel
step into the model's step, the frame decode and the env's own work, in each precision.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

# Before any real env renders: worldsim.envs picks the GL backend and loads Triton ahead of the
# first GL context (Triton segfaults when loaded after Mesa's EGL driver).
import worldsim  # noqa: E402
import worldsim.envs  # noqa: E402,F401
from worldsim.core.precision import bf16_native  # noqa: E402
from worldsim.envs.world_env import DSV4WorldVector  # noqa: E402
from worldsim.model.tokenizer import Tokenizer, TokenizerConfig  # noqa: E402
from worldsim.model.world_model import WorldModel  # noqa: E402

REAL_MAX = 64


def time_steps(step, reset, n_envs: int, steps: int, repeats: int) -> float:
    """Median env steps per second over `repeats` timed runs of `steps` batched steps."""
    rates = []
    reset()
    step()  # warm-up: allocations, lazy renderers, KV cache growth
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(n_envs * steps / (time.perf_counter() - t0))
    return statistics.median(rates)


def world_rate(scene: str, checkpoint: str | None, n: int | None, obs_type: str, steps: int, repeats: int,
               threads: int | None, precision: str = "fp32") -> float:
    """Steps/s of one `gym.make` env (`n` None) or of a vector env of `n`."""
    kwargs = dict(scene=scene, checkpoint=checkpoint, obs_type=obs_type, device="cpu", max_episode_steps=10**9,
                  num_threads=threads, precision=precision)
    env = gym.make("DSV4World-v0", **kwargs) if n is None else DSV4WorldVector(num_envs=n, **kwargs)
    rng = np.random.default_rng(0)
    space = env.action_space if n is None else env.single_action_space
    shape = space.shape if n is None else (n,) + space.shape
    try:
        return time_steps(lambda: env.step(rng.uniform(space.low, space.high, shape)),
                          lambda: env.reset(seed=0), n or 1, steps, repeats)
    finally:
        env.close()


def real_rate(scene: str, n: int | None, steps: int, repeats: int) -> float:
    """Steps/s of one rendered `gym.make` env (`n` None) or of a sync vector env of `n`, rendering every step."""
    if n is None:
        env = gym.make(scene, render_mode="rgb_array", width=64, height=64)
    else:
        env = gym.make_vec(scene, num_envs=n, vectorization_mode="sync", render_mode="rgb_array", width=64,
                           height=64)
    rng = np.random.default_rng(0)
    space = env.action_space if n is None else env.single_action_space
    shape = space.shape if n is None else (n,) + space.shape

    def step():
        env.step(rng.uniform(space.low, space.high, shape))
        frames = env.render()
        assert frames[0].shape == ((64, 3) if n is None else (64, 64, 3))

    try:
        return time_steps(step, lambda: env.reset(seed=0), n or 1, steps, repeats)
    finally:
        env.close()


def decoder_rate(cfg: TokenizerConfig, batch: int, repeats: int) -> tuple[float, float]:
    """(MFLOP per 64x64 frame, frames/s at `batch`) of the decoder of `cfg` (speed does not depend on weights)."""
    tok = Tokenizer(cfg).eval()
    q = torch.zeros(1, len(cfg.levels), cfg.grid, cfg.grid)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        tok.decoder(q)
    codes = torch.randint(0, cfg.codebook_size, (batch, cfg.grid, cfg.grid))
    tok.decode(codes)
    rates = []
    for _ in range(max(repeats, 5)):
        t0 = time.perf_counter()
        tok.decode(codes)
        rates.append(batch / (time.perf_counter() - t0))
    return counter.get_total_flops() / 1e6, statistics.median(rates)


def profile_pixel_step(scene: str, checkpoint: str | None, n: int, threads: int | None, repeats: int,
                       precision: str) -> None:
    """Where a batch-`n` pixel step's time goes: the model's step, the frame decode, and the env around them
    (Python, the scene's reward and termination on the predicted state, the observation copies)."""
    env = DSV4WorldVector(num_envs=n, scene=scene, checkpoint=checkpoint, obs_type="pixels", device="cpu",
                          max_episode_steps=10**9, num_threads=threads, precision=precision)
    b = env.batch
    a = np.zeros((n,) + env.single_action_space.shape)
    env.reset(seed=0)
    env.step(a)

    def median_ms(fn) -> float:
        times = []
        for _ in range(max(repeats, 5)):
            t0 = time.perf_counter()
            with b.threads:
                fn()
            times.append(time.perf_counter() - t0)
        return 1e3 * statistics.median(times)

    act = torch.zeros(n, *env.single_action_space.shape)
    total = median_ms(lambda: env.step(a))
    model = median_ms(lambda: b.wm.step(b.handle, act))
    decode = median_ms(lambda: b.wm.decode(b.codes[:, None]))
    env.close()
    print(f"one batch-{n} pixel step, {precision}: {total:.2f} ms = model step {model:.2f} ms ({model / total:.0%}) + "
          f"frame decode {decode:.2f} ms ({decode / total:.0%}) + env {total - model - decode:.2f} ms")


def decoder_table(scene: str, checkpoint: str | None, repeats: int) -> None:
    shipped = WorldModel.from_pretrained(checkpoint or scene, device="cpu").cfg.tokenizer
    wide = shipped.replace(decoder_channels=None)
    print(f"\n{'decoder (widths at 32, 16, 8 px)':<34} {'MFLOP/frame':>12} {'frames/s b1':>12} {'frames/s b64':>13}")
    for name, cfg in ((f"shipped {shipped.decoder_widths}", shipped), (f"encoder's {wide.decoder_widths}", wide)):
        flops, one = decoder_rate(cfg, 1, repeats)
        _, many = decoder_rate(cfg, 64, repeats)
        print(f"{name:<34} {flops:>12.1f} {one:>12.0f} {many:>13.0f}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scene", default="Reacher-v5", help="a Gymnasium MuJoCo scene with a world model")
    p.add_argument("--checkpoint", default=None, help="world-model checkpoint (default: the shipped one)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64, 256])
    p.add_argument("--steps", type=int, default=20, help="timed batched steps per repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None,
                   help="the env's num_threads (default: its own choice, one thread for up to 16 rows)")
    p.add_argument("--no-single", action="store_true", help="skip the gym.make row")
    p.add_argument("--profile", type=int, nargs="*", default=[1, 64], metavar="N",
                   help="batch sizes whose pixel step is split into model step, decode and env")
    p.add_argument("--precision", nargs="+", choices=("fp32", "bf16"), default=None,
                   help="the world's inference precisions to time (default: fp32, and bf16 where this CPU has bf16 "
                        "matrix units; elsewhere bf16 is emulated and slow)")
    p.add_argument("--no-decoder", action="store_true", help="skip the decoder table")
    args = p.parse_args()
    precisions = args.precision or (["fp32", "bf16"] if bf16_native("cpu") else ["fp32"])
    print(f"# {args.scene}, worldsim {worldsim.__version__}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch threads in the process, env num_threads={args.threads}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, bf16 matrix units: "
          f"{bf16_native('cpu')}, {time.strftime('%Y-%m-%d')}")
    print(f"{'N':>8} {'precision':>9} {'real env/s':>11} {'world state/s':>14} {'x real':>7} {'world pixels/s':>15} "
          f"{'x real':>7}")
    rows = ([] if args.no_single else [None]) + list(args.batches)
    for n in rows:
        steps = max(3, args.steps if (n or 1) <= 64 else args.steps // 4)
        if n is None:
            steps *= 5  # single steps are short: more of them per repeat
        # The real envs step one after another, so their rate does not depend on N; past 64 the
        # renderers' GL contexts alone exhaust memory, so N > 64 reuses the rate measured at 64.
        real = real_rate(args.scene, None if n is None else min(n, REAL_MAX), steps, args.repeats)
        for precision in precisions:
            st = world_rate(args.scene, args.checkpoint, n, "state", steps, args.repeats, args.threads, precision)
            px = world_rate(args.scene, args.checkpoint, n, "pixels", steps, args.repeats, args.threads, precision)
            label = "gym.make" if n is None else str(n)
            print(f"{label:>8} {precision:>9} {real:>11.0f} {st:>14.0f} {st / real:>7.2f} {px:>15.0f} "
                  f"{px / real:>7.2f}", flush=True)
    print()
    for n in args.profile:
        for precision in precisions:
            profile_pixel_step(args.scene, args.checkpoint, n, args.threads, args.repeats, precision)
    if not args.no_decoder:
        decoder_table(args.scene, args.checkpoint, args.repeats)


if __name__ == "__main__":
    main()
