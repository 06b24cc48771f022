"""The env's thread use (one thread for small batches, the caller's setting restored) and its use
from forked workers (Gymnasium's async vector env, SB3's SubprocVecEnv)."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from worldsim.cli import main as cli_main
from worldsim.envs import threads
from worldsim.envs.threads import ThreadScope, pick_threads
from worldsim.envs.world_batch import WorldBatch
from worldsim.envs.world_env import DSV4World, DSV4WorldVector


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tiny_world):
    return str(tiny_world(tmp_path_factory.mktemp("world") / "wm"))


def test_pick_threads_rules(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert pick_threads(None, 1, cpu) == 1
    assert pick_threads(None, threads.SMALL_BATCH, cpu) == 1
    assert pick_threads(None, threads.SMALL_BATCH + 1, cpu) is None  # the caller's setting
    assert pick_threads(None, 1, cuda) is None
    assert pick_threads(3, 1, cpu) == 3
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="num_threads must be an int >= 1"):
            pick_threads(bad, 1, cpu)
    monkeypatch.setattr(threads, "_forked", True)
    assert pick_threads(None, 256, cpu) == 1
    with pytest.warns(UserWarning, match="forked process"):
        assert pick_threads(4, 256, cpu) == 1


def test_thread_scope_restores_the_callers_setting():
    torch.set_num_threads(2)
    with ThreadScope(1):
        assert torch.get_num_threads() == 1
        with ThreadScope(None):
            assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError):
        with ThreadScope(1):
            raise RuntimeError("boom")
    assert torch.get_num_threads() == 2


def test_thread_scope_runs_on_one_thread_after_a_fork(monkeypatch):
    torch.set_num_threads(2)
    scope = ThreadScope(None)  # made before the fork: a large batch on the caller's threads
    monkeypatch.setattr(threads, "_forked", True)
    with scope:
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def _record_threads(monkeypatch) -> list[int]:
    """Record the thread count each `WorldBatch.step` runs on, inside the batch's own scope."""
    seen: list[int] = []
    inner = WorldBatch.step.__wrapped__

    def step(self, actions):
        with self.threads:
            seen.append(torch.get_num_threads())
            return inner(self, actions)

    monkeypatch.setattr(WorldBatch, "step", step)
    return seen


def test_single_env_steps_on_one_thread_and_restores(ckpt, monkeypatch):
    seen = _record_threads(monkeypatch)
    torch.set_num_threads(2)
    env = DSV4World(checkpoint=ckpt, device="cpu")
    env.reset(seed=0)
    env.step(np.zeros(2))
    assert seen == [1]
    assert torch.get_num_threads() == 2
    env.close()
    env = DSV4World(checkpoint=ckpt, device="cpu", num_threads=2)
    env.reset(seed=0)
    env.step(np.zeros(2))
    assert seen == [1, 2]
    env.close()
    with pytest.raises(ValueError, match="num_threads"):
        DSV4World(checkpoint=ckpt, device="cpu", num_threads=0)


def test_large_vector_env_keeps_the_callers_threads(ckpt, monkeypatch):
    seen = _record_threads(monkeypatch)
    torch.set_num_threads(2)
    venv = DSV4WorldVector(num_envs=threads.SMALL_BATCH + 1, checkpoint=ckpt, device="cpu")
    venv.reset(seed=0)
    venv.step(np.zeros((venv.num_envs, 2)))
    assert seen == [2]
    venv.close()


def _run_script(body: str, timeout: float) -> subprocess.CompletedProcess:
    """Run `body` in a fresh interpreter that has used torch's thread pool before any worker starts."""
    script = textwrap.dedent("""
        import os
        os.environ.setdefault("MUJOCO_GL", "egl")
        import numpy as np
        import torch
        torch.set_num_threads(2)
        torch.ones(512, 512) @ torch.ones(512, 512)  # the OpenMP pool has run: a fork inherits it
        import gymnasium as gym
        import worldsim
        if __name__ == "__main__":
    """) + textwrap.indent(textwrap.dedent(body), "    ")
    env = {**os.environ}
    env.pop("OMP_NUM_THREADS", None)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow
def test_async_vector_env_with_the_default_start_method(ckpt):
    """Forked workers step on one thread: by default (a single env each) and when asked for two, which
    without the fork rule hangs in the first multi-threaded operation."""
    out = _run_script(f"""
        for threads in (None, 2):
            envs = gym.make_vec("DSV4World-v0", num_envs=2, vectorization_mode="async", checkpoint={ckpt!r},
                                device="cpu", num_threads=threads)
            obs, _ = envs.reset(seed=0)
            for _ in range(2):
                obs, *_ = envs.step(np.zeros((2, 2)))
            envs.close()
            print("ok", threads, obs.shape)
    """, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ok None (2, 10)" in out.stdout and "ok 2 (2, 10)" in out.stdout
    assert "forked process: running on one thread" in out.stderr


def test_cli_threads_flag(capsys):
    torch.set_num_threads(2)
    assert cli_main(["--threads", "1", "scenes"]) == 0
    assert torch.get_num_threads() == 1
    with pytest.raises(SystemExit):
        cli_main(["--threads", "0", "scenes"])
    assert "expected an int >= 1" in capsys.readouterr().err
