"""`worldsim eval`: score a world model's physics against MuJoCo and write a report directory.

    worldsim eval --scene Reacher-v5 --checkpoint runs/reacher --episodes 32 --horizon 240 --out eval/reacher

The harness is `worldsim.eval.harness`, the files `worldsim.eval.report`, the score's formula
`worldsim.eval.score`. This module only wires them to the command line; heavy imports wait for the
command to run.
"""

from __future__ import annotations

import argparse
import json
import math


def add_eval_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the `eval` subcommand on the CLI's subparsers."""
    s = sub.add_parser("eval", help="score a world model's physics against MuJoCo (report, plots, videos)",
                       description="Replay the same initial states and actions through MuJoCo and a world model, "
                                   "score the model and two baselines by horizon, and write report.json, "
                                   "report.md, plots and side-by-side videos to --out.")
    s.add_argument("--scene", required=True, help="scene name (see `worldsim scenes`)")
    s.add_argument("--checkpoint", default=None, help="world-model checkpoint directory (default: the shipped one)")
    s.add_argument("--episodes", type=int, default=32, help="paired episodes")
    s.add_argument("--horizon", type=int, default=240, help="steps per episode at most (episodes may end sooner)")
    s.add_argument("--seed", type=int, default=1000, help="episode seed (training data used 1)")
    s.add_argument("--policy", default="scripted", help="actions: random, smooth, scripted or mixed")
    s.add_argument("--context", type=int, default=1, help="true steps the model and baselines start from")
    s.add_argument("--perturbation", type=float, default=1e-6,
                   help="offset of the perturbed-MuJoCo reference's initial positions (0: no reference)")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    s.add_argument("--out", required=True, help="report directory (replaced only if it holds an earlier report)")
    s.add_argument("--no-video", action="store_true", help="skip the side-by-side videos")
    s.add_argument("--json", action="store_true", help="print the report summary as JSON")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=run_eval_command)
    return s


def run_eval_command(args: argparse.Namespace) -> int:
    from worldsim.eval.harness import EvalConfig, evaluate, load_world_model
    from worldsim.eval.report import check_out_dir, summary, write_report

    cfg = EvalConfig(scene=args.scene, episodes=args.episodes, horizon=args.horizon, seed=args.seed,
                     policy=args.policy, context=args.context, perturbation=args.perturbation)
    check_out_dir(args.out)
    wm = load_world_model(args.scene, args.checkpoint, args.device)
    result = evaluate(wm, cfg, progress=not args.quiet)
    out = write_report(result, args.out, videos=not args.no_video)
    if args.json:
        print(json.dumps(summary(result.report), indent=2))
    else:
        print(format_summary(result.report))
        print(f"wrote {out} in {result.report['wall_seconds']:.0f} s")
    return 0


def format_summary(report: dict) -> str:
    """A few lines for the terminal: the PCS and the main metrics by horizon for all predictors."""
    hs = report["horizons"]
    others = ", ".join(f"{b} {p:.1f}" for b, p in report["baseline_pcs"].items())
    rows = [f"{report['scene']}: {report['episodes']} episodes, PCS {report['pcs']:.1f} ({others})",
            f"{'metric':<28}{'predictor':<19}" + "".join(f"{'h=' + str(h):>9}" for h in hs)]
    for name in ("state_nrmse", "valid_horizon", "psnr", "contact_recall", "termination_agreement",
                 "termination_agreement_rule"):
        if name not in report["metrics"]:
            continue
        for who, vals in [("model", report["metrics"][name]),
                          *[(b, report["baselines"][b][name]) for b in report["baselines"]
                            if name in report["baselines"][b]]]:
            cells = "".join(f"{v:>9.3g}" if v is not None and math.isfinite(v) else f"{'-':>9}"
                            for v in (vals.get(h) for h in hs))
            rows.append(f"{name if who == 'model' else '':<28}{who:<19}{cells}")
    return "\n".join(rows)
