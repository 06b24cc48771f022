"""The part trainers' samplers: a dataset's transitions, frames or outcomes in memory on the model's
device, normalised by a world model's statistics, and drawn as batches from a NumPy stream."""

from __future__ import annotations

import numpy as np
import torch

from worldsim.model.tokenizer import Tokenizer
from worldsim.model.world_model import WorldModel


def encode_dataset(data, tok: Tokenizer) -> np.ndarray:
    """The tokenizer's codes of every frame of `data`: int16 [frames, N]."""
    codes = tok.encode(torch.from_numpy(data.arrays["frames"]), batch_size=512)
    return codes.reshape(len(codes), -1).cpu().numpy().astype(np.int16)


class Sequences:
    """Every run of `unroll` consecutive transitions inside one episode of some datasets, states
    normalised by `wm`: `sample(n, rng)` draws n of them as a batch of states [n, K+1, S] and actions
    [n, K, A] (`StatePathway.loss`'s)."""

    def __init__(self, datasets: list, wm: WorldModel, unroll: int, what: str = "training"):
        states, actions, starts, base = [], [], [], 0
        self.short_episodes = 0  # episodes with fewer than `unroll` actions: they add no run
        for data in datasets:
            starts.append(base + data.action_frames(unroll))
            self.short_episodes += int((data.lengths - 1 < unroll).sum())
            states.append(data.arrays["states"]), actions.append(data.arrays["actions"])
            base += data.num_frames
        if not sum(len(s) for s in starts):
            names = ", ".join(str(d.root) for d in datasets)
            raise ValueError(f"no {what} episode of {names} has {unroll} actions, as --unroll {unroll} needs; "
                             f"lower --unroll (or, for the held-out split, raise --val-fraction)")
        dev = wm.device
        self.unroll = unroll
        self.starts = torch.from_numpy(np.concatenate(starts)).to(dev)
        self.state = wm.normalize_state(torch.from_numpy(np.concatenate(states)).float().to(dev))
        self.action = torch.from_numpy(np.concatenate(actions)).float().to(dev)

    def __len__(self) -> int:
        return len(self.starts)

    def sample(self, n: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        i = self.starts[torch.from_numpy(rng.integers(0, len(self), n)).to(self.starts.device)]
        idx = i[:, None] + torch.arange(self.unroll + 1, device=i.device)
        return {"states": self.state[idx], "actions": self.action[idx[:, :-1]]}


class Frames:
    """Every frame of some datasets as (normalised state, tokenizer codes) pairs: `sample(n, rng)` draws a
    batch of n (`StateRenderer.loss`'s)."""

    def __init__(self, datasets: list, wm: WorldModel):
        dev = wm.device
        self.state = wm.normalize_state(torch.from_numpy(
            np.concatenate([d.arrays["states"] for d in datasets])).float().to(dev))
        codes = np.concatenate([encode_dataset(d, wm.tokenizer) for d in datasets])
        self.codes = torch.from_numpy(codes).long().to(dev)

    def __len__(self) -> int:
        return len(self.state)

    def sample(self, n: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        i = torch.from_numpy(rng.integers(0, len(self), n)).to(self.state.device)
        return {"states": self.state[i], "codes": self.codes[i]}


class Outcomes:
    """Every transition of some datasets as (normalised next state, action, normalised reward,
    terminated), the reward normalised by `wm`'s reward statistics: `sample(n, rng)` draws a batch of n
    (`OutcomeHead.loss`'s)."""

    def __init__(self, datasets: list, wm: WorldModel):
        dev, cols = wm.device, {"next": [], "action": [], "reward": [], "terminated": []}
        for d in datasets:
            i = d.action_frames()
            cols["next"].append(d.arrays["states"][i + 1])
            cols["action"].append(d.arrays["actions"][i])
            cols["reward"].append(d.arrays["rewards"][i])
            cols["terminated"].append(d.arrays["terminated"][i])
        c = {k: torch.from_numpy(np.concatenate(v)).float().to(dev) for k, v in cols.items()}
        self.reward_range = (float(c["reward"].min()), float(c["reward"].max()))  # raw units
        self.next, self.action = wm.normalize_state(c["next"]), c["action"]
        self.reward = (c["reward"] - wm.reward_mean) / wm.reward_std
        self.terminated = c["terminated"]

    def __len__(self) -> int:
        return len(self.next)

    def sample(self, n: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        i = torch.from_numpy(rng.integers(0, len(self), n)).to(self.next.device)
        return {"next_states": self.next[i], "actions": self.action[i], "rewards": self.reward[i],
                "terminated": self.terminated[i]}
