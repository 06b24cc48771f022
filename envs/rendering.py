"""Headless MuJoCo rendering from a fixed camera, EGL first and OSMesa as the fallback.

`MUJOCO_GL` must be chosen before `mujoco` is first imported; `select_gl_backend()` does that once,
keeping a value the user already set.
"""

from __future__ import annotations

import atexit
import ctypes.util
import os
import weakref
from dataclasses import dataclass


def select_gl_backend() -> str:
    """Set `MUJOCO_GL` (EGL when its library is present, else OSMesa) unless the user set it."""
    if "MUJOCO_GL" not in os.environ:
        if ctypes.util.find_library("EGL") is None and ctypes.util.find_library("OSMesa") is not None:
            os.environ["MUJOCO_GL"] = "osmesa"
            os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
        else:
            os.environ["MUJOCO_GL"] = "egl"
    return os.environ["MUJOCO_GL"]


select_gl_backend()

try:
    # Triton bundles its own LLVM; Mesa's software EGL driver loads the system's LLVM when the first
    # GL context is made. If Triton is imported after that, the process segfaults (seen with
    # triton 3.9 and Mesa llvmpipe), so Triton loads first whenever it is installed.
    import triton  # noqa: F401
except ImportError:
    pass

import mujoco  # noqa: E402  (after the GL backend is chosen)
import numpy as np  # noqa: E402


@dataclass(frozen=True)
class CameraSpec:
    """A free camera fixed in the world: what it looks at, from how far, from which direction."""

    lookat: tuple[float, float, float]
    distance: float
    azimuth: float
    elevation: float

    def to_mjv(self) -> mujoco.MjvCamera:
        cam = mujoco.MjvCamera()
        cam.type = mujoco.mjtCamera.mjCAMERA_FREE
        cam.lookat[:] = self.lookat
        cam.distance = self.distance
        cam.azimuth = self.azimuth
        cam.elevation = self.elevation
        return cam


def check_frame_size(width: int, height: int) -> None:
    """Frames are any positive multiple of 16 on each side (the tokenizer downsamples by 8 or 16)."""
    for name, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {type(v).__name__}")
        if v <= 0 or v % 16:
            raise ValueError(f"{name} must be a positive multiple of 16, got {v}")


_LIVE_RENDERERS: weakref.WeakSet = weakref.WeakSet()
_EXIT_HOOK = False


def _close_all_renderers() -> None:
    # Free GL contexts before the interpreter tears down the GL library under them.
    for r in list(_LIVE_RENDERERS):
        r.close()


class FrameRenderer:
    """A `mujoco.Renderer` with shadows and reflections off (they cost time and carry no information).

    `markers` are extra spheres drawn at given world positions (e.g. a visible stand-in for Reacher's
    one-pixel target); they are drawing only and never touch the physics.
    """

    def __init__(self, model: mujoco.MjModel, width: int, height: int, camera: CameraSpec):
        check_frame_size(width, height)
        # The offscreen buffer must be at least the frame size.
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, height)
        self._renderer = mujoco.Renderer(model, height=height, width=width)
        self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = 0
        self._camera = camera.to_mjv()
        self.width, self.height = width, height
        _LIVE_RENDERERS.add(self)
        global _EXIT_HOOK
        if not _EXIT_HOOK:
            # Registered after MuJoCo's own GL exit hook (made with the first context), so it runs first.
            atexit.register(_close_all_renderers)
            _EXIT_HOOK = True

    def render(self, data: mujoco.MjData, markers: list[tuple[np.ndarray, float, tuple]] = ()) -> np.ndarray:
        """Render `data` (kinematics must be current) to a uint8 [H, W, 3] frame."""
        self._renderer.update_scene(data, self._camera)
        scn = self._renderer.scene
        for pos, radius, rgba in markers:
            if scn.ngeom >= scn.maxgeom:
                break
            mujoco.mjv_initGeom(
                scn.geoms[scn.ngeom],
                mujoco.mjtGeom.mjGEOM_SPHERE,
                np.array([radius, 0.0, 0.0]),
                np.asarray(pos, dtype=np.float64),
                np.eye(3).ravel(),
                np.asarray(rgba, dtype=np.float32),
            )
            scn.geoms[scn.ngeom].emission = 0.5  # lit the same from any side: a clear blob
            scn.ngeom += 1
        return self._renderer.render().copy()

    def close(self) -> None:
        if self._renderer is not None:
            try:
                self._renderer.close()
            except Exception:  # noqa: BLE001  (the GL context may already be gone at exit)
                pass
            self._renderer = None
