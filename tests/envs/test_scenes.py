import gymnasium as gym
import mujoco
import numpy as np
import pytest

from worldsim.envs import list_scenes, make_scene
from worldsim.envs.bounce import HALF_WIDTH, HEIGHT, RADIUS, SUBSTEPS

GYM_TASKS = ["InvertedPendulum-v5", "Reacher-v5", "Pusher-v5"]


@pytest.fixture(scope="module")
def scenes():
    made = {name: make_scene(name) for name in list_scenes()}
    yield made
    for s in made.values():
        s.close()


def test_registry_lists_the_four_scenes():
    assert set(list_scenes()) >= {"InvertedPendulum-v5", "Reacher-v5", "Pusher-v5", "bounce"}


def test_unknown_scene_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown scene 'Reacher-v4'; known scenes: .*Reacher-v5"):
        make_scene("Reacher-v4")


@pytest.mark.parametrize("size", [(16, 16), (48, 32)])
def test_frames_are_uint8_hwc_any_multiple_of_16(size):
    with make_scene("bounce", width=size[0], height=size[1]) as s:
        f = s.render()
    assert f.dtype == np.uint8 and f.shape == (size[1], size[0], 3)


@pytest.mark.parametrize("bad", [(65, 64), (0, 64), (64, -16)])
def test_frame_size_not_a_multiple_of_16_is_refused(bad):
    with pytest.raises(ValueError, match="multiple of 16"):
        make_scene("bounce", width=bad[0], height=bad[1])


@pytest.mark.parametrize("name", GYM_TASKS)
def test_gym_task_matches_the_real_env_step_by_step(scenes, name):
    """Same seed, same actions: our scene's state, reward and termination equal Gymnasium's own."""
    scene = scenes[name]
    real = gym.make(name)
    obs, _ = real.reset(seed=123)
    state, info = scene.reset(seed=123)
    np.testing.assert_array_equal(state, obs)
    np.testing.assert_array_equal(info["physics_state"], np.concatenate([real.unwrapped.data.qpos, real.unwrapped.data.qvel]))
    rng = np.random.default_rng(0)
    for t in range(40):
        a = rng.uniform(scene.action_space.low, scene.action_space.high).astype(np.float32)
        obs, rew, term, _, _ = real.step(a)
        r = scene.step(a)
        np.testing.assert_array_equal(r.state, obs, err_msg=f"{name} step {t}")
        # Gymnasium sums the control cost in float32 (the action's dtype); we sum in float64.
        assert r.reward == pytest.approx(rew, rel=1e-6, abs=1e-7)
        assert r.terminated == term
        if term:
            break
    real.close()


@pytest.mark.parametrize("name", list_scenes())
def test_same_seed_same_episode(scenes, name):
    s = scenes[name]
    runs = []
    for _ in range(2):
        s.reset(seed=5)
        frames = [s.render()]
        for _ in range(5):
            s.step(np.full(s.action_space.shape, 0.3))
            frames.append(s.render())
        runs.append((np.stack(frames), s.physics_state()))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


@pytest.mark.parametrize("name", list_scenes())
def test_physics_state_round_trip(scenes, name):
    s = scenes[name]
    s.reset(seed=1)
    for _ in range(3):
        s.step(s.action_space.sample())
    saved, frame, state = s.physics_state(), s.render(), s.state()
    after = [s.step(np.zeros(s.action_space.shape)).state for _ in range(3)]
    s.reset(seed=99)
    s.set_physics_state(saved)
    np.testing.assert_array_equal(s.physics_state(), saved)
    np.testing.assert_array_equal(s.render(), frame)
    if name in ("InvertedPendulum-v5", "bounce"):
        np.testing.assert_array_equal(s.state(), state)
    np.testing.assert_allclose(s.step(np.zeros(s.action_space.shape)).state, after[0], atol=1e-9)


@pytest.mark.parametrize("name", list_scenes())
def test_reset_from_a_physics_state(scenes, name):
    s = scenes[name]
    s.reset(seed=2)
    s.step(s.action_space.sample())
    saved = s.physics_state()
    s.reset(seed=3)
    state, info = s.reset(physics_state=saved)
    np.testing.assert_array_equal(info["physics_state"], saved)


@pytest.mark.parametrize("name", list_scenes())
def test_a_reset_state_gives_back_its_physics_state(scenes, name):
    # What MuJoCo starts from when a prompt's start is checked: every reset state maps back exactly.
    s = scenes[name]
    for seed in range(3):
        state, _ = s.reset(seed=seed)
        physics = s.physics_from_state(state)
        again, _ = s.reset(seed=99, physics_state=physics)
        np.testing.assert_allclose(again, state, atol=1e-12)
        np.testing.assert_allclose(s.physics_state(), physics, atol=1e-12)


@pytest.mark.parametrize("name", list_scenes())
def test_reset_states_are_consistent_and_a_sampled_one_is_made_so(scenes, name):
    s = scenes[name]
    real = np.stack([s.reset(seed=i)[0] for i in range(5)])
    np.testing.assert_allclose(s.consistent_states(real), real, atol=1e-9)
    if name == "Reacher-v5":  # each dimension sampled to a bin's width: cos and sin and the fingertip disagree
        rough = real.copy()
        rough[:, 0:4] *= 1.04
        rough[:, 8:10] += 0.02
        np.testing.assert_allclose(s.consistent_states(rough), real, atol=1e-9)
    if name == "Pusher-v5":
        rough = real.copy()
        rough[:, 14:17] += 0.03
        np.testing.assert_allclose(s.consistent_states(rough), real, atol=1e-9)


def test_pusher_starts_are_where_a_reset_puts_them(scenes):
    s = scenes["Pusher-v5"]
    real = np.stack([s.reset(seed=i)[0] for i in range(50)])
    assert s.start_is_valid(real).all()
    on_goal, off_table = real.copy(), real.copy()
    on_goal[:, 17:19] = real[:, 20:22]
    off_table[:, 17] += 1.0
    assert not s.start_is_valid(on_goal).any() and not s.start_is_valid(off_table).any()


@pytest.mark.parametrize("name", list_scenes())
def test_bad_actions_and_states_are_refused(scenes, name):
    s = scenes[name]
    s.reset(seed=0)
    n = s.action_space.shape[0]
    with pytest.raises(ValueError, match=rf"action must have shape \({n},\)"):
        s.step(np.zeros(n + 1))
    with pytest.raises(ValueError, match="finite"):
        s.step(np.full(n, np.nan))
    with pytest.raises(ValueError, match="physics_state must have shape"):
        s.set_physics_state(np.zeros(3))
    s.step(np.zeros(n))  # still usable


@pytest.mark.parametrize("name", list_scenes())
def test_reward_and_termination_are_functions_of_state(scenes, name):
    s = scenes[name]
    s.reset(seed=4)
    states, actions, rewards, terms = [], [], [], []
    for _ in range(10):
        a = s.action_space.sample()
        r = s.step(a)
        states.append(r.state), actions.append(a), rewards.append(r.reward), terms.append(r.terminated)
        if r.terminated:
            break
    # Batched evaluation on the stacked states gives the same numbers.
    np.testing.assert_allclose(s.task_reward(np.stack(states), np.stack(actions)), rewards, rtol=1e-12)
    np.testing.assert_array_equal(s.task_terminated(np.stack(states)), terms)


def test_reacher_target_is_visible_at_64px(scenes):
    s = scenes["Reacher-v5"]
    for seed in range(5):
        s.reset(seed=seed)
        f = s.render().astype(int)
        red = (f[..., 0] - f[..., 1] > 60) & (f[..., 0] - f[..., 2] > 60)
        assert red.sum() >= 9, f"seed {seed}: target covers only {red.sum()} pixels"


def test_body_positions_are_named_and_in_metres(scenes):
    s = scenes["Reacher-v5"]
    s.reset(seed=0)
    pos = s.body_positions()
    assert {"fingertip", "target"} <= set(pos)
    np.testing.assert_allclose(pos["target"][:2], s.data.qpos[2:4])
    l1, l2, elbow = 0.1, 0.11, s.data.qpos[1]
    reach = np.sqrt(l1**2 + l2**2 + 2 * l1 * l2 * np.cos(elbow))
    assert np.linalg.norm(pos["fingertip"][:2]) == pytest.approx(reach, abs=1e-6)


def _bounce_energy(model, data):
    m = model.body_mass[1:]
    z = data.xipos[1:, 2]
    v = data.qvel.reshape(-1, 2)
    ball_mass = np.array([model.body(f"ball{i}").mass[0] for i in range(len(v))])
    return float(-(m * z).sum() * model.opt.gravity[2] + 0.5 * (ball_mass * (v**2).sum(1)).sum())


def test_bounce_energy_is_conserved_between_contacts():
    """Substep by substep with zero action: on every contact-free stretch, total energy stays constant."""
    with make_scene("bounce") as s:
        s.reset(seed=11)
        m, d = s.model, s.data
        energies, in_contact = [], []
        for _ in range(120 * SUBSTEPS):
            mujoco.mj_step(m, d)
            mujoco.mj_forward(m, d)
            energies.append(_bounce_energy(m, d))
            in_contact.append(d.ncon > 0)
            assert s.energy() == pytest.approx(energies[-1], rel=1e-9, abs=1e-9)
        energies, in_contact = np.array(energies), np.array(in_contact)
        scale = np.abs(energies).max()
        stretches, start = 0, None
        for i, c in enumerate([*in_contact, True]):
            if not c and start is None:
                start = i
            elif c and start is not None:
                seg = energies[start:i]
                if len(seg) > 2:
                    stretches += 1
                    assert np.ptp(seg) < 1e-6 * scale, f"energy drifts by {np.ptp(seg):.3g} J between contacts"
                start = None
        assert stretches >= 3
        # Bounces lose energy (restitution < 1), they never gain it.
        assert energies[-1] <= energies[0] + 1e-6 * scale


def test_bounce_balls_stay_inside_the_box_and_touch_things():
    with make_scene("bounce") as s:
        kinds = set()
        for seed in range(3):
            s.reset(seed=seed)
            for _ in range(240):
                r = s.step(s.action_space.sample())
                p = s.ball_positions()
                assert np.all(np.abs(p[:, 0]) <= HALF_WIDTH - RADIUS + 0.02)
                assert np.all((p[:, 1] >= RADIUS - 0.02) & (p[:, 1] <= HEIGHT - RADIUS + 0.02))
                kinds |= {tuple(sorted(pair)) for pair in s.contact_events()}
                assert r.state.shape == (12,)
    assert ("ball0", "floor") in kinds
    assert any(a.startswith("ball") and b.startswith("ball") for a, b in kinds), kinds
    assert any("wall" in a or "wall" in b for a, b in kinds)


@pytest.mark.parametrize("n", [1, 2])
def test_bounce_ball_count(n):
    with make_scene("bounce", n_balls=n) as s:
        assert s.state_dim == 4 * n and s.reset(seed=0)[0].shape == (4 * n,)
    with pytest.raises(ValueError, match="n_balls must be 1, 2 or 3, got 4"):
        make_scene("bounce", n_balls=4)


def test_bounce_runs_at_24hz():
    with make_scene("bounce") as s:
        assert s.dt == pytest.approx(1 / 24) and s.max_episode_steps == 240
        assert s.model.opt.timestep * SUBSTEPS == pytest.approx(1 / 24)


def test_bounce_contact_flags_match_the_impacts():
    """Every step in which a ball's velocity changes beyond free flight has a contact flag on that
    ball, including impacts that begin and end inside one RK4 substep (which `data.contact` never
    shows), and every flagged ball did change its velocity."""
    from worldsim.envs.bounce import DT

    with make_scene("bounce") as s:
        m = s.model
        n = s.n_balls
        names = [f"ball{i}" for i in range(n)]
        rng = np.random.default_rng(0)
        hits = 0
        for seed in range(4):
            state, _ = s.reset(seed=seed)
            for _ in range(120):
                a = rng.uniform(-1, 1, 1)
                v0 = state[2 * n :].reshape(n, 2)
                r = s.step(a)
                state = r.state
                free = np.zeros((n, 2))
                free[:, 1] = m.opt.gravity[2]
                free[0, 0] = a[0] * m.actuator_gear[0, 0] / m.body("ball0").mass[0]
                dv = np.linalg.norm(state[2 * n :].reshape(n, 2) - v0 - free * DT, axis=1)
                flagged = {b for pair, on in zip(s.contact_pairs, s.contacts()) if on for b in pair if b in names}
                for i, name in enumerate(names):
                    if dv[i] > 0.1:
                        hits += 1
                        assert name in flagged, f"seed {seed}: {name} changed velocity by {dv[i]:.2f} m/s unflagged"
                    if name in flagged:
                        assert dv[i] > 1e-3 * SUBSTEPS, f"seed {seed}: {name} flagged without an impulse"
        assert hits > 20
