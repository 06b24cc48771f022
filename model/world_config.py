"""`WorldModelConfig`: what a world model is made of (its tokenizer, transformer and side models) and
the bounds its rollouts keep; saved beside the weights as JSON."""

from __future__ import annotations

from dataclasses import dataclass, field

from worldsim.core.config import ConfigBase
from worldsim.model.dynamics import DynamicsConfig
from worldsim.model.outcome_head import OutcomeHeadConfig
from worldsim.model.prompt import PromptConfig
from worldsim.model.state_pathway import StatePathwayConfig
from worldsim.model.state_renderer import StateRendererConfig
from worldsim.model.tokenizer import TokenizerConfig


@dataclass(frozen=True)
class WorldModelConfig(ConfigBase):
    scene: str = "Reacher-v5"
    preset: str = "dense"
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    dynamics: DynamicsConfig = field(default_factory=DynamicsConfig)
    # State dimensions that never change within a training episode (Reacher's target position): a
    # rollout holds them at their initial value instead of integrating predicted deltas of zero.
    static_state_dims: tuple[int, ...] = ()
    # Per-dimension bounds on a rollout's state (raw units; empty: none): the training data's range
    # widened by half of it on each side (`worldsim.train.dynamics.state_bounds`). An open-loop state
    # that leaves everything the model has seen (a fallen pendulum) then stays finite.
    state_low: tuple[float, ...] = ()
    state_high: tuple[float, ...] = ()
    # (low, high) of a rollout's reward (empty: none), the range of the rewards the outcome head was
    # fitted on (`worldsim.train.parts.train_outcome`): its MLP extrapolates without bound on states
    # far outside its data, such as a fallen pendulum's.
    reward_range: tuple[float, ...] = ()
    # The side models (None: absent).
    pathway: StatePathwayConfig | None = None
    renderer: StateRendererConfig | None = None
    outcome: OutcomeHeadConfig | None = None
    # The prompt prefix (`worldsim.model.prompt`): None for a world that starts only from MuJoCo.
    prompt: PromptConfig | None = None

    def __post_init__(self) -> None:
        if self.tokenizer.grid != self.dynamics.grid:
            raise ValueError(f"tokenizer grid {self.tokenizer.grid} != dynamics grid {self.dynamics.grid}")
        if self.tokenizer.codebook_size != self.dynamics.codebook_size:
            raise ValueError(f"tokenizer codebook {self.tokenizer.codebook_size} != dynamics "
                             f"codebook {self.dynamics.codebook_size}")
        bad = [d for d in self.static_state_dims if not 0 <= d < self.dynamics.state_dim]
        if bad:
            raise ValueError(f"static_state_dims {bad} out of range for state_dim {self.dynamics.state_dim}")
        if self.state_low or self.state_high:
            n = self.dynamics.state_dim
            if len(self.state_low) != n or len(self.state_high) != n:
                raise ValueError(f"state_low and state_high must both have state_dim = {n} entries, got "
                                 f"{len(self.state_low)} and {len(self.state_high)}")
            if any(not lo <= hi for lo, hi in zip(self.state_low, self.state_high)):
                raise ValueError("state_low must be <= state_high in every dimension")
        if self.reward_range and (len(self.reward_range) != 2 or not self.reward_range[0] <= self.reward_range[1]):
            raise ValueError(f"reward_range must be empty or (low, high) with low <= high, got {self.reward_range}")
        if not self.dynamics.state_head and self.pathway is None:
            raise ValueError("a transformer without a state head (DynamicsConfig.state_head=False) needs a state "
                             "pathway (WorldModelConfig.pathway)")
