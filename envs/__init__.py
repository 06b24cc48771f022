"""MuJoCo ground truth (scenes, behaviour policies, datasets) and the DSV4World environment."""

from worldsim.envs.rendering import select_gl_backend

select_gl_backend()

from worldsim.envs.registry import SCENE_DESCRIPTIONS, list_scenes, make_scene, scene_class  # noqa: E402
from worldsim.envs.scene import Scene, StepResult  # noqa: E402

__all__ = ["SCENE_DESCRIPTIONS", "Scene", "StepResult", "list_scenes", "make_scene", "scene_class"]
