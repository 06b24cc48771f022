"""`worldsim models`: each shipped world, described from its own folder, and the scenes that have none.

Everything shown is read from the world's `config.json` and weights file: a figure the config does not
hold is shown as "-" (null in `--json`). PCS and valid horizon are those of the `worldsim eval` report
its export was given (`worldsim export --eval-report`: `extra.eval`, which names the report), shown
with the policy and horizon they were scored under; the full tables are in the docs (`FIGURES_DOC`).
Parameters are counted as `worldsim info` counts them: the weights file's values less its buffers
(normalisation statistics, MoE load counters), which the world's own module structure names.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from safetensors import safe_open

from worldsim.core.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_checkpoint_config
from worldsim.core.registry import BASELINES, PACKAGE_REF, SHIPPED, WEIGHTS_DIR
from worldsim.envs import list_scenes
from worldsim.model.world_model import WorldModel, WorldModelConfig

FIGURES_DOC = "docs/evaluation.md"
# The headline figures, under the keys of `worldsim eval`'s report; a config holds them where its export
# put them (`worldsim export --eval-report`: `extra.eval`).
FIGURES = ("pcs", "valid_horizon")
# A training run's record in `extra` names its config; the config's key says which part of the world it
# trained. A refit's record keeps the record of the run it started from under `base_extra`.
_STAGES = {"train_config": "dynamics", "state_pathway_config": "pathway", "state_renderer_config": "renderer",
           "outcome_head_config": "outcome", "prompt_prefix_config": "prompt"}


def _paths(value: Any) -> list[str]:
    values = [value] if isinstance(value, str) else list(value or [])
    return [os.path.normpath(str(v)) for v in values]


def training_runs(extra: dict[str, Any]) -> list[dict[str, Any]]:
    """The training runs a checkpoint records, the last first: which part each trained, its steps, the
    checkpoint it started from and its data (frame datasets and state-only ones)."""
    runs, record = [], extra
    while isinstance(record, dict) and record:
        stage = next((name for key, name in _STAGES.items() if key in record), None)
        runs.append({"stage": stage, "steps": record.get("steps"), "init": record.get("init"),
                     "data": _paths(record.get("data")), "state_data": _paths(record.get("state_data"))})
        record = record.get("base_extra")
    return runs


def _params(folder: Path) -> int:
    """The world's parameters, from its weights file's header (no tensor is read): every value but the
    buffers a `WorldModel` of its config holds, and but a copied tokenizer's, which `worldsim info` counts
    apart."""
    buffers = {name for name, _ in WorldModel(load_checkpoint_config(
        folder, kind="world_model", config_cls=WorldModelConfig)).named_buffers()}
    total = 0
    with safe_open(str(folder / WEIGHTS_FILE), framework="pt") as f:
        for name in f.keys():
            if name in buffers or name.startswith("tokenizer."):
                continue
            n = 1
            for dim in f.get_slice(name).get_shape():
                n *= int(dim)
            total += n
    return total


def _scored_on(record: Any) -> dict[str, Any] | None:
    """What the figures were scored under (`worldsim eval`'s policy, horizon, episodes and seed), if recorded."""
    if not isinstance(record, dict):
        return None
    return {k: record.get(k) for k in ("policy", "horizon", "episodes", "seed")}


def describe_world(name: str, scene: str, family: str) -> dict[str, Any]:
    """One shipped world (folder `name` of the shipped weights) as `worldsim models --json` lists it."""
    folder = WEIGHTS_DIR / name
    row: dict[str, Any] = {"name": name, "ref": PACKAGE_REF + name, "scene": scene, "family": family,
                           "installed": (folder / CONFIG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file()}
    if not row["installed"]:
        return {**row, **dict.fromkeys(("preset", "params", "bytes", "tokenizer")), "training": [],
                "validation": {}, **dict.fromkeys(FIGURES), "scored_on": None}
    meta = json.loads((folder / CONFIG_FILE).read_text())
    extra = meta.get("extra") or {}
    return {**row, "preset": (meta.get("config") or {}).get("preset"), "params": _params(folder),
            "bytes": sum(p.stat().st_size for p in folder.iterdir() if p.is_file()),
            "tokenizer": extra.get("tokenizer_ref"), "training": training_runs(extra),
            "validation": {k: v for k, v in extra.items() if k.startswith("val_")},
            **{k: (extra.get("eval") or {}).get(k, extra.get(k)) for k in FIGURES},
            "scored_on": _scored_on(extra.get("eval"))}


def list_models() -> dict[str, Any]:
    """The shipped worlds (the transformer worlds, then the `mlp` baselines), every scene's world, and
    where the worlds' scores are."""
    worlds = [describe_world(name, scene, "transformer") for scene, name in SHIPPED.get("world_model", {}).items()]
    worlds += [describe_world(name, scene, family) for family, by_scene in BASELINES.items()
               for scene, name in by_scene.items()]
    scenes = {scene: {"world": SHIPPED.get("world_model", {}).get(scene),
                      "baselines": [w["name"] for w in worlds if w["scene"] == scene and w["family"] != "transformer"],
                      "tokenizer": SHIPPED.get("tokenizer", {}).get(scene)} for scene in list_scenes()}
    return {"worlds": worlds, "scenes": scenes, "figures_doc": FIGURES_DOC}


def _figure(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def _init_text(init: str | None) -> str:
    """Where a run started: shipped weights by their ref; a folder by its name alone, since the path is
    one on the machine the world was trained on."""
    if not init:
        return ""
    return f" from {init}" if init.startswith(PACKAGE_REF) else f" from {Path(init).name} (a local run)"


def _scored_text(scored: dict[str, Any] | None) -> str:
    if not scored or scored.get("policy") is None:
        return "-"
    return f"{scored['policy']}, {_figure(scored.get('horizon'))} steps"


def _training_text(runs: list[dict[str, Any]]) -> str:
    parts = []
    for run in runs:
        data = ", ".join(Path(p).name for p in run["data"] + [p for p in run["state_data"] if p not in run["data"]])
        init = _init_text(run["init"])
        parts.append(f"{run['stage'] or 'run'} {_figure(run['steps'])}{init}" + (f" ({data})" if data else ""))
    return "; ".join(parts) or "-"


def _print_table(listing: dict[str, Any]) -> None:
    print(f"{'world':<15}{'scene':<21}{'family':<13}{'preset':<9}{'params':>9}{'MiB':>7}{'PCS':>6}{'horizon':>9}"
          f"  {'scored on':<21}training (steps, last run first; data)")
    for w in listing["worlds"]:
        if not w["installed"]:
            print(f"{w['name']:<15}{w['scene']:<21}{w['family']:<13}missing from this install")
            continue
        print(f"{w['name']:<15}{w['scene']:<21}{w['family']:<13}{w['preset'] or '-':<9}{w['params'] / 1e6:>8.2f}M"
              f"{w['bytes'] / 2**20:>7.1f}{_figure(w['pcs']):>6}{_figure(w['valid_horizon']):>9}  "
              f"{_scored_text(w['scored_on']):<21}{_training_text(w['training'])}")
    for scene, s in listing["scenes"].items():
        if s["world"] is None and not s["baselines"]:
            tokenizer = f" (shipped tokenizer: {s['tokenizer']})" if s["tokenizer"] else ""
            print(f"{'-':<15}{scene:<21}no world{tokenizer}; train one and pass --checkpoint DIR")
    tokenizers = sorted({w["tokenizer"] for w in listing["worlds"] if w["tokenizer"]})
    if tokenizers:
        print(f"\nThe worlds read the shipped tokenizer {', '.join(tokenizers)}, whose weights are not counted above.")
    print(f"PCS and horizon: the `worldsim eval` report each world was exported with, under the policy and episode "
          f"length in 'scored on' ('-': not in the world's config.json); the scores under other policies are in "
          f"{listing['figures_doc']}.")


def _cmd_models(args: argparse.Namespace) -> int:
    listing = list_models()
    if args.json:
        print(json.dumps(listing, indent=2))
    else:
        _print_table(listing)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register models."""
    s = sub.add_parser("models", help="list the shipped worlds and the scenes without one",
                       description="List each shipped world (the transformer worlds and the `mlp` baselines): "
                                   "its scene, preset, parameters, size on disk and training, read from its own "
                                   "config.json; and the scenes no world is shipped for.")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=_cmd_models)
