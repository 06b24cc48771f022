"""The dynamics transformer's key-value cache: one ring buffer of the last `window` steps per layer,
for the physics tokens, and beside it (`frame_cache`) one for the frame tokens of a framed rollout,
whose slots hold each step's physics keys in front of its frame keys."""

from __future__ import annotations

import torch


class KVCache:
    """Keys and values of the last `window` steps for one layer, in a ring buffer.

    Storage is preallocated on the first `extend`: [B, H, window, n, hd], one slot per step (slot =
    step index mod window), so a rollout step writes one slot in place instead of concatenating and
    trimming the whole cache. Attention reads `k`, `v` [B, H, L, hd] with `step` [L] and `valid`
    [B, L] (or None: every row sees every key); keys need not be in time order, since attention
    masks by step and time enters through the rotary embedding. `valid` marks the keys each row may
    see: rows restarted by a vector env no longer see their old worlds' keys.
    """

    def __init__(self, differentiable: bool = False) -> None:
        # Training through the cached step: the window is kept as a list of steps and concatenated,
        # never written in place, so autograd can go back through every step a rollout took.
        self.differentiable = differentiable
        self._steps_kv: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.step: torch.Tensor | None = None
        self.valid: torch.Tensor | None = None
        self._k: torch.Tensor | None = None  # [B, H, W, n, hd]
        self._v: torch.Tensor | None = None
        self._steps: list[int | None] = []  # the step held by each slot, None when empty
        self._valid: torch.Tensor | None = None  # [B, W] per-row slot validity, None: all valid
        self.frames: KVCache | None = None  # the cache the frame tokens read (`frame_cache`); physics never does

    def frame_cache(self) -> KVCache:
        """The cache the frame tokens of this layer read (made on first use). Each slot holds the step's
        physics keys and then its frame keys (`extend(..., lead=)`), so the frame queries read one
        buffer, with nothing concatenated per step. The physics tokens never read it: they read only
        this (the parent) cache."""
        if self.frames is None:
            self.frames = KVCache(self.differentiable)
        return self.frames

    def _slot(self, s: int) -> int:
        return s % len(self._steps)

    def extend(self, k: torch.Tensor, v: torch.Tensor, step: torch.Tensor, window: int,
               lead: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """Add one step's keys and values k, v [B, H, n, hd] (step [n], one value); the step that
        falls out of the window is dropped. `lead`: keys and values [B, H, m, hd] of the same step
        stored in front of k and v (a frame cache's physics keys); the slot then holds m + n keys,
        in the dtype of the first step's k."""
        if self.differentiable:
            if lead is not None:
                k, v = torch.cat([lead[0], k], 2), torch.cat([lead[1], v], 2)
                step = step[:1].expand(k.shape[2])
            self._extend_by_concat(k, v, step, window)
            return
        s = int(step[0])
        m = 0 if lead is None else lead[0].shape[2]
        if self._k is None:
            b, h, n, hd = k.shape
            self._k = k.new_empty(b, h, window, m + n, hd)
            self._v = v.new_empty(b, h, window, m + n, hd)
            self._steps = [None] * window
        elif len(self._steps) != window:
            raise ValueError(f"cache holds a window of {len(self._steps)} steps, asked for {window}")
        slot = self._slot(s)
        if lead is not None:
            self._k[:, :, slot, :m] = lead[0]
            self._v[:, :, slot, :m] = lead[1]
        self._k[:, :, slot, m:] = k
        self._v[:, :, slot, m:] = v
        self._steps = [None if t is None or t <= s - window else t for t in self._steps]
        self._steps[slot] = s
        if self._valid is not None:
            self._valid[:, slot] = True
        self._publish()

    def _extend_by_concat(self, k: torch.Tensor, v: torch.Tensor, step: torch.Tensor, window: int) -> None:
        s = int(step[0])
        self._steps_kv = [e for e in self._steps_kv if int(e[2][0]) > s - window] + [(k, v, step)]
        self.k = torch.cat([e[0] for e in self._steps_kv], dim=2)
        self.v = torch.cat([e[1] for e in self._steps_kv], dim=2)
        self.step = torch.cat([e[2] for e in self._steps_kv])
        self.valid = None

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
        if self.differentiable or other.differentiable:
            raise ValueError("rows of a differentiable (training) cache are not restarted; start a new rollout")
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
        if self.frames is not None or other.frames is not None:
            # A one-step context fills no cache at all; otherwise both are framed or neither.
            if self.frames is None or (other.frames is None and other._k is not None):
                raise ValueError("a framed rollout restarts from framed context steps, a frameless one from frameless")
            self.frames.replace_rows(rows, other.frames if other.frames is not None else KVCache())
