"""The side models a world model composes: state pathway, state renderer, outcome head."""

import pytest
import torch

from worldsim.core.checkpoint import load_checkpoint
from worldsim.model.dynamics import DynamicsConfig
from worldsim.model.outcome_head import OutcomeHeadConfig
from worldsim.model.state_pathway import StatePathwayConfig
from worldsim.model.state_renderer import StateRenderer, StateRendererConfig
from worldsim.model.tokenizer import TokenizerConfig
from worldsim.model.world_model import WorldModel, WorldModelConfig

TOK = TokenizerConfig(channels=(8, 16, 16), levels=(5, 4, 3))
DYN = DynamicsConfig(state_dim=3, action_dim=2, grid=8, codebook_size=60, width=32, layers=2, heads=2, context=3,
                     ffn_hidden=64)
ALL = WorldModelConfig(scene="test", tokenizer=TOK, dynamics=DYN, pathway=StatePathwayConfig(width=16),
                       renderer=StateRendererConfig(width=8), outcome=OutcomeHeadConfig(width=8))


def inputs(B=2, T=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 60, (B, T, 64), generator=g), torch.randn(B, T, 3, generator=g),
            torch.randn(B, T, 2, generator=g))


@pytest.mark.parametrize("make, match", [
    (lambda: StatePathwayConfig(width=0), "StatePathwayConfig.width must be > 0"),
    (lambda: OutcomeHeadConfig(width=-1), "OutcomeHeadConfig.width must be > 0"),
    (lambda: StateRendererConfig(width=0), "StateRendererConfig.width must be > 0"),
    (lambda: StateRendererConfig(mix="max"), "mix must be 'sum' or 'replace'"),
    (lambda: ALL.replace(pathway=None, dynamics=DYN.replace(state_head=False)), "needs a state pathway"),
])
def test_bad_part_configs_are_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_parts_are_none_when_absent_and_round_trip_in_the_config():
    bare = WorldModel(ALL.replace(pathway=None, renderer=None, outcome=None))
    assert bare.pathway is None and bare.renderer is None and bare.outcome is None and bare.parts() == {}
    with pytest.raises(ValueError, match="no state pathway"):
        bare.pathway_loss({"states": torch.zeros(1, 2, 3), "actions": torch.zeros(1, 1, 2)})
    assert WorldModelConfig.from_json(ALL.to_json()) == ALL
    assert set(WorldModel(ALL).parts()) == {"pathway", "renderer", "outcome"}


def test_state_pathway_adds_to_the_state_head():
    torch.manual_seed(0)
    wm = WorldModel(ALL).eval()
    codes, states, actions = inputs()
    with torch.no_grad():
        head = wm.dynamics(codes, states, actions)["state_delta"]
        out = wm.predict(codes, states, actions)
        torch.testing.assert_close(out["state_delta"], head + wm.pathway(states, actions))
        codes2 = (codes + 1) % 60  # the frame does not enter the pathway
        share = wm.predict(codes2, states, actions)["state_delta"] - wm.dynamics(codes2, states, actions)["state_delta"]
        torch.testing.assert_close(share, wm.pathway(states, actions))
    alone = WorldModel(ALL.replace(dynamics=DYN.replace(state_head=False))).eval()
    with torch.no_grad():
        torch.testing.assert_close(alone.predict(codes, states, actions)["state_delta"], alone.pathway(states, actions))


def test_reduced_precision_keeps_the_stats_pathway_and_outcome_in_float32(tmp_path):
    wm = WorldModel(ALL)
    assert wm.keep_fp32() == ("state_mean", "state_std", "reward_mean", "reward_std", "dynamics.state_in.",
                              "dynamics.state_head.", "pathway.", "outcome.")
    wm.save(tmp_path / "wm", dtype=torch.float16)
    tensors = load_checkpoint(tmp_path / "wm", kind="world_model").tensors
    fp32 = {k for k, v in tensors.items() if v.dtype == torch.float32}
    assert fp32 == {k for k in tensors if k.startswith(wm.keep_fp32())} and "pathway.mlp.0.weight" in fp32
    assert tensors["renderer.mlp.0.weight"].dtype == tensors["dynamics.frame_head.weight"].dtype == torch.float16


def test_renderer_logits_and_mix():
    torch.manual_seed(0)
    r = StateRenderer(StateRendererConfig(width=8, mix="replace"), 10, 64, (8, 5, 5, 5))
    rendered = r(torch.randn(2, 10))
    assert rendered.shape == (2, 64, 23)
    # With a joint head (1000 logits a token) the channels become each code's joint log-probability.
    mixed = r.mix(torch.randn(2, 64, 1000), rendered, factorized=False)
    assert mixed.shape == (2, 64, 1000)
    torch.testing.assert_close(mixed.exp().sum(-1), torch.ones(2, 64))
    code = 7 + 8 * (3 + 5 * (1 + 5 * 4))  # digits (7, 3, 1, 4)
    lp = [torch.log_softmax(p, -1) for p in rendered.split((8, 5, 5, 5), -1)]
    torch.testing.assert_close(mixed[..., code], lp[0][..., 7] + lp[1][..., 3] + lp[2][..., 1] + lp[3][..., 4])
    assert torch.equal(mixed.argmax(-1), r.digits.join(torch.stack([p.argmax(-1) for p in lp], -1)))
    head = torch.randn(2, 64, 1000)
    summed = StateRenderer(StateRendererConfig(width=8, mix="sum"), 10, 64, (8, 5, 5, 5))
    torch.testing.assert_close(summed.mix(head, rendered, factorized=False), head + mixed)
    torch.testing.assert_close(summed.mix(rendered, rendered, factorized=True), 2 * rendered)
    assert torch.equal(r.mix(head[..., :23], rendered, factorized=True), rendered)
    loss, logs = r.loss({"states": torch.randn(4, 10), "codes": torch.randint(0, 1000, (4, 64))})
    assert loss.ndim == 0 and 0 <= float(logs["token_acc"]) <= 1


def test_outcome_loss_terms():
    torch.manual_seed(0)
    wm = WorldModel(ALL)
    batch = {"next_states": torch.randn(8, 3), "actions": torch.randn(8, 2), "rewards": torch.randn(8),
             "terminated": (torch.rand(8) < 0.5).float()}
    loss, logs = wm.outcome.loss(batch)
    reward, logit = wm.outcome(batch["next_states"], batch["actions"])
    torch.testing.assert_close(logs["reward_mse"], (reward - batch["rewards"]).pow(2).mean().detach())
    torch.testing.assert_close(loss, logs["reward_mse"] + logs["term_bce"])
