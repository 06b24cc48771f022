"""DSV4World-v0: the single and vector envs, the SB3 adapter and rollout videos, on a tiny model."""

import subprocess
import sys
import warnings

import gymnasium as gym
import imageio.v3 as iio
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.wrappers import RecordVideo, ResizeObservation
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.evaluation import evaluate_policy

import worldsim  # noqa: F401  (registers DSV4World-v0)
from worldsim.cli import main
from worldsim.envs import make_scene
from worldsim.envs.sb3 import make_sb3_vec_env
from worldsim.envs.world_env import DSV4World, DSV4WorldVector


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tiny_world):
    return str(tiny_world(tmp_path_factory.mktemp("wm") / "reacher"))


def make(ckpt, **kw):
    return gym.make("DSV4World-v0", checkpoint=ckpt, device="cpu", **kw)


def run(env, seed, actions):
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for a in actions:
        out.append(env.step(a)[0])
    return out


def test_reset_matches_the_real_scene_and_step_types(ckpt):
    env = make(ckpt, obs_type="dict", render_mode="rgb_array")
    obs, info = env.reset(seed=5)
    real = make_scene("Reacher-v5")
    real_state, _ = real.reset(seed=5)
    np.testing.assert_array_equal(obs["state"], real_state)
    assert obs["pixels"].shape == (64, 64, 3) and obs["pixels"].dtype == np.uint8
    assert obs["latent"].shape == (8, 8) and obs["latent"].dtype == np.int64
    obs, reward, terminated, truncated, info = env.step(np.array([0.1, -0.2]))
    assert type(reward) is float and type(terminated) is bool and type(truncated) is bool
    for k in ("state", "reward_model", "reward_task", "terminated_model", "terminated_task", "clipped"):
        assert k in info
    assert env.render().shape == (64, 64, 3)
    real.close()
    env.close()


def test_same_seed_and_actions_same_rollout_bit_for_bit(ckpt):
    acts = np.random.default_rng(0).uniform(-1, 1, (6, 2))
    a = run(make(ckpt, obs_type="dict"), 3, acts)
    b = run(make(ckpt, obs_type="dict"), 3, acts)
    for x, y in zip(a, b):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


def test_bad_actions_raise_and_leave_the_env_usable(ckpt):
    env = make(ckpt)
    env.reset(seed=1)
    ref = make(ckpt)
    ref.reset(seed=1)
    for bad in (np.array([np.nan, 0.0]), np.array([np.inf, 0.0]), np.zeros(3), "left"):
        with pytest.raises(ValueError, match="action"):
            env.step(bad)
    a = np.array([0.3, -0.1])
    np.testing.assert_array_equal(env.step(a)[0], ref.step(a)[0])
    info = env.step(np.array([5.0, -0.5]))[4]
    assert info["clipped"] == 1 and info["clipped_total"] == 1


def test_truncates_at_max_episode_steps(ckpt):
    env = make(ckpt, max_episode_steps=3)
    env.reset(seed=0)
    flags = [env.step(np.zeros(2))[3] for _ in range(3)]
    assert flags == [False, False, True]


def test_reset_from_given_qpos_qvel(ckpt):
    env = make(ckpt)
    real = make_scene("Reacher-v5")
    real.reset(seed=9)
    ps = real.physics_state()
    nq = real.model.nq
    obs, _ = env.reset(seed=0, options={"qpos": ps[:nq], "qvel": ps[nq:]})
    np.testing.assert_allclose(obs, real.state())
    with pytest.raises(ValueError, match="qpos"):
        env.reset(options={"qpos": ps[:nq]})
    real.close()


def test_bad_arguments(ckpt):
    with pytest.raises(ValueError, match="obs_type"):
        make(ckpt, obs_type="rgb")
    with pytest.raises(ValueError, match="reward"):
        make(ckpt, reward="dense")
    with pytest.raises(ValueError, match="trained on scene 'Reacher-v5'"):
        make(ckpt, scene="bounce")
    with pytest.raises(ValueError, match="context_frames"):
        make(ckpt, context_frames=9)


@pytest.mark.parametrize("obs_type", ["state", "pixels", "latent", "dict"])
def test_gymnasium_and_sb3_checkers_pass(ckpt, obs_type):
    env = make(ckpt, obs_type=obs_type, render_mode="rgb_array").unwrapped
    assert isinstance(env, DSV4World)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=False)
        sb3_check_env(env, warn=True)
    # Accepted: unbounded state boxes (the real envs' own), and SB3's advice that a 2-D token grid
    # needs a custom policy or FlattenObservation (the grid shape is the point of "latent").
    accepted = ("infinity", "unconventional shape")
    ours = [str(w.message) for w in caught if not any(a in str(w.message) for a in accepted)]
    assert ours == []


def test_vector_env_matches_single_envs(ckpt):
    venv = gym.make_vec("DSV4World-v0", num_envs=3, checkpoint=ckpt, device="cpu")
    assert isinstance(venv, DSV4WorldVector)
    acts = np.random.default_rng(1).uniform(-1, 1, (4, 3, 2))
    obs, _ = venv.reset(seed=10)
    states = [obs]
    for a in acts:
        states.append(venv.step(a)[0])
    for i in range(3):
        single = run(make(ckpt), 10 + i, acts[:, i])
        for t, s in enumerate(single):
            np.testing.assert_allclose(states[t][i], s, atol=1e-4)


def test_vector_next_step_autoreset(ckpt):
    venv = DSV4WorldVector(num_envs=2, checkpoint=ckpt, device="cpu", max_episode_steps=2)
    assert venv.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    venv.reset(seed=0)
    z = np.zeros((2, 2))
    venv.step(z)
    _, _, term, trunc, _ = venv.step(z)
    assert trunc.tolist() == [True, True] and not term.any()
    obs, reward, term, trunc, _ = venv.step(z)  # the reset step
    assert reward.tolist() == [0.0, 0.0] and not (term | trunc).any()


def test_restarted_rows_forget_their_past(ckpt):
    """A row reset mid-rollout must continue exactly like a fresh env from that state."""
    venv = DSV4WorldVector(num_envs=2, checkpoint=ckpt, device="cpu", max_episode_steps=1000)
    venv.reset(seed=0)
    rng = np.random.default_rng(2)
    for _ in range(2):
        venv.step(rng.uniform(-1, 1, (2, 2)))
    venv.batch.reset_rows(np.array([1]), [42], [None])
    single = make(ckpt)
    obs, _ = single.reset(seed=42)
    np.testing.assert_allclose(venv.batch.state[1], obs)
    for _ in range(4):
        a = rng.uniform(-1, 1, (2, 2))
        vobs = venv.step(a)[0]
        np.testing.assert_allclose(vobs[1], single.step(a[1])[0], atol=1e-4)


def test_vector_same_step_final_obs_and_sb3_adapter(ckpt):
    venv = make_sb3_vec_env(num_envs=2, checkpoint=ckpt, device="cpu", max_episode_steps=2)
    venv.seed(3)
    venv.reset()
    first = venv.step(np.zeros((2, 2)))
    obs, rewards, dones, infos = venv.step(np.zeros((2, 2)))
    assert dones.tolist() == [True, True] and not any("episode" in i for i in first[3])
    assert all(i["TimeLimit.truncated"] and i["terminal_observation"].shape == (10,) for i in infos)
    # A finished env's info is its last step's (state obs: the state is the terminal observation).
    assert all(np.array_equal(i["state"].astype(np.float32), i["terminal_observation"]) for i in infos)
    assert rewards.dtype == np.float32 and obs.shape == (2, 10)
    # Monitor's episode statistics: the return is the sum of the rewards handed out.
    for k in range(2):
        assert infos[k]["episode"]["l"] == 2
        assert infos[k]["episode"]["r"] == pytest.approx(float(first[1][k]) + float(rewards[k]), abs=1e-5)


@pytest.mark.slow
def test_sb3_ppo_trains_on_the_batched_world(ckpt):
    venv = make_sb3_vec_env(num_envs=4, checkpoint=ckpt, device="cpu", max_episode_steps=8)
    agent = PPO("MlpPolicy", venv, n_steps=16, batch_size=32, n_epochs=1, seed=0, device="cpu").learn(64)
    assert len(agent.ep_info_buffer) >= 4  # what SB3 logs as rollout/ep_rew_mean
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "not wrapped with a Monitor" warning
        _, lengths = evaluate_policy(agent, venv, n_eval_episodes=4, return_episode_rewards=True)
    assert lengths == [8, 8, 8, 8]


def test_rollout_cli_writes_a_side_by_side_video(ckpt, tmp_path):
    out = tmp_path / "r.mp4"
    assert main(["rollout", "--checkpoint", ckpt, "--steps", "5", "--seed", "1", "--out", str(out),
                 "--side-by-side", "--scale", "1", "--quiet", "--device", "cpu"]) == 0
    frames = iio.imread(out)
    assert frames.shape == (6, 64, 192, 3)
    # Episodes one after another, under the scripted controller (written over the first video: --force).
    assert main(["rollout", "--checkpoint", ckpt, "--steps", "3", "--episodes", "2", "--policy", "scripted",
                 "--out", str(out), "--side-by-side", "--scale", "1", "--quiet", "--device", "cpu", "--force"]) == 0
    assert iio.imread(out).shape == (8, 64, 192, 3)
    assert main(["rollout", "--checkpoint", ckpt, "--steps", "2", "--out", str(tmp_path / "x.gif")]) == 2


def test_make_by_module_path_without_import(ckpt):
    code = ("import gymnasium as gym; "
            f"e = gym.make('worldsim:DSV4World-v0', checkpoint={ckpt!r}, device='cpu'); "
            "print(e.reset(seed=0)[0].shape)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "(10,)" in out.stdout


@pytest.mark.slow
@pytest.mark.parametrize("scene", ["Reacher-v5", "InvertedPendulum-v5", "Pusher-v5", "bounce"])
def test_shipped_worlds_load_offline_and_pass_the_checkers(scene):
    env = gym.make("DSV4World-v0", scene=scene, obs_type="dict", render_mode="rgb_array", device="cpu").unwrapped
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
        sb3_check_env(env)
    # Accepted: the real envs' own unbounded state boxes and (pendulum) their [-3, 3] action box.
    # and SB3's advice for the 2-D token grid.
    accepted = ("infinity", "symmetric and normalized", "unconventional shape")
    assert [str(w.message) for w in caught if not any(a in str(w.message) for a in accepted)] == []
    env.close()


@pytest.mark.slow
def test_the_rl_extras_wrappers_and_sb3_tensorboard(ckpt, tmp_path):
    """What the `rl` extra carries: Gymnasium's RecordVideo (moviepy) and ResizeObservation (opencv) on
    the world, and SB3's tensorboard_log."""
    env = make(ckpt, obs_type="pixels", render_mode="rgb_array", max_episode_steps=3)
    env = RecordVideo(ResizeObservation(env, (32, 32)), str(tmp_path / "video"), episode_trigger=lambda e: True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (32, 32, 3)
    done = False
    while not done:
        obs, _, term, trunc, _ = env.step(env.action_space.sample())
        done = term or trunc
    env.close()
    assert list((tmp_path / "video").glob("*.mp4"))
    venv = make_sb3_vec_env(num_envs=2, checkpoint=ckpt, device="cpu", max_episode_steps=4)
    PPO("MlpPolicy", venv, n_steps=8, batch_size=16, n_epochs=1, seed=0, device="cpu",
        tensorboard_log=str(tmp_path / "tb")).learn(16)
    assert list((tmp_path / "tb").rglob("events.out.tfevents.*"))
