"""The `worldsim` command line. Every command has `--help`; `worldsim --version` prints the version."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from worldsim._version import __version__


def _cmd_scenes(args: argparse.Namespace) -> int:
    from worldsim.envs import SCENE_DESCRIPTIONS, list_scenes, make_scene

    rows = []
    for name in list_scenes():
        with make_scene(name) as s:
            rows.append({"scene": name, "dt": s.dt, "fps": round(1 / s.dt, 3), "max_episode_steps": s.max_episode_steps,
                         "state_dim": s.state_dim, "action_dim": int(s.action_space.shape[0]),
                         "energy_conserved": s.energy_conserved, "description": SCENE_DESCRIPTIONS[name]})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'scene':<22}{'dt (s)':>9}{'steps':>7}{'state':>7}{'action':>8}  description")
    for r in rows:
        print(f"{r['scene']:<22}{r['dt']:>9.4f}{r['max_episode_steps']:>7}{r['state_dim']:>7}{r['action_dim']:>8}  "
              f"{r['description']}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    import platform

    import torch

    if args.checkpoint is not None:
        from worldsim.core.checkpoint import load_checkpoint

        ckpt = load_checkpoint(args.checkpoint)
        if ckpt.kind == "world_model":
            from worldsim.model.stats import world_model_info
            from worldsim.model.world_model import WorldModel

            info: dict[str, Any] = {"checkpoint": str(args.checkpoint), "kind": ckpt.kind,
                                    **world_model_info(WorldModel.from_pretrained(args.checkpoint))}
            return _print_info(info, args.json)
        info = {
            "checkpoint": str(args.checkpoint),
            "kind": ckpt.kind,
            "worldsim_version": ckpt.worldsim_version,
            "params_total": int(sum(t.numel() for t in ckpt.tensors.values())),
            "tensors": len(ckpt.tensors),
            "config": ckpt.config,
        }
    else:
        import gymnasium
        import mujoco

        from worldsim.core.runtime import resolve_device

        info = {
            "worldsim": __version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "mujoco": mujoco.__version__,
            "gymnasium": gymnasium.__version__,
            "device_auto": str(resolve_device("auto")),
            "cuda_available": torch.cuda.is_available(),
        }
        try:
            import triton

            info["triton"] = triton.__version__
        except ImportError:
            info["triton"] = None
    return _print_info(info, args.json)


def _print_info(info: dict[str, Any], as_json: bool) -> int:
    if as_json:
        print(json.dumps(info, indent=2, default=str))
    else:
        for k, v in info.items():
            print(f"{k:<20}{json.dumps(v, default=str) if isinstance(v, (dict, list)) else v}")
    return 0


def _cmd_render(args: argparse.Namespace) -> int:
    import numpy as np

    from worldsim.core.video import write_video
    from worldsim.envs import make_scene
    from worldsim.envs.policies import make_policy

    scene = make_scene(args.scene, args.size, args.size)
    policy = make_policy(args.policy)
    try:
        scene.reset(seed=args.seed)
        policy.reset(scene, args.seed)
        frames, ret = [scene.render()], 0.0
        steps = args.steps or scene.max_episode_steps
        for _ in range(steps):
            r = scene.step(policy.act(scene))
            frames.append(scene.render())
            ret += r.reward
            if r.terminated:
                break
    finally:
        scene.close()
    out = write_video(args.out, np.stack(frames), fps=1 / scene.dt, scale=args.scale)
    print(f"wrote {out}: {len(frames)} frames of {args.scene} at {1 / scene.dt:.1f} fps, "
          f"policy {args.policy}, seed {args.seed}, task return {ret:.2f}")
    return 0


def _cmd_rollout(args: argparse.Namespace) -> int:
    from worldsim.rollout import paired_rollout, write_rollout_video

    if not str(args.out).lower().endswith(".mp4"):
        raise ValueError(f"--out must be an .mp4 path, got {args.out!r}")
    roll = paired_rollout(args.scene, args.steps, args.policy, args.seed, args.checkpoint, args.device,
                          ground_truth=args.side_by_side, temperature=args.temperature, progress=not args.quiet)
    out = write_rollout_video(args.out, roll, fps=args.fps, scale=args.scale, side_by_side=args.side_by_side)
    msg = f"wrote {out}: {len(roll.model_frames)} frames of {args.scene} (world model"
    msg += " | MuJoCo | difference)" if args.side_by_side else ")"
    print(f"{msg}, policy {args.policy}, seed {args.seed}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from worldsim.train.export import export_world_model

    r = export_world_model(args.checkpoint, args.out, fp16=not args.fp32, tokenizer_ref=args.tokenizer_ref,
                           static_from=args.static_from, force=args.force)
    print(f"wrote {args.out} ({r['bytes'] / 2**20:.1f} MiB); open-loop check against the source over 50 steps: "
          f"{100 * r['token_agreement']:.2f}% identical tokens, max state difference "
          f"{r['max_state_diff_std']:.2e} dataset std")
    return 0


def _cmd_data_generate(args: argparse.Namespace) -> int:
    from worldsim.envs.dataset import GenerateSpec, generate

    options = tuple(sorted({"n_balls": args.n_balls}.items())) if args.n_balls is not None else ()
    spec = GenerateSpec(scene=args.scene, out=args.out, episodes=args.episodes, policy=args.policy, seed=args.seed,
                        workers=args.workers, shard_size=args.shard_size, width=args.size, height=args.size,
                        max_steps=args.max_steps, scene_options=options, frames=not args.no_frames)
    m = generate(spec, progress_bar=not args.quiet, verify=args.verify)
    fps = m["_generated_frames"] / max(m["_elapsed_s"], 1e-9)
    unit = "frames" if m.get("frames", True) else "time steps (no frames rendered)"
    bad = m["_regenerated"]
    fixed = f"; regenerated {len(bad)} missing or corrupt shard(s): {', '.join(bad)}" if bad else ""
    print(f"{args.out}: {m['episodes']} episodes, {m['stats']['frames']} {unit} "
          f"({m['_generated_frames']} new, {fps:.0f}/s with {args.workers} worker(s){fixed})")
    return 0


def _cmd_data_info(args: argparse.Namespace) -> int:
    from worldsim.envs.manifest import dataset_status

    status = dataset_status(args.dir, verify=args.verify)
    m, bad = status["manifest"], status["bad_shards"]
    root = Path(args.dir)
    shards = m["shards"]
    info = {
        "dir": str(root),
        "scene": m["scene"],
        "policy": m["policy"],
        "seed": m["seed"],
        "complete": status["complete"],  # False too when a listed shard is missing or corrupt
        "bad_shards": bad,
        "verified": status["verified"],  # SHA-256 checked (else sizes only)
        "episodes": m["episodes"],
        "episodes_written": sum(r["num_episodes"] for r in shards.values()),
        "shards": len(shards),
        "steps": sum(r["steps"] for r in shards.values()),
        "rendered": m.get("frames", True),
        "frames": sum(r["frames"] for r in shards.values()),
        "bytes": sum(r["bytes"] for r in shards.values()),
        "frame_size": [m["height"], m["width"]],
        "state_mean": m.get("stats", {}).get("state_mean"),
        "state_std": m.get("stats", {}).get("state_std"),
        "versions": m["versions"],
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 1 if bad else 0
    for k, v in info.items():
        if k in ("state_mean", "state_std") and v is not None:
            v = "[" + ", ".join(f"{x:.4g}" for x in v) + "]"
        if k == "bad_shards":
            v = ", ".join(f"{name} ({why})" for name, why in v.items()) or "none"
        print(f"{k:<18}{v}")
    if bad:
        print("rerun `worldsim data generate` with the same arguments to regenerate the bad shards")
    return 1 if bad else 0


def _cmd_train_tokenizer(args: argparse.Namespace) -> int:
    from worldsim.model.tokenizer import TokenizerConfig
    from worldsim.train.tokenizer import TokenizerTrainConfig, train_tokenizer

    model_cfg = TokenizerConfig(channels=tuple(args.channels), levels=tuple(args.levels))
    cfg = TokenizerTrainConfig(**_run_overrides(args))
    metrics = train_tokenizer(args.data, args.out, model_cfg, cfg, device=args.device, fp16=args.fp16,
                              progress=not args.quiet, init=args.init, force=args.force)
    if metrics:
        print(f"wrote {args.out}: held-out PSNR {metrics['val_psnr']:.2f} dB")
    return 0


def _cmd_train_dynamics(args: argparse.Namespace) -> int:
    from worldsim.train.dynamics import DynamicsTrainConfig, train_dynamics

    extra = {k: getattr(args, k) for k in ("state_noise", "state_batch", "state_pretrain")
             if getattr(args, k) is not None}
    cfg = DynamicsTrainConfig(**_run_overrides(args), balance=not args.no_balance, **extra)
    metrics = train_dynamics(args.data, args.tokenizer, args.out, preset=args.preset, cfg=cfg, device=args.device,
                             context=args.context, progress=not args.quiet, bias_gamma=args.bias_gamma,
                             capacity=args.capacity, state_data=args.state_data,
                             state_residual=True if args.state_residual else None, force=args.force)
    if metrics:
        print(f"wrote {args.out}: held-out token accuracy {metrics['val_token_acc']:.4f}, "
              f"state MSE (normalised) {metrics['val_state_mse']:.4g}")
    return 0


def _cmd_train_pathway(args: argparse.Namespace) -> int:
    from worldsim.train.parts import PathwayTrainConfig, train_pathway

    extra = {k: getattr(args, k) for k in ("unroll", "width") if getattr(args, k) is not None}
    cfg = PathwayTrainConfig(**_run_overrides(args), **extra)
    metrics = train_pathway(args.checkpoint, args.state_data, args.out, cfg, device=args.device,
                            progress=not args.quiet, force=args.force)
    print(f"wrote {args.out}: held-out state MSE (normalised) {metrics['val_mse_step1']:.4g} at step 1, "
          f"{metrics['val_mse']:.4g} over {cfg.unroll} unrolled step(s)")
    return 0


def _cmd_train_outcome(args: argparse.Namespace) -> int:
    from worldsim.train.parts import OutcomeTrainConfig, train_outcome

    extra = {"width": args.width} if args.width is not None else {}
    cfg = OutcomeTrainConfig(**_run_overrides(args), **extra)
    metrics = train_outcome(args.checkpoint, args.state_data, args.out, cfg, device=args.device,
                            progress=not args.quiet, force=args.force)
    print(f"wrote {args.out}: held-out reward MSE (normalised) {metrics['val_reward_mse']:.4g}, "
          f"termination accuracy {metrics['val_term_acc']:.4f}")
    return 0


def _cmd_train_renderer(args: argparse.Namespace) -> int:
    from worldsim.train.parts import RendererTrainConfig, train_renderer

    extra = {k: getattr(args, k) for k in ("width", "mix") if getattr(args, k) is not None}
    cfg = RendererTrainConfig(**_run_overrides(args), **extra)
    metrics = train_renderer(args.checkpoint, args.data, args.out, cfg, device=args.device, progress=not args.quiet,
                             force=args.force)
    print(f"wrote {args.out}: held-out token accuracy {metrics['val_token_acc']:.4f} from true states")
    return 0


def _cmd_tokenizer_eval(args: argparse.Namespace) -> int:
    import torch

    from worldsim.core.registry import resolve_checkpoint
    from worldsim.envs import list_scenes
    from worldsim.eval.metrics import code_usage
    from worldsim.model.tokenizer import Tokenizer
    from worldsim.tokenizer_eval import evaluate_tokenizer

    scenes = list_scenes() if args.scene == "all" else [args.scene]
    results, codes_by_tok = [], {}
    for scene in scenes:
        source = str(resolve_checkpoint(args.checkpoint or scene, "tokenizer"))
        tok = Tokenizer.from_pretrained(source, device=args.device)
        r, codes = evaluate_tokenizer(tok, scene, episodes=args.episodes, seed=args.seed, max_steps=args.max_steps)
        codes_by_tok.setdefault(source, []).append(codes.reshape(-1))
        results.append(r)
    if len(results) == 1:
        report: dict[str, Any] = results[0]
    else:
        # Code usage is a property of a codebook: each tokenizer's over the frames of the scenes it serves.
        usage = {src: code_usage(torch.cat(c), results[0]["codebook_size"]) for src, c in codes_by_tok.items()}
        report = {"scene": "all", "scenes": results, "psnr": min(r["psnr"] for r in results),
                  "ssim": min(r["ssim"] for r in results), "code_usage": min(usage.values()),
                  "code_usage_by_tokenizer": usage,
                  "note": "psnr and ssim are the worst scene's; code_usage is the lowest of each tokenizer's "
                          "usage over the frames of all the scenes it serves"}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{'scene':<22}{'frames':>8}{'PSNR dB':>9}{'SSIM':>8}{'codes used':>12}")
        for r in results:
            print(f"{r['scene']:<22}{r['frames']:>8}{r['psnr']:>9.2f}{r['ssim']:>8.4f}{r['code_usage']:>12.1%}")
        if len(results) > 1:
            for src, u in report["code_usage_by_tokenizer"].items():
                print(f"{'codes of ' + Path(src).name:<22}{'':>8}{'':>9}{'':>8}{u:>12.1%}")
    return 0


_RUN_FIELDS = ("steps", "batch_size", "lr", "save_every", "seed", "val_fraction")


def _add_part_args(s: argparse.ArgumentParser, data_flag: str, data_help: str, batch: str) -> None:
    """What the part trainers' parsers (`train pathway`, `outcome`, `renderer`) share."""
    s.add_argument("--checkpoint", required=True,
                   help="the world model (a directory, or a scene name for the shipped one)")
    s.add_argument(data_flag, nargs="+", required=True, metavar="DIR", help=data_help)
    s.add_argument("--out", required=True, help="output checkpoint directory (training state in OUT.train/)")
    _add_run_args(s, batch=batch)


def _add_run_args(s: argparse.ArgumentParser, batch: str) -> None:
    """The options every trainer takes. Unset ones keep the train config's own default (in code)."""
    s.add_argument("--steps", type=int, default=None, help="optimiser steps")
    s.add_argument("--batch-size", type=int, default=None, help=batch)
    s.add_argument("--lr", type=float, default=None, help="peak learning rate")
    s.add_argument("--save-every", type=int, default=None, help="steps between resumable checkpoints")
    s.add_argument("--seed", type=int, default=None, help="training seed")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--force", action="store_true", help=_FORCE_HELP)


_FORCE_HELP = ("replace a checkpoint of another kind at --out (a directory holding anything but a checkpoint is "
               "never replaced)")


def _run_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in _RUN_FIELDS if getattr(args, k, None) is not None}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="worldsim", description="A learned world-model simulator for robotics and RL.")
    p.add_argument("--version", action="version", version=f"worldsim {__version__}")
    p.add_argument("--debug", action="store_true", help="print the traceback of a failure instead of one line")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("scenes", help="list the MuJoCo scenes", description="List the registered MuJoCo scenes.")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=_cmd_scenes)

    s = sub.add_parser("info", help="versions and devices, or a checkpoint's contents",
                       description="Print versions and the auto device, or describe a checkpoint directory.")
    s.add_argument("checkpoint", nargs="?", type=Path, help="a checkpoint directory (optional)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=_cmd_info)

    s = sub.add_parser("render", help="render one real MuJoCo episode to mp4",
                       description="Roll out one seeded episode of a scene in MuJoCo and write it to an mp4.")
    s.add_argument("--scene", default="Reacher-v5", help="scene name (see `worldsim scenes`)")
    s.add_argument("--policy", default="scripted", help="random, smooth, scripted or mixed")
    s.add_argument("--seed", type=int, default=0, help="episode seed")
    s.add_argument("--steps", type=int, default=None, help="steps (default: the scene's episode length)")
    s.add_argument("--size", type=int, default=64, help="frame size in pixels (a multiple of 16)")
    s.add_argument("--scale", type=int, default=4, help="repeat each pixel this many times in the video")
    s.add_argument("--out", required=True, help="output .mp4 path")
    s.set_defaults(func=_cmd_render)

    s = sub.add_parser("rollout", help="roll the world model out to mp4 (beside MuJoCo with --side-by-side)",
                       description="Roll the world model out from a real initial state under a behaviour policy "
                                   "and write the frames to an mp4; with --side-by-side, model | MuJoCo | "
                                   "difference, same initial state and same actions.")
    s.add_argument("--scene", default="Reacher-v5", help="scene name (see `worldsim scenes`)")
    s.add_argument("--checkpoint", default=None, help="world-model checkpoint (default: the shipped one)")
    s.add_argument("--steps", type=int, default=240, help="steps to roll out")
    s.add_argument("--fps", type=float, default=None, help="video frame rate (default: the scene's, 1 / dt)")
    s.add_argument("--policy", default="smooth", choices=("random", "smooth"), help="behaviour policy")
    s.add_argument("--seed", type=int, default=0, help="episode seed (the real env's reset seed)")
    s.add_argument("--temperature", type=float, default=0.0, help="token sampling temperature (0 = argmax)")
    s.add_argument("--scale", type=int, default=4, help="repeat each pixel this many times in the video")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    s.add_argument("--side-by-side", action="store_true", help="model | MuJoCo | |difference|")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--out", required=True, help="output .mp4 path")
    s.set_defaults(func=_cmd_rollout)

    s = sub.add_parser("export", help="write a world model for shipping (fp16, shared tokenizer)",
                       description="Copy a world-model checkpoint for shipping, optionally with fp16 weights and "
                                   "the tokenizer referenced instead of copied, and print what fp16 changes in "
                                   "open-loop rollouts.")
    s.add_argument("checkpoint", help="world-model checkpoint directory")
    s.add_argument("--out", required=True, help="output checkpoint directory")
    s.add_argument("--fp32", action="store_true", help="keep fp32 weights (default: fp16)")
    s.add_argument("--force", action="store_true", help=_FORCE_HELP)
    s.add_argument("--tokenizer-ref", default=None,
                   help="reference the tokenizer instead of copying its weights: worldsim:NAME for shipped "
                        "weights (worldsim:tokenizer), or a tokenizer checkpoint folder inside --out")
    s.add_argument("--static-from", default=None,
                   help="dataset directory: hold the state dimensions constant within its episodes fixed, and "
                        "bound rollout states to its range widened by half (for checkpoints that predate both)")
    s.set_defaults(func=_cmd_export)

    data = sub.add_parser("data", help="generate and inspect datasets", description="Dataset commands.")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    s = dsub.add_parser("generate", help="generate a dataset (resumable)",
                        description="Generate a dataset of MuJoCo episodes; rerun the same command to resume it, or to "
                                    "regenerate missing or corrupt shards.")
    s.add_argument("--scene", required=True, help="scene name (see `worldsim scenes`)")
    s.add_argument("--episodes", type=int, required=True, help="number of episodes")
    s.add_argument("--policy", default="mixed", help="random, smooth, scripted or mixed")
    s.add_argument("--seed", type=int, default=0, help="dataset seed")
    s.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="worker processes, one renderer each (default: all cores)")
    s.add_argument("--shard-size", type=int, default=16, help="episodes per shard")
    s.add_argument("--size", type=int, default=64, help="frame size in pixels (a multiple of 16)")
    s.add_argument("--max-steps", type=int, default=None, help="episode length cap (default: the scene's)")
    s.add_argument("--n-balls", type=int, default=None, help="bounce only: number of balls (1-3)")
    s.add_argument("--no-frames", action="store_true",
                   help="render nothing: states, actions and the rest only (for --state-data)")
    s.add_argument("--out", required=True, help="dataset directory")
    s.add_argument("--verify", action="store_true",
                   help="check the SHA-256 of every finished shard, not only its size (reads the whole dataset)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_data_generate)
    s = dsub.add_parser("info", help="counts, sizes and state statistics of a dataset",
                        description="Print counts, sizes and per-dimension state mean/std of a dataset, and "
                                    "which listed shards are missing or corrupt (exit status 1 if any).")
    s.add_argument("dir", help="dataset directory")
    s.add_argument("--verify", action="store_true",
                   help="check each shard's SHA-256, not only its size (reads the whole dataset)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=_cmd_data_info)

    train = sub.add_parser("train", help="train models", description="Training commands.")
    tsub = train.add_subparsers(dest="train_command", required=True, metavar="COMMAND")
    s = tsub.add_parser("tokenizer", help="train the video tokenizer (resumable)",
                        description="Train the video tokenizer on one or more datasets; rerun to resume.")
    s.add_argument("--data", nargs="+", required=True, help="dataset directories (frames drawn evenly from each)")
    s.add_argument("--out", required=True, help="output checkpoint directory (training state in OUT.train/)")
    _add_run_args(s, batch="frames per step (per process)")
    s.add_argument("--channels", type=int, nargs=3, default=[32, 64, 128], help="widths at 32, 16 and 8 px")
    s.add_argument("--levels", type=int, nargs="+", default=[8, 5, 5, 5], help="FSQ levels per latent channel")
    s.add_argument("--val-fraction", type=float, default=None, help="held-out share of each dataset's episodes")
    s.add_argument("--fp16", action="store_true", help="store the final weights in fp16")
    s.add_argument("--init", default=None, help="start from this tokenizer's weights (fine-tuning)")
    s.set_defaults(func=_cmd_train_tokenizer)

    s = tsub.add_parser("dynamics", help="train the dynamics transformer (resumable)",
                        description="Train the dynamics transformer on a dataset's tokens; rerun to resume.")
    s.add_argument("--data", required=True, help="dataset directory")
    s.add_argument("--tokenizer", required=True, help="tokenizer checkpoint, or a scene name for the shipped one")
    s.add_argument("--preset", default="v4", help="v4, dense, v4-lite, v4-gpu or dense-gpu")
    s.add_argument("--out", required=True, help="output checkpoint directory (training state in OUT.train/)")
    _add_run_args(s, batch="windows per step (per process)")
    s.add_argument("--context", type=int, default=4, help="context window in steps")
    s.add_argument("--no-balance", action="store_true", help="turn off the MoE bias update (for contrast)")
    s.add_argument("--bias-gamma", type=float, default=None,
                   help="the MoE load-balancing bias step (default: the preset's, 1e-3)")
    s.add_argument("--capacity", type=float, default=None,
                   help="share of frame tokens each pruned layer keeps (default: the preset's)")
    s.add_argument("--state-noise", type=float, default=None,
                   help="std of the Gaussian noise on input states, in dataset stds (default 0: none)")
    s.add_argument("--state-batch", type=int, default=None,
                   help="transitions per step that fit the state pathway alone (presets with one; default 1024)")
    s.add_argument("--state-pretrain", type=int, default=None,
                   help="steps fitting the state pathway alone before the first transformer step (default 0)")
    s.add_argument("--state-residual", action="store_true",
                   help="with a state pathway, also train the state token's head and add it (v4-lite: off)")
    s.add_argument("--state-data", nargs="+", default=(), metavar="DIR",
                   help="more datasets of the scene whose transitions also fit the state pathway (frames unused)")
    s.set_defaults(func=_cmd_train_dynamics)

    s = tsub.add_parser("pathway", help="fit a world model's state pathway on more transitions (resumable)",
                        description="Fit the state pathway of a world model alone, on datasets of its scene "
                                    "(frames unused: `data generate --no-frames` makes them cheaply); the "
                                    "transformer is unchanged. Rerun to resume.")
    _add_part_args(s, "--state-data", "datasets of the scene; the first one's last episodes are held out for "
                   "validation", batch="transition sequences per step")
    s.add_argument("--unroll", type=int, default=None,
                   help="steps the loss rolls the pathway out from each recorded state (default 1)")
    s.add_argument("--width", type=int, default=None,
                   help="for a model without a pathway: add one of this width, which then carries the state "
                        "alone (the state token's head is dropped)")
    s.set_defaults(func=_cmd_train_pathway)

    s = tsub.add_parser("outcome", help="give a world model an outcome head on its predicted state (resumable)",
                        description="Fit an outcome head for a world model: an MLP from (next state, action) to "
                                    "the step's reward and termination, which in rollouts reads the predicted "
                                    "state in place of the transformer's own reward and termination heads. "
                                    "The transformer is unchanged. Rerun to resume.")
    _add_part_args(s, "--state-data", "datasets of the scene; the first one's last episodes are held out for "
                   "validation", batch="transitions per step")
    s.add_argument("--width", type=int, default=None, help="the outcome MLP's width (default 128)")
    s.set_defaults(func=_cmd_train_outcome)

    s = tsub.add_parser("renderer", help="give a world model a state renderer, fitted on frames (resumable)",
                        description="Fit a state renderer for a world model: an MLP from a state to the frame "
                                    "head's logits for that state's frame, added to the frame head's in rollouts "
                                    "(or replacing them) so predicted frames follow the predicted state. The "
                                    "transformer is unchanged. Rerun to resume.")
    _add_part_args(s, "--data", "datasets of the scene, with frames; the first one's last episodes are held out",
                   batch="frames per step")
    s.add_argument("--width", type=int, default=None, help="the renderer MLP's width (default 512)")
    s.add_argument("--mix", choices=("sum", "replace"), default=None,
                   help="add the renderer's logits to the frame head's (sum, default) or use them alone")
    s.set_defaults(func=_cmd_train_renderer)

    tok = sub.add_parser("tokenizer", help="tokenizer tools", description="Tokenizer commands.")
    toksub = tok.add_subparsers(dest="tokenizer_command", required=True, metavar="COMMAND")
    s = toksub.add_parser("eval", help="PSNR, SSIM and code usage on fresh episodes",
                          description="Generate fresh seeded episodes and score the tokenizer's reconstructions.")
    s.add_argument("--scene", required=True, help="a scene name, or 'all'")
    s.add_argument("--checkpoint", default=None, help="tokenizer checkpoint (default: the shipped one)")
    s.add_argument("--episodes", type=int, default=8, help="fresh episodes per scene")
    s.add_argument("--seed", type=int, default=1000, help="episode seed (training data used 1)")
    s.add_argument("--max-steps", type=int, default=100, help="steps per episode at most")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=_cmd_tokenizer_eval)

    from worldsim.evaluate import add_eval_parser

    add_eval_parser(sub)
    return p


def _expected_failure(exc: BaseException) -> tuple[int, str] | None:
    """(exit code, one line) for a failure a user can meet and act on; None for a bug (traceback)."""
    if isinstance(exc, (ValueError, TypeError)):
        return 2, str(exc)
    if isinstance(exc, FloatingPointError):
        return 1, str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return 130, "interrupted (a training run resumes from its last saved state when rerun)"
    if isinstance(exc, OSError):
        text = exc.strerror or str(exc)
        return 1, text if exc.filename is None else f"{text}: {exc.filename}"
    module = type(exc).__module__ or ""
    if module.split(".")[0] in ("mujoco", "OpenGL"):
        backend = os.environ.get("MUJOCO_GL", "unset")
        return 1, (f"rendering failed ({type(exc).__name__}: {exc}); MUJOCO_GL is {backend}: on a machine "
                   f"without a display use egl, or osmesa where EGL is missing")
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (Exception, KeyboardInterrupt) as exc:
        failure = None if args.debug else _expected_failure(exc)
        if failure is None:
            raise
        code, line = failure
        print(f"worldsim: error: {line}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
