import numpy as np
import pytest

from worldsim.envs import list_scenes, make_scene
from worldsim.envs.policies import POLICIES, make_policy


@pytest.fixture(scope="module")
def scenes():
    made = {n: make_scene(n) for n in list_scenes()}
    yield made
    for s in made.values():
        s.close()


def _rollout(scene, policy_name, seed, steps):
    p = make_policy(policy_name)
    scene.reset(seed=seed)
    p.reset(scene, seed)
    acts, ret = [], 0.0
    for _ in range(steps):
        a = p.act(scene)
        acts.append(a)
        r = scene.step(a)
        ret += r.reward
        if r.terminated:
            break
    return np.array(acts), ret


@pytest.mark.parametrize("scene_name", list_scenes())
@pytest.mark.parametrize("policy", list(POLICIES))
def test_actions_in_bounds_and_seeded(scenes, scene_name, policy):
    s = scenes[scene_name]
    a1, _ = _rollout(s, policy, 3, 20)
    a2, _ = _rollout(s, policy, 3, 20)
    np.testing.assert_array_equal(a1, a2)
    assert np.all(a1 >= s.action_space.low - 1e-9) and np.all(a1 <= s.action_space.high + 1e-9)


def test_smooth_is_smoother_than_uniform(scenes):
    s = scenes["Reacher-v5"]
    u, _ = _rollout(s, "random", 0, 50)
    m, _ = _rollout(s, "smooth", 0, 50)
    assert np.abs(np.diff(m, axis=0)).mean() < 0.5 * np.abs(np.diff(u, axis=0)).mean()


@pytest.mark.parametrize("scene_name", list_scenes())
def test_scripted_does_the_task_better_than_random(scenes, scene_name):
    s = scenes[scene_name]
    steps = min(s.max_episode_steps, 200)
    scripted = np.mean([_rollout(s, "scripted", k, steps)[1] for k in range(3)])
    rand = np.mean([_rollout(s, "random", k, steps)[1] for k in range(3)])
    assert scripted > rand, (scripted, rand)


@pytest.mark.parametrize("scene_name", list_scenes())
def test_the_controller_on_the_observed_state_is_the_scripted_one(scenes, scene_name):
    """`observed_action` reads only the state observation, and gives the true-physics controller's
    action (Pusher's fingertip observation runs one substep behind MuJoCo's kinematics)."""
    s = scenes[scene_name]
    s.reset(seed=4)
    rng = np.random.default_rng(0)
    for _ in range(6):
        s.step(rng.uniform(s.action_space.low, s.action_space.high))
    tol = 1e-2 if scene_name == "Pusher-v5" else 1e-12
    np.testing.assert_allclose(s.observed_action(s.state(), {}), s.scripted_action({}), atol=tol)
