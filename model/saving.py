"""Saving and loading a model as a checkpoint directory, shared by `Tokenizer` and `WorldModel`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch

from worldsim.core.checkpoint import load_checkpoint, load_state_into, save_checkpoint
from worldsim.core.config import ConfigBase
from worldsim.core.registry import resolve_checkpoint
from worldsim.core.runtime import resolve_device

M = TypeVar("M", bound="PretrainedMixin")


class PretrainedMixin:
    """Adds `save(path)` and `from_pretrained(name_or_path)` to a module with a `cfg` attribute."""

    checkpoint_kind: ClassVar[str]
    config_cls: ClassVar[type[ConfigBase]]
    cfg: Any

    def save(self, path: str | Path, extra: dict | None = None, dtype: torch.dtype | None = None,
             force: bool = False) -> Path:
        """Write the weights and config to the checkpoint directory `path` (atomically). A `path` that
        holds anything but a checkpoint of this kind is refused (`force`: a checkpoint of any kind)."""
        return save_checkpoint(path, self, self.cfg, kind=self.checkpoint_kind, extra=extra, dtype=dtype, force=force)

    @classmethod
    def from_pretrained(cls: type[M], name_or_path: str | Path, device: str | torch.device = "cpu") -> M:
        """Load a checkpoint directory, or the weights shipped for a scene name, in eval mode."""
        path = resolve_checkpoint(name_or_path, kind=cls.checkpoint_kind)
        ck = load_checkpoint(path, kind=cls.checkpoint_kind, config_cls=cls.config_cls)
        model = cls(ck.config)
        load_state_into(model, cls._checkpoint_tensors(path, ck), source=str(path))
        return model.to(resolve_device(device)).eval()

    @classmethod
    def _checkpoint_tensors(cls, path: Path, ck) -> dict[str, torch.Tensor]:
        """The full state dict a loaded checkpoint stands for (a subclass may add shared parts)."""
        return ck.tensors
