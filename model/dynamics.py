"""The V4 dynamics transformer: one spatiotemporal token stream, block-causal, pruned and MoE.

Per time step t the stream holds S = N + 2 tokens: [action a_t, state s_t, frame codes z_t (N)].
Attention is block-causal (full within a step, causal across steps) over a window of `context` steps;
time enters as a rotary embedding of the step index, so cached keys stay valid as the window slides.
From step t's outputs the heads predict, in one pass: every code of frame t+1 (at the same grid
position), the state s_{t+1} (as a change of the normalised state, from the state token), and the
reward and termination of a_t (from the action token).

Switches (see `DynamicsConfig`):
- `prune`: from layer `prune_from` on, a scorer keeps the top `capacity` of each step's frame tokens;
  only they (and the action and state tokens) go through attention and FFN, as queries and as keys;
  the rest ride the residual stream unchanged. The kept tokens' block output is scaled by the
  scorer's sigmoid, so it learns (Mixture-of-Depths, https://arxiv.org/abs/2404.02258).
- `moe`: the FFN is a hierarchical MoE with load-aware routing (`worldsim.model.moe`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from worldsim.core.config import ConfigBase
from worldsim.kernels import gather_tokens, pruned_attention, scatter_tokens, select_tokens
from worldsim.model.moe import HierarchicalMoE, SwiGLU

RENDER_MIXES = ("sum", "replace")


@dataclass(frozen=True)
class DynamicsConfig(ConfigBase):
    state_dim: int = 10
    action_dim: int = 2
    grid: int = 8
    codebook_size: int = 1000
    width: int = 192
    layers: int = 4
    heads: int = 4
    context: int = 4
    ffn_hidden: int = 512
    prune: bool = False
    capacity: float = 0.7
    prune_from: int = 2
    moe: bool = False
    experts: int = 8
    expert_groups: int = 4
    top_groups: int = 2
    top_k: int = 2
    expert_hidden: int = 128
    shared_hidden: int = 256
    bias_gamma: float = 1e-3
    # Frame head: "joint" (one softmax over the codebook) or "factorized" (one softmax per FSQ
    # channel over its levels; `code_levels` are the tokenizer's, their product the codebook size).
    frame_head: str = "joint"
    code_levels: tuple[int, ...] = ()
    # Width of the state pathway, an MLP of (state, action) whose output is added to the state
    # token's prediction; 0: the linear head on the state token alone.
    state_mlp: int = 0
    # With a state pathway: whether the state token's linear head adds its own correction to it
    # (False: the pathway alone predicts the state change; the transformer still reads the state).
    state_residual: bool = True
    # Width of the state renderer, an MLP from a normalised state to per-FSQ-channel logits for the
    # frame of that state (0: none; it needs `code_levels`, with either head). In a rollout it reads
    # the state predicted for the next step; `render_mix` "sum" adds its log-probabilities to the
    # frame head's logits, "replace" uses them alone.
    state_render: int = 0
    render_mix: str = "sum"
    # Width of the outcome head, an MLP from (normalised next state, action) to that step's reward
    # (normalised) and termination logit (0: none). In a rollout it reads the state just predicted,
    # so reward and termination follow the predicted physics; the action token's heads go unused.
    state_outcome: int = 0

    def __post_init__(self) -> None:
        for name in ("state_dim", "action_dim", "grid", "codebook_size", "width", "layers", "heads", "context",
                     "ffn_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"DynamicsConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.width % (2 * self.heads):
            raise ValueError(f"DynamicsConfig.width ({self.width}) must be a multiple of 2 * heads ({self.heads})")
        if not 0 < self.capacity <= 1:
            raise ValueError(f"DynamicsConfig.capacity must be in (0, 1], got {self.capacity}")
        if not 0 <= self.prune_from <= self.layers:
            raise ValueError(f"DynamicsConfig.prune_from must be in [0, layers={self.layers}], got {self.prune_from}")
        if self.frame_head not in ("joint", "factorized"):
            raise ValueError(f"DynamicsConfig.frame_head must be 'joint' or 'factorized', got {self.frame_head!r}")
        if (self.frame_head == "factorized" or self.state_render > 0) and (
                not self.code_levels or any(v < 2 for v in self.code_levels)
                or math.prod(self.code_levels) != self.codebook_size):
            raise ValueError(f"a factorized frame head or a state renderer needs code_levels (each >= 2) whose "
                             f"product is the codebook size {self.codebook_size}, got {self.code_levels}")
        for name in ("state_mlp", "state_render", "state_outcome"):  # widths of the optional MLPs
            if getattr(self, name) < 0:
                raise ValueError(f"DynamicsConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not self.state_residual and not self.state_mlp:
            raise ValueError("DynamicsConfig.state_residual=False needs a state pathway (state_mlp > 0)")
        if self.render_mix not in RENDER_MIXES:
            raise ValueError(f"DynamicsConfig.render_mix must be 'sum' or 'replace', got {self.render_mix!r}")

    @property
    def tokens_per_frame(self) -> int:
        return self.grid * self.grid

    @property
    def tokens_per_step(self) -> int:
        return self.tokens_per_frame + 2

    @property
    def code_logits(self) -> int:
        """Logits per frame token: the codebook (joint head) or the sum of the FSQ levels (factorized)."""
        return sum(self.code_levels) if self.frame_head == "factorized" else self.codebook_size

    @property
    def kept_frame_tokens(self) -> int:
        return max(1, math.ceil(self.capacity * self.tokens_per_frame)) if self.prune else self.tokens_per_frame


def rotary(x: torch.Tensor, step: torch.Tensor, dim: int = 2) -> torch.Tensor:
    """Rotate x [..., hd] by angles of the time step [L], which indexes x's dimension `dim` (rotary
    embedding over time only): [B, H, L, hd] by default."""
    hd = x.shape[-1]
    freq = 1.0 / (100.0 ** (torch.arange(0, hd, 2, device=x.device, dtype=torch.float32) / hd))
    ang = step.float()[:, None] * freq[None]  # [L, hd/2]
    rot = torch.polar(torch.ones_like(ang), ang).view(-1, *([1] * (x.ndim - 2 - dim % x.ndim)), hd // 2)
    # Pairs (x[2i], x[2i+1]) rotate by ang[i]: one complex multiply (x1 cos - x2 sin, x1 sin + x2 cos).
    xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], hd // 2, 2))
    return torch.view_as_real(xc * rot).flatten(-2).to(x.dtype)


class KVCache:
    """Keys and values of the last `window` steps for one layer, in a ring buffer.

    Storage is preallocated on the first `extend`: [B, H, window, n, hd], one slot per step (slot =
    step index mod window), so a rollout step writes one slot in place instead of concatenating and
    trimming the whole cache. Attention reads `k`, `v` [B, H, L, hd] with `step` [L] and `valid`
    [B, L] (or None: every row sees every key); keys need not be in time order, since attention
    masks by step and time enters through the rotary embedding. `valid` marks the keys each row may
    see: rows restarted by a vector env no longer see their old worlds' keys.
    """

    def __init__(self) -> None:
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.step: torch.Tensor | None = None
        self.valid: torch.Tensor | None = None
        self._k: torch.Tensor | None = None  # [B, H, W, n, hd]
        self._v: torch.Tensor | None = None
        self._steps: list[int | None] = []  # the step held by each slot, None when empty
        self._valid: torch.Tensor | None = None  # [B, W] per-row slot validity, None: all valid

    def _slot(self, s: int) -> int:
        return s % len(self._steps)

    def extend(self, k: torch.Tensor, v: torch.Tensor, step: torch.Tensor, window: int) -> None:
        """Add one step's keys and values k, v [B, H, n, hd] (step [n], one value); the step that
        falls out of the window is dropped."""
        s = int(step[0])
        if self._k is None:
            b, h, n, hd = k.shape
            self._k = k.new_empty(b, h, window, n, hd)
            self._v = v.new_empty(b, h, window, n, hd)
            self._steps = [None] * window
        elif len(self._steps) != window:
            raise ValueError(f"cache holds a window of {len(self._steps)} steps, asked for {window}")
        slot = self._slot(s)
        self._k[:, :, slot] = k
        self._v[:, :, slot] = v
        self._steps = [None if t is None or t <= s - window else t for t in self._steps]
        self._steps[slot] = s
        if self._valid is not None:
            self._valid[:, slot] = True
        self._publish()

    def _publish(self) -> None:
        """Refresh the views attention reads: the filled slots, or the whole buffer with a mask."""
        assert self._k is not None and self._v is not None
        b, h, w, n, hd = self._k.shape
        live = [t is not None for t in self._steps]
        count = sum(live)
        valid = self._valid
        if all(live[:count]):  # the filled slots are a prefix (always, unless rows restarted early)
            # Contiguous for the kernels; a copy only while the ring is still filling (count < window).
            self.k = self._k[:, :, :count].flatten(2, 3).contiguous()
            self.v = self._v[:, :, :count].flatten(2, 3).contiguous()
            steps = self._steps[:count]
            if valid is not None:
                valid = valid[:, :count]
        else:
            self.k, self.v = self._k.flatten(2, 3), self._v.flatten(2, 3)
            steps = [t if t is not None else 0 for t in self._steps]
            empty = torch.tensor(live, device=self._k.device)
            valid = empty.expand(b, w) if valid is None else valid & empty
        dev = self._k.device
        self.step = torch.tensor(steps, dtype=torch.long, device=dev).repeat_interleave(n)
        self.valid = None if valid is None else valid.repeat_interleave(n, 1)

    def replace_rows(self, rows: torch.Tensor, other: KVCache) -> None:
        """Give rows `rows` [R] (long) the history of `other` (a cache of R rows) and nothing else.

        Steps are matched by their index; a step that only `other` has is added with its keys
        invalid for the rows that are not restarted.
        """
        if self._k is None:
            if other._k is None:
                return
            raise ValueError("cannot restart rows of a cache that has never been filled")
        b, w = self._k.shape[0], len(self._steps)
        if self._valid is None:
            self._valid = torch.ones(b, w, dtype=torch.bool, device=self._k.device)
        self._valid[rows] = False
        if other._k is not None:
            for oslot, t in enumerate(other._steps):
                if t is None:
                    continue
                slot = self._slot(t)
                if self._steps[slot] is None:
                    self._steps[slot] = t
                    self._valid[:, slot] = False
                elif self._steps[slot] != t:
                    raise ValueError(f"step {t} of the restarted rows is outside this cache's window "
                                     f"(slot {slot} holds step {self._steps[slot]})")
                self._k[rows, :, slot] = other._k[:, :, oslot]
                self._v[rows, :, slot] = other._v[:, :, oslot]
                self._valid[rows, slot] = True if other._valid is None else other._valid[:, oslot]
        if bool(self._valid.all()):
            self._valid = None
        self._publish()


class Attention(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)

    def forward(self, x: torch.Tensor, step: torch.Tensor, cache: KVCache | None, window: int) -> torch.Tensor:
        """x [B, L, D] with step [L]; with a cache, x is the new step's tokens and keys include the cache."""
        b, l, d = x.shape
        qkv = self.qkv(x).view(b, l, 3, self.heads, d // self.heads)
        qk = rotary(qkv[:, :, :2], step, dim=1).permute(2, 0, 3, 1, 4)  # q and k in one rotation
        q, k, v = qk[0], qk[1], qkv[:, :, 2].transpose(1, 2)
        k_step = step
        if cache is not None:
            cache.extend(k, v, step, window)
            k, v, k_step = cache.k, cache.v, cache.step
        y = pruned_attention(q, k, v, step, k_step, k_valid=None if cache is None else cache.valid)
        return self.out(y.transpose(1, 2).reshape(b, l, d))


class Block(nn.Module):
    """Pre-norm transformer block; optionally pruned (top-capacity frame tokens per step)."""

    def __init__(self, cfg: DynamicsConfig, pruned: bool):
        super().__init__()
        d = cfg.width
        self.cfg, self.pruned = cfg, pruned
        self.norm1, self.norm2 = nn.RMSNorm(d), nn.RMSNorm(d)
        self.attn = Attention(d, cfg.heads)
        if cfg.moe:
            self.ffn: nn.Module = HierarchicalMoE(d, cfg.experts, cfg.expert_groups, cfg.top_groups, cfg.top_k,
                                                  cfg.expert_hidden, cfg.shared_hidden, cfg.bias_gamma)
        else:
            self.ffn = SwiGLU(d, cfg.ffn_hidden)
        self.scorer = nn.Linear(d, 1) if pruned else None
        self.last_kept: torch.Tensor | None = None

    def _core(self, x: torch.Tensor, step: torch.Tensor, cache: KVCache | None) -> torch.Tensor:
        h = x + self.attn(self.norm1(x), step, cache, self.cfg.context)
        return h + self.ffn(self.norm2(h))

    def forward(self, x: torch.Tensor, step: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """x [B, T*S, D] laid out step by step, step [T*S]."""
        if not self.pruned:
            return self._core(x, step, cache)
        b, L, d = x.shape
        S, k = self.cfg.tokens_per_step, self.cfg.kept_frame_tokens
        T = L // S
        score = self.scorer(x.view(b, T, S, d)[:, :, 2:]).squeeze(-1)  # [B, T, N]
        top, index = select_tokens(score, k, lead=2)  # [B, T, k] in grid order; [B, T*M] stream positions
        self.last_kept = index
        kept = gather_tokens(x, index)
        kept_step = step.view(T, S)[:, :1].expand(T, k + 2).reshape(-1)
        out = self._core(kept, kept_step, cache)
        gate = torch.cat([torch.ones(b, T, 2, device=x.device, dtype=x.dtype),
                          torch.sigmoid(score.gather(-1, top))], dim=-1).reshape(b, -1)
        return scatter_tokens(x, index, out, gate=gate, kept=kept)  # kept + gate * (out - kept) at index


def _mlp(*sizes: int) -> nn.Sequential:
    """Linear layers of `sizes` (input, hidden..., output) with SiLU between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [nn.SiLU()] if i else []
        layers.append(nn.Linear(a, b))
    return nn.Sequential(*layers)


def _state_action(states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    return torch.cat([states, actions.to(states.dtype)], -1)


class Dynamics(nn.Module):
    """The transformer over the token stream; `forward(batch) -> (loss, logs)` lives in the trainer,
    which knows the data; this module maps inputs to predictions."""

    def __init__(self, cfg: DynamicsConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.width
        self.code_emb = nn.Embedding(cfg.codebook_size, d)
        self.pos_emb = nn.Parameter(torch.randn(cfg.tokens_per_frame, d) * 0.02)
        self.type_emb = nn.Parameter(torch.randn(3, d) * 0.02)  # action, state, frame
        self.action_in = nn.Linear(cfg.action_dim, d)
        self.state_in = nn.Linear(cfg.state_dim, d)
        self.blocks = nn.ModuleList(
            Block(cfg, pruned=cfg.prune and i >= cfg.prune_from) for i in range(cfg.layers)
        )
        self.norm = nn.RMSNorm(d)
        self.frame_head = nn.Linear(d, cfg.code_logits)
        if cfg.code_levels:
            lv = torch.tensor(cfg.code_levels, dtype=torch.long)
            self.register_buffer("code_levels", lv, persistent=False)
            self.register_buffer("code_basis", torch.cumprod(torch.cat([lv.new_ones(1), lv[:-1]]), 0),
                                 persistent=False)
            # Every code's FSQ digits [V, C], for scoring a joint head's codes by channel.
            self.register_buffer("code_digits", self.digits(torch.arange(cfg.codebook_size)), persistent=False)
        self.state_head = nn.Linear(d, cfg.state_dim) if cfg.state_residual else None
        # The optional MLPs on the (predicted) state, outside the transformer.
        s, sa, w = cfg.state_dim, cfg.state_dim + cfg.action_dim, (cfg.state_mlp, cfg.state_render, cfg.state_outcome)
        self.state_mlp = _mlp(sa, w[0], w[0], w[0], s) if w[0] else None
        self.state_render = _mlp(s, w[1], w[1], w[1], cfg.tokens_per_frame * sum(cfg.code_levels)) if w[1] else None
        self.state_outcome = _mlp(sa, w[2], w[2], 2) if w[2] else None
        self.reward_head = nn.Linear(d, 1)
        self.term_head = nn.Linear(d, 1)

    def embed(self, codes: torch.Tensor, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """codes [B, T, N] long, states [B, T, S_dim] (normalised), actions [B, T, A] -> [B, T*(N+2), D]."""
        b, t, n = codes.shape
        frame = self.code_emb(codes) + self.pos_emb + self.type_emb[2]
        act = self.action_in(actions).unsqueeze(2) + self.type_emb[0]
        st = self.state_in(states).unsqueeze(2) + self.type_emb[1]
        return torch.cat([act, st, frame], dim=2).reshape(b, t * (n + 2), -1)

    def heads(self, h: torch.Tensor, states: torch.Tensor, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        """Final hidden [B, T*S, D] and the step's inputs (states [B, T, S_dim] normalised, actions
        [B, T, A]) -> predictions for each step's next frame, state, reward, termination."""
        b, t = states.shape[:2]
        h = self.norm(h).view(b, t, self.cfg.tokens_per_step, -1)
        delta = self.state_head(h[:, :, 1]) if self.state_head is not None else 0
        if self.state_mlp is not None:
            delta = delta + self.state_pathway(states, actions)
        return {
            "code_logits": self.frame_head(h[:, :, 2:]),  # [B, T, N, V] (joint) or [B, T, N, sum(levels)]
            "state_delta": delta,  # [B, T, S_dim]
            "reward": self.reward_head(h[:, :, 0]).squeeze(-1),  # [B, T]
            "term_logit": self.term_head(h[:, :, 0]).squeeze(-1),  # [B, T]
        }

    def state_pathway(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The state MLP's share of the state change: [..., S_dim], [..., A] -> [..., S_dim]."""
        if self.state_mlp is None:
            raise ValueError("this model has no state pathway (DynamicsConfig.state_mlp = 0)")
        return self.state_mlp(_state_action(states, actions))

    def outcome(self, states: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The outcome head's (normalised reward [...], termination logit [...]) for the steps taken
        under actions [..., A] that end in normalised states [..., S]."""
        if self.state_outcome is None:
            raise ValueError("this model has no outcome head (DynamicsConfig.state_outcome = 0)")
        out = self.state_outcome(_state_action(states, actions))
        return out[..., 0], out[..., 1]

    def render_logits(self, states: torch.Tensor) -> torch.Tensor:
        """The state renderer's logits for the frames of normalised states [..., S], per FSQ channel
        whatever the frame head: [..., N, sum(levels)] (score them with `factorized=True`)."""
        if self.state_render is None:
            raise ValueError("this model has no state renderer (DynamicsConfig.state_render = 0)")
        return self.state_render(states).unflatten(-1, (self.cfg.tokens_per_frame, sum(self.cfg.code_levels)))

    def mix_render(self, logits: torch.Tensor, rendered: torch.Tensor) -> torch.Tensor:
        """The frame head's logits [..., N, V'] combined with the renderer's [..., N, sum(levels)] as
        `render_mix` says, in the frame head's layout. For a joint head the renderer's channels become
        the joint log-probability of every code (the sum of its digits' log-probabilities)."""
        if self.cfg.frame_head == "factorized":
            return rendered if self.cfg.render_mix == "replace" else logits + rendered
        lp = [F.log_softmax(lg.float(), -1) for lg in self._digit_logits(rendered)]
        joint = sum(p[..., self.code_digits[:, i]] for i, p in enumerate(lp)).to(logits.dtype)  # [..., N, V]
        return joint if self.cfg.render_mix == "replace" else logits + joint

    def digits(self, codes: torch.Tensor) -> torch.Tensor:
        """The FSQ digits of codes [...] (long): [..., C], one per channel."""
        return (codes.unsqueeze(-1) // self.code_basis) % self.code_levels

    def _digit_logits(self, logits: torch.Tensor) -> list[torch.Tensor]:
        return list(logits.split(self.cfg.code_levels, dim=-1))

    def code_loss(self, logits: torch.Tensor, codes: torch.Tensor, factorized: bool | None = None) -> torch.Tensor:
        """Cross-entropy of the frame head's `logits` [..., V'] against codes [...] (long): [...].
        Factorized (by default when the frame head is): the sum over FSQ channels of each channel's
        cross-entropy on its digit."""
        logits = logits.float()
        if factorized is None:
            factorized = self.cfg.frame_head == "factorized"
        if not factorized:
            return F.cross_entropy(logits.flatten(0, -2), codes.flatten(), reduction="none").view(codes.shape)
        digits = self.digits(codes)  # [..., C]
        ce = [F.cross_entropy(lg.flatten(0, -2), digits[..., i].flatten(), reduction="none")
              for i, lg in enumerate(self._digit_logits(logits))]
        return torch.stack(ce, -1).sum(-1).view(codes.shape)

    def predict_codes(self, logits: torch.Tensor, temperature: float = 0.0,
                      generator: torch.Generator | None = None, factorized: bool | None = None) -> torch.Tensor:
        """Codes [...] from the frame head's `logits` [..., V']: the argmax at temperature 0, else a
        sample of softmax(logits / temperature) (per channel when factorized, by default when the
        frame head is)."""
        if factorized is None:
            factorized = self.cfg.frame_head == "factorized"
        parts = self._digit_logits(logits) if factorized else [logits]
        picks = []
        for lg in parts:
            if temperature <= 0:
                picks.append(lg.argmax(-1))
            else:
                probs = torch.softmax(lg.float() / temperature, -1)
                pick = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)
                picks.append(pick.view(lg.shape[:-1]))
        if not factorized:
            return picks[0]
        return (torch.stack(picks, -1) * self.code_basis).sum(-1)

    def forward(self, codes: torch.Tensor, states: torch.Tensor, actions: torch.Tensor,
                first_step: int = 0) -> dict[str, torch.Tensor]:
        """Teacher-forced pass over T steps (T <= context): predictions for every step."""
        b, t, n = codes.shape
        if t > self.cfg.context:
            raise ValueError(f"window of {t} steps exceeds the context of {self.cfg.context}")
        step = torch.arange(first_step, first_step + t, device=codes.device).repeat_interleave(n + 2)
        h = self.embed(codes, states, actions)
        for blk in self.blocks:
            h = blk(h, step)
        return self.heads(h, states, actions)

    def step_with_cache(self, caches: list[KVCache], codes: torch.Tensor, states: torch.Tensor,
                        actions: torch.Tensor, step_index: int) -> dict[str, torch.Tensor]:
        """One new step (codes [B, 1, N], ...) against the caches, which it extends."""
        n = codes.shape[-1]
        step = torch.full((n + 2,), step_index, device=codes.device, dtype=torch.long)
        h = self.embed(codes, states, actions)
        for blk, cache in zip(self.blocks, caches):
            h = blk(h, step, cache)
        return self.heads(h, states, actions)

    def moe_layers(self) -> list[HierarchicalMoE]:
        return [b.ffn for b in self.blocks if isinstance(b.ffn, HierarchicalMoE)]


# Named presets: keyword overrides of DynamicsConfig. `dense` has no pruning and a dense FFN sized to
# the MoE's *active* parameters (shared 256 + top-2 x 128 = 512 hidden), so the two differ only in
# the V4 switches. The CPU sizes train in about an hour on two cores; the GPU sizes are wider and deeper.
PRESETS: dict[str, dict] = {
    "dense": dict(width=192, layers=4, heads=4, ffn_hidden=512, prune=False, moe=False),
    "v4": dict(width=192, layers=4, heads=4, prune=True, capacity=0.4, prune_from=1, moe=True, experts=8,
               expert_groups=4, top_groups=2, top_k=2, expert_hidden=128, shared_hidden=256),
    # v4 made cheaper to run and steadier in state: every layer pruned (from layer 0), frame codes
    # predicted per FSQ channel (23 logits instead of 1000), and the state change predicted by a
    # state pathway MLP alone (the transformer's residual on top of it measured worse).
    "v4-lite": dict(width=192, layers=4, heads=4, prune=True, capacity=0.3, prune_from=0, moe=True, experts=8,
                    expert_groups=4, top_groups=2, top_k=2, expert_hidden=128, shared_hidden=256,
                    frame_head="factorized", state_mlp=256, state_residual=False),
    "dense-gpu": dict(width=512, layers=8, heads=8, ffn_hidden=1536, prune=False, moe=False),
    "v4-gpu": dict(width=512, layers=8, heads=8, prune=True, capacity=0.5, prune_from=2, moe=True, experts=16,
                   expert_groups=4, top_groups=2, top_k=2, expert_hidden=384, shared_hidden=768),
}


def preset_config(name: str, **fields) -> DynamicsConfig:
    """A preset's DynamicsConfig, with data-dependent fields (state_dim, action_dim, ...) filled in."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return DynamicsConfig(**{**PRESETS[name], **fields})
