"""`WorldModel` = tokenizer + dynamics + the statistics that map states to the model's scale.

    wm = WorldModel.from_pretrained("Reacher-v5")           # or a checkpoint directory
    tokens = wm.encode(frames)                               # uint8 [B, T, 64, 64, 3] -> [B, T, 8, 8]
    h = wm.start(tokens, states, actions)                    # C context steps; actions [B, C-1, A]
    tokens, state, reward, terminated = wm.step(h, action)   # one batched step, KV-cached
    frames = wm.decode(tokens)

The handle keeps its own KV cache: a step costs one new step's tokens, not the whole window.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from worldsim.config import ConfigBase
from worldsim.model.dynamics import Dynamics, DynamicsConfig, KVCache
from worldsim.model.pretrained import PretrainedMixin
from worldsim.model.tokenizer import Tokenizer, TokenizerConfig


@dataclass(frozen=True)
class WorldModelConfig(ConfigBase):
    scene: str = "Reacher-v5"
    preset: str = "dense"
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    dynamics: DynamicsConfig = field(default_factory=DynamicsConfig)

    def __post_init__(self) -> None:
        if self.tokenizer.grid != self.dynamics.grid:
            raise ValueError(f"tokenizer grid {self.tokenizer.grid} != dynamics grid {self.dynamics.grid}")
        if self.tokenizer.codebook_size != self.dynamics.codebook_size:
            raise ValueError(f"tokenizer codebook {self.tokenizer.codebook_size} != dynamics "
                             f"codebook {self.dynamics.codebook_size}")


@dataclass
class RolloutHandle:
    """The state of a batch of rollouts: caches, the pending (latest) step and the step counter."""

    caches: list[KVCache]
    codes: torch.Tensor  # [B, 1, N] the latest frame's codes
    state: torch.Tensor  # [B, 1, S] its normalised state
    step_index: int
    generator: torch.Generator | None = None


class WorldModel(PretrainedMixin, nn.Module):
    checkpoint_kind = "world_model"
    config_cls = WorldModelConfig

    def __init__(self, cfg: WorldModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tokenizer = Tokenizer(cfg.tokenizer)
        self.dynamics = Dynamics(cfg.dynamics)
        s = cfg.dynamics.state_dim
        self.register_buffer("state_mean", torch.zeros(s))
        self.register_buffer("state_std", torch.ones(s))
        self.register_buffer("reward_mean", torch.zeros(()))
        self.register_buffer("reward_std", torch.ones(()))

    @property
    def device(self) -> torch.device:
        return self.state_mean.device

    def normalize_state(self, s: torch.Tensor) -> torch.Tensor:
        return (s - self.state_mean) / self.state_std

    def denormalize_state(self, s: torch.Tensor) -> torch.Tensor:
        return s * self.state_std + self.state_mean

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return self.tokenizer.encode(frames)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.tokenizer.decode(tokens)

    @torch.no_grad()
    def start(self, tokens: torch.Tensor, states: torch.Tensor, actions: torch.Tensor | None = None,
              seed: int | None = None) -> RolloutHandle:
        """Begin B rollouts from C context steps.

        Args:
            tokens: [B, C, h, w] codes of the context frames.
            states: [B, C, S] their (raw) states.
            actions: [B, C-1, A] the actions between them (None or empty when C == 1).
            seed: seeds sampling when `step` is called with temperature > 0.
        """
        b, c = tokens.shape[:2]
        cfg = self.cfg.dynamics
        if tokens.ndim != 4 or tuple(tokens.shape[2:]) != (cfg.grid, cfg.grid):
            raise ValueError(f"tokens must be [B, C, {cfg.grid}, {cfg.grid}], got {tuple(tokens.shape)}")
        if states.shape != (b, c, cfg.state_dim):
            raise ValueError(f"states must be [{b}, {c}, {cfg.state_dim}], got {tuple(states.shape)}")
        if c < 1 or c > cfg.context:
            raise ValueError(f"context must hold 1 to {cfg.context} steps, got {c}")
        if c > 1 and (actions is None or actions.shape != (b, c - 1, cfg.action_dim)):
            got = None if actions is None else tuple(actions.shape)
            raise ValueError(f"actions must be [{b}, {c - 1}, {cfg.action_dim}], got {got}")
        dev = self.device
        codes = tokens.to(dev).reshape(b, c, -1).long()
        st = self.normalize_state(states.to(dev).float())
        caches = [KVCache() for _ in self.dynamics.blocks]
        for t in range(c - 1):
            self.dynamics.step_with_cache(caches, codes[:, t : t + 1], st[:, t : t + 1],
                                          actions[:, t : t + 1].to(dev).float(), t)
        gen = None
        if seed is not None:
            gen = torch.Generator(device=dev).manual_seed(seed)
        return RolloutHandle(caches, codes[:, -1:], st[:, -1:], c - 1, gen)

    @torch.no_grad()
    def step(self, handle: RolloutHandle, actions: torch.Tensor, temperature: float = 0.0
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Advance all B rollouts by one step under actions [B, A].

        Returns:
            tokens [B, h, w] long, state [B, S] (raw units), reward [B], terminated [B] bool.
        """
        cfg = self.cfg.dynamics
        b = handle.codes.shape[0]
        if actions.shape != (b, cfg.action_dim):
            raise ValueError(f"actions must be [{b}, {cfg.action_dim}], got {tuple(actions.shape)}")
        out = self.dynamics.step_with_cache(handle.caches, handle.codes, handle.state,
                                            actions.to(self.device).float()[:, None], handle.step_index)
        logits = out["code_logits"][:, 0]  # [B, N, V]
        if temperature <= 0:
            codes = logits.argmax(-1)
        else:
            probs = torch.softmax(logits.float() / temperature, -1)
            codes = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=handle.generator)
            codes = codes.view(b, -1)
        state_n = handle.state[:, 0] + out["state_delta"][:, 0]
        handle.codes, handle.state = codes[:, None], state_n[:, None]
        handle.step_index += 1
        reward = out["reward"][:, 0] * self.reward_std + self.reward_mean
        term = out["term_logit"][:, 0] > 0
        return codes.view(b, cfg.grid, cfg.grid), self.denormalize_state(state_n), reward, term
