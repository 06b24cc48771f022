"""`WorldModel` = tokenizer + dynamics transformer + optional side models + the statistics that map
states to the model's scale.

    wm = WorldModel.from_pretrained("Reacher-v5")           # or a checkpoint directory
    tokens = wm.encode(frames)                               # uint8 [B, T, 64, 64, 3] -> [B, T, 8, 8]
    h = wm.start(tokens, states, actions)                    # C context steps; actions [B, C-1, A]
    tokens, state, reward, terminated = wm.step(h, action)   # one batched step, KV-cached
    frames = wm.decode(tokens)

The handle keeps its own KV cache: a step costs one new step's tokens, not the whole window.

The side models, each None when absent: `pathway` (`StatePathway`, adds to the state prediction),
`renderer` (`StateRenderer`, the frame of the predicted state) and `outcome` (`OutcomeHead`, the
reward and termination of the predicted state). `predict_next` says which run on a step. A world
with a `prompt` prefix (`PromptHead`) also starts clips from a sentence: `generate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from worldsim.core.checkpoint import save_checkpoint, weights_sha256
from worldsim.core.precision import DTYPES, resolve_precision
from worldsim.core.registry import resolve_ref
from worldsim.model.dynamics import Dynamics
from worldsim.model.generation import Clips, generate
from worldsim.model.kv_cache import KVCache
from worldsim.model.outcome_head import OutcomeHead
from worldsim.model.prompt import PromptHead
from worldsim.model.rollout_loss import rollout_loss
from worldsim.model.saving import PretrainedMixin
from worldsim.model.state_pathway import StatePathway, StatePathwayConfig
from worldsim.model.state_renderer import StateRenderer
from worldsim.model.tokenizer import Tokenizer
from worldsim.model.window_loss import state_only_loss, window_loss
from worldsim.model.world_config import WorldModelConfig

# Named presets' side models, beside the transformer's `worldsim.model.dynamics.PRESETS`.
PART_PRESETS: dict[str, dict] = {
    "mlp": dict(pathway=StatePathwayConfig(width=256)),
}


@dataclass
class RolloutHandle:
    """The state of a batch of rollouts: caches, the pending (latest) step and the step counter."""

    caches: list[KVCache]
    codes: torch.Tensor | None  # [B, 1, N] the latest frame's codes; None for a rollout without frames
    state: torch.Tensor  # [B, 1, S] its normalised state
    step_index: int
    generator: torch.Generator | None = None


class WorldModel(PretrainedMixin, nn.Module):
    checkpoint_kind = "world_model"
    config_cls = WorldModelConfig
    # The state's and reward's scale, kept in float32 at reduced precision (the side models say for
    # themselves, by their `keep_fp32`).
    stats_fp32: ClassVar[tuple[str, ...]] = ("state_mean", "state_std", "reward_mean", "reward_std")

    def __init__(self, cfg: WorldModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tokenizer = Tokenizer(cfg.tokenizer)
        dyn = cfg.dynamics
        self.dynamics = Dynamics(dyn)
        self.pathway = StatePathway(cfg.pathway, dyn.state_dim, dyn.action_dim) if cfg.pathway else None
        self.renderer = (StateRenderer(cfg.renderer, dyn.state_dim, dyn.tokens_per_frame, cfg.tokenizer.levels)
                         if cfg.renderer else None)
        self.outcome = OutcomeHead(cfg.outcome, dyn.state_dim, dyn.action_dim) if cfg.outcome else None
        self.prompt = PromptHead(cfg.prompt, dyn) if cfg.prompt else None
        s = dyn.state_dim
        self.register_buffer("state_mean", torch.zeros(s))
        self.register_buffer("state_std", torch.ones(s))
        self.register_buffer("reward_mean", torch.zeros(()))
        self.register_buffer("reward_std", torch.ones(()))
        bounded = bool(cfg.state_low)
        f32 = torch.float32
        self.register_buffer("state_low", torch.tensor(cfg.state_low, dtype=f32) if bounded else None, persistent=False)
        self.register_buffer("state_high", torch.tensor(cfg.state_high, dtype=f32) if bounded else None,
                             persistent=False)
        self.precision = "fp32"

    @torch.no_grad()
    def set_precision(self, precision: str) -> WorldModel:
        """Run inference in "fp32" (the weights as trained), "bf16" or "auto"
        (`worldsim.core.precision.resolve_precision` on this model's device). Returns the model.

        bf16 is for the frames: at inference the frame tokens' pass through every block (attention and
        FFN matrices) and the frame decoder run on bfloat16 copies of their weights, with the residual
        stream and norms in fp32. The physics tokens (action and state) keep the fp32 weights, so
        states, rewards and terminations are fp32's bit for bit: bf16's 8-bit mantissa, rounding the
        state every step, compounds over a rollout (measured once with the physics tokens' matmuls in
        bf16: Reacher's 50-step error 4% higher), and the physics tokens are 2 of a framed step's 66.
        The trained weights are never changed: "fp32" drops the copies, `save` writes the weights as
        trained, and training (or any pass autograd records) runs on them in fp32.
        """
        precision = resolve_precision(precision, self.device)
        dtype = DTYPES[precision]
        for block in self.dynamics.blocks:
            block.set_frame_dtype(dtype)
        self.tokenizer.set_decoder_dtype(dtype)
        self.precision = precision
        return self

    def parts(self) -> dict[str, nn.Module]:
        """The side models this world has, by attribute name."""
        named = {"pathway": self.pathway, "renderer": self.renderer, "outcome": self.outcome, "prompt": self.prompt}
        return {k: m for k, m in named.items() if m is not None}

    def keep_fp32(self) -> tuple[str, ...]:
        """Names and name prefixes of the tensors that stay float32 when the model is saved at reduced precision."""
        # The state's way in and out of the transformer: a few thousand weights that carry the state
        # to a fraction of fp16's resolution each step.
        state_io = ("dynamics.state_in.", "dynamics.state_head.")
        # The MoE's routed-token counters: integers past fp16's range after a few hundred steps.
        counters = tuple(f"dynamics.blocks.{i}.ffn.load_acc" for i, b in enumerate(self.dynamics.blocks)
                         if hasattr(b.ffn, "load_acc"))
        # The prompt's bins' range: fp16 would move every bin edge.
        bins = ("prompt.low", "prompt.high") if self.prompt is not None else ()
        return (self.stats_fp32 + state_io + counters + bins
                + tuple(f"{k}." for k, m in self.parts().items() if m.keep_fp32))

    def save(self, path, extra: dict | None = None, dtype: torch.dtype | None = None,
             tokenizer_ref: str | None = None, force: bool = False):
        """Write the checkpoint directory `path`. With `tokenizer_ref` (`worldsim:NAME` for a shipped
        tokenizer, or a tokenizer checkpoint directory inside `path`), the tokenizer's weights are not
        copied: loading reads them from there (checked against the SHA-256 recorded here), so shipped
        world models share one tokenizer."""
        extra = dict(extra or {})
        state = self.state_dict()
        if tokenizer_ref is not None:
            ref = resolve_ref(tokenizer_ref, path)
            tok = Tokenizer.from_pretrained(ref)
            if tok.cfg != self.cfg.tokenizer:
                raise ValueError(f"tokenizer_ref {tokenizer_ref!r} ({ref}) has another config than this model's "
                                 f"tokenizer")
            for name, t in tok.state_dict().items():
                if not torch.equal(t.float(), state[f"tokenizer.{name}"].float().cpu()):
                    raise ValueError(f"tokenizer_ref {tokenizer_ref!r} ({ref}) differs from this model's tokenizer "
                                     f"at {name!r}")
            state = {k: v for k, v in state.items() if not k.startswith("tokenizer.")}
            extra["tokenizer_ref"] = tokenizer_ref
            extra["tokenizer_sha256"] = weights_sha256(ref)
        return save_checkpoint(path, state, self.cfg, kind=self.checkpoint_kind, extra=extra, dtype=dtype,
                               keep_fp32=self.keep_fp32(), force=force)

    @classmethod
    def _checkpoint_tensors(cls, path, ck) -> dict[str, torch.Tensor]:
        """A checkpoint saved with `tokenizer_ref` gets its tokenizer weights from that directory."""
        tensors = dict(ck.tensors)
        ref = ck.extra.get("tokenizer_ref")
        if ref is not None:
            where = resolve_ref(ref, path)
            if not (where / "model.safetensors").is_file():
                raise ValueError(f"{path}: its tokenizer is not copied in but referenced (tokenizer_ref {ref!r} in "
                                 f"config.json), and {where} holds no tokenizer; copy the tokenizer checkpoint "
                                 f"there, or re-export the world without --tokenizer-ref")
            want = ck.extra.get("tokenizer_sha256")
            if want is not None and weights_sha256(where) != want:
                raise ValueError(f"{path}: the tokenizer at {where} (tokenizer_ref {ref!r}) is not the one this world "
                                 f"was saved with (its weights' SHA-256 differs)")
            tok = Tokenizer.from_pretrained(where)
            if tok.cfg != ck.config.tokenizer:
                raise ValueError(f"{path}: its tokenizer {str(where)!r} has another config than it was made with")
            tensors.update({f"tokenizer.{k}": v for k, v in tok.state_dict().items()})
        return tensors

    @property
    def device(self) -> torch.device:
        return self.state_mean.device

    def normalize_state(self, s: torch.Tensor) -> torch.Tensor:
        return (s - self.state_mean) / self.state_std

    def denormalize_state(self, s: torch.Tensor) -> torch.Tensor:
        return s * self.state_std + self.state_mean

    def advance(self, state: torch.Tensor, delta: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """A normalised state [..., S] moved by `delta` as a rollout moves it: static dimensions held,
        and (with `clamp`) the result held to the config's bounds."""
        if self.cfg.static_state_dims:
            delta = delta.clone()
            delta[..., list(self.cfg.static_state_dims)] = 0
        state = state + delta
        if clamp and self.state_low is not None:  # the config's bounds, in the model's normalised units
            state = state.clamp(self.normalize_state(self.state_low), self.normalize_state(self.state_high))
        return state

    def predict(self, codes: torch.Tensor | None, states: torch.Tensor, actions: torch.Tensor,
                caches: list[KVCache] | None = None, step_index: int = 0) -> dict[str, torch.Tensor]:
        """The transformer's predictions (`Dynamics.forward`, or with `caches` one cached step at
        `step_index`) with the state pathway's share added to the state change. States normalised;
        `codes` None (no cache): steps without frames."""
        if caches is None:
            out = self.dynamics(codes, states, actions, first_step=step_index)
        else:
            out = self.dynamics.step_with_cache(caches, codes, states, actions, step_index)
        if self.pathway is not None:
            share = self.pathway(states, actions)
            out["state_delta"] = share if "state_delta" not in out else out["state_delta"] + share
        return out

    def loss(self, batch: dict[str, torch.Tensor], rng: torch.Generator | None = None,
             force_rollout: bool | None = None, *, corrupt_prob: float = 0.0, state_noise: float = 0.0,
             rollout_prob: float = 0.0, state_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
        """The window loss of the transformer (and the pathway inside its state prediction): see
        `worldsim.model.window_loss.window_loss`."""
        return window_loss(self, batch, rng, force_rollout, corrupt_prob=corrupt_prob, state_noise=state_noise,
                           rollout_prob=rollout_prob, state_weight=state_weight)

    def state_only_loss(self, batch: dict[str, torch.Tensor], state_noise: float = 0.0,
                        rng: torch.Generator | None = None, state_weight: float = 1.0
                        ) -> tuple[torch.Tensor, dict[str, float]]:
        """The transformer's teacher-forced loss on windows without frames (`window_loss.state_only_loss`)."""
        return state_only_loss(self, batch, state_noise, rng, state_weight)

    def rollout_loss(self, batch: dict[str, torch.Tensor], prefix: str = "unrolled", detach: bool = False,
                     state_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
        """The transformer's K-step open-loop loss on windows of K + 1 steps (with or without frames),
        through the cached step (see `worldsim.model.rollout_loss`)."""
        return rollout_loss(self, batch, prefix, detach, state_weight)

    def pathway_loss(self, batch: dict[str, torch.Tensor], clamp: bool = True
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The state pathway's unrolled loss (`StatePathway.loss`), stepped as `step` steps (`advance`);
        `clamp=False` leaves the bounds out (the dynamics trainer's one-step loss)."""
        if self.pathway is None:
            raise ValueError("this world model has no state pathway (WorldModelConfig.pathway is None)")
        return self.pathway.loss(batch, lambda s, d: self.advance(s, d, clamp))

    def generate(self, prompt: str, samples: int = 1, steps: int = 240, **kwargs) -> Clips:
        """`samples` clips of `steps` steps started from the sentence `prompt` (`worldsim.model.generation`:
        its `generate` takes the keywords); a prompt the scene cannot read or make raises `PromptError`."""
        return generate(self, prompt, samples, steps, **kwargs)

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return self.tokenizer.encode(frames)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.tokenizer.decode(tokens)

    @torch.no_grad()
    def start(self, tokens: torch.Tensor | None, states: torch.Tensor, actions: torch.Tensor | None = None,
              seed: int | None = None, first_step: int = 0) -> RolloutHandle:
        """Begin B rollouts from C context steps.

        Args:
            tokens: [B, C, h, w] codes of the context frames; None for rollouts without frames, whose
                steps carry their action and state tokens alone (state observations at a fraction of
                a framed step's cost; `step` then gives no tokens).
            states: [B, C, S] their (raw) states.
            actions: [B, C-1, A] the actions between them (None or empty when C == 1).
            seed: seeds sampling when `step` is called with temperature > 0.
            first_step: the time index of the first context step. Attention only sees differences
                of time indices, so this changes nothing but the bookkeeping `restart_rows` needs.
        """
        b, c = states.shape[:2]
        cfg = self.cfg.dynamics
        if tokens is not None and (tokens.ndim != 4 or tuple(tokens.shape[:2]) != (b, c)
                                   or tuple(tokens.shape[2:]) != (cfg.grid, cfg.grid)):
            raise ValueError(f"tokens must be [{b}, {c}, {cfg.grid}, {cfg.grid}] (B and C of the states), got "
                             f"{tuple(tokens.shape)}")
        if states.ndim != 3 or states.shape[2] != cfg.state_dim:
            raise ValueError(f"states must be [{b}, {c}, {cfg.state_dim}], got {tuple(states.shape)}")
        if c < 1 or c > cfg.context:
            raise ValueError(f"context must hold 1 to {cfg.context} steps, got {c}")
        if c > 1 and (actions is None or actions.shape != (b, c - 1, cfg.action_dim)):
            got = None if actions is None else tuple(actions.shape)
            raise ValueError(f"actions must be [{b}, {c - 1}, {cfg.action_dim}], got {got}")
        dev = self.device
        codes = None if tokens is None else tokens.to(dev).reshape(b, c, -1).long()
        st = self.normalize_state(states.to(dev).float())
        caches = [KVCache() for _ in self.dynamics.blocks]
        for t in range(c - 1):  # only the keys matter here, so the side models do not run
            self.dynamics.step_with_cache(caches, None if codes is None else codes[:, t : t + 1], st[:, t : t + 1],
                                          actions[:, t : t + 1].to(dev).float(), first_step + t)
        gen = None
        if seed is not None:
            gen = torch.Generator(device=dev).manual_seed(seed)
        return RolloutHandle(caches, None if codes is None else codes[:, -1:], st[:, -1:], first_step + c - 1, gen)

    @torch.no_grad()
    def restart_rows(self, handle: RolloutHandle, rows: torch.Tensor, tokens: torch.Tensor, states: torch.Tensor,
                     actions: torch.Tensor | None = None) -> None:
        """Restart rollouts `rows` [R] of `handle` from new context steps (as in `start`), leaving the
        other rows untouched: the restarted rows no longer see any of their old keys."""
        rows = torch.as_tensor(rows, dtype=torch.long, device=self.device)
        if rows.ndim != 1 or states.shape[0] != rows.numel():
            raise ValueError(f"rows must be a 1-D index with one entry per context row, got {tuple(rows.shape)} "
                             f"for {states.shape[0]} rows")
        if (tokens is None) != (handle.codes is None):
            raise ValueError("a rollout with frames restarts from context tokens, one without frames from None")
        c = states.shape[1]
        sub = self.start(tokens, states, actions, first_step=handle.step_index - (c - 1))
        for cache, new in zip(handle.caches, sub.caches):
            cache.replace_rows(rows, new)
        if handle.codes is not None:
            handle.codes[rows] = sub.codes
        handle.state[rows] = sub.state

    def predict_next(self, out: dict[str, torch.Tensor], state: torch.Tensor, actions: torch.Tensor,
                     temperature: float = 0.0, generator: torch.Generator | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The next step from `predict`'s outputs `out` for one step of state [B, 1, S] (normalised)
        under actions [B, A]; with `predict`, the parts that run on a step, in order. The state moves
        by the predicted change (the pathway's share in it); the renderer reads the state just
        predicted and mixes into the frame logits; the outcome head scores that state in place of the
        action token's heads.

        Returns:
            codes [B, N] (None for a step without frames), normalised state [B, S], normalised reward
            [B], termination logit [B].
        """
        state_n = self.advance(state[:, 0], out["state_delta"][:, 0])
        codes = None
        if "code_logits" in out:
            logits = out["code_logits"][:, 0]  # [B, N, V']
            if self.renderer is not None:  # the frame of the state just predicted
                logits = self.renderer.mix(logits, self.renderer(state_n),
                                           self.cfg.dynamics.frame_head == "factorized")
            codes = self.dynamics.predict_codes(logits, temperature, generator)  # [B, N]
        reward, term_logit = out["reward"][:, 0], out["term_logit"][:, 0]
        if self.outcome is not None:  # the outcome of the state just predicted
            reward, term_logit = self.outcome(state_n, actions)
        return codes, state_n, reward, term_logit

    @torch.no_grad()
    def step(self, handle: RolloutHandle, actions: torch.Tensor, temperature: float = 0.0
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Advance all B rollouts by one step under actions [B, A].

        Returns:
            tokens [B, h, w] long (None for rollouts started without frames), state [B, S] (raw
            units), reward [B], terminated [B] bool.
        """
        cfg = self.cfg.dynamics
        b = handle.state.shape[0]
        if actions.shape != (b, cfg.action_dim):
            raise ValueError(f"actions must be [{b}, {cfg.action_dim}], got {tuple(actions.shape)}")
        acts = actions.to(self.device).float()
        out = self.predict(handle.codes, handle.state, acts[:, None], handle.caches, handle.step_index)
        codes, state_n, reward, term_logit = self.predict_next(out, handle.state, acts, temperature,
                                                               handle.generator)
        reward = reward * self.reward_std + self.reward_mean
        if self.cfg.reward_range:
            reward = reward.clamp(*self.cfg.reward_range)
        finite = torch.isfinite(state_n).all(-1) & torch.isfinite(reward)
        if not bool(finite.all()):
            rows = torch.nonzero(~finite).flatten().tolist()
            raise FloatingPointError(f"the world model's step {handle.step_index} gave a non-finite state or reward "
                                     f"in rows {rows[:10]}; its weights or inputs are bad, and the rollout cannot "
                                     f"go on")
        handle.codes, handle.state = None if codes is None else codes[:, None], state_n[:, None]
        handle.step_index += 1
        term = term_logit > 0
        tokens = None if codes is None else codes.view(b, cfg.grid, cfg.grid)
        return tokens, self.denormalize_state(state_n), reward, term
