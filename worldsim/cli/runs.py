"""`worldsim runs plot`: the training curves of several runs in one PNG, from their metrics logs.

    worldsim runs plot runs/reacher-v4 runs/reacher-dense --out curves.png --metrics loss,val_loss

Each RUN is a trainer's `--out` (its log is `OUT.log/metrics.jsonl`), a log directory, or a
metrics.jsonl itself. One subplot a metric, one line a run; a figure a run never logged is left out
of its subplot.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import matplotlib

from worldsim.core.outputs import check_new_file, replacing
from worldsim.train.metrics_log import metrics_path, read_metrics

# No display: the figure only goes to a file.
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_NOT_PLOTTED = ("step", "time")
_COLUMNS = 3


def check_png_target(out: str | Path, force: bool) -> Path:
    """Refuse, before any reading, an --out that is not a .png, is a directory, or is a file (unless
    `force`); the place must be writable."""
    return check_new_file(out, ".png", force=force)


def metric_names(runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Every figure any run logged, in the order they first appear."""
    names: dict[str, None] = {}
    for records in runs.values():
        for rec in records:
            names.update({k: None for k, v in rec.items() if k not in _NOT_PLOTTED and isinstance(v, (int, float))})
    return list(names)


def _curve(records: list[dict[str, Any]], name: str) -> tuple[list[int], list[float]]:
    points = [(r["step"], r[name]) for r in records if isinstance(r.get(name), (int, float))]
    return [s for s, _ in points], [float(v) for _, v in points]


def plot_runs(runs: dict[str, list[dict[str, Any]]], metrics: list[str], out: Path) -> Path:
    """Draw `metrics` of `runs` (label -> metrics.jsonl records) into the PNG `out`, written whole to
    a temporary file beside it that then replaces it."""
    cols = min(_COLUMNS, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    try:
        for ax, name in zip(axes.flat, metrics):
            for label, records in runs.items():
                xs, ys = _curve(records, name)
                if xs:
                    ax.plot(xs, ys, label=label, marker="o" if len(xs) <= 30 else None, markersize=3)
            ax.set_title(name, fontsize=10)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        for ax in axes.flat[len(metrics):]:
            ax.set_visible(False)
        legend: dict[str, Any] = {}
        for ax in axes.flat:
            for handle, label in zip(*ax.get_legend_handles_labels()):
                legend.setdefault(label, handle)
        fig.legend(list(legend.values()), list(legend), loc="upper center", ncol=max(1, min(len(legend), 4)),
                   fontsize=9)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (3.2 * rows)))
        out.parent.mkdir(parents=True, exist_ok=True)
        with replacing(out) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)
    return out


def _cmd_plot(args: argparse.Namespace) -> int:
    out = check_png_target(args.out, args.force)
    runs = {run: read_metrics(metrics_path(run)) for run in args.runs}
    available = metric_names(runs)
    if args.metrics is None:
        metrics = available
    else:
        metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
        unknown = [m for m in metrics if m not in available]
        if unknown:
            raise ValueError(f"--metrics: no run logged {', '.join(unknown)}; the runs logged "
                             f"{', '.join(available) or 'nothing'}")
    if not metrics:
        raise ValueError("the runs' metrics logs hold no figures yet; nothing to plot")
    plot_runs(runs, metrics, out)
    print(f"wrote {out} ({len(runs)} runs, {len(metrics)} metrics)")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `runs plot`."""
    runs = sub.add_parser("runs", help="training runs' logs", description="Commands on training runs' logs.")
    runsub = runs.add_subparsers(dest="runs_command", required=True, metavar="COMMAND")
    s = runsub.add_parser("plot", help="draw several runs' training curves in one PNG",
                          description="Draw the curves of several runs' metrics logs (OUT.log/metrics.jsonl) in "
                                      "one PNG: one subplot a metric, one line a run.")
    s.add_argument("runs", nargs="+", metavar="RUN",
                   help="a trainer's --out, its OUT.log directory, or a metrics.jsonl")
    s.add_argument("--out", required=True, help="the PNG to write")
    s.add_argument("--metrics", default=None,
                   help="comma-separated figures to draw, e.g. loss,val_loss (default: every figure logged)")
    s.add_argument("--force", action="store_true", help="replace an existing file at --out")
    s.set_defaults(func=_cmd_plot)
