"""GL and Triton in one process: the world env after a real MuJoCo render (Triton stays out of a CPU run,
and its import, where needed, no longer segfaults after Mesa loaded the system's LLVM), and forked
workers after a pixel env (they used to wait for ever in Mesa's driver). Each case runs in a fresh
interpreter with a timeout, as a crash or a hang would take the test run down with it."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from worldsim.envs import rendering

REAL_RENDER = """
real = gym.make("Reacher-v5", render_mode="rgb_array", width=64, height=64)
real.reset(seed=0)
assert real.render().shape == (64, 64, 3)
"""


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tiny_world):
    return str(tiny_world(tmp_path_factory.mktemp("world") / "wm"))


def _run(*parts: str, timeout: float, **env_vars: str) -> subprocess.CompletedProcess:
    """Run the script `parts` (each dedented on its own) under a main guard in a fresh interpreter."""
    body = "".join(textwrap.dedent(p) for p in parts)
    script = textwrap.dedent("""
        import os, sys
        os.environ.setdefault("MUJOCO_GL", "egl")
        import numpy as np
        import gymnasium as gym
        import worldsim
        if __name__ == "__main__":
    """) + textwrap.indent(body, "    ")
    # A user's process: the Triton interpreter only where a case asks for it.
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(OMP_NUM_THREADS="1", **env_vars)
    # Its own session, so a hang is ended with the workers it forked (they would outlive a plain kill).
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"hung for {timeout} s; stdout: {stdout[-1000:]!r}; stderr: {stderr[-2000:]!r}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_world_env_after_a_real_mujoco_render_on_the_cpu(ckpt):
    out = _run(REAL_RENDER, f"""
        for kw in ({{"obs_type": "state"}}, {{"obs_type": "pixels"}}, {{"obs_type": "state", "render_mode": "rgb_array"}}):
            env = gym.make("DSV4World-v0", checkpoint={ckpt!r}, device="cpu", **kw)
            env.reset(seed=0)
            env.step(env.action_space.sample())
            if "render_mode" in kw:
                assert env.render().shape == (64, 64, 3)
            env.close()
        assert "triton" not in sys.modules, "a CPU run imported triton"
        print("ok")
    """, timeout=180)
    assert out.returncode == 0, f"exit {out.returncode}: {out.stderr[-2000:]}"
    assert "ok" in out.stdout


def test_triton_kernels_after_a_real_mujoco_render():
    """Where Triton is needed (CUDA, or the interpreter as here), it loads after a GL render too."""
    out = _run(REAL_RENDER, """
        import torch
        from worldsim.kernels import gather_tokens
        x, index = torch.randn(2, 7, 5), torch.tensor([[0, 3, 6], [1, 2, 5]])
        torch.testing.assert_close(gather_tokens(x, index, backend="triton"), gather_tokens(x, index, backend="torch"))
        assert real.render().shape == (64, 64, 3)
        print("ok")
    """, timeout=180, TRITON_INTERPRET="1")
    assert out.returncode == 0, f"exit {out.returncode}: {out.stderr[-2000:]}"
    assert "ok" in out.stdout


@pytest.mark.slow
def test_async_pixel_workers_after_pixel_envs_in_the_parent(ckpt):
    """Forked workers start their own GL after the parent rendered (a closed pixel env, then a native
    dict vector env still open), and one that would inherit someone else's open context says so."""
    out = _run(f"""
        kw = dict(checkpoint={ckpt!r}, device="cpu")
        env = gym.make("DSV4World-v0", obs_type="pixels", **kw)
        env.reset(seed=0)
        env.step(env.action_space.sample())
        env.close()
        native = gym.make_vec("DSV4World-v0", num_envs=2, obs_type="dict", **kw)
        native.reset(seed=0)
        native.step(native.action_space.sample())
        for _ in range(2):  # the second time after the first workers' own renders
            envs = gym.make_vec("DSV4World-v0", num_envs=2, obs_type="pixels", vectorization_mode="async", **kw)
            obs, _ = envs.reset(seed=0)
            obs, *_ = envs.step(np.zeros((2, 2)))
            envs.close()
            print("ok", obs.shape)
        assert native.step(native.action_space.sample())[0]["pixels"].shape == (2, 64, 64, 3)
        native.close()
    """, REAL_RENDER, """
        envs = gym.make_vec("DSV4World-v0", num_envs=1, obs_type="pixels", vectorization_mode="async", **kw)
        try:
            envs.reset(seed=0)
        except RuntimeError as exc:
            print("refused:", exc)
        envs.close()
        real.close()
    """, timeout=180)
    assert out.returncode == 0, f"exit {out.returncode}: {out.stderr[-2000:]}"
    assert out.stdout.count("ok (2, 64, 64, 3)") == 2
    assert "refused: cannot render in a process forked from one that still holds a GL context" in out.stdout
    assert "'spawn'" in out.stdout


def test_a_released_renderer_renders_again_and_a_closed_one_refuses():
    import mujoco

    model = mujoco.MjModel.from_xml_string("<mujoco><worldbody><light pos='0 0 1'/><geom type='sphere' size='.1'/>"
                                           "</worldbody></mujoco>")
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    cam = rendering.CameraSpec(lookat=(0, 0, 0), distance=0.6, azimuth=90, elevation=-90)
    r = rendering.FrameRenderer(model, 16, 16, cam)
    first = r.render(data)
    r.release()
    assert (r.render(data) == first).all()
    r.close()
    with pytest.raises(RuntimeError, match="closed"):
        r.render(data)
