import pytest
import torch

from worldsim.model.dynamics import PRESETS, Block, Dynamics, DynamicsConfig, preset_config
from worldsim.model.kv_cache import KVCache
from worldsim.model.moe import HierarchicalMoE, hierarchical_route, load_stats

SMALL = dict(state_dim=3, action_dim=2, grid=4, codebook_size=37, width=32, layers=4, heads=2, context=4,
             ffn_hidden=64, expert_hidden=16, shared_hidden=32)
DENSE = DynamicsConfig(**SMALL)
V4 = DynamicsConfig(**SMALL, prune=True, capacity=0.6, prune_from=1, moe=True, experts=8, expert_groups=4,
                    top_groups=2, top_k=2)

# v4-lite's transformer: pruned from layer 0, factorized frame head over FSQ levels (4, 3, 3).
LITE = DynamicsConfig(**{**SMALL, "codebook_size": 36}, prune=True, capacity=0.6, prune_from=0, moe=True, experts=8,
                      expert_groups=4, top_groups=2, top_k=2, frame_head="factorized", code_levels=(4, 3, 3))
CONFIGS = {"dense": DENSE, "v4": V4, "lite": LITE}


def inputs(B=2, T=4, cfg=DENSE, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, cfg.codebook_size, (B, T, cfg.tokens_per_frame), generator=g),
            torch.randn(B, T, cfg.state_dim, generator=g), torch.randn(B, T, cfg.action_dim, generator=g))


@pytest.fixture(params=list(CONFIGS))
def model(request):
    torch.manual_seed(0)
    return Dynamics(CONFIGS[request.param]).eval()


def test_no_information_flows_from_the_future(model):
    codes, states, actions = inputs(cfg=model.cfg)
    with torch.no_grad():
        a = model(codes, states, actions)
        codes2, states2, actions2 = codes.clone(), states.clone(), actions.clone()
        codes2[:, 2:] = (codes2[:, 2:] + 5) % model.cfg.codebook_size
        states2[:, 2:] += 3.0
        actions2[:, 2:] -= 1.0
        b = model(codes2, states2, actions2)
    for k in a:
        torch.testing.assert_close(a[k][:, :2], b[k][:, :2], rtol=0, atol=1e-5)
        assert not torch.allclose(a[k][:, 2:], b[k][:, 2:])


def test_tokens_within_a_step_see_each_other(model):
    codes, states, actions = inputs(cfg=model.cfg)
    with torch.no_grad():
        a = model(codes, states, actions)
        actions2 = actions.clone()
        actions2[:, 1] += 1.0  # the action token of step 1 changes the frame predictions of step 1
        b = model(codes, states, actions2)
    assert not torch.allclose(a["code_logits"][:, 1], b["code_logits"][:, 1])


def test_kv_cache_stepping_equals_the_full_forward(model):
    codes, states, actions = inputs(cfg=model.cfg)
    with torch.no_grad():
        full = model(codes, states, actions)
        caches = [KVCache() for _ in model.blocks]
        steps = [model.step_with_cache(caches, codes[:, t : t + 1], states[:, t : t + 1], actions[:, t : t + 1], t)
                 for t in range(4)]
    for k in full:
        torch.testing.assert_close(torch.cat([s[k] for s in steps], 1), full[k], rtol=1e-4, atol=1e-5)


def test_kv_cache_window_slides(model):
    """Beyond `context` steps the cache holds only the last `context` steps' keys, at every layer."""
    codes, states, actions = inputs(T=7, cfg=model.cfg)
    with torch.no_grad():
        caches = [KVCache() for _ in model.blocks]
        for t in range(7):
            out = model.step_with_cache(caches, codes[:, t : t + 1], states[:, t : t + 1], actions[:, t : t + 1], t)
            assert all(int(c.step.min()) == max(0, t - 3) and int(c.step.max()) == t for c in caches)
            assert all(int(c.frames.step.min()) == max(0, t - 3) for c in caches)
            per_step = [c.frames.k.shape[2] // len(c.frames.step.unique()) for c in caches]
            assert all(c.k.shape[2] == len(c.step) == 2 * len(c.step.unique()) for c in caches)
    assert torch.isfinite(out["code_logits"]).all()
    first_pruned = model.cfg.prune_from if model.cfg.prune else model.cfg.layers
    want = [2 + (model.cfg.tokens_per_frame if i < first_pruned else model.cfg.kept_frame_tokens)
            for i in range(model.cfg.layers)]
    # Each frame slot: the step's physics keys, then its frame keys (pruned layers: only the kept ones).
    assert per_step == want


def test_pruning_keeps_exactly_capacity_and_leaves_dropped_tokens_unchanged():
    torch.manual_seed(0)
    blk = Block(V4, pruned=True).eval()
    T, S = 3, V4.tokens_per_step
    x = torch.randn(2, T * S, V4.width)
    step = torch.arange(T).repeat_interleave(S)
    with torch.no_grad():
        y = blk(x, step)
    kept = blk.last_kept  # [B, T*k] positions in the frame tokens' stream
    k, N = V4.kept_frame_tokens, V4.tokens_per_frame
    assert k == 10 and kept.shape == (2, T * k)  # ceil(0.6 * 16)
    for b in range(2):
        # Frame position i of step t sits at t * S + 2 + i % N in the full stream.
        idx = {(i // N) * S + 2 + i % N for i in kept[b].tolist()}
        for t in range(T):
            assert len([i for i in idx if t * S + 2 <= i < (t + 1) * S]) == k
        idx |= {t * S + j for t in range(T) for j in (0, 1)}  # action and state always go through
        dropped = sorted(set(range(T * S)) - idx)
        torch.testing.assert_close(y[b, dropped], x[b, dropped], rtol=0, atol=0)
        assert not torch.allclose(y[b, sorted(idx)], x[b, sorted(idx)])


def test_all_kept_pruning_is_the_dense_block():
    cfg = DynamicsConfig(**SMALL, prune=True, capacity=1.0, prune_from=0)
    torch.manual_seed(0)
    blk = Block(cfg, pruned=True).eval()
    x = torch.randn(1, 2 * cfg.tokens_per_step, cfg.width)
    step = torch.arange(2).repeat_interleave(cfg.tokens_per_step)
    dense_blk = Block(cfg, pruned=False).eval()  # the same weights, no scorer
    dense_blk.load_state_dict({k: v for k, v in blk.state_dict().items() if not k.startswith("scorer.")})
    with torch.no_grad():
        y = blk(x, step)
        dense = dense_blk(x, step)
    gate = torch.sigmoid(blk.scorer(x)).view(1, 2, -1, 1)[:, :, 2:]
    delta = (dense - x).view(1, 2, cfg.tokens_per_step, -1)
    expect = x.view(1, 2, cfg.tokens_per_step, -1).clone()
    expect[:, :, :2] += delta[:, :, :2]
    expect[:, :, 2:] += gate * delta[:, :, 2:]
    torch.testing.assert_close(y, expect.view_as(y), rtol=1e-5, atol=1e-5)


def test_scorer_learns_through_the_kept_tokens():
    torch.manual_seed(0)
    blk = Block(V4, pruned=True)
    x = torch.randn(1, 2 * V4.tokens_per_step, V4.width)
    blk(x, torch.arange(2).repeat_interleave(V4.tokens_per_step)).sum().backward()
    assert blk.scorer.weight.grad is not None and blk.scorer.weight.grad.abs().sum() > 0


def test_routing_invariants():
    torch.manual_seed(0)
    n, e, g, tg, k = 500, 16, 4, 2, 3
    aff = torch.rand(n, e)
    bias = torch.randn(e) * 0.1
    index, weight = hierarchical_route(aff, bias, g, tg, k)
    assert index.shape == (n, k) and torch.allclose(weight.sum(-1), torch.ones(n))
    biased = (aff + bias).view(n, g, e // g)
    group_score = biased.topk(2, dim=-1).values.sum(-1)
    chosen = group_score.topk(tg, dim=-1).indices
    for i in range(n):
        groups = set(chosen[i].tolist())
        assert len(set(index[i].tolist())) == k  # k distinct experts
        assert {int(x) // (e // g) for x in index[i]} <= groups  # all inside the selected groups
        allowed = [x for x in range(e) if x // (e // g) in groups]
        best = sorted(allowed, key=lambda x: -float(aff[i, x] + bias[x]))[:k]
        assert set(best) == set(index[i].tolist())  # the top-k inside them
        torch.testing.assert_close(weight[i], aff[i, index[i]] / aff[i, index[i]].sum())
    load = torch.bincount(index.reshape(-1), minlength=e)
    assert int(load.sum()) == n * k


def test_bias_update_moves_towards_balance():
    torch.manual_seed(0)
    moe = HierarchicalMoE(16, experts=4, groups=2, top_groups=1, top_k=2, expert_hidden=8, shared_hidden=8,
                          bias_gamma=0.01).train()
    moe(torch.randn(64, 16))
    load = moe.load_acc.clone()
    assert int(load.sum()) == 64 * 2
    moe.update_bias()
    expected = 0.01 * torch.sign(load.mean() - load)
    torch.testing.assert_close(moe.bias, expected)
    assert moe.load_acc.sum() == 0
    moe.balance = False
    moe(torch.randn(64, 16))
    moe.update_bias()
    torch.testing.assert_close(moe.bias, expected)  # the contrast run never moves the bias


def test_bias_update_balances_a_skewed_router():
    """Routing alone (no expert FFNs), bias updated after every batch: a skewed router gets balanced."""
    torch.manual_seed(0)
    moe = HierarchicalMoE(16, experts=8, groups=4, top_groups=2, top_k=2, expert_hidden=8, shared_hidden=8,
                          bias_gamma=0.02)
    with torch.no_grad():
        moe.router.weight[0] += 2.0  # expert 0 wins everything
        x = torch.randn(256, 16).abs()
        affinity = torch.sigmoid(moe.router(x))
    loads = []
    for _ in range(200):
        index, _ = hierarchical_route(affinity, moe.bias, moe.groups, moe.top_groups, moe.top_k)
        load = torch.bincount(index.reshape(-1), minlength=8).float()
        loads.append(load)
        moe.load_acc += load
        moe.update_bias()
    before, after = load_stats(loads[0]), load_stats(torch.stack(loads[-20:]).mean(0))
    # A fixed-size sign step settles into a small oscillation around balance (measured: 0.15 here).
    assert before["maxvio"] > 2 and after["maxvio"] < 0.2 and after["dead_experts"] == 0


def test_load_stats():
    s = load_stats(torch.tensor([2.0, 1.0, 1.0, 0.0]))
    assert s == {"maxvio": 1.0, "min_load": 0.0, "dead_experts": 1}


def test_presets_and_config_checks():
    assert {"v4", "dense"} <= set(PRESETS)
    v4, dense = preset_config("v4"), preset_config("dense")
    assert v4.prune and v4.moe and not dense.prune and not dense.moe
    assert dense.ffn_hidden == v4.shared_hidden + v4.top_k * v4.expert_hidden  # same active FFN size
    with pytest.raises(ValueError, match="unknown preset 'v5'"):
        preset_config("v5")
    with pytest.raises(ValueError, match=r"capacity must be in \[0, 1\], got -0.1"):
        DynamicsConfig(capacity=-0.1)
    with pytest.raises(ValueError, match="exceeds the context"):
        Dynamics(DENSE)(*inputs(T=5))


def test_factorized_head_scores_and_picks_each_fsq_channel():
    """Code c has digits d_i = (c // basis_i) % levels_i; the factorized head's loss is the sum of the
    channels' cross-entropies and its pick is the code of the channels' argmaxes."""
    torch.manual_seed(0)
    dyn = Dynamics(LITE).eval()
    levels, basis = (4, 3, 3), (1, 4, 12)
    codes = torch.tensor([[0, 35, 17], [5, 12, 30]])
    digits = torch.stack([(codes // b) % lv for b, lv in zip(basis, levels)], -1)
    logits = torch.randn(2, 3, sum(levels))
    want = sum(torch.nn.functional.cross_entropy(part.reshape(-1, lv), digits[..., i].reshape(-1), reduction="none")
               for i, (part, lv) in enumerate(zip(logits.split(levels, -1), levels))).view(2, 3)
    torch.testing.assert_close(dyn.code_loss(logits, codes), want)
    peaked = torch.cat([torch.nn.functional.one_hot(digits[..., i], lv).float() * 20 for i, lv in enumerate(levels)], -1)
    assert torch.equal(dyn.predict_codes(peaked), codes)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(dyn.predict_codes(peaked, temperature=1.0, generator=g), codes)  # peaked: sampling agrees
    assert float(dyn.code_loss(peaked, codes).max()) < 1e-6
    # The joint head: plain cross-entropy over the codebook and its argmax.
    joint = Dynamics(V4).eval()
    lg = torch.randn(2, 3, V4.codebook_size)
    c = torch.randint(0, V4.codebook_size, (2, 3))
    torch.testing.assert_close(joint.code_loss(lg, c),
                               torch.nn.functional.cross_entropy(lg.reshape(-1, 37), c.reshape(-1), reduction="none").view(2, 3))
    assert torch.equal(joint.predict_codes(lg), lg.argmax(-1))


def test_without_a_state_head_the_transformer_predicts_no_state():
    alone = Dynamics(LITE.replace(state_head=False)).eval()  # the mlp baseline's choice: a pathway predicts the state
    assert alone.state_head is None
    with torch.no_grad():
        assert set(alone(*inputs(cfg=LITE))) == {"code_logits", "reward", "term_logit"}


@pytest.mark.parametrize("fields, match", [
    (dict(frame_head="softmax"), "frame_head must be"),
    (dict(frame_head="factorized"), "needs code_levels"),
    (dict(frame_head="factorized", code_levels=(4, 3, 3)), "needs code_levels"),  # 36 != 37
    (dict(frame_head="factorized", codebook_size=37, code_levels=(37, 1)), "needs code_levels"),
])
def test_bad_head_configs_are_refused(fields, match):
    with pytest.raises(ValueError, match=match):
        DynamicsConfig(**{**SMALL, **fields})


def test_moe_counts_the_last_calls_load():
    """`last_load` counts the experts the last call routed to (on demand, from its expert choice)."""
    torch.manual_seed(0)
    moe = HierarchicalMoE(48, experts=8, groups=4, top_groups=2, top_k=2, expert_hidden=16, shared_hidden=32,
                          bias_gamma=1e-3).eval()
    assert torch.equal(moe.last_load, torch.zeros(8))
    x = torch.randn(7, 48)
    with torch.no_grad():
        moe(x)
    index, _ = hierarchical_route(torch.sigmoid(moe.router(x).float()), moe.bias, 4, 2, 2)
    assert torch.equal(moe.last_load, torch.bincount(index.reshape(-1), minlength=8).float())
    assert moe.load_acc.sum() == 0  # counted toward the bias update only in training
