import numpy as np
import pytest

from worldsim.envs import bounce, make_scene
from worldsim.eval import physics as P

DT = bounce.DT


def test_body_positions_match_mujoco():
    rng = np.random.default_rng(0)
    for name in ("Reacher-v5", "InvertedPendulum-v5", "Pusher-v5", "bounce"):
        with make_scene(name) as scene:
            scene.reset(seed=3)
            # A random pose, set directly: the observation is then read after MuJoCo's kinematics are
            # up to date (after `step`, Gymnasium's Reacher and Pusher observations read the body
            # positions one physics substep stale, by up to 1.5 mm for Pusher's arm).
            x = scene.physics_state()
            x[: scene.model.nq] += rng.uniform(-0.1, 0.1, scene.model.nq)
            state, _ = scene.reset(seed=3, physics_state=x)
            got = P.body_positions(name, state)
            names = P.body_names(name, scene.state_dim)
            d = scene.data
            for i, body in enumerate(names):
                if body == "pole_tip":
                    want = d.body("pole").xpos + d.body("pole").xmat.reshape(3, 3) @ np.array([0.001, 0, 0.6])
                else:
                    want = d.body(body).xpos
                np.testing.assert_allclose(got[i], want, atol=1e-9, err_msg=f"{name}:{body}")


def test_bounce_energy_matches_mujoco():
    with make_scene("bounce", n_balls=2) as scene:
        state, info = scene.reset(seed=1)
        assert P.bounce_energy(state) == pytest.approx(info["energy"], rel=1e-9)
        assert P.BALL_MASS == pytest.approx(scene.model.body_mass[-1])


def falling_ball(v0=-3.0, z0=0.5, steps=30):
    """One ball dropped towards the floor, bouncing elastically: an analytic trajectory [T+1, 4]."""
    z, v, out = z0, v0, []
    for _ in range(steps + 1):
        out.append([0.0, z, 0.0, v])
        v_new = v - 9.81 * DT
        z_new = z + DT * (v + v_new) / 2
        if z_new < bounce.RADIUS:  # reflect
            z_new, v_new = 2 * bounce.RADIUS - z_new, -v_new
        z, v = z_new, v_new
    return np.array(out)


def test_bounce_events_floor_bounce_only():
    s = falling_ball()
    ev = P.bounce_events(s, DT)
    kinds = P.bounce_event_kinds(1)
    assert ev.shape == (31, len(kinds)) and not ev[0].any()
    floor = np.nonzero(ev[:, kinds.index("floor:ball0")])[0]
    flips = np.nonzero((s[:-1, 3] < 0) & (s[1:, 3] > 0))[0] + 1
    assert len(floor) >= 1 and floor.tolist() == flips.tolist()
    assert ev.sum() == len(floor)  # the apex (velocity + to - by gravity alone) is no event


def test_bounce_events_ball_pair_and_walls():
    # Two balls at rest height meeting head on, then reversing; and ball 0 bouncing off the left wall.
    s = np.zeros((3, 8))
    s[:, 1] = s[:, 3] = 1.0  # z
    s[:, 0], s[:, 2] = [-0.2, -0.13, -0.2], [0.2, 0.13, 0.2]
    s[:, 4], s[:, 6] = [2.0, 2.0, -2.0], [-2.0, -2.0, 2.0]
    s[:, 5] = s[:, 7] = [0.0, -9.81 * DT, -2 * 9.81 * DT]  # free fall only
    ev = P.bounce_events(s, DT)
    kinds = P.bounce_event_kinds(2)
    assert ev[2, kinds.index("ball0:ball1")] and ev.sum() == 1
    w = s.copy()
    w[:, 0], w[:, 4] = [-0.8, -0.85, -0.8], [-2.0, -2.0, 2.0]
    w[:, 2], w[:, 6] = 0.5, 0.0
    ev = P.bounce_events(w, DT)
    assert ev[2, kinds.index("wall_left:ball0")] and ev.sum() == 1


def test_energy_drift_restarts_at_contacts():
    e = np.array([10.0, 10.0, 11.0, 5.0, 5.0, 5.5])
    ev = np.array([False, False, False, True, False, False])
    # steps 0-2 against E_0 = 10 (step 2, just before the contact, is guarded), steps 3-5 against E_3 = 5
    np.testing.assert_allclose(P.energy_drift(e, ev), [0, 0, 0, 0, 0, 0.1])
    np.testing.assert_allclose(P.energy_drift(e, ev, guard=0), [0, 0, 0.1, 0, 0, 0.1])


def test_bounce_work_is_force_times_distance():
    s = np.zeros((3, 4))
    s[:, 0] = [0.0, 0.1, 0.3]
    w = P.bounce_work(s, np.array([[1.0], [-0.5]]))
    np.testing.assert_allclose(w, [0.0, bounce.MAX_FORCE * 0.1, bounce.MAX_FORCE * (0.1 - 0.5 * 0.2)], atol=1e-12)


def test_penetration_depth():
    r = bounce.RADIUS
    s = np.array([[0.0, r - 0.05, 0.0, 0.0], [1.0 - r + 0.02, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    np.testing.assert_allclose(P.penetration_depth(s)[:, 0], [0.05, 0.02, 0.0], atol=1e-12)


def test_count_balls_on_rendered_frames():
    with make_scene("bounce", n_balls=3) as scene:
        scene.reset(seed=0)
        frame = scene.render()
    assert P.count_balls(frame, 3).tolist() == [1, 1, 1]
    two = frame.copy()
    two[2:8, 2:8] = frame[P.ball_color_masks(frame)[0]].mean(0).astype(np.uint8)  # a second red ball
    gone = frame.copy()
    gone[P.ball_color_masks(frame)[1]] = 235  # the green ball painted over with the background
    assert P.count_balls(np.stack([frame, two, gone]), 3).tolist() == [[1, 1, 1], [2, 1, 1], [1, 0, 1]]
