"""The prompt prefix: a sentence's words as tokens in front of the stream, and what the backbone makes of them.

A prompt-conditioned world starts a clip from a sentence instead of a MuJoCo reset. Its words (a
vocabulary of the scene's prompt language, `worldsim.model.prompt_language`, learned from scratch)
are tokens of the same stream, read by the same attention and MoE blocks as the action, state and
frame tokens:

    [w_1 ... w_W] [g_1 ... g_S]            then the first frame, then the world's own rollout
    step 0        steps 1 .. S

- Word tokens (word embedding + position) all sit at time index 0, so they read each other both ways;
  padding is masked out of the keys.
- The initial state is *sampled*, one dimension at a time: token g_j (at index j, so it reads the words
  and g_1 .. g_j) holds the bin of dimension j - 1 drawn so far and gives the logits of dimension j's
  bin (`bins` bins over the training starts' range, then uniform inside the bin). A prompt leaves most
  of the state unsaid; sampling draws the rest from what the data holds for it.
- The first frame: the frame tokens of a step whose codes are unknown enter as a learned blank (per
  grid position) and read that step's physics tokens (the sampled state, a zero action), as every
  frame token reads its step's; a head of their own gives that frame's codes.

After that the clip is the world's ordinary rollout from (state, first frame): the prompt sets the
situation up and the world simulates it. The backbone's weights are the world's own and are not
trained here (`worldsim train prompt` fits only this module), so every figure of the world without a
prompt is unchanged, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from worldsim.core.config import ConfigBase
from worldsim.model.dynamics import Dynamics
from worldsim.model.prompt_language import PromptError, words_of


@dataclass(frozen=True)
class PromptConfig(ConfigBase):
    vocabulary: tuple[str, ...] = ()
    """the words the prefix reads (index i + 1; 0 pads)"""
    max_words: int = 64
    bins: int = 64
    """bins per state dimension of the sampled initial state"""
    subjects: tuple[tuple[str, ...], ...] = ()
    """the words naming each thing a sentence can be about (bounce: ("red",), ("green",), ("blue",)):
    each word token also carries its sentence's subject (see `subject_ids`)"""
    adapter_rank: int = 0
    """rank of the low-rank additions to each block's matrices for the prompt's tokens alone (0: none)"""
    state_low: tuple[float, ...] = ()
    """the binned range of each initial-state dimension (raw units)"""
    state_high: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not self.vocabulary or len(set(self.vocabulary)) != len(self.vocabulary):
            raise ValueError("PromptConfig.vocabulary must be a non-empty tuple of distinct words")
        if self.max_words < 1 or self.bins < 2:
            raise ValueError(f"PromptConfig needs max_words >= 1 and bins >= 2, got {self.max_words}, {self.bins}")
        if len(self.state_low) != len(self.state_high) or not self.state_low:
            raise ValueError("PromptConfig.state_low and state_high must have one entry per state dimension")
        if any(not lo < hi for lo, hi in zip(self.state_low, self.state_high)):
            raise ValueError("PromptConfig.state_low must be < state_high in every dimension")


class PromptHead(nn.Module):
    """The prompt's tokens and the heads that read the backbone's outputs for them (see the module
    docstring). The backbone itself is the world's `Dynamics`, passed in."""

    keep_fp32: ClassVar[bool] = False

    def __init__(self, cfg: PromptConfig, dyn_cfg):
        super().__init__()
        self.cfg = cfg
        d, s = dyn_cfg.width, dyn_cfg.state_dim
        if len(cfg.state_low) != s:
            raise ValueError(f"PromptConfig has {len(cfg.state_low)} state bounds for a state of {s} dimensions")
        self.index = {w: i + 1 for i, w in enumerate(cfg.vocabulary)}
        self.word_emb = nn.Embedding(len(cfg.vocabulary) + 1, d, padding_idx=0)
        self.word_pos = nn.Parameter(torch.randn(cfg.max_words, d) * 0.02)
        self.subject_emb = nn.Parameter(torch.randn(len(cfg.subjects) + 1, d) * 0.02)  # row 0: no subject
        self.naming = {w: i + 1 for i, ws in enumerate(cfg.subjects) for w in ws}
        self.dim_emb = nn.Parameter(torch.randn(s, d) * 0.02)
        self.bin_emb = nn.Parameter(torch.randn(s, cfg.bins, d) * 0.02)  # row j: dimension j's drawn bin
        self.bin_head = nn.Parameter(torch.zeros(s, d, cfg.bins))
        self.bin_bias = nn.Parameter(torch.zeros(s, cfg.bins))
        self.blank = nn.Parameter(torch.randn(dyn_cfg.tokens_per_frame, d) * 0.02)
        self.frame_head = nn.Linear(d, dyn_cfg.code_logits)
        r = cfg.adapter_rank
        # Per block: (A, B) for qkv, the attention's output and beside the FFN; B starts at zero, so an
        # untrained adapter adds nothing.
        self.adapters = nn.ParameterList()
        for _ in range(dyn_cfg.layers if r else 0):
            for n in (3 * d, d, d):
                self.adapters.append(nn.Parameter(torch.randn(d, r) / d**0.5))
                self.adapters.append(nn.Parameter(torch.zeros(r, n)))
        self.register_buffer("low", torch.tensor(cfg.state_low, dtype=torch.float32))
        self.register_buffer("high", torch.tensor(cfg.state_high, dtype=torch.float32))

    def subject_ids(self, words: list[str]) -> list[int]:
        """Each word's sentence subject: the thing (1 + its index in `subjects`) the sentence's first
        naming word names, "it" keeping the last sentence's; 0 for none. A segment feature of the word
        sequence, like a sentence index: with it a word of "the red ball starts left" carries "red"
        from the first layer on, so the attention that reads the prompt binds what is said to what it
        is said of in one hop."""
        out, sentence, last = [], [], 0
        for w in [*words, "."]:
            sentence.append(w)
            if w != ".":
                continue
            if sentence[0] == "it":
                subject = last
            else:
                subject = next((self.naming[x] for x in sentence if x in self.naming), 0)
            out += [subject] * len(sentence)
            last, sentence = subject or last, []
        return out[: len(words)]

    def word_ids(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, W] long word indices (0 pads) and [B, W] their sentences' subjects (`subject_ids`), W the
        longest prompt's length (at least 1)."""
        rows, subjects = [], []
        for text in prompts:
            words = words_of(text)
            unknown = [w for w in dict.fromkeys(words) if w not in self.index]
            if unknown:
                raise PromptError(f"this world was not trained on the word(s) {', '.join(repr(w) for w in unknown)}")
            if len(words) > self.cfg.max_words:
                raise PromptError(f"the prompt has {len(words)} words; this world reads at most {self.cfg.max_words}")
            rows.append([self.index[w] for w in words])
            subjects.append(self.subject_ids(words))
        width = max(1, *(len(r) for r in rows))
        out = torch.zeros(2, len(rows), width, dtype=torch.long, device=self.low.device)
        for i, (r, sub) in enumerate(zip(rows, subjects)):
            out[0, i, : len(r)] = torch.tensor(r, dtype=torch.long)
            out[1, i, : len(r)] = torch.tensor(sub, dtype=torch.long)
        return out[0], out[1]

    def to_bins(self, state: torch.Tensor) -> torch.Tensor:
        """Raw states [B, S] -> bin indices [B, S] (clamped into the range)."""
        u = (state - self.low) / (self.high - self.low)
        return (u * self.cfg.bins).long().clamp(0, self.cfg.bins - 1)

    def from_bins(self, bins: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Bin indices [B, S] -> raw states [B, S], uniform inside each bin."""
        u = torch.rand(bins.shape, generator=generator, device=bins.device)
        return self.low + (bins.float() + u) / self.cfg.bins * (self.high - self.low)

    def _state_logits(self, dyn: Dynamics, words: tuple[torch.Tensor, torch.Tensor], bins: torch.Tensor
                      ) -> torch.Tensor:
        """Logits [B, j+1, bins] of dimensions 0..j given the words and their subjects ([B, W] each,
        `word_ids`) and the bins of dimensions 0..j-1 (bins [B, j], j < S)."""
        words, subjects = words
        b, w = words.shape
        j = bins.shape[1]
        x_words = self.word_emb(words) + self.word_pos[:w] + self.subject_emb[subjects]
        prev = self.bin_emb[torch.arange(j, device=bins.device)[None], bins]  # [B, j, D]: dim i's bin into g_{i+1}
        x_gen = self.dim_emb[: j + 1].expand(b, -1, -1) + F.pad(prev, (0, 0, 1, 0))
        x = torch.cat([x_words, x_gen], 1)
        step = torch.cat([torch.zeros(w, dtype=torch.long, device=x.device),
                          torch.arange(1, j + 2, device=x.device)])
        valid = torch.cat([words != 0, torch.ones(b, j + 1, dtype=torch.bool, device=x.device)], 1)
        for i, blk in enumerate(dyn.blocks):
            x = blk.prefix_pass(x, step, valid, tuple(self.adapters[6 * i : 6 * i + 6]) if self.adapters else None)
        h = dyn.norm(x[:, w:])  # [B, j+1, D]
        return torch.einsum("bsd,sdk->bsk", h, self.bin_head[: j + 1]) + self.bin_bias[: j + 1]

    def first_frame_logits(self, dyn: Dynamics, state_n: torch.Tensor) -> torch.Tensor:
        """The frame head's logits [B, N, V'] of the frame of normalised states [B, S]."""
        b = state_n.shape[0]
        phys, _ = dyn.embed_streams(None, state_n[:, None], state_n.new_zeros(b, 1, dyn.cfg.action_dim))
        frame = (self.blank + dyn.pos_emb + dyn.type_emb[2]).expand(b, -1, -1)
        t_step = torch.zeros(1, dtype=torch.long, device=state_n.device)
        for blk in dyn.blocks:
            phys, frame = blk.streams(phys, frame, t_step)
        return self.frame_head(dyn.norm(frame))

    def loss(self, dyn: Dynamics, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Cross-entropy of the initial state's bins given the words ("words": `word_ids`' pair, "state"
        [B, S] raw) and, with "frame_states" (normalised) and "codes" [n, N], of the first frame's codes."""
        logs: dict[str, torch.Tensor] = {}
        bins = self.to_bins(batch["state"])
        logits = self._state_logits(dyn, batch["words"], bins[:, :-1])
        ce = F.cross_entropy(logits.flatten(0, 1), bins.flatten())
        total = ce
        logs["state_ce"] = ce.detach()
        if "codes" in batch:
            flog = self.first_frame_logits(dyn, batch["frame_states"])
            fce = dyn.code_loss(flog, batch["codes"]).mean()
            total = total + fce
            with torch.no_grad():
                logs["frame_ce"] = fce.detach()
                logs["frame_acc"] = (dyn.predict_codes(flog) == batch["codes"]).float().mean()
        return total, logs

    @torch.no_grad()
    def sample_state(self, dyn: Dynamics, words: tuple[torch.Tensor, torch.Tensor], temperature: float = 1.0,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """Raw initial states [B, S] drawn one dimension at a time (temperature 0: each bin's argmax),
        given `word_ids`' words and subjects."""
        b = words[0].shape[0]
        bins = torch.zeros(b, 0, dtype=torch.long, device=words[0].device)
        for _ in range(len(self.cfg.state_low)):
            logits = self._state_logits(dyn, words, bins)[:, -1]
            if temperature == 0:
                nxt = logits.argmax(-1)
            else:
                probs = torch.softmax(logits / temperature, -1)
                nxt = torch.multinomial(probs, 1, generator=generator)[:, 0]
            bins = torch.cat([bins, nxt[:, None]], 1)
        return self.from_bins(bins, generator)
