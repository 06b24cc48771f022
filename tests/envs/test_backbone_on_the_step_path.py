"""The transformer is the step function: scrambling its attention and MoE weights changes what the
env returns. A world whose state, reward and termination came from side models alone would not move;
the shipped worlds have none."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import worldsim  # noqa: F401  (registers DSV4World-v0)
from worldsim.core.registry import BASELINES, PACKAGE_REF, resolve_checkpoint
from worldsim.model import WorldModel


def _rollout(checkpoint, steps=20, scene="Reacher-v5"):
    env = gym.make("DSV4World-v0", scene=scene, checkpoint=str(checkpoint), obs_type="state", temperature=0.0)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    low, high = env.action_space.low, env.action_space.high
    out = [obs]
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(rng.uniform(low, high).astype(np.float32))
        out.append(np.append(obs, reward))
        if terminated or truncated:
            break
    env.close()
    return np.concatenate(out)


def _scramble(wm: WorldModel) -> int:
    """Fill every attention and MoE (FFN) weight of the transformer with noise of its own scale."""
    g = torch.Generator().manual_seed(1)
    scrambled = 0
    with torch.no_grad():
        for name, p in wm.dynamics.named_parameters():
            if ".attn." in name or ".ffn." in name:
                p.copy_(torch.randn(p.shape, generator=g) * p.float().std().clamp_min(1e-3))
                scrambled += 1
    return scrambled


def test_scrambling_attention_and_moe_changes_a_state_rollout(tmp_path, tiny_world):
    path = tiny_world(tmp_path / "intact")
    wm = WorldModel.from_pretrained(path)
    assert _scramble(wm) > 0
    wm.save(tmp_path / "scrambled")
    a, b = _rollout(path), _rollout(tmp_path / "scrambled")
    assert a.shape == b.shape and not np.allclose(a, b)


@pytest.mark.parametrize("scene", ["Reacher-v5", "InvertedPendulum-v5", "bounce"])
def test_each_shipped_world_steps_by_its_transformer(tmp_path, scene):
    """The shipped world has no side model on its step path (a prompt prefix only makes a start), and
    scrambling its transformer moves its state rollout."""
    wm = WorldModel.from_pretrained(scene)
    assert not set(wm.parts()) - {"prompt"} and wm.dynamics.state_head is not None
    assert _scramble(wm) > 0
    wm.save(tmp_path / "scrambled")
    a, b = _rollout(scene, steps=5, scene=scene), _rollout(tmp_path / "scrambled", steps=5, scene=scene)
    assert not (a.shape == b.shape and np.allclose(a, b))


@pytest.mark.parametrize("scene", sorted(BASELINES["mlp"]))
def test_the_mlp_baselines_load_by_name_beside_the_shipped_worlds(scene):
    """The `mlp` baseline of each scene is shipped weights of its own, never what a scene name loads."""
    name = PACKAGE_REF + BASELINES["mlp"][scene]
    baseline = WorldModel.from_pretrained(name)
    assert baseline.cfg.scene == scene and baseline.pathway is not None and baseline.outcome is not None
    assert resolve_checkpoint(scene, "world_model") != resolve_checkpoint(name, "world_model")
    env = gym.make("DSV4World-v0", scene=scene, checkpoint=name, obs_type="state")
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    env.close()


@pytest.mark.parametrize("scene", ["Reacher-v5", "InvertedPendulum-v5", "bounce", "Pusher-v5"])
def test_each_shipped_world_renders_the_physics_it_predicts_without_disturbing_it(scene):
    """Frames never reach the physics tokens: with pixels or without, the shipped world's states,
    rewards and terminations are the same, bit for bit, over more steps than its context window."""
    wm = WorldModel.from_pretrained(scene)
    worlds = {obs: gym.make("DSV4World-v0", scene=scene, obs_type=obs, temperature=0.0) for obs in ("state", "dict")}
    rng = np.random.default_rng(0)
    first = worlds["state"].unwrapped
    actions = rng.uniform(first.action_space.low, first.action_space.high, (3 * wm.cfg.dynamics.context, first.action_space.shape[0]))
    seen = {}
    for obs, env in worlds.items():
        o, _ = env.reset(seed=0)
        out = [np.asarray(o["state"] if obs == "dict" else o)]
        for a in actions:
            o, r, term, trunc, _ = env.step(a.astype(np.float32))
            out.append(np.append(o["state"] if obs == "dict" else o, [r, term]))
            if term or trunc:
                break
        seen[obs] = np.concatenate(out)
        env.close()
    np.testing.assert_array_equal(seen["dict"], seen["state"])
