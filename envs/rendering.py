"""Headless MuJoCo rendering from a fixed camera, EGL first and OSMesa as the fallback.

`MUJOCO_GL` must be chosen before `mujoco` is first imported; `select_gl_backend()` does that once,
keeping a value the user already set.

GL does not survive a fork. Mesa's driver keeps worker threads per initialised EGL display, and a
forked child has the display but not the threads, so its first render waits for ever (Gymnasium's
`AsyncVectorEnv` workers, SB3's `SubprocVecEnv`). So before a fork our renderers let go of their
contexts (each makes a new one on its next render) and, when no other context is left, the display
is terminated: parent and child then each start their own. A child that inherits a display someone
else still draws on refuses to render, with the way out in the message, rather than hang.
"""

from __future__ import annotations

import atexit
import ctypes.util
import gc
import os
import sys
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
# The EGL display this process inherited from its parent still initialised (None: none, or not forked).
_INHERITED_DISPLAY = None


def _close_all_renderers() -> None:
    # Free GL contexts before the interpreter tears down the GL library under them.
    for r in list(_LIVE_RENDERERS):
        r.close()


def _live_egl_contexts(egl) -> int:
    """GL contexts still open on MuJoCo's EGL display, ours or anyone's (Gymnasium's viewers make the same kind)."""
    return sum(1 for o in gc.get_referrers(egl.GLContext) if isinstance(o, egl.GLContext) and o._context)


def _release_gl_before_fork() -> None:
    """Free our GL contexts, and MuJoCo's EGL display when no context is left on it (see the module doc)."""
    for r in list(_LIVE_RENDERERS):
        r.release()
    egl = sys.modules.get("mujoco.egl")
    if egl is None or egl.EGL_DISPLAY is None or _live_egl_contexts(egl):
        return
    # MuJoCo initialises its display once per process and keeps it in `EGL_DISPLAY`; clearing it makes
    # the next context (in the parent or the child) initialise a fresh one with its own driver threads.
    egl.EGL.eglTerminate(egl.EGL_DISPLAY)
    egl.EGL_DISPLAY = None


def _note_inherited_display() -> None:
    global _INHERITED_DISPLAY
    egl = sys.modules.get("mujoco.egl")
    _INHERITED_DISPLAY = None if egl is None else egl.EGL_DISPLAY


def _check_display_usable() -> None:
    """Refuse to render on an EGL display inherited through a fork (the render would never return).

    Raises:
        RuntimeError: when the parent still held a GL context on it at the fork.
    """
    egl = sys.modules.get("mujoco.egl")
    if egl is not None and _INHERITED_DISPLAY is not None and egl.EGL_DISPLAY is _INHERITED_DISPLAY:
        raise RuntimeError(
            "cannot render in a process forked from one that still holds a GL context (a MuJoCo renderer or "
            "viewer left open): Mesa's GL waits for ever after a fork. Close that renderer before starting "
            "the workers, or start them with the 'spawn' method, e.g. gym.make_vec(..., "
            "vectorization_mode='async', vector_kwargs={'context': 'spawn'})")


os.register_at_fork(before=_release_gl_before_fork, after_in_child=_note_inherited_display)


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
        self._model = model
        self._camera = camera.to_mjv()
        self.width, self.height = width, height
        self._closed = False
        self._renderer: mujoco.Renderer | None = None
        self._open()

    def _open(self) -> mujoco.Renderer:
        """The GL renderer, made on first use and again after `release()`."""
        if self._renderer is None:
            _check_display_usable()
            r = mujoco.Renderer(self._model, height=self.height, width=self.width)
            r.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
            r.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
            r.scene.flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = 0
            self._renderer = r
            _LIVE_RENDERERS.add(self)
            global _EXIT_HOOK
            if not _EXIT_HOOK:
                # Registered after MuJoCo's own GL exit hook (made with the first context), so it runs first.
                atexit.register(_close_all_renderers)
                _EXIT_HOOK = True
        return self._renderer

    def render(self, data: mujoco.MjData, markers: list[tuple[np.ndarray, float, tuple]] = ()) -> np.ndarray:
        """Render `data` (kinematics must be current) to a uint8 [H, W, 3] frame."""
        if self._closed:
            raise RuntimeError("render() on a closed FrameRenderer")
        renderer = self._open()
        renderer.update_scene(data, self._camera)
        scn = renderer.scene
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
        return renderer.render().copy()

    def release(self) -> None:
        """Free the GL context; the next `render()` makes a new one (what a fork needs, see the module doc)."""
        if self._renderer is not None:
            try:
                self._renderer.close()
            except Exception:  # noqa: BLE001  (the GL context may already be gone at exit)
                pass
            self._renderer = None
        _LIVE_RENDERERS.discard(self)

    def close(self) -> None:
        self.release()
        self._closed = True
