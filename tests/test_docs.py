"""Every ```python block of README.md and docs/*.md runs as written.

Each block runs alone in a fresh interpreter (`sys.executable -c`), in its own temporary directory,
so a block that needs data makes it itself. A block fenced as ```python no-run is shown but not run;
the page says why beside it. Bash blocks are not run.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\S*)(.*)$")
TIMEOUT_S = 120


def python_blocks(path: Path) -> list[tuple[int, str, bool]]:
    """(line of the opening fence, code, runs) for each ```python block of a Markdown file."""
    blocks, lines = [], path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        lang, flags = m.group(1), m.group(2).split()
        start, body = i + 1, []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        if lang == "python":
            blocks.append((start, "\n".join(body) + "\n", "no-run" not in flags))
    return blocks


CASES = [pytest.param(code, id=f"{page.relative_to(ROOT)}:{line}",
                      marks=() if runs else pytest.mark.skip(reason="fenced as ```python no-run"))
         for page in PAGES for line, code, runs in python_blocks(page)]


def test_pages_have_snippets():
    assert any(p.name == "README.md" for p in PAGES) and len(CASES) >= 5


@pytest.mark.slow
@pytest.mark.parametrize("code", CASES)
def test_snippet_runs(code, tmp_path):
    # One thread a snippet: on a shared 2-core machine torch's thread pool, oversubscribed, runs 10x slower.
    env = {"OMP_NUM_THREADS": "1", **os.environ, "MUJOCO_GL": "egl", "PYTHONUNBUFFERED": "1"}
    try:
        proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"snippet ran past {TIMEOUT_S} s:\n{code}\n--- output ---\n{e.stdout or ''}{e.stderr or ''}")
    assert proc.returncode == 0, f"snippet failed (exit {proc.returncode}):\n{code}\n--- stderr ---\n{proc.stderr[-4000:]}"
