"""The closed-loop policy evaluation's report directory: report.json, report.md and a scatter plot of
each policy's mean return in the world against MuJoCo, with the diagonal."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

from worldsim.eval.report import jsonable, write_report_dir

matplotlib.use("Agg")  # headless: the figure goes to a file
import matplotlib.pyplot as plt  # noqa: E402


def _num(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.4g}"


def policy_markdown(report: dict[str, Any]) -> str:
    rows = [f"# Closed-loop policy evaluation: {report['scene']}", "",
            f"{report['episodes']} episodes per policy from seed {report['seed']}, at most {report['max_steps']} "
            f"steps; world `{report['checkpoint'] or 'shipped'}`, state observations, its own reward.", "",
            "| policy | MuJoCo return | world return | MuJoCo length | world length |", "|---|---|---|---|---|"]
    for name, r in report["policies"].items():
        cells = [f"{_num(r[k]['mean'])} +- {_num(r[k]['std'])}"
                 for k in ("real_return", "world_return", "real_length", "world_length")]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    if "ranking" in report:
        rk = report["ranking"]
        rows += ["", f"Pearson {_num(rk['pearson'])}, Spearman {_num(rk['spearman'])}, MMRV {_num(rk['mmrv'])} "
                     f"(0 is a perfect ranking), normalised return error {_num(rk['normalised_return_error'])}."]
    return "\n".join(rows) + "\n"


def plot_returns(report: dict[str, Any], path: Path) -> None:
    """World against MuJoCo mean return per policy (error bars: the std over episodes), and y = x."""
    fig, ax = plt.subplots(figsize=(5, 5))
    real = [r["real_return"] for r in report["policies"].values()]
    world = [r["world_return"] for r in report["policies"].values()]
    ax.errorbar([r["mean"] for r in real], [w["mean"] for w in world], xerr=[r["std"] for r in real],
                yerr=[w["std"] for w in world], fmt="o")
    for name, r, w in zip(report["policies"], real, world):
        ax.annotate(name, (r["mean"], w["mean"]), textcoords="offset points", xytext=(4, 4))
    lo = min(min(r["mean"] - r["std"] for r in real), min(w["mean"] - w["std"] for w in world))
    hi = max(max(r["mean"] + r["std"] for r in real), max(w["mean"] + w["std"] for w in world))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="world = MuJoCo")
    ax.set_xlabel("MuJoCo return")
    ax.set_ylabel("world return")
    ax.set_title(report["scene"])
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_policy_report(report: dict[str, Any], out: str | Path) -> Path:
    """Write report.json, report.md and returns.png into `out`, atomically (an earlier policy report is
    replaced; anything else is refused: `check_out_dir`)."""

    def files(tmp: Path) -> None:
        (tmp / "report.json").write_text(json.dumps(jsonable({"kind": "eval-policies", **report}), indent=2) + "\n")
        (tmp / "report.md").write_text(policy_markdown(report))
        plot_returns(report, tmp / "returns.png")

    return write_report_dir(out, files, kind="eval-policies")
