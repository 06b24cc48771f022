"""`Pusher-v5`: Gymnasium's 7-DoF arm pushing a puck to a goal, seen from above the table.

State: the real env's observation; `tips_arm`, `object` and `goal` positions are at [14:17],
[17:20] and [20:23].
"""

from __future__ import annotations

import mujoco
import numpy as np

from worldsim.envs.gym_scenes import GymTaskScene
from worldsim.envs.rendering import CameraSpec


class PusherScene(GymTaskScene):
    """`Pusher-v5` seen from above the table: the arm, the object and the goal."""

    name = "Pusher-v5"
    description = "Gymnasium's 7-DoF arm pushing a puck to a goal (top view)"
    camera = CameraSpec(lookat=(0.35, -0.3, -0.3), distance=1.9, azimuth=90.0, elevation=-90.0)

    @staticmethod
    def task_reward(next_state: np.ndarray, action: np.ndarray) -> np.ndarray:
        # Gymnasium v5: -0.5 ||object - tips_arm|| - 1.0 ||object - goal|| - 0.1 ||a||^2.
        s, a = np.asarray(next_state, np.float64), np.asarray(action, np.float64)
        tips, obj, goal = s[..., 14:17], s[..., 17:20], s[..., 20:23]
        return (
            -0.5 * np.linalg.norm(obj - tips, axis=-1)
            - np.linalg.norm(obj - goal, axis=-1)
            - 0.1 * np.square(a).sum(-1)
        )

    def start_is_valid(self, states: np.ndarray) -> np.ndarray:
        """Puck and goal where a reset puts them (Gymnasium: the puck's slides uniform in [-0.3, 0] x
        [-0.2, 0.2] and over 0.17 from the goal, the goal's slides at zero), to within 1 cm."""
        s = np.asarray(states, np.float64).reshape(-1, self.state_dim)
        puck = np.stack([self._slide_coords("object", row[17:19]) for row in s])
        goal = np.stack([self._slide_coords("goal", row[20:22]) for row in s])
        tol = 0.01
        inside = ((puck[:, 0] >= -0.3 - tol) & (puck[:, 0] <= tol) & (np.abs(puck[:, 1]) <= 0.2 + tol))
        return inside & (np.linalg.norm(puck - goal, axis=1) > 0.17 - tol) & (np.abs(goal) <= tol).all(1)

    def consistent_states(self, states: np.ndarray) -> np.ndarray:
        """The fingertip from the arm's joints (the model's kinematics on scratch data), as a reset's
        state has it (a stepped state's fingertip is the kinematics of the step before)."""
        s = np.array(states, np.float64)
        flat = s.reshape(-1, self.state_dim)
        scratch = mujoco.MjData(self.model)
        tip = self.model.body("tips_arm").id
        for row in flat:
            scratch.qpos[:7] = row[:7]
            mujoco.mj_kinematics(self.model, scratch)
            row[14:17] = scratch.xpos[tip]
        return flat.reshape(s.shape)

    def _slide_coords(self, body: str, xy: np.ndarray) -> np.ndarray:
        """The slide joints' qpos (in their qpos order) that put `body` at `xy`."""
        joints, offset, basis = self._slides(body)
        return np.linalg.solve(basis, np.asarray(xy, np.float64) - offset)

    def physics_from_state(self, state: np.ndarray) -> np.ndarray:
        """qpos = the arm's joints, then the object's and the goal's slide joints that put them at the
        state's positions; qvel = the arm's, the object's and the goal's zero (as at every reset: the
        observation does not carry them). The fingertip follows from the joints."""
        s = np.asarray(state, np.float64)
        qpos = np.zeros(self.model.nq)
        qpos[:7] = s[:7]
        for body, at in (("object", s[17:19]), ("goal", s[20:22])):
            qpos[self._slides(body)[0]] = self._slide_coords(body, at)
        qvel = np.zeros(self.model.nv)
        qvel[:7] = s[7:14]
        return np.concatenate([qpos, qvel])

    def _slides(self, body: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A body's two slide joints' qpos addresses, its xy with them at zero, and the xy each moves
        it by a unit: read off the model's kinematics, so the joints' order and axes come from the XML."""
        cache = self.__dict__.setdefault("_slide_cache", {})
        if body not in cache:
            cache[body] = self._probe_slides(body)
        return cache[body]

    def _probe_slides(self, body: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        m = self.model
        b = m.body(body).id
        joints = np.array([m.jnt_qposadr[j] for j in range(m.body_jntadr[b], m.body_jntadr[b] + m.body_jntnum[b])])
        scratch = mujoco.MjData(m)
        mujoco.mj_kinematics(m, scratch)
        offset = scratch.xpos[b, :2].copy()
        basis = np.zeros((2, len(joints)))
        for k, adr in enumerate(joints):
            scratch.qpos[:] = 0.0
            scratch.qpos[adr] = 1.0
            mujoco.mj_kinematics(m, scratch)
            basis[:, k] = scratch.xpos[b, :2] - offset
        return joints, offset, basis

    @staticmethod
    def read_bodies(states: np.ndarray) -> dict[str, np.ndarray]:
        s = np.asarray(states, np.float64)
        return {"tips_arm": s[..., 14:17], "object": s[..., 17:20]}

    def scripted_action(self, cache: dict) -> np.ndarray:
        """Reach behind the object (as seen from the goal), then push it through towards the goal."""
        d, m = self.data, self.model
        jacp = np.zeros((3, m.nv))
        mujoco.mj_jacBody(m, d, jacp, None, m.body("tips_arm").id)
        return push_action(d.body("tips_arm").xpos, d.body("object").xpos, d.body("goal").xpos, jacp[:, :7],
                           d.qvel[:7], cache)

    def observed_action(self, state: np.ndarray, cache: dict) -> np.ndarray:
        # The arm's Jacobian from its observed joint angles, by the model's kinematics on scratch data.
        s, m = np.asarray(state, np.float64), self.model
        if "scratch" not in cache:
            cache["scratch"] = mujoco.MjData(m)
        d = cache["scratch"]
        d.qpos[:7] = s[:7]
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
        jacp = np.zeros((3, m.nv))
        mujoco.mj_jacBody(m, d, jacp, None, m.body("tips_arm").id)
        return push_action(s[14:17], s[17:20], s[20:23], jacp[:, :7], s[7:14], cache)


def push_action(tip: np.ndarray, obj: np.ndarray, goal: np.ndarray, jac: np.ndarray, qvel: np.ndarray,
                cache: dict) -> np.ndarray:
    """Joint torques [7] that move the fingertip behind the object (as seen from the goal), then through
    it towards the goal (`cache["phase"]` 0 then 1), from positions [3], the fingertip's positional
    Jacobian [3, 7] and the arm's joint velocities [7]."""
    u = goal[:2] - obj[:2]
    u = u / (np.linalg.norm(u) + 1e-9)
    behind = np.array([*(obj[:2] - 0.09 * u), obj[2]])
    if cache.get("phase", 0) == 0 and np.linalg.norm(tip - behind) < 0.05:
        cache["phase"] = 1
    target = behind if cache.get("phase", 0) == 0 else np.array([*(obj[:2] + 0.1 * u), obj[2]])
    return jac.T @ (8.0 * (target - tip)) - 0.5 * qvel
