"""The V4 dynamics transformer: one spatiotemporal token stream, block-causal, pruned and MoE.

Per time step t the stream holds S = N + 2 tokens: [action a_t, state s_t, frame codes z_t (N)].
Attention is block-causal (full within a step, causal across steps) over a window of `context` steps;
time enters as a rotary embedding of the step index, so cached keys stay valid as the window slides.
The action and state tokens (the physics) never read frame tokens; frame tokens read the physics
tokens and their own past. Every layer runs the physics tokens first, exactly as a step without
frames does, then the frame tokens with the physics keys in front of theirs: a framed rollout's
states, rewards and terminations are the frameless rollout's, bit for bit, and its frames are the
backbone rendering the physics it predicts (same attention and FFN weights for both streams).
From step t's outputs the heads predict, in one pass: every code of frame t+1 (at the same grid
position), the state s_{t+1} (as a change of the normalised state, from the state token), and the
reward and termination of a_t (from the action token).

Switches (see `DynamicsConfig`):
- `prune`: from layer `prune_from` on, a scorer keeps the top `capacity` of each step's frame tokens;
  only they go through attention and FFN (as queries and as keys) beside the physics tokens;
  the rest ride the residual stream unchanged. The kept tokens' block output is scaled by the
  scorer's sigmoid, so it learns (Mixture-of-Depths, https://arxiv.org/abs/2404.02258).
- `moe`: the FFN is a hierarchical MoE with load-aware routing (`worldsim.model.moe`).

The side models a world model may add (state pathway, state renderer, outcome head) are not part of
the transformer; `worldsim.model.world_model.WorldModel` composes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from worldsim.core.config import ConfigBase
from worldsim.core.precision import LowPrecisionCopy
from worldsim.kernels import gather_tokens, pruned_attention, scatter_tokens, select_tokens
from worldsim.model.codes import CodeDigits, code_loss, predict_codes
from worldsim.model.kv_cache import KVCache
from worldsim.model.moe import HierarchicalMoE, SwiGLU
from worldsim.model.rotary import rotary


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
    # Whether the state token has a linear head predicting the state change (False: a world model's
    # state pathway alone predicts it; the transformer still reads the state).
    state_head: bool = True

    def __post_init__(self) -> None:
        for name in ("state_dim", "action_dim", "grid", "codebook_size", "width", "layers", "heads", "context",
                     "ffn_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"DynamicsConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.width % (2 * self.heads):
            raise ValueError(f"DynamicsConfig.width ({self.width}) must be a multiple of 2 * heads ({self.heads})")
        if not 0 <= self.capacity <= 1:
            raise ValueError(f"DynamicsConfig.capacity must be in [0, 1], got {self.capacity}")
        if not 0 <= self.prune_from <= self.layers:
            raise ValueError(f"DynamicsConfig.prune_from must be in [0, layers={self.layers}], got {self.prune_from}")
        if self.frame_head not in ("joint", "factorized"):
            raise ValueError(f"DynamicsConfig.frame_head must be 'joint' or 'factorized', got {self.frame_head!r}")
        if self.frame_head == "factorized" and (
                not self.code_levels or any(v < 2 for v in self.code_levels)
                or math.prod(self.code_levels) != self.codebook_size):
            raise ValueError(f"a factorized frame head needs code_levels (each >= 2) whose product is the "
                             f"codebook size {self.codebook_size}, got {self.code_levels}")

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
        if not self.prune:
            return self.tokens_per_frame
        return 0 if self.capacity == 0 else max(1, math.ceil(self.capacity * self.tokens_per_frame))


Keys = tuple[torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None"]  # k, v [B, H, L, hd], step [L], valid
# Low-rank pairs (A [D, r], B [r, n]) for qkv (n = 3D), the attention's output and beside the FFN (n = D).
Adapter = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _join_keys(first: Keys, second: Keys) -> Keys:
    """Two sets of keys (k, v, step) of a pass without a cache as one, `first`'s first; all valid."""
    k, v, step = (torch.cat([a, b], dim) for a, b, dim in zip(first[:3], second[:3], (2, 2, 0)))
    return k, v, step, None


class Attention(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)

    def forward(self, x: torch.Tensor, step: torch.Tensor, cache: KVCache | None, window: int,
                prefix: Keys | None = None, valid: torch.Tensor | None = None,
                adapter: Adapter | None = None) -> tuple[torch.Tensor, Keys]:
        """x [B, L, D] with step [L]; with a cache, x is the new step's tokens and keys include the cache.
        `prefix`: keys of another stream that x's queries read too (frame tokens read the physics
        tokens'), never the other way round: the keys of the same steps as x's, which a cache stores
        in front of x's own (`KVCache.extend(lead=)`), holding the earlier steps' already. Returns
        the output and x's own new keys (what a frame pass takes as its `prefix`). `valid` [B, L]: which
        of x's keys each row may read, without a cache or prefix (a padded prompt); None: all.
        `adapter`: low-rank additions to the qkv and output matrices for these tokens alone."""
        b, l, d = x.shape
        qkv = self.qkv(x)
        if adapter is not None:
            qkv = qkv + (x @ adapter[0]) @ adapter[1]
        qkv = qkv.view(b, l, 3, self.heads, d // self.heads)
        qk = rotary(qkv[:, :, :2], step, dim=1).permute(2, 0, 3, 1, 4)  # q and k in one rotation
        q, k, v = qk[0], qk[1], qkv[:, :, 2].transpose(1, 2)
        own: Keys = (k, v, step, valid)
        if cache is not None:
            cache.extend(k, v, step, window, lead=None if prefix is None else prefix[:2])
            keys = (cache.k, cache.v, cache.step, cache.valid)
        else:
            keys = own if prefix is None else _join_keys(prefix, own)
        k, v, k_step, k_valid = keys
        if k.dtype != q.dtype:  # frame queries in bf16 reading the physics tokens' fp32 keys
            k, v = k.to(q.dtype), v.to(q.dtype)
        y = pruned_attention(q, k, v, step, k_step, k_valid=k_valid).transpose(1, 2).reshape(b, l, d)
        out = self.out(y)
        if adapter is not None:
            out = out + (y @ adapter[2]) @ adapter[3]
        return out, own


class Block(nn.Module):
    """Pre-norm transformer block over the two streams of a step: the physics tokens (action, state),
    which read only each other, and the frame tokens, which read the physics tokens and each other;
    optionally pruned (the top-capacity frame tokens of each step go through, the rest skip)."""

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
        # Reduced-precision copies of (attention, FFN) the frame tokens run on at inference; None: fp32.
        self._frame_copies: tuple[LowPrecisionCopy, LowPrecisionCopy] | None = None

    def set_frame_dtype(self, dtype: torch.dtype) -> None:
        """Run the frame tokens' attention and FFN matrices in `dtype` at inference (float32: on the
        trained weights themselves). The physics tokens, the norms, the scorer and the router's
        weights stay as trained (the router reads the frame tokens' rounded input)."""
        self._frame_copies = None if dtype == torch.float32 else (
            LowPrecisionCopy(self.attn, dtype), LowPrecisionCopy(self.ffn, dtype, keep=("router",)))

    def frame_modules(self) -> tuple[nn.Module, nn.Module]:
        """(attention, FFN) for the frame tokens: the block's own in float32, in training and wherever
        autograd records; else the reduced-precision copies of them as they are now."""
        if self._frame_copies is None or self.training or torch.is_grad_enabled():
            return self.attn, self.ffn
        return self._frame_copies[0].get(), self._frame_copies[1].get()

    def _core(self, x: torch.Tensor, step: torch.Tensor, cache: KVCache | None, prefix: Keys | None = None,
              frame: bool = False) -> tuple[torch.Tensor, Keys]:
        # Frame tokens take the reduced-precision copies at inference; the matrices compute in their
        # weights' dtype, the residual stream and the norms in x's.
        attn, ffn = self.frame_modules() if frame else (self.attn, self.ffn)
        dt = attn.qkv.weight.dtype
        a, keys = attn(self.norm1(x).to(dt), step, cache, self.cfg.context, prefix)
        h = x + a.to(x.dtype)
        return h + ffn(self.norm2(h).to(dt)).to(x.dtype), keys

    def prefix_pass(self, x: torch.Tensor, step: torch.Tensor, valid: torch.Tensor,
                    adapter: Adapter | None = None) -> torch.Tensor:
        """Tokens of a prompt prefix x [B, L, D] (time indices step [L], keys valid [B, L]) through the
        block as the physics tokens go: the same attention and FFN, no cache (`worldsim.model.prompt`).
        `adapter`: low-rank additions for these tokens alone (attention's qkv and output, and one beside
        the FFN), which leave every other token's computation as it is."""
        a, _ = self.attn(self.norm1(x), step, None, self.cfg.context, valid=valid, adapter=adapter)
        h = x + a
        n = self.norm2(h)
        out = h + self.ffn(n)
        if adapter is not None:
            out = out + (n @ adapter[4]) @ adapter[5]
        return out

    def forward(self, x: torch.Tensor, step: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """x [B, T*S, D] laid out step by step (S = N + 2 tokens a step), step [T*S]: `streams` on that
        layout. The physics tokens go through exactly as they do without frames (the same computation
        on the same shapes), so a framed rollout's physics is the frameless rollout's, bit for bit; the
        frame tokens then go through with the physics tokens' keys in front of their own."""
        b, L, d = x.shape
        S = self.cfg.tokens_per_step
        T, N = L // S, S - 2
        steps, t_step = x.view(b, T, S, d), step.view(T, S)
        phys, frame = self.streams(steps[:, :, :2].reshape(b, T * 2, d), steps[:, :, 2:].reshape(b, T * N, d),
                                   t_step[:, 0], cache)
        return torch.cat([phys.view(b, T, 2, d), frame.view(b, T, N, d)], dim=2).view(b, L, d)

    def streams(self, phys: torch.Tensor, frame: torch.Tensor | None, t_step: torch.Tensor,
                cache: KVCache | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`forward` on the two streams held apart, as `Dynamics` runs them: phys [B, T*2, D] (each
        step's action and state tokens), frame [B, T*N, D] (each step's frame tokens; None for steps
        without frames), t_step [T] the steps' time indices. Returns both streams."""
        phys, keys = self._core(phys, t_step.repeat_interleave(2), cache)
        if frame is None:
            return phys, None
        frame_cache = None if cache is None else cache.frame_cache()
        if not self.pruned:
            n = frame.shape[1] // len(t_step)
            frame = self._core(frame, t_step.repeat_interleave(n), frame_cache, keys, frame=True)[0]
        elif self.cfg.kept_frame_tokens:  # capacity 0: frame tokens skip the layer
            frame = self._pruned_frames(frame, t_step, frame_cache, keys)
        return phys, frame

    def _pruned_frames(self, frame: torch.Tensor, t_step: torch.Tensor, cache: KVCache | None, keys: Keys
                       ) -> torch.Tensor:
        """Frame tokens [B, T*N, D] of T steps (time indices t_step [T]) through the pruned block: the
        top `capacity` of each step by the scorer go through, scaled by its sigmoid (Mixture-of-Depths,
        so the scorer learns); the rest ride the residual stream unchanged."""
        b, L, d = frame.shape
        T, k = len(t_step), self.cfg.kept_frame_tokens
        score = self.scorer(frame.view(b, T, L // T, d)).squeeze(-1)  # [B, T, N]
        top, index = select_tokens(score, k, lead=0)  # [B, T, k] in grid order; [B, T*k] stream positions
        self.last_kept = index
        kept = gather_tokens(frame, index)
        out = self._core(kept, t_step.repeat_interleave(k), cache, keys, frame=True)[0]
        gate = torch.sigmoid(score.gather(-1, top)).reshape(b, -1)
        return scatter_tokens(frame, index, out, gate=gate, kept=kept)  # kept + gate * (out - kept) at index


class Dynamics(nn.Module):
    """The transformer over the token stream: inputs to predictions. Its window loss is the world
    model's (`WorldModel.loss`), which adds the state pathway's share to the state prediction."""

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
        # The frame head's digit layout: None for a joint head, whose logits score whole codes.
        self.code_digits = CodeDigits(cfg.code_levels) if cfg.frame_head == "factorized" else None
        self.state_head = nn.Linear(d, cfg.state_dim) if cfg.state_head else None
        self.reward_head = nn.Linear(d, 1)
        self.term_head = nn.Linear(d, 1)

    def _physics(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """states [B, T, S_dim] (normalised), actions [B, T, A] -> the action and state tokens [B, T, 2, D]."""
        act = self.action_in(actions).unsqueeze(2) + self.type_emb[0]
        st = self.state_in(states).unsqueeze(2) + self.type_emb[1]
        return torch.cat([act, st], dim=2)

    def embed_streams(self, codes: torch.Tensor | None, states: torch.Tensor, actions: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """codes [B, T, N] long (None: steps without frames), states [B, T, S_dim] (normalised), actions
        [B, T, A] -> the physics stream [B, T*2, D] (each step's action and state tokens) and the frame
        stream [B, T*N, D] (None without codes). The blocks and heads keep the streams apart, so
        nothing copies them into one sequence and back."""
        b, t = states.shape[:2]
        phys = self._physics(states, actions).reshape(b, t * 2, -1)
        if codes is None:
            return phys, None
        frame = self.code_emb(codes) + self.pos_emb + self.type_emb[2]
        return phys, frame.reshape(b, t * codes.shape[2], -1)

    def stream_heads(self, phys: torch.Tensor, frame: torch.Tensor | None, t: int) -> dict[str, torch.Tensor]:
        """Final physics stream [B, T*2, D] and frame stream [B, T*N, D] (or None) -> predictions for each
        of the T steps: its next frame (with a frame stream), reward, termination and (with a state
        head) state change. The two streams are normalised apart."""
        b, d = phys.shape[0], phys.shape[-1]
        phys = self.norm(phys).view(b, t, 2, d)
        out = {
            "reward": self.reward_head(phys[:, :, 0]).squeeze(-1),  # [B, T]
            "term_logit": self.term_head(phys[:, :, 0]).squeeze(-1),  # [B, T]
        }
        if frame is not None:  # [B, T, N, V] (joint) or [B, T, N, sum(levels)]
            out["code_logits"] = self.frame_head(self.norm(frame.view(b, t, -1, d)))
        if self.state_head is not None:
            out["state_delta"] = self.state_head(phys[:, :, 1])  # [B, T, S_dim]
        return out

    def code_loss(self, logits: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the frame head's `logits` [..., V'] against codes [...] (long): [...]; for a
        factorized head the sum over FSQ channels of each channel's cross-entropy on its digit."""
        return code_loss(logits, codes, self.code_digits)

    def predict_codes(self, logits: torch.Tensor, temperature: float = 0.0,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """Codes [...] from the frame head's `logits` [..., V']: the argmax at temperature 0, else a
        sample of softmax(logits / temperature) (per channel for a factorized head)."""
        return predict_codes(logits, temperature, generator, self.code_digits)

    def forward(self, codes: torch.Tensor | None, states: torch.Tensor, actions: torch.Tensor,
                first_step: int = 0) -> dict[str, torch.Tensor]:
        """Teacher-forced pass over T steps (T <= context): predictions for every step. With `codes`
        None the steps have no frame: each carries its action and state tokens alone, so attention has
        no frame keys, and there are no frame predictions (state-only data trains the physics)."""
        b, t = states.shape[:2]
        if t > self.cfg.context:
            raise ValueError(f"window of {t} steps exceeds the context of {self.cfg.context}")
        t_step = torch.arange(first_step, first_step + t, device=states.device)
        phys, frame = self.embed_streams(codes, states, actions)
        for blk in self.blocks:
            phys, frame = blk.streams(phys, frame, t_step)
        return self.stream_heads(phys, frame, t)

    def step_with_cache(self, caches: list[KVCache], codes: torch.Tensor | None, states: torch.Tensor,
                        actions: torch.Tensor, step_index: int) -> dict[str, torch.Tensor]:
        """One new step (codes [B, 1, N], ...) against the caches, which it extends. With `codes` None
        the step has no frame (its action and state tokens alone, as in `forward`); a cache holds
        steps of one kind, so a rollout is framed or frameless throughout."""
        t_step = torch.full((1,), step_index, device=states.device, dtype=torch.long)
        phys, frame = self.embed_streams(codes, states, actions)
        for blk, cache in zip(self.blocks, caches):
            phys, frame = blk.streams(phys, frame, t_step, cache)
        return self.stream_heads(phys, frame, 1)

    def moe_layers(self) -> list[HierarchicalMoE]:
        return [b.ffn for b in self.blocks if isinstance(b.ffn, HierarchicalMoE)]


# Named presets: keyword overrides of DynamicsConfig. `dense` has no pruning and a dense FFN sized to
# the MoE's *active* parameters (shared 256 + top-2 x 128 = 512 hidden), so the two differ only in
# the V4 switches. The CPU sizes train in about an hour on two cores; the GPU sizes are wider and deeper.
_DENSE = dict(width=192, layers=4, heads=4, ffn_hidden=512, prune=False, moe=False)
_V4 = dict(width=192, layers=4, heads=4, prune=True, capacity=0.4, prune_from=1, moe=True, experts=8,
           expert_groups=4, top_groups=2, top_k=2, expert_hidden=128, shared_hidden=256)
# v4 made cheaper to run: every layer pruned (from layer 0) at capacity 0.3, and frame codes predicted
# per FSQ channel (23 logits instead of 1000). The shipped Reacher and pendulum worlds' transformer.
_V4_LITE = {**_V4, "capacity": 0.3, "prune_from": 0, "frame_head": "factorized"}
PRESETS: dict[str, dict] = {
    "dense": _DENSE,
    "v4": _V4,
    "v4-lite": _V4_LITE,
    # v4-lite without its V4 switches (no pruning, a dense FFN of the MoE's active size): its dense baseline.
    "dense-lite": {**_DENSE, "frame_head": "factorized"},
    # The `mlp` baseline: v4-lite without the state token's head; a state pathway (an MLP of state and
    # action, `worldsim.model.world_model.PART_PRESETS`) predicts the state instead.
    "mlp": {**_V4_LITE, "state_head": False},
    "dense-gpu": dict(width=512, layers=8, heads=8, ffn_hidden=1536, prune=False, moe=False),
    "v4-gpu": dict(width=512, layers=8, heads=8, prune=True, capacity=0.5, prune_from=2, moe=True, experts=16,
                   expert_groups=4, top_groups=2, top_k=2, expert_hidden=384, shared_hidden=768),
}


def preset_config(name: str, **fields) -> DynamicsConfig:
    """A preset's DynamicsConfig, with data-dependent fields (state_dim, action_dim, ...) filled in."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return DynamicsConfig(**{**PRESETS[name], **fields})
