"""`Reacher-v5`: Gymnasium's two-link arm reaching a target, seen from straight above.

State: the real env's observation, `[cos q0, cos q1, sin q0, sin q1, target xy, qvel[:2],
(fingertip - target) xy]`. The target is drawn as a larger marker so it survives 64x64.
"""

from __future__ import annotations

import numpy as np

from worldsim.envs.gym_scenes import GymTaskScene
from worldsim.envs.rendering import CameraSpec

LINK_LENGTHS = (0.1, 0.11)


class ReacherScene(GymTaskScene):
    """`Reacher-v5` seen from straight above; see the module docstring."""

    name = "Reacher-v5"
    description = "Gymnasium's two-link arm reaching a target (top view)"
    camera = CameraSpec(lookat=(0.0, 0.0, 0.0), distance=0.55, azimuth=90.0, elevation=-90.0)

    def _markers(self):
        return [(self.data.body("target").xpos.copy(), 0.02, (0.9, 0.1, 0.1, 1.0))]

    @staticmethod
    def task_reward(next_state: np.ndarray, action: np.ndarray) -> np.ndarray:
        # Gymnasium v5: -||fingertip - target|| - 1.0 * ||a||^2 (v5 reward weights 1 and 1); the
        # observation's last two entries are (fingertip - target)[:2], and both bodies share z.
        s, a = np.asarray(next_state, np.float64), np.asarray(action, np.float64)
        return -np.linalg.norm(s[..., 8:10], axis=-1) - np.square(a).sum(-1)

    def physics_from_state(self, state: np.ndarray) -> np.ndarray:
        """qpos = (shoulder, elbow, target x, y) from the angles' cos and sin and the target; qvel = the
        joints' velocities, the target's zero."""
        s = np.asarray(state, np.float64)
        angles = np.arctan2(s[2:4], s[0:2])
        return np.concatenate([angles, s[4:6], s[6:8], np.zeros(2)])

    def consistent_states(self, states: np.ndarray) -> np.ndarray:
        """Each angle's cos and sin from the angle they point at, and the fingertip's offset from the
        target from the joints (the arm's forward kinematics, as a reset's state has it)."""
        s = np.array(states, np.float64)
        q = np.arctan2(s[..., 2:4], s[..., 0:2])
        s[..., 0:2], s[..., 2:4] = np.cos(q), np.sin(q)
        l1, l2 = LINK_LENGTHS
        tip = np.stack([l1 * np.cos(q[..., 0]) + l2 * np.cos(q.sum(-1)),
                        l1 * np.sin(q[..., 0]) + l2 * np.sin(q.sum(-1))], -1)
        s[..., 8:10] = tip - s[..., 4:6]
        return s

    @staticmethod
    def read_bodies(states: np.ndarray) -> dict[str, np.ndarray]:
        # Both bodies move in the plane z = 0.01.
        s = np.asarray(states, np.float64)
        z = np.full(s.shape[:-1], 0.01)
        elbow = np.stack([LINK_LENGTHS[0] * s[..., 0], LINK_LENGTHS[0] * s[..., 2], z], -1)
        tip = np.stack([s[..., 4] + s[..., 8], s[..., 5] + s[..., 9], z], -1)
        return {"body1": elbow, "fingertip": tip}

    def scripted_action(self, cache: dict) -> np.ndarray:
        """PD on joint angles to the inverse-kinematics solution that puts the fingertip on the target."""
        return reach_action(self.data.qpos[:2], self.data.qvel[:2], self.data.qpos[2:4])

    def observed_action(self, state: np.ndarray, cache: dict) -> np.ndarray:
        s = np.asarray(state, np.float64)
        return reach_action(np.arctan2(s[2:4], s[0:2]), s[6:8], s[4:6])


def reach_action(q: np.ndarray, qd: np.ndarray, target: np.ndarray) -> np.ndarray:
    """PD torques [2] from joint angles `q` and velocities `qd` to the inverse-kinematics solution that
    puts the fingertip on `target` (xy)."""
    l1, l2 = LINK_LENGTHS
    r2 = float(np.clip(target @ target, (l1 - l2) ** 2 + 1e-6, (l1 + l2) ** 2 - 1e-6))
    elbow = np.arccos(np.clip((r2 - l1**2 - l2**2) / (2 * l1 * l2), -1, 1))
    # Of the two elbow solutions, take the one nearer the current elbow angle.
    elbow = elbow if np.cos(q[1] - elbow) >= np.cos(q[1] + elbow) else -elbow
    shoulder = np.arctan2(target[1], target[0]) - np.arctan2(l2 * np.sin(elbow), l1 + l2 * np.cos(elbow))
    err = np.angle(np.exp(1j * (np.array([shoulder, elbow]) - q)))
    return 1.5 * err - 0.15 * qd
