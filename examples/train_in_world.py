"""Train an agent entirely inside DSV4World-v0, then deploy it zero-shot in the real MuJoCo task.

    python examples/train_in_world.py --scene InvertedPendulum-v5 --algo ppo --steps 100000 --out runs/agents/pendulum

Three policies are scored on the real Gymnasium env over the same seeded episodes:
  1. the agent trained only in the world model (batched `DSV4WorldVector`, state observations),
  2. a uniform random policy,
  3. the same algorithm trained for the same number of steps on the real env.
The world-trained agent is also scored inside the world on the same initial states: a return in the
world far above its return in MuJoCo means the agent exploits the model's errors (the gap is printed).
Agents are saved as SB3's own .zip with the settings beside it, so `PPO.load` reads them and
`worldsim agent eval runs/agents/pendulum/world/agent.zip [--world]` scores them again, from any
directory (the settings name the world as an absolute path, or worldsim:NAME for shipped weights).

Every argument is checked before training. The run is written into a new directory beside --out and
put in its place whole at the end: an --out holding an earlier run (world/, real/, results.json) is
replaced only with --force, and a directory holding anything else, or a file, never.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from worldsim.core.checkpoint import load_checkpoint_config  # noqa: E402
from worldsim.core.outputs import (  # noqa: E402
    apply_umask,
    check_writable,
    fsync_tree,
    pid_alive,
    remove_tree,
    replace_dir,
    replacing,
)
from worldsim.core.registry import PACKAGE_REF, SHIPPED, WEIGHTS_DIR, resolve_checkpoint  # noqa: E402
from worldsim.envs import list_scenes  # noqa: E402

# What a run writes into --out; a directory holding anything else is not one of its runs.
RUN_FILES = ("world", "real", "results.json")


def progress_callback(total: int, desc: str, enabled: bool):
    from stable_baselines3.common.callbacks import BaseCallback
    from tqdm import tqdm

    class Bar(BaseCallback):
        def _on_training_start(self) -> None:
            self.bar = tqdm(total=total, desc=desc, disable=not enabled, dynamic_ncols=True)

        def _on_step(self) -> bool:
            self.bar.update(self.training_env.num_envs)
            return True

        def _on_training_end(self) -> None:
            self.bar.close()

    return Bar()


def make_algo(algo: str, env, seed: int, steps: int):
    from stable_baselines3 import PPO, SAC

    n = env.num_envs
    if algo == "ppo":
        # About 1024 transitions per update, fewer for tiny budgets (the smoke test).
        n_steps = max(8, min(1024 // n, steps // n))
        return PPO("MlpPolicy", env, seed=seed, device="cpu", n_steps=n_steps, batch_size=min(256, n_steps * n),
                   n_epochs=10, learning_rate=3e-4, gamma=0.99, verbose=0)
    if algo == "sac":
        return SAC("MlpPolicy", env, seed=seed, device="cpu", learning_starts=min(1000, steps // 2), batch_size=256,
                   train_freq=1, gradient_steps=max(1, n // 4), verbose=0)
    raise ValueError(f"--algo must be 'ppo' or 'sac', got {algo!r}")


def episode_returns(env: gym.Env, act, episodes: int, seed: int) -> np.ndarray:
    """Returns of `act(obs) -> action` in `env` over episodes seeded seed, seed + 1, ..."""
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            obs, r, term, trunc, _ = env.step(act(obs))
            total += float(r)
            done = term or trunc
        returns.append(total)
    env.close()
    return np.array(returns)


def evaluate_real(scene: str, act, episodes: int, seed: int) -> np.ndarray:
    """Returns on the real Gymnasium env."""
    return episode_returns(gym.make(scene), act, episodes, seed)


def evaluate_world(scene: str, checkpoint: str | None, act, episodes: int, seed: int, reward: str) -> np.ndarray:
    """Returns of the same policy inside the world model, from the same initial states."""
    from worldsim.envs.world_env import DSV4World

    env = DSV4World(scene=scene, checkpoint=checkpoint, obs_type="state", reward=reward, device="cpu")
    return episode_returns(env, act, episodes, seed)


def save_agent(model, path: Path, settings: dict) -> None:
    """SB3's own .zip (`PPO.load(path / "agent.zip")` reads it) and the settings that trained it, each
    written whole: to a temporary name first, then renamed."""
    path.mkdir(parents=True, exist_ok=True)
    with replacing(path / "agent.zip") as tmp:
        model.save(str(tmp))
    with replacing(path / "settings.json") as tmp:
        tmp.write_text(json.dumps(settings, indent=2) + "\n")


def check_scene(scene: str) -> None:
    """The scene must have a real Gymnasium env: the agents are deployed and scored on it."""
    try:
        gym.spec(scene)
    except gym.error.Error:
        real = [name for name in list_scenes() if name in gym.registry]
        raise ValueError(f"--scene {scene!r} has no Gymnasium env to deploy the agent on; the scenes that do: "
                         f"{', '.join(real)}") from None


def world_setting(scene: str, checkpoint: str | None) -> str | None:
    """The world to train in, as settings.json records it: None (the scene's shipped world),
    worldsim:NAME for shipped weights, else an absolute path, so `agent eval --world` finds the same
    world from any directory. The world must be one of `scene`."""
    if checkpoint is None:
        if scene not in SHIPPED.get("world_model", {}):
            raise ValueError(f"no world model is shipped for scene {scene!r}; pass --checkpoint DIR")
        return None
    path = resolve_checkpoint(checkpoint, "world_model")
    trained_on = load_checkpoint_config(path, kind="world_model").get("scene")
    if trained_on != scene:
        raise ValueError(f"--checkpoint {checkpoint} is a world of scene {trained_on!r}, not {scene!r}")
    if path.parent.resolve() == WEIGHTS_DIR.resolve():
        return PACKAGE_REF + path.name
    return os.path.abspath(path)


def check_out(out: Path, force: bool) -> None:
    """--out must be absent, empty, or an earlier run (replaced only with `force`); never a file or a
    directory holding anything else."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ValueError(f"--out {str(out)!r} exists and is not a directory; refusing to replace it")
    if out.is_dir():
        entries = sorted(p.name for p in out.iterdir())
        foreign = [name for name in entries if name not in RUN_FILES]
        if foreign:
            raise ValueError(f"--out {str(out)!r} holds {', '.join(foreign[:5])}, which no run of this example "
                             f"writes; refusing to replace it (choose another --out)")
        if entries and not force:
            raise ValueError(f"--out {str(out)!r} holds an earlier run ({', '.join(entries)}); refusing to replace "
                             f"it (choose another --out, or pass --force to replace it whole)")
    check_writable(out, "--out")


def new_run_dir(out: Path) -> Path:
    """A fresh directory beside `out` to write the run into, after removing those killed runs left."""
    out.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{out.name}.tmp-"
    for p in out.parent.glob(prefix + "*"):
        pid = p.name[len(prefix):]
        if pid.isdigit() and not pid_alive(int(pid)):
            remove_tree(p)
    tmp = out.parent / f"{prefix}{os.getpid()}"
    remove_tree(tmp)
    tmp.mkdir()
    return tmp


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scene", default="InvertedPendulum-v5", help="a Gymnasium MuJoCo scene with a world model")
    p.add_argument("--checkpoint", default=None, help="world-model checkpoint (default: the shipped one)")
    p.add_argument("--algo", default="ppo", choices=("ppo", "sac"))
    p.add_argument("--steps", type=int, default=100_000, help="environment steps of training, world and real alike")
    p.add_argument("--num-envs", type=int, default=16, help="batched worlds (and real envs) during training")
    p.add_argument("--reward", default="task", choices=("model", "task"),
                   help="the world's reward: the model's own prediction (its reward and termination heads, or its "
                        "outcome head where it has one, as the mlp baselines do), or the task's reward function "
                        "on predicted states")
    p.add_argument("--episodes", type=int, default=20, help="seeded evaluation episodes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-seed", type=int, default=10_000, help="first evaluation episode seed (held out)")
    p.add_argument("--skip-real", action="store_true", help="do not train the real-env agent")
    p.add_argument("--out", default="runs/agents", help="where the policies and results go (absent, empty, or an "
                                                         "earlier run with --force)")
    p.add_argument("--force", action="store_true", help="replace an earlier run at --out, whole")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.steps < 1 or args.num_envs < 1 or args.episodes < 1:
        p.error("--steps, --num-envs and --episodes must be >= 1")
    out = Path(args.out)
    # Every check comes before training, so no agent is lost to a bad argument found after it.
    try:
        check_scene(args.scene)
        checkpoint = world_setting(args.scene, args.checkpoint)
        check_out(out, args.force)
    except (ValueError, OSError) as exc:
        p.error(str(exc))

    torch.set_num_threads(max(1, torch.get_num_threads()))
    tmp = new_run_dir(out)
    try:
        summary = run(args, checkpoint, tmp)
        apply_umask(tmp)
        fsync_tree(tmp)
        replace_dir(tmp, out)
    finally:
        remove_tree(tmp)
    return summary


def run(args: argparse.Namespace, checkpoint: str | None, out: Path) -> dict:
    """Train and score the three policies, writing the agents and results.json into `out`; the summary."""
    from stable_baselines3.common.env_util import make_vec_env

    from worldsim.envs.sb3 import make_sb3_vec_env

    results: dict[str, dict] = {}
    settings = {**vars(args), "checkpoint": checkpoint}

    def train(env, name: str, where: str):
        """Train the algorithm on `env` for the step budget; save it under out/name. (agent, seconds)"""
        agent = make_algo(args.algo, env, args.seed, args.steps)
        t0 = time.perf_counter()
        agent.learn(args.steps, callback=progress_callback(args.steps, f"{args.algo} {where}", not args.quiet))
        seconds = time.perf_counter() - t0
        env.close()
        save_agent(agent, out / name, settings)
        return agent, seconds

    # 1. Train in the world model only.
    venv = make_sb3_vec_env(num_envs=args.num_envs, scene=args.scene, checkpoint=checkpoint,
                            obs_type="state", reward=args.reward, device="cpu")
    venv.seed(args.seed)
    agent, t_world = train(venv, "world", "in the world")

    def world_act(obs):
        return agent.predict(obs, deterministic=True)[0]

    real_ret = evaluate_real(args.scene, world_act, args.episodes, args.eval_seed)
    in_world = evaluate_world(args.scene, checkpoint, world_act, args.episodes, args.eval_seed, args.reward)
    results["world-trained"] = {"real": real_ret, "world": in_world, "train_s": t_world}

    # 2. Random.
    space = gym.make(args.scene).action_space
    space.seed(args.seed)
    results["random"] = {"real": evaluate_real(args.scene, lambda o: space.sample(), args.episodes, args.eval_seed)}

    # 3. The same algorithm on the real env, same step budget.
    if not args.skip_real:
        real_agent, t_real = train(make_vec_env(args.scene, n_envs=args.num_envs, seed=args.seed), "real", "on MuJoCo")
        results["real-trained"] = {
            "real": evaluate_real(args.scene, lambda o: real_agent.predict(o, deterministic=True)[0],
                                  args.episodes, args.eval_seed),
            "train_s": t_real,
        }

    print(f"\n{args.scene}: {args.algo}, {args.steps} training steps, {args.num_envs} envs, "
          f"{args.episodes} real episodes (seeds {args.eval_seed}..{args.eval_seed + args.episodes - 1})")
    print(f"{'policy':<15} {'real return':>20} {'world return':>14} {'train wall s':>13}")
    for name, r in results.items():
        real = f"{r['real'].mean():.1f} +- {r['real'].std():.1f}"
        world = f"{r['world'].mean():.1f}" if "world" in r else "-"
        wall = f"{r['train_s']:.0f}" if "train_s" in r else "-"
        print(f"{name:<15} {real:>20} {world:>14} {wall:>13}")
    gap = results["world-trained"]["world"].mean() - results["world-trained"]["real"].mean()
    print(f"model exploitation gap (world return - real return of the world-trained agent): {gap:.1f}")
    if "real-trained" in results:
        # A share of the gain over random, not a ratio of returns: returns are often negative, where
        # world / real above 1 would mean worse.
        base = results["random"]["real"].mean()
        gain = results["real-trained"]["real"].mean() - base
        share = (results["world-trained"]["real"].mean() - base) / gain if gain > 0 else float("nan")
        print(f"world-trained agent's share of the real-trained agent's gain over random (real returns; 1 is as "
              f"good): {share:.2f}")
    summary = {name: {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in r.items()}
               for name, r in results.items()}
    summary["settings"] = settings
    with replacing(out / "results.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
