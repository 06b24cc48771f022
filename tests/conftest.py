import os

# Both must be set before mujoco / the kernel modules are first imported.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _single_thread_determinism():
    torch.set_num_threads(2)
    yield


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def _tiny_world(path, scene="Reacher-v5", state_dim=10, action_dim=2):
    """A tiny random world model for `scene`, saved at `path` (tests of everything around the model)."""
    from worldsim.model.dynamics import DynamicsConfig
    from worldsim.model.tokenizer import TokenizerConfig
    from worldsim.model.world_model import WorldModel, WorldModelConfig

    tok = TokenizerConfig(channels=(8, 16, 16), levels=(5, 4, 3))
    dyn = DynamicsConfig(state_dim=state_dim, action_dim=action_dim, grid=8, codebook_size=60, width=32, layers=2,
                         heads=2, context=3, prune=True, capacity=0.5, prune_from=1, moe=True, experts=4,
                         expert_groups=2, top_groups=1, top_k=2, expert_hidden=16, shared_hidden=32)
    torch.manual_seed(0)
    wm = WorldModel(WorldModelConfig(scene=scene, preset="v4", tokenizer=tok, dynamics=dyn))
    wm.state_std.fill_(0.5)
    with torch.no_grad():  # a random termination head would end episodes at random
        wm.dynamics.term_head.weight.zero_()
        wm.dynamics.term_head.bias.fill_(-10.0)
    return wm.save(path)


@pytest.fixture(scope="session")
def tiny_world():
    """`tiny_world(path, scene=..., state_dim=..., action_dim=...)` saves a tiny random world model."""
    return _tiny_world
