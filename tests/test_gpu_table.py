"""`benchmarks/gpu.sh`, the table a CUDA machine runs, runs on the CPU at its tiny size and prints every
part: world steps/s for each shipped world with state and pixel observations, and the kernel rows."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from worldsim.core.registry import SHIPPED

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_table_runs_tiny_on_the_cpu():
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--tiny"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line.split("|") for line in out.stdout.splitlines() if line.startswith("| ") and "fp32" in line]
    worlds = {r[1].strip() for r in rows}
    assert worlds == set(SHIPPED["world_model"]), out.stdout
    for r in rows:  # state and pixel rates, both measured
        cells = [c.strip() for c in r[4:6]]
        assert all(c.replace(".", "", 1).isdigit() and float(c) > 0 for c in cells), \
            f"a world row without both rates (skipped by the time budget on a slow machine?): {r}"
    assert "cut short" not in out.stdout, out.stdout
    for op in ("attention", "moe ffn", "router top-k", "gather"):
        assert any(line.startswith(op) for line in out.stdout.splitlines()), op
