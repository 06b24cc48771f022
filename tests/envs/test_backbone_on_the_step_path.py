"""The transformer is the step function: scrambling its attention and MoE weights changes what the
env returns. A world whose state, reward and termination came from side models alone would not move."""

import gymnasium as gym
import numpy as np
import torch

import worldsim  # noqa: F401  (registers DSV4World-v0)
from worldsim.model import WorldModel


def _rollout(checkpoint, steps=20):
    env = gym.make("DSV4World-v0", scene="Reacher-v5", checkpoint=str(checkpoint), obs_type="state", temperature=0.0)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    out = [obs]
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(rng.uniform(-1, 1, 2).astype(np.float32))
        out.append(np.append(obs, reward))
        if terminated or truncated:
            break
    env.close()
    return np.concatenate(out)


def test_scrambling_attention_and_moe_changes_a_state_rollout(tmp_path, tiny_world):
    path = tiny_world(tmp_path / "intact")
    wm = WorldModel.from_pretrained(path)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        scrambled = 0
        for name, p in wm.dynamics.named_parameters():
            if ".attn." in name or ".ffn." in name:
                p.copy_(torch.randn(p.shape, generator=g) * p.std().clamp_min(1e-3))
                scrambled += 1
    assert scrambled > 0
    wm.save(tmp_path / "scrambled")
    a, b = _rollout(path), _rollout(tmp_path / "scrambled")
    assert a.shape == b.shape and not np.allclose(a, b)
