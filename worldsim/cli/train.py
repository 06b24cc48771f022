"""`worldsim train tokenizer|dynamics|pathway|outcome|renderer|prompt`.

Each trainer's flags are its train config's fields (`add_config_flags`), plus `--config FILE` and
`--print-config`; the hand-written flags are paths, devices and model overrides, their defaults read
from the code that owns them. `--config` sets those too (`add_run_flag`), so the file a run writes
(`OUT.log/config.json`: every argument of the run, `run_record`) reruns it; `--quiet` and `--force`
stay on the command line.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path

from worldsim.cli.common import DEVICE_HELP, FORCE_HELP
from worldsim.core.checkpoint import load_checkpoint_extra
from worldsim.core.cli_config import add_config_file_flags, add_config_flags, add_run_flag, resolve_run, run_record
from worldsim.core.config import ConfigBase
from worldsim.model.dynamics import PRESETS, DynamicsConfig
from worldsim.model.tokenizer import TokenizerConfig
from worldsim.train.dynamics import DynamicsTrainConfig, train_dynamics
from worldsim.train.parts import (
    OutcomeTrainConfig,
    PathwayTrainConfig,
    RendererTrainConfig,
    train_outcome,
    train_pathway,
    train_renderer,
)
from worldsim.train.prompt import PromptTrainConfig, train_prompt
from worldsim.train.state import check_steps_not_past, state_dir_for
from worldsim.train.tokenizer import TokenizerTrainConfig, check_tokenizer_for_data, train_tokenizer

_TOKENIZER = TokenizerConfig()
_DYNAMICS = DynamicsConfig()
_DYNAMICS_ARGS = {k: p.default for k, p in inspect.signature(train_dynamics).parameters.items()}
_OUT_HELP = "output checkpoint directory (training state in OUT.train/)"


def _resolve(cls: type[ConfigBase], args: argparse.Namespace) -> tuple[ConfigBase, dict] | None:
    """The train config and the whole run (defaults < --config FILE < flags), the run flags set on `args`;
    with --print-config, print the run and return None."""
    cfg, run = resolve_run(cls, args)
    record = run_record(cfg, run)
    if args.print_config:
        print(json.dumps(record, indent=2))
        return None
    return cfg, record


def _cmd_train_tokenizer(args: argparse.Namespace) -> int:
    resolved = _resolve(TokenizerTrainConfig, args)
    if resolved is None:
        return 0
    cfg, record = resolved
    check_steps_not_past(state_dir_for(args.out), cfg.steps)
    widths = None if args.decoder_channels is None else tuple(args.decoder_channels)
    model_cfg = TokenizerConfig(channels=tuple(args.channels), levels=tuple(args.levels), decoder_channels=widths)
    metrics = train_tokenizer(args.data, args.out, model_cfg, cfg, device=args.device, fp16=args.fp16,
                              progress=not args.quiet, init=args.init, decoder_only=args.decoder_only,
                              force=args.force, log_config=record)
    if metrics:
        print(f"wrote {args.out}: held-out PSNR {metrics['val_psnr']:.2f} dB")
    return 0


def _cmd_train_dynamics(args: argparse.Namespace) -> int:
    resolved = _resolve(DynamicsTrainConfig, args)
    if resolved is None:
        return 0
    cfg, record = resolved
    check_steps_not_past(state_dir_for(args.out), cfg.steps)
    if (Path(args.data) / "manifest.json").is_file():  # else the trainer says what --data is, after --out's checks
        warning = check_tokenizer_for_data(args.tokenizer, args.data)
        if warning:
            print(f"worldsim: warning: {warning}", file=sys.stderr)
    metrics = train_dynamics(args.data, args.tokenizer, args.out, preset=args.preset, cfg=cfg, device=args.device,
                             context=args.context, progress=not args.quiet, bias_gamma=args.bias_gamma,
                             capacity=args.capacity, state_data=args.state_data,
                             state_residual=True if args.state_residual else None, init=args.init,
                             force=args.force, log_config=record)
    if metrics:
        figures = [f"held-out token accuracy {metrics['val_token_acc']:.4f}"] if "val_token_acc" in metrics else []
        if "open_valid_horizon" in metrics:
            figures.append(f"open-loop valid horizon {metrics['open_valid_horizon']:g} (best checkpoint: step "
                           f"{load_checkpoint_extra(args.out).get('best_step', '?')})")
        mse = metrics.get("val_state_mse", metrics.get("val_state_only_state_mse"))
        print(f"wrote {args.out}: " + ", ".join(figures or [f"held-out state MSE (normalised) {mse:.4g}"]))
    return 0


# Part trainer -> (its config, its trainer, the dataset flag's dest, the line its metrics print).
_PARTS = {
    "pathway": (PathwayTrainConfig, train_pathway, "state_data",
                lambda m, cfg: f"held-out state MSE (normalised) {m['val_mse_step1']:.4g} at step 1, "
                               f"{m['val_mse']:.4g} over {cfg.unroll} unrolled step(s)"),
    "outcome": (OutcomeTrainConfig, train_outcome, "state_data",
                lambda m, cfg: f"held-out reward MSE (normalised) {m['val_reward_mse']:.4g}, "
                               f"termination accuracy {m['val_term_acc']:.4f}"),
    "renderer": (RendererTrainConfig, train_renderer, "data",
                 lambda m, cfg: f"held-out token accuracy {m['val_token_acc']:.4f} from true states"),
    "prompt": (PromptTrainConfig, train_prompt, "data",
               lambda m, cfg: f"held-out prompts' start slots matched {m['val_adherence']:.1%}"
                              + (f", held-out combinations' {m['val_combo_adherence']:.1%}"
                                 if "val_combo_adherence" in m else "")
                              + (f", first-frame token accuracy {m['val_frame_acc']:.4f}" if "val_frame_acc" in m
                                 else "") + f" (the best checkpoint by the first: step {m['best_step']})"),
}


def _cmd_train_part(args: argparse.Namespace) -> int:
    cls, trainer, data, report = _PARTS[args.train_command]
    resolved = _resolve(cls, args)
    if resolved is None:
        return 0
    cfg, record = resolved
    check_steps_not_past(state_dir_for(args.out), cfg.steps)
    metrics = trainer(args.checkpoint, getattr(args, data), args.out, cfg, device=args.device,
                      progress=not args.quiet, force=args.force, log_config=record)
    print(f"wrote {args.out}: {report(metrics, cfg)}")
    return 0


def _add_run_args(s: argparse.ArgumentParser) -> None:
    """What every trainer takes beside its config fields."""
    add_config_file_flags(s, whole_run=True)
    add_run_flag(s, "--device", default="auto", help=DEVICE_HELP)
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--force", action="store_true", help=FORCE_HELP)


def _add_tokenizer_parser(tsub: argparse._SubParsersAction) -> None:
    s = tsub.add_parser("tokenizer", help="train the video tokenizer (resumable)",
                        description="Train the video tokenizer on one or more datasets; rerun to resume.")
    add_run_flag(s, "--data", required=True, nargs="+", metavar="DIR",
                 help="dataset directories (frames drawn evenly from each)")
    add_run_flag(s, "--out", required=True, help=_OUT_HELP)
    _add_run_args(s)
    add_run_flag(s, "--channels", type=int, nargs=len(_TOKENIZER.channels), default=_TOKENIZER.channels,
                 help="encoder widths at 32, 16 and 8 px")
    add_run_flag(s, "--levels", type=int, nargs="+", default=_TOKENIZER.levels, help="FSQ levels per latent channel")
    add_run_flag(s, "--decoder-channels", type=int, nargs=3, default=_TOKENIZER.decoder_channels,
                 shown="default: the encoder's, --channels", help="decoder widths at 32, 16 and 8 px")
    add_run_flag(s, "--decoder-only", action="store_true", default=False,
                 help="train only a narrower decoder for --init's frozen encoder and codes, from --init's "
                      "decoder's most active channels")
    add_run_flag(s, "--fp16", action="store_true", default=False, help="store the final weights in fp16")
    add_run_flag(s, "--init", help="start from this tokenizer's weights (fine-tuning)")
    add_config_flags(s, TokenizerTrainConfig)
    s.set_defaults(func=_cmd_train_tokenizer)


def _add_dynamics_parser(tsub: argparse._SubParsersAction) -> None:
    s = tsub.add_parser("dynamics", help="train the dynamics transformer (resumable)",
                        description="Train the dynamics transformer on a dataset's tokens; rerun to resume.")
    add_run_flag(s, "--data", required=True, help="dataset directory")
    add_run_flag(s, "--tokenizer", required=True, help="tokenizer checkpoint, or a scene name for the shipped one")
    add_run_flag(s, "--out", required=True, help=_OUT_HELP)
    _add_run_args(s)
    add_run_flag(s, "--preset", default=_DYNAMICS_ARGS["preset"], help=", ".join(PRESETS))
    add_run_flag(s, "--context", type=int, default=_DYNAMICS_ARGS["context"], help="context window in steps")
    add_run_flag(s, "--bias-gamma", type=float, shown=f"default: the preset's, {_DYNAMICS.bias_gamma}",
                 help="the MoE load-balancing bias step")
    add_run_flag(s, "--capacity", type=float, shown="default: the preset's",
                 help="share of frame tokens each pruned layer keeps")
    add_run_flag(s, "--state-residual", action="store_true", default=False,
                 help="with a state pathway, also train the state token's head and add it (mlp: off)")
    add_run_flag(s, "--state-data", nargs="+", default=_DYNAMICS_ARGS["state_data"], metavar="DIR",
                 help="more datasets of the scene whose transitions also fit the state pathway (frames unused)")
    add_run_flag(s, "--init", metavar="CKPT",
                 help="start the transformer from this world's weights (a directory, or worldsim:NAME for shipped "
                      "weights); tensors it lacks, or holds in another shape, start fresh")
    add_config_flags(s, DynamicsTrainConfig)
    s.set_defaults(func=_cmd_train_dynamics)


def _add_part_parser(tsub: argparse._SubParsersAction, name: str, data_flag: str, data_help: str,
                     **kwargs) -> None:
    """A part trainer's parser (`train pathway`, `outcome`, `renderer`)."""
    s = tsub.add_parser(name, **kwargs)
    add_run_flag(s, "--checkpoint", required=True,
                 help="the world model (a directory, or a scene name for the shipped one)")
    add_run_flag(s, data_flag, required=True, nargs="+", metavar="DIR", help=data_help)
    add_run_flag(s, "--out", required=True, help=_OUT_HELP)
    _add_run_args(s)
    add_config_flags(s, _PARTS[name][0])
    s.set_defaults(func=_cmd_train_part)


_STATE_DATA_HELP = "datasets of the scene; the first one's last episodes are held out for validation"


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `train` and its six trainers."""
    train = sub.add_parser("train", help="train models", description="Training commands.")
    tsub = train.add_subparsers(dest="train_command", required=True, metavar="COMMAND")
    _add_tokenizer_parser(tsub)
    _add_dynamics_parser(tsub)
    _add_part_parser(
        tsub, "pathway", "--state-data", _STATE_DATA_HELP,
        help="fit a world model's state pathway on more transitions (resumable)",
        description="Fit the state pathway of a world model alone, on datasets of its scene (frames unused: "
                    "`data generate --no-frames` makes them cheaply); the transformer is unchanged. Rerun to "
                    "resume.")
    _add_part_parser(
        tsub, "outcome", "--state-data", _STATE_DATA_HELP,
        help="give a world model an outcome head on its predicted state (resumable)",
        description="Fit an outcome head for a world model: an MLP from (next state, action) to the step's reward "
                    "and termination, which in rollouts reads the predicted state in place of the transformer's "
                    "own reward and termination heads. The transformer is unchanged. Rerun to resume."
    )
    _add_part_parser(
        tsub, "renderer", "--data",
        "datasets of the scene, with frames; the first one's last episodes are held out",
        help="give a world model a state renderer, fitted on frames (resumable)",
        description="Fit a state renderer for a world model: an MLP from a state to the frame head's logits for "
                    "that state's frame, added to the frame head's in rollouts (or replacing them) so predicted "
                    "frames follow the predicted state. The transformer is unchanged. Rerun to resume."
    )
    _add_part_parser(
        tsub, "prompt", "--data",
        "captioned datasets of the scene (`worldsim data caption`); each one's last episodes are held out; those "
        "with frames also teach the first frame",
        help="give a world model a prompt prefix, fitted on captioned episodes (resumable)",
        description="Fit a prompt prefix for a world model: the words of a caption as tokens in front of the "
                    "stream, read by the transformer's own blocks, from which it samples the initial state and "
                    "renders the first frame (`worldsim generate`). The transformer's weights are unchanged, so "
                    "the world without a prompt is the same bit for bit. Rerun to resume."
    )
