"""DSV4World-v0 on what could go wrong: sampled rollouts reproducible, time limits honoured, and
non-finite or out-of-range inputs refused before they reach the model, on a tiny model."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import worldsim  # noqa: F401  (registers DSV4World-v0)
from worldsim.envs import make_scene
from worldsim.envs.world_env import DSV4World, DSV4WorldVector
from worldsim.model.world_model import WorldModel


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tiny_world):
    return str(tiny_world(tmp_path_factory.mktemp("wm") / "reacher"))


@pytest.fixture(scope="module")
def bounded_ckpt(tmp_path_factory, ckpt):
    """The tiny world with state bounds [-2, 2] in every dimension (Reacher's initial states lie inside)."""

    wm = WorldModel.from_pretrained(ckpt, device="cpu")
    bounded = WorldModel(wm.cfg.replace(state_low=(-2.0,) * 10, state_high=(2.0,) * 10))
    bounded.load_state_dict(wm.state_dict())
    return str(bounded.save(tmp_path_factory.mktemp("wm") / "bounded"))


def _stir_torch_rng(k):
    """Change torch's global RNG differently for each `k`: a sampled rollout must not depend on it."""
    torch.manual_seed(1000 + k)
    torch.rand(k + 1)


# --- 1. sampling is seeded by the env's own RNG at every reset -------------------------------------


def _single_sampled_rollout(ckpt, stir):
    env = DSV4World(checkpoint=ckpt, device="cpu", obs_type="dict", temperature=1.0, max_episode_steps=3)
    acts = np.random.default_rng(0).uniform(-1, 1, (3, 2))
    out = [env.reset(seed=0)[0]]
    for episode in range(3):
        if episode:
            out.append(env.reset()[0])  # seedless: sampling still seeded, from env.np_random
        for t, a in enumerate(acts):
            _stir_torch_rng(stir + t)
            out.append(env.step(a)[0])
    return out


def test_seedless_resets_sample_reproducibly_whatever_torch_rng_does(ckpt):
    a = _single_sampled_rollout(ckpt, stir=0)
    b = _single_sampled_rollout(ckpt, stir=50)
    for x, y in zip(a, b):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


@pytest.mark.parametrize("mode", ["next_step", "same_step"])
def test_vector_autoresets_sample_reproducibly_whatever_torch_rng_does(ckpt, mode):
    def rollout(stir):
        venv = DSV4WorldVector(num_envs=2, checkpoint=ckpt, device="cpu", obs_type="latent", temperature=1.0,
                               max_episode_steps=3, autoreset_mode=mode)
        acts = np.random.default_rng(1).uniform(-1, 1, (8, 2, 2))
        out = [venv.reset(seed=0)[0]]
        for t, a in enumerate(acts):  # both rows end together at steps 3 and 6: every row restarts
            _stir_torch_rng(stir + t)
            out.append(venv.step(a)[0])
        out.append(venv.reset()[0])  # a seedless reset of every row
        for t, a in enumerate(acts[:2]):
            _stir_torch_rng(stir + 10 + t)
            out.append(venv.step(a)[0])
        # A partial restart keeps the handle's (seeded) generator.
        venv.batch.reset_rows(np.array([1]), [None], [None], sample_seed=int(venv.np_random.integers(2**62)))
        for t, a in enumerate(acts[:3]):
            _stir_torch_rng(stir + 20 + t)
            out.append(venv.step(a)[0])
        return out

    for x, y in zip(rollout(0), rollout(50)):
        np.testing.assert_array_equal(x, y)


# --- 2. gym.make's max_episode_steps ------------------------------------------------------------


def _episode_length(env, limit=200):
    env.reset(seed=0)
    for t in range(1, limit + 1):
        _, _, terminated, truncated, _ = env.step(np.zeros(2))
        if terminated or truncated:
            return t
    return None


def test_make_max_episode_steps_is_honoured_and_in_the_spec(ckpt):
    env = gym.make("DSV4World-v0", checkpoint=ckpt, device="cpu", max_episode_steps=100)
    assert env.spec.max_episode_steps == 100 and env.unwrapped.max_episode_steps == 100
    assert env.unwrapped.spec.max_episode_steps == 100
    assert _episode_length(env) == 100
    env.close()


def test_make_without_max_episode_steps_has_the_scenes_own_in_the_spec(ckpt):
    env = gym.make("DSV4World-v0", checkpoint=ckpt, device="cpu")
    assert env.spec.max_episode_steps == 50 and env.unwrapped.spec.max_episode_steps == 50
    assert _episode_length(env) == 50
    # A spec that says so makes the same env again.
    again = gym.make(env.spec, checkpoint=ckpt, device="cpu")
    assert again.spec.max_episode_steps == 50 and again.unwrapped.max_episode_steps == 50
    again.close()
    env.close()


def test_own_max_episode_steps_is_kept_and_reported(ckpt):
    env = DSV4World(checkpoint=ckpt, device="cpu", max_episode_steps=7)
    assert env.spec is None and env.max_episode_steps == 7
    spec = gym.spec("DSV4World-v0")
    env.spec = spec  # a spec assigned later does not override the env's own argument
    assert env.spec.max_episode_steps == 7 and env.spec.id == "DSV4World-v0"
    assert _episode_length(env) == 7
    other = DSV4World(checkpoint=ckpt, device="cpu")
    other.spec = gym.envs.registration.EnvSpec("DSV4World-v0", max_episode_steps=9)  # adopted: none of its own
    assert other.max_episode_steps == 9 and other.spec.max_episode_steps == 9


# --- 3. reset options: finite, real, the right length, within range ------------------------------


def _physics(seed=9):
    real = make_scene("Reacher-v5")
    real.reset(seed=seed)
    ps, nq = real.physics_state(), real.model.nq
    real.close()
    return ps[:nq], ps[nq:]


def _same_future(env, ref, steps=3):
    """`env` and `ref` step alike (sampling too), and a later seedless reset starts alike."""
    rng = np.random.default_rng(3)
    for _ in range(steps):
        a = rng.uniform(-1, 1, env.action_space.shape)
        np.testing.assert_array_equal(env.step(a)[0], ref.step(a)[0])
    np.testing.assert_array_equal(env.reset()[0], ref.reset()[0])
    a = rng.uniform(-1, 1, env.action_space.shape)
    np.testing.assert_array_equal(env.step(a)[0], ref.step(a)[0])


# Reacher-v5: nq = nv = 4 (two arm joints, two target joints).
BAD_QVEL = [
    (np.full(4, 1e39), "qvel.*float32.*1e[+]39"),
    (np.array([np.nan, 0.0, 0.0, 0.0]), "qvel.*finite.*nan"),
    (np.array([0.0, np.inf, 0.0, 0.0]), "qvel.*finite.*inf at index 1"),
    (np.zeros(3), r"qvel.*nv = 4.*shape \(4,\).*got shape \(3,\)"),
    (np.zeros((1, 4)), r"qvel.*shape \(4,\).*got shape \(1, 4\)"),
    (np.array([1 + 1j, 0, 0, 0]), "qvel.*real numbers.*complex"),
    (np.zeros(4, dtype=bool), "qvel.*real numbers.*bool"),
    (["0.1", "0.2", "0", "0"], "qvel.*real numbers"),
    ([0.1, True, 0.0, 0.0], "qvel.*real numbers.*bools"),
    (None, "qvel.*real numbers"),
]


def test_bad_reset_options_raise_and_leave_the_env_as_it_was(ckpt):
    qpos, _ = _physics()
    env = gym.make("DSV4World-v0", checkpoint=ckpt, device="cpu", temperature=1.0)
    ref = gym.make("DSV4World-v0", checkpoint=ckpt, device="cpu", temperature=1.0)
    env.reset(seed=2), ref.reset(seed=2)
    env.step(np.zeros(2)), ref.step(np.zeros(2))
    for qvel, match in BAD_QVEL:
        with pytest.raises(ValueError, match=match):
            env.reset(options={"qpos": qpos, "qvel": qvel})
    with pytest.raises(ValueError, match=r"qpos.*nq = 4.*shape \(4,\).*got shape \(5,\)"):
        env.reset(seed=4, options={"qpos": np.zeros(5), "qvel": np.zeros(4)})
    with pytest.raises(ValueError, match="both 'qpos' and 'qvel'"):
        env.reset(seed=4, options={"qvel": np.zeros(4)})
    assert env.unwrapped.batch.state.tolist() == ref.unwrapped.batch.state.tolist()
    _same_future(env, ref)


def test_reset_state_outside_the_models_bounds_is_refused(bounded_ckpt):
    qpos, qvel = _physics()
    env = DSV4World(checkpoint=bounded_ckpt, device="cpu")
    ref = DSV4World(checkpoint=bounded_ckpt, device="cpu")
    env.reset(seed=1), ref.reset(seed=1)
    inside = np.array([1.5, -1.0, 0.0, 0.0])
    obs, _ = env.reset(options={"qpos": qpos, "qvel": inside})  # accepted
    ref.reset(options={"qpos": qpos, "qvel": inside})
    np.testing.assert_array_equal(obs[6:8], [1.5, -1.0])
    with pytest.raises(ValueError, match=r"state bounds.*state\[6\] = 5 not in \[-2, 2\]"):
        env.reset(options={"qpos": qpos, "qvel": np.array([5.0, 0.0, 0.0, 0.0])})
    with pytest.raises(ValueError, match=r"state bounds.*state\[4\] = 3"):
        env.reset(options={"qpos": np.array([0.0, 0.0, 3.0, 0.0]), "qvel": qvel})
    _same_future(env, ref)


def test_vector_bad_reset_options_raise_and_leave_every_row_as_it_was(bounded_ckpt):
    qpos, qvel = _physics()
    qpos2, qvel2 = np.stack([qpos, qpos]), np.stack([qvel, qvel])
    venv = DSV4WorldVector(num_envs=2, checkpoint=bounded_ckpt, device="cpu", temperature=1.0)
    ref = DSV4WorldVector(num_envs=2, checkpoint=bounded_ckpt, device="cpu", temperature=1.0)
    venv.reset(seed=0), ref.reset(seed=0)
    z = np.zeros((2, 2))
    venv.step(z), ref.step(z)
    bad_row = qvel2.copy()
    bad_row[1] = 1e39
    out_of_bounds = qvel2.copy()
    out_of_bounds[1, 0] = 5.0
    for bad, match in [(bad_row, r"qvel.*row 1.*float32"), (out_of_bounds, r"row 1.*state bounds.*state\[6\] = 5"),
                       (qvel2.astype(complex), "qvel.*real numbers"), (qvel2[:1], r"qvel.*\(2, 4\).*\(1, 4\)"),
                       (np.full((2, 4), np.nan), "qvel.*row 0.*finite")]:
        with pytest.raises(ValueError, match=match):
            venv.reset(options={"qpos": qpos2, "qvel": bad})
    with pytest.raises(ValueError, match=r"qpos.*\(2, 4\).*\(2, 3\)"):
        venv.reset(options={"qpos": qpos2[:, :3], "qvel": qvel2})
    np.testing.assert_array_equal(venv.batch.state, ref.batch.state)
    rng = np.random.default_rng(4)
    for _ in range(3):
        a = rng.uniform(-1, 1, (2, 2))
        np.testing.assert_array_equal(venv.step(a)[0], ref.step(a)[0])
    np.testing.assert_array_equal(venv.reset(options={"qpos": qpos2, "qvel": qvel2})[0],
                                  ref.reset(options={"qpos": qpos2, "qvel": qvel2})[0])


# --- 4. actions are real numbers ----------------------------------------------------------------


BAD_ACTIONS = [np.array([1 + 0j, 0]), np.array([True, False]), [True, 0.5], np.array(["0.1", "0.2"]),
               [b"a", b"b"], np.array([0.1, None], dtype=object), "left", [0.1, "0.2"], True]


def test_actions_must_be_real_numbers(ckpt):
    env = gym.make("DSV4World-v0", checkpoint=ckpt, device="cpu")
    ref = gym.make("DSV4World-v0", checkpoint=ckpt, device="cpu")
    env.reset(seed=1), ref.reset(seed=1)
    for bad in BAD_ACTIONS:
        with pytest.raises((TypeError, ValueError), match=r"real numbers.*\(2,\).*got"):
            env.step(bad)
    for good in ([0.1, -0.2], [1, 0], np.array([0.3, 0.1], dtype=np.float32), np.array([1, -1]),
                 np.array([0.5, 0.5], dtype=np.float16), (0.2, 0.2)):
        np.testing.assert_array_equal(env.step(good)[0], ref.step(good)[0])


def test_vector_actions_must_be_real_numbers(ckpt):
    venv = DSV4WorldVector(num_envs=2, checkpoint=ckpt, device="cpu")
    ref = DSV4WorldVector(num_envs=2, checkpoint=ckpt, device="cpu")
    venv.reset(seed=1), ref.reset(seed=1)
    for bad in (np.zeros((2, 2), dtype=complex), np.zeros((2, 2), dtype=bool), [[0.1, 0.2], [True, 0.0]],
                np.full((2, 2), "0"), np.zeros((2, 2), dtype=object)):
        with pytest.raises((TypeError, ValueError), match=r"real numbers.*\(2, 2\).*got"):
            venv.step(bad)
    for good in ([[0.1, -0.2], [0, 1]], np.zeros((2, 2), dtype=np.float32), np.ones((2, 2), dtype=np.int64)):
        np.testing.assert_array_equal(venv.step(good)[0], ref.step(good)[0])


# --- 5. a non-finite model step is not swallowed ------------------------------------------------


def test_a_floating_point_error_of_the_model_reaches_the_caller(ckpt, monkeypatch):
    env = gym.make("DSV4World-v0", checkpoint=ckpt, device="cpu")
    venv = gym.make_vec("DSV4World-v0", num_envs=2, checkpoint=ckpt, device="cpu")
    env.reset(seed=0), venv.reset(seed=0)

    def non_finite(*args, **kwargs):
        raise FloatingPointError("WorldModel.step: the predicted state is not finite")

    for e, a in ((env, np.zeros(2)), (venv, np.zeros((2, 2)))):
        monkeypatch.setattr(e.unwrapped.batch.wm, "step", non_finite)
        with pytest.raises(FloatingPointError, match="not finite"):
            e.step(a)
