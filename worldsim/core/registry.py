"""The registry of shipped weights: a scene name resolves to the checkpoint shipped for it."""

from __future__ import annotations

import os
from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent.parent / "weights"

# kind -> scene -> checkpoint directory under WEIGHTS_DIR. Each scene's tokenizer has its own narrow
# decoder; Reacher's, the pendulum's and bounce's share one encoder (and so their codes), Pusher's has
# that encoder fine-tuned on its frames.
SHIPPED: dict[str, dict[str, str]] = {
    "tokenizer": {
        "InvertedPendulum-v5": "tokenizer-pendulum",
        "Reacher-v5": "tokenizer-reacher",
        "Pusher-v5": "tokenizer-pusher",
        "bounce": "tokenizer-bounce",
    },
    # World models: dynamics weights only; each names its scene's tokenizer, worldsim:tokenizer-SCENE
    # (see `export_world_model`).
    "world_model": {
        "Reacher-v5": "world-reacher",
        "InvertedPendulum-v5": "world-pendulum",
        "Pusher-v5": "world-pusher",
        "bounce": "world-bounce",
    },
}


# The `mlp` baseline worlds, scored beside the shipped ones: a v4-lite (bounce: v4) transformer whose state comes
# from a state pathway and whose reward and termination come from an outcome head (MLPs of state and
# action), plus a state renderer for Reacher and bounce. Loaded as "worldsim:NAME".
BASELINES: dict[str, dict[str, str]] = {
    "mlp": {"Reacher-v5": "mlp-reacher", "InvertedPendulum-v5": "mlp-pendulum", "bounce": "mlp-bounce",
            "Pusher-v5": "mlp-pusher"},
}

# A reference to shipped weights from inside a checkpoint (`extra.tokenizer_ref`): "worldsim:NAME" is
# the directory NAME of WEIGHTS_DIR, so a world copied anywhere still finds the tokenizer it shares.
PACKAGE_REF = "worldsim:"


def _scene_names() -> set[str]:
    return {scene for by_scene in SHIPPED.values() for scene in by_scene}


def resolve_checkpoint(name_or_path: str | Path, kind: str) -> Path:
    """A checkpoint directory from a scene name that has shipped weights of `kind`, or from a path.

    A string that is a scene name always means the scene, even when a folder of that name sits in the
    working directory: write `./NAME` (or pass a `Path`) for the folder. "worldsim:NAME" is the shipped
    weights' folder NAME (the `mlp` baselines: `BASELINES`). A path is used as it is.

    Raises:
        ValueError: when it is neither a scene with shipped weights of `kind` nor an existing path; the
            message lists the scenes that have them.
    """
    shipped = SHIPPED.get(kind, {})
    listing = ", ".join(shipped) or "none"
    if isinstance(name_or_path, str) and name_or_path.startswith(PACKAGE_REF):  # shipped weights by folder name
        path = resolve_ref(name_or_path, WEIGHTS_DIR, field="checkpoint")
        if not (path / "model.safetensors").is_file():
            raise ValueError(f"{name_or_path!r} names shipped weights that are missing from this install ({path})")
        return path
    if isinstance(name_or_path, str) and name_or_path in _scene_names():
        if name_or_path not in shipped:
            raise ValueError(f"no {kind} is shipped for scene {name_or_path!r} (shipped for: {listing}); to load "
                             f"a directory of that name, write ./{name_or_path}")
        path = WEIGHTS_DIR / shipped[name_or_path]
        if not (path / "model.safetensors").is_file():
            raise ValueError(f"the shipped {kind} for {name_or_path!r} is missing from this install ({path})")
        return path
    p = Path(name_or_path)
    if p.exists():
        return p
    raise ValueError(f"{str(name_or_path)!r} is neither a checkpoint directory nor a scene with a shipped {kind}; "
                     f"shipped for: {listing}")


def resolve_ref(ref: str, checkpoint_dir: str | Path, field: str = "tokenizer_ref") -> Path:
    """The directory a checkpoint's reference `ref` names: "worldsim:NAME" (shipped weights), or a path
    relative to `checkpoint_dir` that stays inside it (or inside the shipped weights).

    Raises:
        ValueError: for a reference that leaves those places, or names no shipped weights.
    """
    if not isinstance(ref, str) or not ref:
        raise ValueError(f"{checkpoint_dir}: {field} must be a non-empty string, got {ref!r}")
    if ref.startswith(PACKAGE_REF):
        name = ref[len(PACKAGE_REF):]
        known = sorted(p.name for p in WEIGHTS_DIR.iterdir() if p.is_dir())
        if name not in known:
            raise ValueError(f"{checkpoint_dir}: {field} {ref!r} names no shipped weights; known: "
                             f"{', '.join(PACKAGE_REF + k for k in known)}")
        return WEIGHTS_DIR / name
    base = Path(os.path.abspath(checkpoint_dir))
    target = Path(os.path.normpath(base / ref))
    inside = [root for root in (base, Path(os.path.abspath(WEIGHTS_DIR))) if target.is_relative_to(root)]
    if os.path.isabs(ref) or not inside:
        raise ValueError(f"{checkpoint_dir}: {field} {ref!r} points outside the checkpoint directory; a reference "
                         f"is {PACKAGE_REF}NAME (shipped weights) or a folder inside the checkpoint")
    return target
