"""`worldsim eval`: score a world model's physics against MuJoCo and write a report directory; `worldsim
eval policies`: rank policies closed loop in the world against MuJoCo; `worldsim eval prompts`: how a
world with a prompt prefix follows prompts, and how sound its generated clips are.

    worldsim eval --scene Reacher-v5 --checkpoint runs/reacher --episodes 32 --horizon 240 --out eval/reacher
    worldsim eval policies --scene Reacher-v5 --policies zero,random,smooth,const:1 --episodes 16 --out eval/pol

The harness is `worldsim.eval.harness`, the files `worldsim.eval.report`, the score's formula
`worldsim.eval.score`. This module wires them to the command line: its flags are `EvalConfig`'s fields.
"""

from __future__ import annotations

import argparse
import json
import math

from worldsim.cli.common import DEVICE_HELP, add_required, config_or_print
from worldsim.core.checkpoint import weights_sha256
from worldsim.core.cli_config import add_config_file_flags, add_config_flags
from worldsim.core.precision import PRECISIONS
from worldsim.core.registry import resolve_checkpoint
from worldsim.envs.world_batch import load_world_model
from worldsim.eval.harness import EvalConfig, evaluate
from worldsim.eval.policy_eval import BUILT_IN, evaluate_policies, policy_from_spec
from worldsim.eval.policy_report import policy_markdown, write_policy_report
from worldsim.eval.prompt_eval import PromptEvalConfig, evaluate_prompts, prompt_markdown
from worldsim.eval.report import check_out_dir, jsonable, summary, write_report, write_report_dir


def scored_checkpoint(scene: str, checkpoint: str | None) -> dict[str, str]:
    """What a report records of the world it scored, so that `export --eval-report` can tell its own
    report from another world's: the name as given (the scene, for its shipped world), the directory,
    and the SHA-256 of its weights."""
    name = scene if checkpoint is None else checkpoint
    path = resolve_checkpoint(name, "world_model")
    return {"name": str(name), "path": str(path.resolve()), "weights_sha256": weights_sha256(path)}


def run_eval_command(args: argparse.Namespace) -> int:
    cfg = config_or_print(EvalConfig, args, required=() if args.print_config else ("scene",))
    if cfg is None:
        return 0
    check_out_dir(args.out)
    wm = load_world_model(cfg.scene, args.checkpoint, args.device).set_precision(args.precision)
    scored = scored_checkpoint(cfg.scene, args.checkpoint)
    result = evaluate(wm, cfg, progress=not args.quiet)
    result.report["checkpoint"] = scored
    result.report["inference_precision"] = wm.precision
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


def add_parsers(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `eval`."""
    s = sub.add_parser("eval", help="score a world model's physics against MuJoCo (report, plots, videos)",
                       description="Replay the same initial states and actions through MuJoCo and a world model, "
                                   "score the model and two baselines by horizon, and write report.json, "
                                   "report.md, plots and side-by-side videos to --out.")
    s.add_argument("--checkpoint", default=None, help="world-model checkpoint directory (default: the shipped one)")
    add_required(s, "--out", help="report directory (replaced only if it holds nothing but an earlier `eval` "
                                  "report)")
    add_config_file_flags(s)
    s.add_argument("--device", default="auto", help=DEVICE_HELP)
    s.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="the model's inference precision (WorldModel.set_precision); the scores of record are fp32's")
    s.add_argument("--no-video", action="store_true", help="skip the side-by-side videos")
    s.add_argument("--json", action="store_true", help="print the report summary as JSON")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_flags(s, EvalConfig, required=("scene",))
    s.set_defaults(func=run_eval_command)
    add_policies_parser(s)
    return s


def run_policies_command(args: argparse.Namespace) -> int:
    names = [n.strip() for n in args.policies.split(",") if n.strip()]
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"--policies must name distinct policies, comma-separated, got {args.policies!r}")
    policies = {n: policy_from_spec(n, args.scene) for n in names}
    check_out_dir(args.out, "eval-policies")
    report = evaluate_policies(args.scene, policies, episodes=args.episodes, seed=args.seed,
                               max_steps=args.max_steps, checkpoint=args.checkpoint, device=args.device)
    out = write_policy_report(report, args.out)
    print(json.dumps(jsonable(report), indent=2) if args.json else policy_markdown(report), end="")
    if not args.json:
        print(f"wrote {out}")
    return 0


def add_policies_parser(eval_parser: argparse.ArgumentParser) -> None:
    """Register `eval policies` under `eval` (which still runs the open-loop evaluation alone)."""
    sub = eval_parser.add_subparsers(dest="eval_command", metavar="policies|prompts", required=False)
    s = sub.add_parser("policies", help="rank policies closed loop in the world against MuJoCo",
                       description="Run each policy closed loop in MuJoCo and in the world (state observations) "
                                   "from the same seeds; report each one's returns and lengths, and how the "
                                   "world ranks them (Pearson, Spearman, MMRV) in report.json, report.md and "
                                   "returns.png under --out.")
    add_required(s, "--scene", help="scene name (see `worldsim scenes`)")
    add_required(s, "--policies", help=f"comma-separated built-in policies: {BUILT_IN}")
    add_required(s, "--out", help="report directory (replaced only if it holds nothing but an earlier "
                                  "`eval policies` report)")
    s.add_argument("--episodes", type=int, default=16, help="episodes per policy, seeds SEED, SEED + 1, ...")
    s.add_argument("--seed", type=int, default=1000, help="first episode's seed")
    s.add_argument("--max-steps", type=int, default=None, help="steps per episode at most (default: the scene's)")
    s.add_argument("--checkpoint", default=None, help="world-model checkpoint directory (default: the shipped one)")
    s.add_argument("--device", default="auto", help=DEVICE_HELP)
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    s.set_defaults(func=run_policies_command, print_config=False)
    add_prompts_parser(sub)


def run_prompts_command(args: argparse.Namespace) -> int:
    cfg = config_or_print(PromptEvalConfig, args, required=() if args.print_config else ("scene", "data"))
    if cfg is None:
        return 0
    check_out_dir(args.out, "eval-prompts")
    wm = load_world_model(cfg.scene, args.checkpoint, args.device)
    report = evaluate_prompts(wm, cfg)
    report["checkpoint"] = scored_checkpoint(cfg.scene, args.checkpoint)
    text = prompt_markdown(report)

    def files(tmp) -> None:
        (tmp / "report.json").write_text(json.dumps(jsonable(report), indent=2) + "\n")
        (tmp / "report.md").write_text(text)

    out = write_report_dir(args.out, files, kind="eval-prompts")
    print(json.dumps(jsonable(report), indent=2) if args.json else text, end="")
    if not args.json:
        print(f"wrote {out} in {report['wall_seconds']:.0f} s")
    return 0


def add_prompts_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("prompts", help="score prompt adherence, generated physics and abnormal clips",
                       description="Generate clips from held-out prompts and held-out slot combinations, read their "
                                   "predicted states back into slots (adherence), score their physics against "
                                   "MuJoCo from the same generated starts, and check decoded frames for abnormal "
                                   "balls (bounce); report.json and report.md under --out.")
    add_required(s, "--out", help="report directory (replaced only if it holds nothing but an earlier "
                                  "`eval prompts` report)")
    s.add_argument("--checkpoint", default=None, help="world-model checkpoint directory (default: the shipped one)")
    add_config_file_flags(s)
    s.add_argument("--device", default="auto", help=DEVICE_HELP)
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    add_config_flags(s, PromptEvalConfig, required=("scene", "data"))
    s.set_defaults(func=run_prompts_command)
