"""The registry of shipped weights: a scene name resolves to the checkpoint shipped for it."""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "weights"

# kind -> scene -> checkpoint directory under WEIGHTS_DIR. One tokenizer is shared by all scenes.
SHIPPED: dict[str, dict[str, str]] = {
    "tokenizer": {
        "InvertedPendulum-v5": "tokenizer",
        "Reacher-v5": "tokenizer",
        "Pusher-v5": "tokenizer",
        "bounce": "tokenizer",
    },
}


def resolve_checkpoint(name_or_path: str | Path, kind: str) -> Path:
    """A checkpoint directory from a path, or from a scene name that has shipped weights of `kind`.

    Raises:
        ValueError: when it is neither an existing path nor a scene with shipped weights; the message
            lists the scenes that have them.
    """
    p = Path(name_or_path)
    if p.exists():
        return p
    shipped = SHIPPED.get(kind, {})
    name = str(name_or_path)
    if name in shipped:
        path = WEIGHTS_DIR / shipped[name]
        if not (path / "model.safetensors").is_file():
            raise ValueError(f"the shipped {kind} for {name!r} is missing from this install ({path})")
        return path
    raise ValueError(
        f"{name!r} is neither a checkpoint directory nor a scene with a shipped {kind}; "
        f"shipped for: {', '.join(shipped) or 'none'}"
    )
