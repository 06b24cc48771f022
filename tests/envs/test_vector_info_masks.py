"""The native vector env's `info` against Gymnasium's `SyncVectorEnv` of single `DSV4World` envs: the
same keys, `_key` masks and dtypes, and the same values where both have them, through episode ends in
both autoreset modes."""

import gymnasium as gym
import numpy as np
import pytest

from worldsim.envs.world_batch import WorldBatch
from worldsim.envs.world_env import DSV4World, DSV4WorldVector

N, MAX_STEPS, SEED = 3, 3, 10
# One row per step, one action per env. A first component of 0.9 ends that env's episode (`_end_on_big_action`);
# the rest run into the time limit. Step 3 ends every episode (env 0 terminated, the others truncated), so
# the next-step autoreset after it restarts every env at once; later steps end some envs only.
BIG, NONE = [0.9, 0.0], [0.0, 0.0]
ACTIONS = np.array([[NONE] * 3, [NONE] * 3, [BIG, NONE, NONE], [NONE] * 3, [BIG, NONE, NONE]] + [[NONE] * 3] * 3)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tiny_world):
    return str(tiny_world(tmp_path_factory.mktemp("wm") / "reacher"))


@pytest.fixture
def _end_on_big_action(monkeypatch):
    """The model's termination fires where an action's first component exceeds 0.5: episodes end where
    the test says, the same in the single and the vector env."""
    step = WorldBatch.step

    def stepped(self, actions):
        out = step(self, actions)
        out["terminated_model"] = actions[:, 0] > 0.5
        return out

    monkeypatch.setattr(WorldBatch, "step", stepped)


def assert_like_sync(native: dict, sync: dict, fresh: np.ndarray, fresh_final: np.ndarray) -> None:
    """`native` has every key of `sync`, with equal masks and dtypes, and values equal where a mask is
    set on a row still in its first episode (`fresh`; `fresh_final` for what `final_obs` / `final_info`
    hold): an autoreset draws its initial state from a MuJoCo scene the native env's rows share, so
    later episodes start elsewhere. A key that only `native` has is masked off for every env."""
    missing = set(sync) - set(native)
    assert not missing, f"keys SyncVectorEnv gives and the native env does not: {sorted(missing)}"
    for key in set(native) - set(sync):
        mask = key if key.startswith("_") else f"_{key}"
        assert mask in native and not native[mask].any(), f"{key}: only the native env has it, yet some env does"
    for key, want in sync.items():
        got = native[key]
        if key.startswith("_"):
            assert got.dtype == np.bool_ and np.array_equal(got, want), f"mask {key}: {got} != {want}"
        elif key == "final_info":
            assert_like_sync(got, want, fresh_final, fresh_final)
        elif key == "final_obs":
            assert got.dtype == object
            for i in np.flatnonzero(sync["_final_obs"] & fresh_final):
                np.testing.assert_allclose(got[i], want[i], atol=1e-4)
        else:
            assert got.dtype == want.dtype and got.shape == want.shape, f"{key}: {got.dtype}{got.shape} != " \
                                                                        f"{want.dtype}{want.shape}"
            rows = sync[f"_{key}"] & fresh
            np.testing.assert_allclose(got[rows], want[rows], atol=1e-4, err_msg=key)


@pytest.mark.usefixtures("_end_on_big_action")
@pytest.mark.parametrize("mode", ["next_step", "same_step"])
def test_info_keys_masks_and_dtypes_match_sync_vector_env(ckpt, mode):
    kw = dict(checkpoint=ckpt, obs_type="state", device="cpu", max_episode_steps=MAX_STEPS)
    native = DSV4WorldVector(num_envs=N, autoreset_mode=mode, **kw)
    sync = gym.vector.SyncVectorEnv([lambda: DSV4World(**kw) for _ in range(N)],
                                    autoreset_mode=native.metadata["autoreset_mode"])
    try:
        (n_obs, n_info), (s_obs, s_info) = native.reset(seed=SEED), sync.reset(seed=SEED)
        np.testing.assert_allclose(n_obs, s_obs)
        fresh = np.ones(N, dtype=bool)
        assert_like_sync(n_info, s_info, fresh, fresh)
        ended = np.zeros(N, dtype=bool)
        partial = False
        for t, actions in enumerate(ACTIONS):
            n_obs, n_rew, n_term, n_trunc, n_info = native.step(actions)
            s_obs, s_rew, s_term, s_trunc, s_info = sync.step(actions)
            assert n_term.tolist() == s_term.tolist() and n_trunc.tolist() == s_trunc.tolist(), f"step {t}"
            fresh_final = fresh.copy()
            done = s_term | s_trunc
            fresh &= ~(ended if mode == "next_step" else done)  # the rows that have reset by now
            np.testing.assert_allclose(n_obs[fresh], s_obs[fresh], atol=1e-4)
            np.testing.assert_allclose(n_rew[fresh], s_rew[fresh], atol=1e-4)
            assert_like_sync(n_info, s_info, fresh, fresh_final)
            partial |= 0 < done.sum() < N
            ended = done
        assert not fresh.any() and partial  # every env has reset; some episodes ended alone
    finally:
        native.close()
        sync.close()


def test_next_step_reset_rows_carry_the_reset_keys_alone(ckpt):
    venv = DSV4WorldVector(num_envs=2, checkpoint=ckpt, obs_type="state", device="cpu", max_episode_steps=1)
    _, info = venv.reset(seed=0)
    assert info["_state"].all() and info["_step"].all() and info["step"].tolist() == [0, 0]
    venv.step(np.zeros((2, 2)))
    _, _, _, _, info = venv.step(np.zeros((2, 2)))  # both envs only reset
    assert info["_state"].all() and info["step"].tolist() == [0, 0]
    for key in ("reward_model", "reward_task", "terminated_model", "terminated_task", "clipped", "clipped_total"):
        assert not info[f"_{key}"].any() and not info[key].any()
    venv.close()
