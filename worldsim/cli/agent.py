"""`worldsim agent eval`: score a saved agent on the real MuJoCo env, or in the world.

    worldsim agent eval runs/agents/pendulum/world/agent.zip --episodes 20
    worldsim agent eval runs/agents/pendulum/world/agent.zip --world

The agent is an SB3 .zip; its algorithm and scene come from the `settings.json` beside it
(`examples/train_in_world.py` writes one) or from `--algo` and `--scene`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from worldsim.cli.common import DEVICE_HELP
from worldsim.eval.agents import SB3_ALGOS, agent_settings, load_agent
from worldsim.eval.policy_eval import episode_steps, run_real, run_world


def run_agent_eval(args: argparse.Namespace) -> int:
    if not Path(args.agent).exists():
        raise ValueError(f"agent {args.agent!r}: no such file (expected an SB3 .zip)")
    settings = agent_settings(args.agent)
    scene = args.scene or settings.get("scene")
    if scene is None:
        raise ValueError(f"no settings.json beside {args.agent!r} names the agent's scene; pass --scene")
    steps = episode_steps(scene) if args.max_steps is None else args.max_steps
    if args.episodes < 1 or steps < 1:
        raise ValueError(f"--episodes and --max-steps must be >= 1, got {args.episodes} and {steps}")
    policy = load_agent(args.agent, args.algo, scene=scene)
    seeds = [args.seed + i for i in range(args.episodes)]
    if args.world:
        # The world it was trained in, with that world's reward, unless the flags say otherwise.
        checkpoint = args.checkpoint or settings.get("checkpoint")
        reward = args.reward or settings.get("reward", "model")
        returns, lengths = run_world(scene, policy, seeds, steps, checkpoint, args.device, reward=reward)
    else:
        returns, lengths = run_real(scene, policy, seeds, steps)
    where = "world" if args.world else "MuJoCo"
    if args.world:
        where += f" {checkpoint or 'shipped'}, {reward} reward"
    result = {"agent": args.agent, "scene": scene, "where": where, "episodes": args.episodes, "seed": args.seed,
              "max_steps": steps, "returns": returns.tolist(), "lengths": lengths.tolist(),
              "mean_return": float(np.mean(returns)), "std_return": float(np.std(returns)),
              "mean_length": float(np.mean(lengths))}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.agent} on {scene} ({where}), {args.episodes} episodes from seed {args.seed}: "
              f"return {result['mean_return']:.4g} +- {result['std_return']:.4g}, "
              f"length {result['mean_length']:.4g} (at most {steps})")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    agent = sub.add_parser("agent", help="saved agents", description="Saved-agent commands.")
    asub = agent.add_subparsers(dest="agent_command", required=True, metavar="COMMAND")
    e = asub.add_parser("eval", help="score a saved SB3 agent on the real env or in the world",
                        description="Run a saved agent (acting deterministically) for seeded episodes on the real "
                                    "MuJoCo env, or in the world with --world, and print its mean return and length.")
    e.add_argument("agent", help="the agent's .zip (SB3's save)")
    e.add_argument("--algo", choices=SB3_ALGOS, default=None, help="its algorithm (default: from settings.json)")
    e.add_argument("--scene", default=None, help="the scene (default: from settings.json)")
    e.add_argument("--world", action="store_true", help="score it in the world instead of on MuJoCo")
    e.add_argument("--checkpoint", default=None,
                   help="world-model checkpoint for --world (default: the one settings.json names, else the "
                        "shipped one)")
    e.add_argument("--reward", choices=("model", "task"), default=None,
                   help="the world's reward for --world: the model's own, or the task's on its predicted states "
                        "(default: the one settings.json names, else model)")
    e.add_argument("--episodes", type=int, default=20, help="episodes, seeds SEED, SEED + 1, ...")
    e.add_argument("--seed", type=int, default=10_000, help="first episode's seed")
    e.add_argument("--max-steps", type=int, default=None, help="steps per episode at most (default: the scene's)")
    e.add_argument("--device", default="auto", help=DEVICE_HELP)
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    e.set_defaults(func=run_agent_eval)
