"""The prompt prefix's pieces: each word's sentence subject, the state's bins, adapters that start at
nothing, and the backbone's other tokens untouched by any of it."""

import torch

from worldsim.model.dynamics import DynamicsConfig
from worldsim.model.prompt import PromptConfig, PromptHead
from worldsim.model.prompt_language import language, words_of
from worldsim.model.world_model import WorldModel, WorldModelConfig


def _head(rank=0):
    dyn = DynamicsConfig(state_dim=4, action_dim=1, width=32, layers=2, heads=2, codebook_size=60,
                         moe=True, experts=4, expert_groups=2, top_groups=1, top_k=2, expert_hidden=16,
                         shared_hidden=32, prune=True, capacity=0.5, prune_from=1)
    lang = language("bounce")
    cfg = PromptConfig(vocabulary=lang.vocabulary(), state_low=(-1.0, 0.0, -3.0, -3.0), state_high=(1.0, 2.0, 3.0, 3.0),
                       subjects=tuple(names for names, _ in lang.entities.values()), adapter_rank=rank)
    torch.manual_seed(0)
    return dyn, PromptHead(cfg, dyn)


def test_each_word_carries_its_sentences_subject():
    _, head = _head()
    words = words_of("The red ball starts left. It hits the green ball. The blue one is high.")
    subjects = head.subject_ids(words)
    assert len(subjects) == len(words)
    ends = [i for i, w in enumerate(words) if w == "."]
    assert set(subjects[: ends[0] + 1]) == {1}  # red, though "green" is named later
    assert set(subjects[ends[0] + 1 : ends[1] + 1]) == {1}  # "it" keeps red
    assert set(subjects[ends[1] + 1 :]) == {3}
    ids, subs = head.word_ids(["the red ball starts left", ""])
    assert ids.shape == subs.shape == (2, 5) and int(ids[1].abs().sum()) == 0


def test_bins_cover_the_range_and_sample_inside_their_bin():
    _, head = _head()
    state = torch.tensor([[-1.0, 0.0, 0.0, 2.999], [0.999, 1.999, -3.0, 5.0]])
    bins = head.to_bins(state)
    assert bins.min() >= 0 and bins.max() <= head.cfg.bins - 1
    back = head.from_bins(bins, torch.Generator().manual_seed(0))
    width = (head.high - head.low) / head.cfg.bins
    inside = (state >= head.low) & (state <= head.high)
    assert torch.all(((back - state).abs() <= width + 1e-6) | ~inside)


def test_untrained_adapters_add_nothing_and_other_tokens_never_see_them():
    dyn_cfg, head = _head(rank=4)
    wm = WorldModel(WorldModelConfig(scene="bounce", dynamics=dyn_cfg,
                                     tokenizer=WorldModelConfig().tokenizer.replace(levels=(5, 4, 3)),
                                     prompt=head.cfg)).eval()
    words = wm.prompt.word_ids(["The red ball starts left."])
    bins = torch.zeros(1, 3, dtype=torch.long)
    with_adapters = wm.prompt._state_logits(wm.dynamics, words, bins)
    plain = PromptHead(head.cfg.replace(adapter_rank=0), dyn_cfg)
    plain.load_state_dict({k: v for k, v in wm.prompt.state_dict().items() if not k.startswith("adapters.")})
    assert torch.allclose(with_adapters, plain._state_logits(wm.dynamics, words, bins), atol=1e-6)
    # The world's own step reads none of the prompt's parameters.
    with torch.no_grad():
        for p in wm.prompt.parameters():
            p.add_(1.0)
    states = torch.zeros(2, 1, 4)
    out = wm.predict(None, wm.normalize_state(states), torch.zeros(2, 1, 1))
    wm2 = WorldModel(wm.cfg.replace(prompt=None)).eval()
    wm2.load_state_dict({k: v for k, v in wm.state_dict().items() if not k.startswith("prompt.")})
    out2 = wm2.predict(None, wm2.normalize_state(states), torch.zeros(2, 1, 1))
    assert torch.equal(out["state_delta"], out2["state_delta"])
