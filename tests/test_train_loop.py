"""The shared training loop: its schedule, resuming to the same weights, the per-step hook, and what it
calls when."""

import math
from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch

from worldsim.core.checkpoint import load_checkpoint, save_checkpoint
from worldsim.core.config import ConfigBase
from worldsim.train.loop import LoopConfig, TrainLoop, cosine_lr
from worldsim.train.state import prepare_outputs


@dataclass(frozen=True)
class NetConfig(ConfigBase):
    width: int = 3


class Net(torch.nn.Module):
    """Two layers: `a` is trained, `b` is trained or frozen (a part trainer's case)."""

    def __init__(self, cfg: NetConfig = NetConfig()):
        super().__init__()
        self.cfg = cfg
        torch.manual_seed(0)
        self.a = torch.nn.Linear(cfg.width, cfg.width)
        self.b = torch.nn.Linear(cfg.width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.tanh(self.a(x))).pow(2).mean()


CFG = LoopConfig(steps=6, lr=1e-2, warmup=2, save_every=2, weight_decay=0.1, betas=(0.9, 0.95), clip=1.0)


def _loop(out, net, cfg=CFG, **kw) -> TrainLoop:
    return TrainLoop(net, list(net.parameters()), cfg, state_dir=prepare_outputs(out, "test"), kind="test",
                     run={"data": ["x"]}, seed=[0, 0], progress=False, **kw)


def _train(out, cfg=CFG, die_at: int | None = None) -> Net:
    """Train a `Net` to `out`, drawing batches from the loop's stream and
    noise from a step-seeded generator; raises KeyboardInterrupt inside step `die_at`."""
    net = Net()
    loop = _loop(out, net, cfg)

    def loss(step: int):
        if step == die_at:
            raise KeyboardInterrupt
        x = torch.from_numpy(loop.rng.standard_normal((4, 3))).float()
        x = x + torch.randn(x.shape, generator=torch.Generator().manual_seed(step))
        value = net(x)
        return value, {"loss": value.detach()}

    loop.run(loss, lambda final: {"val": 0.0}, lambda step, metrics, s: save_checkpoint(out, net, net.cfg, kind="test"))
    return net


def test_schedule_warms_up_then_falls_to_five_percent():
    assert [cosine_lr(s, 10, 2, 1.0) for s in (0, 1)] == [0.5, 1.0]
    assert cosine_lr(2, 10, 2, 1.0) == 1.0
    assert cosine_lr(6, 10, 2, 1.0) == pytest.approx(0.05 + 0.95 * 0.5)
    assert cosine_lr(10, 10, 2, 1.0) == pytest.approx(0.05)
    assert cosine_lr(99, 10, 2, 1.0) == pytest.approx(0.05)  # past the end it stays at the floor


def test_the_loop_sets_each_steps_learning_rate_and_the_optimisers_settings(tmp_path):
    net = Net()
    loop = _loop(tmp_path / "run", net)
    seen = []

    def loss(step: int):
        seen.append(loop.opt.param_groups[0]["lr"])
        return net(torch.ones(2, 3)), {}

    loop.run(loss)
    assert seen == [cosine_lr(s, 6, 2, 1e-2) for s in range(6)]
    g = loop.opt.param_groups[0]
    assert (g["betas"], g["weight_decay"]) == ((0.9, 0.95), 0.1)


def test_a_killed_run_resumes_to_the_same_weights(tmp_path):
    straight = _train(tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "killed", die_at=5)  # after the step-4 state was saved
    state = load_checkpoint(tmp_path / "killed.train")
    assert state.extra["step"] == 4 and not (tmp_path / "killed").exists()
    resumed = _train(tmp_path / "killed")
    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    # More steps continue the same run from its last state.
    longer = _train(tmp_path / "killed", replace(CFG, steps=8))
    assert load_checkpoint(tmp_path / "killed.train").extra["step"] == 8
    assert not torch.equal(longer.a.weight, straight.a.weight)


def test_a_resume_of_another_run_is_refused(tmp_path):
    _train(tmp_path / "run")
    with pytest.raises(ValueError, match=r"data: begun with \['x'\], asked for \['y'\]"):
        TrainLoop(Net(), list(Net().parameters()), CFG, state_dir=tmp_path / "run.train", kind="test",
                  run={"data": ["y"]})


def test_the_hook_runs_after_each_optimiser_step_and_validation_at_saves_and_the_end(tmp_path):
    net = Net()
    loop = _loop(tmp_path / "run", net, LoopConfig(steps=5, lr=1e-2, warmup=1, save_every=2))
    events, weights = [], []

    def loss(step: int):
        events.append(("loss", step))
        return net(torch.ones(2, 3)), {"loss": 0.0}

    def on_step(step: int):
        events.append(("hook", step))
        weights.append(net.a.weight.detach().clone())

    def validate(final: bool):
        events.append(("validate", loop.step, final))
        return {"val": float(loop.step)}

    def save(step, metrics, seconds):
        events.append(("save", step, metrics["val"]))
        assert seconds >= 0

    assert loop.run(loss, validate, save, on_step=on_step) == {"val": 5.0}
    assert events == [("loss", 0), ("hook", 0), ("loss", 1), ("hook", 1), ("validate", 2, False),
                      ("loss", 2), ("hook", 2), ("loss", 3), ("hook", 3), ("validate", 4, False),
                      ("loss", 4), ("hook", 4), ("validate", 5, False), ("validate", 5, True), ("save", 5, 5.0)]
    assert all(not torch.equal(w0, w1) for w0, w1 in zip(weights, weights[1:]))  # the hook sees the step taken
    assert [load_checkpoint(tmp_path / "run.train").extra["step"], loop.logs["val"]] == [5, 5.0]


def test_only_the_given_params_move_and_clipping_bounds_the_gradient(tmp_path):
    net = Net()
    net.b.requires_grad_(False)
    frozen = net.b.weight.detach().clone()
    loop = TrainLoop(net, list(net.a.parameters()), LoopConfig(steps=1, lr=1.0, warmup=1, clip=1e-3))
    norms = []

    def loss(step: int):
        return 1e3 * net(torch.ones(2, 3)), {}

    loop.run(loss, on_step=lambda step: norms.append(
        math.sqrt(sum(float(p.grad.pow(2).sum()) for p in net.a.parameters()))))
    assert torch.equal(net.b.weight, frozen)
    assert norms[0] == pytest.approx(1e-3, rel=1e-4)


def test_a_loop_without_state_neither_resumes_nor_saves(tmp_path):
    net = Net()
    loop = TrainLoop(net, list(net.parameters()), LoopConfig(steps=3, lr=1e-2, warmup=1), seed=7)
    assert loop.rng.bit_generator.state == np.random.default_rng(7).bit_generator.state
    assert loop.run(lambda step: (net(torch.ones(1, 3)), {"mse": 1.0})) == {}
    assert loop.step == 3 and loop.logs == {"mse": 1.0} and not list(tmp_path.iterdir())
