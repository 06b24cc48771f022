"""`worldsim tokenizer eval`: PSNR, SSIM and code usage of a tokenizer on fresh episodes."""

from __future__ import annotations

import argparse
import inspect
import json
from pathlib import Path
from typing import Any

import torch

from worldsim.cli.common import DEVICE_HELP
from worldsim.core.registry import resolve_checkpoint
from worldsim.envs import list_scenes
from worldsim.eval.metrics import code_usage
from worldsim.eval.tokenizer_eval import evaluate_tokenizer
from worldsim.model.tokenizer import Tokenizer

_EVAL_ARGS = {k: p.default for k, p in inspect.signature(evaluate_tokenizer).parameters.items()}


def _pooled(results: list[dict[str, Any]], codes_by_tok: dict[str, list[torch.Tensor]]) -> dict[str, Any]:
    """The report over several scenes: the worst scene's PSNR and SSIM, each codebook's usage."""
    # Code usage is a property of a codebook: each tokenizer's over the frames of the scenes it serves.
    usage = {src: code_usage(torch.cat(c), results[0]["codebook_size"]) for src, c in codes_by_tok.items()}
    return {"scene": "all", "scenes": results, "psnr": min(r["psnr"] for r in results),
            "ssim": min(r["ssim"] for r in results), "code_usage": min(usage.values()),
            "code_usage_by_tokenizer": usage,
            "note": "psnr and ssim are the worst scene's; code_usage is the lowest of each tokenizer's "
                    "usage over the frames of all the scenes it serves"}


def _cmd_tokenizer_eval(args: argparse.Namespace) -> int:
    scenes = list_scenes() if args.scene == "all" else [args.scene]
    results, codes_by_tok = [], {}
    for scene in scenes:
        source = str(resolve_checkpoint(args.checkpoint or scene, "tokenizer"))
        tok = Tokenizer.from_pretrained(source, device=args.device)
        r, codes = evaluate_tokenizer(tok, scene, episodes=args.episodes, seed=args.seed, max_steps=args.max_steps)
        codes_by_tok.setdefault(source, []).append(codes.reshape(-1))
        results.append(r)
    report = results[0] if len(results) == 1 else _pooled(results, codes_by_tok)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{'scene':<22}{'frames':>8}{'PSNR dB':>9}{'SSIM':>8}{'codes used':>12}")
    for r in results:
        print(f"{r['scene']:<22}{r['frames']:>8}{r['psnr']:>9.2f}{r['ssim']:>8.4f}{r['code_usage']:>12.1%}")
    if len(results) > 1:
        for src, u in report["code_usage_by_tokenizer"].items():
            print(f"{'codes of ' + Path(src).name:<22}{'':>8}{'':>9}{'':>8}{u:>12.1%}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `tokenizer eval`."""
    tok = sub.add_parser("tokenizer", help="tokenizer tools", description="Tokenizer commands.")
    toksub = tok.add_subparsers(dest="tokenizer_command", required=True, metavar="COMMAND")
    s = toksub.add_parser("eval", help="PSNR, SSIM and code usage on fresh episodes",
                          description="Generate fresh seeded episodes and score the tokenizer's reconstructions.")
    s.add_argument("--scene", required=True, help="a scene name, or 'all'")
    s.add_argument("--checkpoint", default=None, help="tokenizer checkpoint (default: the shipped one)")
    s.add_argument("--episodes", type=int, default=_EVAL_ARGS["episodes"], help="fresh episodes per scene")
    s.add_argument("--seed", type=int, default=_EVAL_ARGS["seed"], help="episode seed (training data used 1)")
    s.add_argument("--max-steps", type=int, default=_EVAL_ARGS["max_steps"], help="steps per episode at most")
    s.add_argument("--device", default="auto", help=DEVICE_HELP)
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=_cmd_tokenizer_eval)
