"""Writing an evaluation to a directory, all at once or not at all.

    DIR/
      report.json            every metric by horizon and per step, for the model and the baselines,
                             with the config, versions and seeds
      report.md              the same as tables, with the PCS formula
      error_vs_horizon.png   per-step error curves, model beside the baselines
      trajectories.png       predicted against true state trajectories of the median episode
      video_median.mp4       [model | MuJoCo | |difference|] of the median episode (by state nRMSE)
      video_worst.mp4        the same for the worst episode

The files are written into a temporary sibling directory that is renamed into place when complete. An
existing DIR is replaced only when it is empty or holds nothing but a report of the same kind (`REPORT_FILES`),
as a checkpoint directory is; `worldsim eval policies` writes the other kind (`eval.policy_report`).
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

from worldsim.core.outputs import apply_umask, check_writable, fsync_tree, replace_dir
from worldsim.core.video import side_by_side, write_video
from worldsim.eval import score
from worldsim.eval.harness import BASELINES, METRICS, Result

# No display: figures are only written to files.
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PLOT_METRICS = ("state_nrmse", "body_pos_error", "psnr", "ssim", "energy_drift", "ball_vanish_rate")


# The files each kind of report directory holds; a directory holding anything else is never replaced.
REPORT_FILES = {
    "eval": ("report.json", "report.md", "error_vs_horizon.png", "trajectories.png", "video_median.mp4",
             "video_worst.mp4"),
    "eval-policies": ("report.json", "report.md", "returns.png"),
    "eval-prompts": ("report.json", "report.md"),
}
_COMMANDS = {"eval": "worldsim eval", "eval-policies": "worldsim eval policies",
             "eval-prompts": "worldsim eval prompts"}


def report_kind(report: Any) -> str | None:
    """The kind of a report.json's object: its `kind`, or for reports written before they recorded one,
    the kind its keys say (an `eval` report has `pcs` and `metrics`, a policy report `policies`)."""
    if not isinstance(report, dict):
        return None
    if report.get("kind") in REPORT_FILES:
        return report["kind"]
    if isinstance(report.get("policies"), dict):
        return "eval-policies"
    if "pcs" in report and "metrics" in report and "scene" in report:
        return "eval"
    return None


def _kind_of_dir(out: Path) -> str | None:
    try:
        return report_kind(json.loads((out / "report.json").read_text()))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def check_out_dir(out: str | Path, kind: str = "eval") -> Path:
    """Refuse, before any work, an output path that is a file, a directory holding anything but a report
    of `kind` ("eval" or "eval-policies"), or a place that cannot be written.

    Raises:
        ValueError: naming the path and what was found there.
        OSError: when the path cannot be written.
    """
    if kind not in REPORT_FILES:
        raise ValueError(f"report kind must be one of {sorted(REPORT_FILES)}, got {kind!r}")
    out = Path(out)
    where = f"--out {str(out)!r}"
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ValueError(f"{where} exists and is not a directory; refusing to replace it (choose another --out)")
    if out.is_dir():
        entries = sorted(out.iterdir())
        foreign = [e.name for e in entries if e.name not in REPORT_FILES[kind] or not e.is_file()]
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise ValueError(f"{where} holds {shown}, which no `{_COMMANDS[kind]}` report holds; refusing to "
                             f"replace it (choose another --out, or move those files away)")
        if entries:
            found = _kind_of_dir(out)
            if found is None:
                raise ValueError(f"{where} holds no readable `{_COMMANDS[kind]}` report.json; refusing to replace "
                                 f"it (choose another --out)")
            if found != kind:
                raise ValueError(f"{where} holds a `{_COMMANDS[found]}` report, and this writes a "
                                 f"`{_COMMANDS[kind]}` one; refusing to replace it (choose another --out)")
    check_writable(out)
    return out


def jsonable(x: Any) -> Any:
    """NaN and inf become None; numpy scalars become Python numbers; int keys become strings."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The short form `--json` prints: scene, episodes, horizons, pcs, metrics, baselines (+ their pcs) and
    the figures relative to the perturbed reference."""
    keys = ("scene", "episodes", "horizons", "pcs", "metrics", "baselines", "baseline_pcs", "relative_to_reference")
    return jsonable({k: report[k] for k in keys if k in report})


def _fmt(v: float | None, unit: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if unit == "steps":
        return f"{v:.1f}"
    if unit == "dB":
        return f"{v:.2f}"
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def markdown(report: dict[str, Any]) -> str:
    """report.md: the PCS table, one table of every metric by horizon, and the figures."""
    cfg, hs, v = report["config"], report["horizons"], report["versions"]
    lines = [f"# Physics fidelity: {report['scene']}", "",
             f"{report['episodes']} paired episodes (seed {cfg['seed']}, `{cfg['policy']}` actions), "
             f"up to {report['horizon']} steps or the episode's end; open loop from {cfg['context']} true step(s) "
             f"of frames and states. worldsim {v['worldsim']}, mujoco {v['mujoco']}"
             f"{', the world in ' + report['inference_precision'] if 'inference_precision' in report else ''}.", "",
             "| predictor | PCS (0-100) |", "|---|---:|", f"| world model | **{report['pcs']:.1f}** |"]
    lines += [f"| {b} | {p:.1f} |" for b, p in report["baseline_pcs"].items()]
    terms = report["pcs_terms"]
    lines += ["", "Model PCS terms: " + ", ".join(f"{k} {v:.3f}" for k, v in
                                                 {**terms["components"], **terms["penalties"]}.items()), ""]
    head = "| metric | unit | predictor | " + " | ".join(f"h={h}" for h in hs) + " |"
    lines += [head, "|---|---|---|" + "---:|" * len(hs)]
    for name, by_h in report["metrics"].items():
        unit = METRICS[name][0]
        rows = [("model", by_h)] + [(b, report["baselines"][b].get(name, {})) for b in BASELINES
                                    if b in report["baselines"]]
        for who, vals in rows:
            cells = " | ".join(_fmt(vals.get(h), unit) for h in hs)
            lines.append(f"| {name if who == 'model' else ''} | {unit if who == 'model' else ''} | {who} | {cells} |")
    rel = report.get("relative_to_reference")
    if rel:
        lines += ["", "Against the predictability ceiling (MuJoCo from an initial state moved by 1e-6; 1 is as "
                      f"good as predictable): PCS ratio {_fmt(rel['pcs'], '')}.", "",
                  "| metric | " + " | ".join(f"h={h}" for h in hs) + " |", "|---|" + "---:|" * len(hs)]
        lines += [f"| {name} / reference | " + " | ".join(_fmt(vals.get(h), "") for h in hs) + " |"
                  for name, vals in rel.items() if name != "pcs"]
    lines += ["", "What each value at horizon h is:", ""]
    lines += [f"- `{k}` ({METRICS[k][1]} is better): {METRICS[k][2]}." for k in report["metrics"]]
    lines += ["", "## Physics Consistency Score", "", score.__doc__.split("\n\n", 1)[1].strip(), "",
              "## Figures", "", "![error against horizon](error_vs_horizon.png)", "",
              "![trajectories](trajectories.png)", ""]
    return "\n".join(lines)


def plot_errors(report: dict[str, Any], path: Path) -> None:
    """Per-step curves of the main metrics, model beside the baselines."""
    names = [m for m in PLOT_METRICS if m in report["per_step"]["model"]]
    rel = report.get("relative_to_reference")
    fig, axes = plt.subplots(1, len(names) + bool(rel), figsize=(4 * (len(names) + bool(rel)), 3.2), squeeze=False)
    if rel:
        plot_relative(axes[0][-1], rel)
    styles = {"model": ("C0", "-"), "copy_last": ("C1", "--"), "constant_velocity": ("C2", ":"),
              "mujoco_perturbed": ("C7", "-.")}
    for ax, name in zip(axes[0], names):
        for who, (color, ls) in styles.items():
            if who not in report["per_step"] or name not in report["per_step"][who]:
                continue
            y = np.asarray(report["per_step"][who][name], dtype=float)
            ax.plot(np.arange(1, len(y) + 1), y, color=color, ls=ls, label=who)
        unit = METRICS[name][0]
        ax.set_title(name + (f" ({unit})" if unit else ""))
        ax.set_xlabel("step")
        if name == "state_nrmse":
            ax.axhline(report["config"]["valid_threshold"], color="grey", lw=0.8)
            ax.set_yscale("log")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{report['scene']}: error against horizon ({report['episodes']} episodes)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_relative(ax, rel: dict[str, Any]) -> None:
    """The model's figures by horizon as fractions of the perturbed-MuJoCo reference's (1: as good as
    predictable)."""
    for i, (name, by_h) in enumerate((k, v) for k, v in rel.items() if isinstance(v, dict)):
        pts = sorted((int(h), r) for h, r in by_h.items() if r is not None)
        if pts:
            ax.plot(*zip(*pts), marker="o", color=f"C{i}", label=name)
    ax.axhline(1.0, color="grey", lw=0.8)
    pcs = rel.get("pcs")
    ax.set_title("fraction of the reference" + ("" if pcs is None else f" (PCS {pcs:.2f})"))
    ax.set_xlabel("horizon")
    if ax.lines[:-1]:
        ax.legend(fontsize=8)


def plot_trajectories(result: Result, episode: int, path: Path, max_dims: int = 12) -> None:
    """The state dimensions of one episode: MuJoCo, the model and the baselines."""
    truth, n = result.truth, int(result.truth.lengths[episode])
    dims = min(max_dims, truth.states.shape[-1])
    cols = min(dims, 6)
    rows = -(-dims // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.6 * rows), squeeze=False)
    t = np.arange(n + 1)
    for d, ax in enumerate(axes.flat):
        if d >= dims:
            ax.axis("off")
            continue
        ax.plot(t, truth.states[episode, : n + 1, d], "k-", lw=1.6, label="MuJoCo")
        for who, (color, ls) in {"model": ("C0", "-"), "copy_last": ("C1", "--"),
                                 "constant_velocity": ("C2", ":")}.items():
            ax.plot(t, result.predictions[who].states[episode, : n + 1, d], color=color, ls=ls, lw=1, label=who)
        ax.set_title(f"state[{d}]", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{truth.scene}: the median episode ({episode}), predicted against true")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pick_episodes(mean_nrmse: np.ndarray) -> dict[str, int]:
    """The worst and the median episode by the model's mean state nRMSE."""
    err = np.asarray(mean_nrmse, dtype=float)
    ok = np.nonzero(np.isfinite(err))[0]  # episodes with no predicted step have no error
    if not len(ok):
        return {"median": 0, "worst": 0}
    order = ok[np.argsort(err[ok], kind="stable")]
    return {"median": int(order[(len(order) - 1) // 2]), "worst": int(order[-1])}


def write_report(result: Result, out: str | Path, plots: bool = True, videos: bool = True, scale: int = 4) -> Path:
    """Write report.json, report.md, the plots and the videos into `out`, atomically."""
    report = dict(result.report)
    picks = pick_episodes(np.asarray(report["episode_detail"]["model_mean_nrmse"], dtype=float))
    report["figure_episodes"] = picks
    report["kind"] = "eval"  # what a later write to the same --out checks it replaces

    def files(tmp: Path) -> None:
        (tmp / "report.json").write_text(json.dumps(jsonable(report), indent=2) + "\n")
        (tmp / "report.md").write_text(markdown(report))
        if plots:
            plot_errors(report, tmp / "error_vs_horizon.png")
            plot_trajectories(result, picks["median"], tmp / "trajectories.png")
        model = result.predictions["model"]
        if videos and model.frames is not None:
            for which, e in picks.items():
                n = int(result.truth.lengths[e]) + 1
                frames = side_by_side(model.frames[e, :n], result.truth.frames[e, :n])
                write_video(tmp / f"video_{which}.mp4", frames, fps=1 / result.truth.dt, scale=scale)

    return write_report_dir(out, files)


def write_report_dir(out: str | Path, files: Callable[[Path], None], kind: str = "eval") -> Path:
    """Make a report directory `out` of `kind` atomically: `files(tmp)` writes it (report.json among its
    files) in a fresh directory beside `out`, which then replaces `out` (an earlier report of `kind`, or
    nothing: `check_out_dir`)."""
    out = check_out_dir(out, kind)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        files(tmp)
        apply_umask(tmp)
        fsync_tree(tmp)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
