"""The small MLPs the side models of a world model are made of."""

from __future__ import annotations

import torch
from torch import nn


def mlp(*sizes: int) -> nn.Sequential:
    """Linear layers of `sizes` (input, hidden..., output) with SiLU between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [nn.SiLU()] if i else []
        layers.append(nn.Linear(a, b))
    return nn.Sequential(*layers)


def state_action(states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """The input of an MLP of (state, action): [..., S], [..., A] -> [..., S + A]."""
    return torch.cat([states, actions.to(states.dtype)], -1)
