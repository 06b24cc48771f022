"""The model's call sites on the Triton kernels (interpreted) give what they give on the PyTorch path."""

import torch
from kernel_tolerances import TOL

from worldsim.model.dynamics import Dynamics, DynamicsConfig
from worldsim.model.kv_cache import KVCache

V4 = DynamicsConfig(state_dim=3, action_dim=2, grid=4, codebook_size=37, width=32, layers=2, heads=2, context=3,
                    prune=True, capacity=0.6, prune_from=1, moe=True, experts=8, expert_groups=4, top_groups=2,
                    top_k=2, expert_hidden=16, shared_hidden=32)


def run(model, codes, states, actions):
    model.zero_grad()
    out = model(codes, states, actions)
    sum((v.float() ** 2).mean() for v in out.values()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    with torch.no_grad():
        caches = [KVCache() for _ in model.blocks]
        steps = [model.step_with_cache(caches, codes[:, t : t + 1], states[:, t : t + 1], actions[:, t : t + 1], t)
                 for t in range(codes.shape[1])]
    return out, grads, steps


def test_v4_dynamics_forward_backward_and_cache_on_the_kernels(monkeypatch):
    torch.manual_seed(0)
    model = Dynamics(V4)
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 37, (1, 2, 16), generator=g)
    states, actions = torch.randn(1, 2, 3, generator=g), torch.randn(1, 2, 2, generator=g)
    ref = run(model, codes, states, actions)
    monkeypatch.setenv("WORLDSIM_KERNELS", "triton")
    got = run(model, codes, states, actions)
    for key in ref[0]:
        torch.testing.assert_close(got[0][key], ref[0][key], **TOL[torch.float32])
    assert ref[1].keys() == got[1].keys()
    for name in ref[1]:
        torch.testing.assert_close(got[1][name], ref[1][name], **TOL[torch.float32], msg=name)
    for a, b in zip(got[2], ref[2]):
        torch.testing.assert_close(a["code_logits"], b["code_logits"], **TOL[torch.float32])
