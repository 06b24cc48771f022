"""One table per scene: world models side by side, open loop against MuJoCo, beside the
perturbed-MuJoCo reference (MuJoCo itself from a start moved by 1e-6: the predictability ceiling).

    python benchmarks/scene_tables.py --scene Reacher-v5 \
        --models transformer=Reacher-v5 mlp=worldsim:mlp-reacher dense=runs/reacher-dense

Each model is scored by `worldsim eval` (32 held-out episodes, seed 1000, horizon 240 or the
episode's end) under each `--policies` policy twice: with frames (the rollout `DSV4World-v0` steps for
pixel observations: state, PSNR, PCS) and without (the rollout it steps for state observations:
action and state tokens alone). It prints a markdown table; `--json FILE` also writes every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import torch  # noqa: E402

from worldsim.eval.harness import EvalConfig, evaluate  # noqa: E402
from worldsim.model import WorldModel  # noqa: E402


def at(by_h: dict, name: str, h: int) -> float:
    """A metric's value at horizon h (the last horizon reached when h is past it); NaN when absent."""
    table = by_h.get(name, {})
    if not table:
        return float("nan")
    keys = sorted(int(k) for k in table)
    pick = max([k for k in keys if k <= h] or keys[:1])
    v = table.get(pick, table.get(str(pick)))
    return float("nan") if v is None else float(v)


def row(by_h: dict, free: dict | None, pcs: float, h: int) -> dict[str, float]:
    """The table's figures from a framed report's metrics `by_h` and a frameless one's `free`."""
    out = {"nrmse_1": at(by_h, "state_nrmse", 1), "nrmse_10": at(by_h, "state_nrmse", 10),
           "nrmse_50": at(by_h, "state_nrmse", 50), "valid": at(by_h, "valid_horizon", h),
           "psnr_50": at(by_h, "psnr", 50), "term": at(by_h, "termination_agreement", h),
           "reward_mae_10": at(by_h, "reward_mae", 10), "pcs": pcs}
    if free is not None:
        out["free_nrmse_50"] = at(free, "state_nrmse", 50)
        out["free_valid"] = at(free, "valid_horizon", h)
    return out


def fmt(x: float, spec: str) -> str:
    return "-" if x != x else format(x, spec)


COLUMNS = [("nrmse_1", "state nRMSE h=1", ".4f"), ("nrmse_10", "h=10", ".3f"), ("nrmse_50", "h=50", ".3f"),
           ("valid", "valid horizon", ".1f"), ("free_nrmse_50", "no frames: nRMSE h=50", ".3f"),
           ("free_valid", "no frames: valid horizon", ".1f"), ("psnr_50", "PSNR h=50", ".1f"),
           ("reward_mae_10", "reward MAE h=10", ".3f"), ("term", "termination agreement", ".2f"),
           ("pcs", "PCS", ".1f")]


def table(scene: str, policy: str, rows: dict[str, dict[str, float]]) -> str:
    head = "| " + " | ".join([f"{scene}, {policy} actions"] + [c[1] for c in COLUMNS]) + " |"
    lines = [head, "|---|" + "---:|" * len(COLUMNS)]
    for name, r in rows.items():
        lines.append("| " + " | ".join([name] + [fmt(r.get(k, float("nan")), s) for k, _, s in COLUMNS]) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scene", required=True)
    ap.add_argument("--models", nargs="+", required=True, metavar="NAME=CHECKPOINT",
                    help="a scene name for its shipped world, worldsim:NAME for shipped weights, or a directory")
    ap.add_argument("--policies", nargs="+", default=["scripted", "random"])
    ap.add_argument("--episodes", type=int, default=32)
    ap.add_argument("--horizon", type=int, default=240)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--json", default=None, help="also write every figure here")
    args = ap.parse_args()
    models = dict(m.split("=", 1) for m in args.models)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    print(f"{args.scene}: {args.episodes} episodes, seed {args.seed}, horizon {args.horizon}, "
          f"{torch.get_num_threads()} thread(s), {time.strftime('%Y-%m-%d')}")
    everything = {}
    for policy in args.policies:
        cfg = EvalConfig(scene=args.scene, episodes=args.episodes, horizon=args.horizon, seed=args.seed, policy=policy)
        rows, ref, truth = {}, None, None
        for name, ckpt in models.items():
            wm = WorldModel.from_pretrained(ckpt).eval()
            # MuJoCo's episodes and the perturbed reference are recorded once, with the first model.
            result = evaluate(wm, cfg if truth is None else cfg.replace(perturbation=0.0), truth=truth)
            framed, truth = result.report, result.truth
            free = evaluate(wm, cfg.replace(frames=False, perturbation=0.0), truth=truth).report
            h = min(cfg.horizon, framed["horizon"])
            rows[f"{name} (`{ckpt}`)"] = row(framed["metrics"], free["metrics"], framed["pcs"], h)
            if ref is None and "mujoco_perturbed" in framed["baselines"]:
                ref = row(framed["baselines"]["mujoco_perturbed"], None, framed["baseline_pcs"]["mujoco_perturbed"], h)
        if ref is not None:
            rows["MuJoCo moved by 1e-6 (reference)"] = ref
        everything[policy] = rows
        print()
        print(table(args.scene, policy, rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(everything, f, indent=1)


if __name__ == "__main__":
    main()
