"""Loading a generated dataset and sampling training windows from it.

`EpisodeDataset(DIR)` reads every shard of a complete dataset into memory (frames stay uint8) and
checks each file against the manifest (`read_manifest` has checked the manifest itself), naming the
file when one is missing or corrupt. `sample_windows` draws random windows of T consecutive frames
that never cross an episode boundary; a window that runs past the end of a short episode is padded
and marked in `mask`. `split_episodes` holds out a dataset's last episodes, and `load_frames` reads
the frames of several datasets into a `FramePool` (the tokenizer trainer's) for each split.

Within a window, step t holds frame t, the state at frame t, the action taken at frame t, and the
reward / termination that action led to. The last frame of an episode has no action: its action,
reward and flags are zero-padded, and `act_mask` is False there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from worldsim.core.outputs import file_sha256
from worldsim.envs.manifest import MANIFEST, read_manifest, shard_problem

_REPAIR = "rerun `worldsim data generate` with the same arguments (and --verify) to regenerate it"


class EpisodeDataset:
    """All episodes of a dataset (or a subset of them, by episode index) in memory.

    Args:
        root: the dataset directory.
        episodes: which episode indices to keep (e.g. a held-out split); None keeps all.
        verify: check every shard's SHA-256 against the manifest (catches silent corruption).
        frames: read the frames (False: states, actions and the rest only, for state-only uses).
    """

    def __init__(self, root: str | Path, episodes: list[int] | np.ndarray | None = None, verify: bool = True,
                 frames: bool = True):
        self.root = Path(root)
        self.manifest: dict[str, Any] = read_manifest(self.root)
        if not self.manifest.get("complete"):
            raise ValueError(f"{self.root}: dataset is incomplete; rerun the generate command to resume it")
        if frames and not self.manifest.get("frames", True):
            raise ValueError(f"{self.root}: dataset has no frames (generated with --no-frames); it serves state-only "
                             f"uses such as --state-data, not frame training")
        keep = None if episodes is None else {int(e) for e in episodes}
        parts: dict[str, list[np.ndarray]] = {k: [] for k in
                                              ("frames", "states", "physics", "actions", "rewards",
                                               "terminated", "truncated", "contacts", "energy")}
        lengths, ids = [], []
        for name, rec in sorted(self.manifest["shards"].items()):
            path = self.root / name
            problem = shard_problem(path, rec, verify)  # the size always (it costs a stat), the hash with verify
            if problem == "missing":
                raise ValueError(f"{path}: shard listed in {MANIFEST} is missing; {_REPAIR}")
            if problem is not None:
                raise ValueError(f"{path}: corrupt shard ({problem}: differs from {MANIFEST}); {_REPAIR}")
            try:
                with h5py.File(path, "r") as f:
                    for key in f["episodes"]:
                        g = f["episodes"][key]
                        ep = int(g.attrs["episode"])
                        if keep is not None and ep not in keep:
                            continue
                        L = int(g.attrs["length"])
                        for k in ("frames", "states", "physics", "contacts", "energy") if frames else (
                                "states", "physics", "contacts", "energy"):
                            parts[k].append(g[k][()])
                        for k in ("actions", "rewards", "terminated", "truncated"):
                            a = g[k][()]
                            pad = np.zeros((1, *a.shape[1:]), dtype=a.dtype)
                            parts[k].append(np.concatenate([a, pad]))  # frame-aligned: L+1 rows
                        lengths.append(L + 1)
                        ids.append(ep)
            except (OSError, KeyError) as exc:
                raise ValueError(f"{path}: corrupt or unreadable shard ({exc})") from exc
        if not lengths:
            raise ValueError(f"{self.root}: no episodes selected")
        order = np.argsort(ids, kind="stable")
        self.episode_ids = np.asarray(ids)[order]
        self.lengths = np.asarray(lengths, dtype=np.int64)[order]  # frames per episode (actions + 1)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]])
        self.arrays = {k: np.concatenate([v[i] for i in order]) for k, v in parts.items() if v}
        self.state_mean = np.asarray(self.manifest["stats"]["state_mean"], dtype=np.float32)
        self.state_std = np.asarray(self.manifest["stats"]["state_std"], dtype=np.float32)

    @property
    def num_frames(self) -> int:
        return int(self.lengths.sum())

    def __len__(self) -> int:
        return len(self.lengths)

    def action_frames(self, run: int = 1) -> np.ndarray:
        """Indices of the frames that start `run` consecutive frames with actions inside one episode
        (an episode's last frame has none). `run=1`: every frame but each episode's last, the frame
        i -> i + 1 transitions."""
        if run < 1:
            raise ValueError(f"run must be >= 1, got {run}")
        pos = np.arange(self.num_frames) - np.repeat(self.offsets, self.lengths)  # position in its episode
        actions_left = np.repeat(self.lengths, self.lengths) - 1 - pos
        return np.flatnonzero(actions_left >= run)

    def add_array(self, name: str, values: np.ndarray) -> None:
        """Attach a frame-aligned array (e.g. the tokenizer's codes of every frame) for sampling."""
        if len(values) != self.num_frames:
            raise ValueError(f"{name}: expected {self.num_frames} rows (one per frame), got {len(values)}")
        self.arrays[name] = values

    def episode(self, i: int) -> dict[str, np.ndarray]:
        """Arrays of the i-th loaded episode (frame-aligned; the last action row is padding)."""
        s, n = self.offsets[i], self.lengths[i]
        return {k: v[s : s + n] for k, v in self.arrays.items()}


class WindowSampler:
    """Draws random training windows of `T` frames from an `EpisodeDataset` as torch tensors.

    Window starts are uniform over all positions where a window fits in its episode; an episode with
    fewer than T frames contributes one start, padded, with `mask` False past its end.
    """

    def __init__(self, data: EpisodeDataset, T: int, seed: int = 0, keys: tuple[str, ...] = ("frames",),
                 rng: np.random.Generator | None = None):
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise ValueError(f"window length T must be an int >= 1, got {T!r}")
        missing = [k for k in keys if k not in data.arrays]
        if missing:
            raise ValueError(f"keys {missing} are not arrays of the dataset; have {sorted(data.arrays)}")
        self.data, self.T, self.keys = data, T, keys
        n_starts = np.maximum(data.lengths - T + 1, 1)
        self._starts_ep = np.repeat(np.arange(len(data)), n_starts)
        self._starts = np.concatenate([np.arange(n) for n in n_starts])
        # A caller that checkpoints its own generator passes it as `rng` (then `seed` is unused).
        self.rng = rng if rng is not None else np.random.default_rng(seed)

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        """A batch: frames uint8 [B,T,H,W,3], states/actions float32 [B,T,*], rewards float32 [B,T],
        terminated/truncated/mask/act_mask bool [B,T]; episode/start int64 [B]."""
        return self.windows(self.rng.integers(len(self._starts), size=batch_size))

    @property
    def num_windows(self) -> int:
        """How many distinct windows the dataset holds (one per start position)."""
        return len(self._starts)

    def windows(self, positions: np.ndarray) -> dict[str, torch.Tensor]:
        """The batch of windows number `positions` (ints in [0, num_windows)), as `sample` returns
        them; `windows(np.arange(i, j))` walks the dataset in order, for evaluations that cover it all."""
        pick = np.asarray(positions, dtype=np.int64)
        if pick.ndim != 1 or (pick.size and (pick.min() < 0 or pick.max() >= len(self._starts))):
            raise ValueError(f"positions must be a 1-D array of ints in [0, {len(self._starts)}), got {positions!r}")
        ep, start = self._starts_ep[pick], self._starts[pick]
        t = np.arange(self.T)
        length = self.data.lengths[ep]
        mask = (start[:, None] + t[None]) < length[:, None]  # [B, T]
        local = np.minimum(start[:, None] + t[None], length[:, None] - 1)
        idx = self.data.offsets[ep][:, None] + local  # [B, T] rows of the flat arrays
        a = self.data.arrays
        act_mask = mask & ((start[:, None] + t[None]) < length[:, None] - 1)
        out = {k: torch.from_numpy(a[k][idx]) for k in self.keys}
        out |= {
            "states": torch.from_numpy(a["states"][idx].astype(np.float32)),
            "actions": torch.from_numpy(np.where(act_mask[..., None], a["actions"][idx], 0).astype(np.float32)),
            "rewards": torch.from_numpy(np.where(act_mask, a["rewards"][idx], 0).astype(np.float32)),
            "terminated": torch.from_numpy(act_mask & a["terminated"][idx]),
            "truncated": torch.from_numpy(act_mask & a["truncated"][idx]),
            "mask": torch.from_numpy(mask),
            "act_mask": torch.from_numpy(act_mask),
            # Where each window came from: index into the loaded episodes, and first frame.
            "episode": torch.from_numpy(ep.astype(np.int64)),
            "start": torch.from_numpy(start.astype(np.int64)),
        }
        return out

    def __iter__(self):
        raise TypeError("WindowSampler is not iterable; call sample(batch_size)")


def split_episodes(n: int, val_fraction: float) -> tuple[list[int], list[int]]:
    """Train / held-out episode indices: the last `val_fraction` (at least one) are held out."""
    n_val = max(1, round(n * val_fraction))
    if n_val >= n:
        raise ValueError(f"a dataset of {n} episodes is too small to hold out {val_fraction:.0%} for validation")
    return list(range(n - n_val)), list(range(n - n_val, n))


class FramePool:
    """Uniform frames from several datasets, each in memory as uint8: a dataset drawn uniformly (so each
    scene gets the same share), then a frame uniformly within it."""

    def __init__(self, frame_arrays: list[np.ndarray]):
        if not frame_arrays:
            raise ValueError("FramePool needs at least one dataset")
        self.arrays = frame_arrays

    def positions(self, rng: np.random.Generator, n: int) -> list[tuple[int, int]]:
        """`n` (dataset, frame) positions, drawn as `sample` draws them."""
        which = rng.integers(len(self.arrays), size=n)
        return [(int(w), int(rng.integers(len(self.arrays[w])))) for w in which]

    def sample(self, rng: np.random.Generator, n: int) -> torch.Tensor:
        return torch.from_numpy(np.stack([self.arrays[w][i] for w, i in self.positions(rng, n)]))


def load_frames(data_dirs: list[str], val_fraction: float, image_size: int) -> tuple[FramePool, FramePool]:
    """The frames of `data_dirs` (each `image_size` square) as (training, held-out) pools, the last
    `val_fraction` of each dataset's episodes held out."""
    train, val = [], []
    for d in data_dirs:
        m = read_manifest(d)
        if m["height"] != image_size or m["width"] != image_size:
            size = f"{m['height']}x{m['width']}"
            raise ValueError(f"{d}: frames are {size}, the tokenizer takes {image_size}x{image_size}")
        tr, va = split_episodes(m["episodes"], val_fraction)
        train.append(EpisodeDataset(d, episodes=tr).arrays["frames"])
        val.append(EpisodeDataset(d, episodes=va, verify=False).arrays["frames"])
    return FramePool(train), FramePool(val)


def describe_shard(path: Path) -> dict[str, Any]:
    """The manifest record of a finished shard, read back from the file."""
    try:
        with h5py.File(path, "r") as f:
            index, first, count = (int(f.attrs[k]) for k in ("shard", "first_episode", "num_episodes"))
            eps = [f["episodes"][k] for k in f["episodes"]]
            states = np.concatenate([g["states"][()] for g in eps])
            steps = sum(int(g.attrs["length"]) for g in eps)
            frames = sum(g["states"].shape[0] for g in eps)
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: corrupt or unreadable shard ({exc})") from exc
    return {
        "index": index, "file": path.name, "first_episode": first, "num_episodes": count, "steps": steps,
        "frames": frames, "sha256": file_sha256(path), "bytes": path.stat().st_size,
        "state_sum": states.sum(0).tolist(), "state_sqsum": np.square(states).sum(0).tolist(),
    }
