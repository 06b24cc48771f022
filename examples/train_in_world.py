"""Train an agent entirely inside DSV4World-v0, then deploy it zero-shot in the real MuJoCo task.

    python examples/train_in_world.py --scene InvertedPendulum-v5 --algo ppo --steps 100000 --out runs/agents/pendulum

Three policies are scored on the real Gymnasium env over the same seeded episodes:
  1. the agent trained only in the world model (batched `DSV4WorldVector`, state observations),
  2. a uniform random policy,
  3. the same algorithm trained for the same number of steps on the real env.
The world-trained agent is also scored inside the world on the same initial states: a return in the
world far above its return in MuJoCo means the agent exploits the model's errors (the gap is printed).
Agents are saved as SB3's own .zip with the settings beside it, so `PPO.load` reads them and
`worldsim agent eval runs/agents/pendulum/world/agent.zip [--world]` scores them again.
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

from worldsim.core.outputs import replacing  # noqa: E402


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


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scene", default="InvertedPendulum-v5", help="a Gymnasium MuJoCo scene with a world model")
    p.add_argument("--checkpoint", default=None, help="world-model checkpoint (default: the shipped one)")
    p.add_argument("--algo", default="ppo", choices=("ppo", "sac"))
    p.add_argument("--steps", type=int, default=100_000, help="environment steps of training, world and real alike")
    p.add_argument("--num-envs", type=int, default=16, help="batched worlds (and real envs) during training")
    p.add_argument("--reward", default="task", choices=("model", "task"),
                   help="the world's reward: the model's own (its outcome head), or the task's reward function on "
                        "predicted states")
    p.add_argument("--episodes", type=int, default=20, help="seeded evaluation episodes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-seed", type=int, default=10_000, help="first evaluation episode seed (held out)")
    p.add_argument("--skip-real", action="store_true", help="do not train the real-env agent")
    p.add_argument("--out", default="runs/agents", help="where the policies and results go")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.steps < 1 or args.num_envs < 1 or args.episodes < 1:
        p.error("--steps, --num-envs and --episodes must be >= 1")

    from stable_baselines3.common.env_util import make_vec_env

    import worldsim  # noqa: F401
    from worldsim.envs.sb3 import make_sb3_vec_env

    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = Path(args.out)
    results: dict[str, dict] = {}
    settings = {k: v for k, v in vars(args).items()}

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
    venv = make_sb3_vec_env(num_envs=args.num_envs, scene=args.scene, checkpoint=args.checkpoint,
                            obs_type="state", reward=args.reward, device="cpu")
    venv.seed(args.seed)
    agent, t_world = train(venv, "world", "in the world")

    def world_act(obs):
        return agent.predict(obs, deterministic=True)[0]

    real_ret = evaluate_real(args.scene, world_act, args.episodes, args.eval_seed)
    in_world = evaluate_world(args.scene, args.checkpoint, world_act, args.episodes, args.eval_seed, args.reward)
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
        ref = results["real-trained"]["real"].mean()
        ratio = results["world-trained"]["real"].mean() / ref if ref else float("nan")
        print(f"world-trained / real-trained real return: {ratio:.2f}")
    summary = {name: {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in r.items()}
               for name, r in results.items()}
    summary["settings"] = settings
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
