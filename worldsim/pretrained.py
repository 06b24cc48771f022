"""The registry of shipped weights: a scene name resolves to the checkpoint shipped for it."""

from __future__ import annotations

import os
from pathlib import Path

from worldsim.checkpoint import check_checkpoint_target, load_checkpoint, recover_checkpoint

WEIGHTS_DIR = Path(__file__).parent / "weights"

# kind -> scene -> checkpoint directory under WEIGHTS_DIR. One tokenizer is shared by all scenes.
SHIPPED: dict[str, dict[str, str]] = {
    "tokenizer": {
        "InvertedPendulum-v5": "tokenizer",
        "Reacher-v5": "tokenizer",
        "Pusher-v5": "tokenizer-pusher",  # the shared one fine-tuned on Pusher (32 dB where it reaches 31.2)
        "bounce": "tokenizer",
    },
    # World models: dynamics weights only; each names worldsim:tokenizer as its tokenizer (see `export_world_model`).
    "world_model": {
        "Reacher-v5": "world-reacher",
        "InvertedPendulum-v5": "world-pendulum",
        "bounce": "world-bounce",
    },
}


# A reference to shipped weights from inside a checkpoint (`extra.tokenizer_ref`): "worldsim:NAME" is
# the directory NAME of WEIGHTS_DIR, so a world copied anywhere still finds the tokenizer it shares.
PACKAGE_REF = "worldsim:"


def _scene_names() -> set[str]:
    return {scene for by_scene in SHIPPED.values() for scene in by_scene}


def resolve_checkpoint(name_or_path: str | Path, kind: str) -> Path:
    """A checkpoint directory from a scene name that has shipped weights of `kind`, or from a path.

    A string that is a scene name always means the scene, even when a folder of that name sits in the
    working directory: write `./NAME` (or pass a `Path`) for the folder. A path is used as it is.

    Raises:
        ValueError: when it is neither a scene with shipped weights of `kind` nor an existing path; the
            message lists the scenes that have them.
    """
    shipped = SHIPPED.get(kind, {})
    listing = ", ".join(shipped) or "none"
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


def export_world_model(src: str | Path, dst: str | Path, fp16: bool = True, tokenizer_ref: str | None = None,
                       static_from: str | Path | None = None, check_steps: int = 50, check_episodes: int = 4,
                       seed: int = 12_345, force: bool = False) -> dict[str, float]:
    """Write the world model at `src` to `dst` for shipping, and measure what fp16 weights change.

    The check rolls the fp32 and the fp16-weight models open loop from the same real initial states
    under the same random actions and reports the share of identical predicted tokens and the largest
    state difference relative to the dataset std. The export is written either way; the caller
    decides from the figures (the shipping recipe prints them). `static_from` (a dataset directory)
    sets `static_state_dims` and the state bounds from its training split, for checkpoints trained
    before the trainer recorded them.
    """
    import numpy as np
    import torch

    from worldsim.envs import make_scene
    from worldsim.model.world_model import WorldModel

    recover_checkpoint(dst)
    check_checkpoint_target(dst, "world_model", force=force)  # before any work
    wm = WorldModel.from_pretrained(src)
    if static_from is not None:
        from worldsim.envs.loader import EpisodeDataset
        from worldsim.envs.manifest import read_manifest
        from worldsim.train_dynamics import state_bounds, static_state_dims
        from worldsim.train_tokenizer import split_episodes

        train_ep, _ = split_episodes(read_manifest(static_from)["episodes"], 0.1)
        data = EpisodeDataset(static_from, train_ep, verify=False, frames=False)
        low, high = state_bounds(data)
        # A model built from the new config (its bounds are derived there), with the same weights.
        cfg = wm.cfg.replace(static_state_dims=static_state_dims(data), state_low=low, state_high=high)
        weights = wm.state_dict()
        wm = WorldModel(cfg).to(wm.device)
        wm.load_state_dict(weights)
    source_extra = load_checkpoint(resolve_checkpoint(src, "world_model"), kind="world_model").extra
    for key in ("tokenizer_ref", "tokenizer_sha256"):
        source_extra.pop(key, None)
    out = wm.save(dst, extra={**source_extra, "exported_from": str(src)}, dtype=torch.float16 if fp16 else None,
                  tokenizer_ref=tokenizer_ref, force=force)
    again = WorldModel.from_pretrained(out)
    scene = make_scene(wm.cfg.scene, wm.cfg.tokenizer.image_size, wm.cfg.tokenizer.image_size)
    rng = np.random.default_rng(seed)
    frames, states = [], []
    for i in range(check_episodes):
        st, _ = scene.reset(seed=seed + i)
        frames.append(scene.render()), states.append(st)
    scene.close()
    tokens = wm.encode(torch.from_numpy(np.stack(frames))[:, None])
    st = torch.from_numpy(np.stack(states))[:, None].float()
    lo, hi = scene.action_space.low, scene.action_space.high
    acts = torch.from_numpy(rng.uniform(lo, hi, (check_steps, check_episodes, len(lo)))).float()
    same, worst = [], 0.0
    ha, hb = wm.start(tokens, st), again.start(again.encode(torch.from_numpy(np.stack(frames))[:, None]), st)
    for a in acts:
        ta, sa, _, _ = wm.step(ha, a)
        tb, sb, _, _ = again.step(hb, a)
        same.append((ta == tb).float().mean().item())
        worst = max(worst, ((sa - sb).abs() / wm.state_std).max().item())
    return {"token_agreement": float(np.mean(same)), "max_state_diff_std": worst,
            "bytes": sum(f.stat().st_size for f in Path(out).iterdir())}
