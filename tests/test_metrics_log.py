"""The training log: `OUT.log/metrics.jsonl` from every trainer, truncated on a resume, written by rank 0
alone, TensorBoard's events beside it when the package is there, and `worldsim runs plot`."""

import json
from dataclasses import dataclass

import pytest
import torch

import worldsim.train.metrics_log as ml
from worldsim.cli import main
from worldsim.core.checkpoint import load_checkpoint, save_checkpoint
from worldsim.core.config import ConfigBase
from worldsim.envs.dataset import GenerateSpec, generate
from worldsim.model.tokenizer import TokenizerConfig
from worldsim.train.distributed import Ranks
from worldsim.train.loop import LoopConfig, TrainLoop
from worldsim.train.metrics_log import MetricsLog, read_metrics
from worldsim.train.state import prepare_outputs
from worldsim.train.tokenizer import TokenizerTrainConfig, train_tokenizer


@dataclass(frozen=True)
class NetConfig(ConfigBase):
    width: int = 3


class Net(torch.nn.Module):
    def __init__(self, cfg: NetConfig = NetConfig()):
        super().__init__()
        self.cfg = cfg
        torch.manual_seed(0)
        self.a = torch.nn.Linear(cfg.width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x).pow(2).mean()


CFG = LoopConfig(steps=6, lr=1e-2, warmup=2, save_every=2, log_every=1)


def _train(out, cfg=CFG, die_at=None, ranks=None):
    """Train a `Net` to `out`; raises KeyboardInterrupt inside step `die_at` (after the lines before it)."""
    net = Net()
    loop = TrainLoop(net, list(net.parameters()), cfg, state_dir=prepare_outputs(out, "test"), kind="test",
                     run={"data": ["x"]}, seed=[0, 0], progress=False, ranks=ranks)

    def loss(step: int):
        if step == die_at:
            raise KeyboardInterrupt
        value = net(torch.from_numpy(loop.rng.standard_normal((4, 3))).float())
        return value, {"loss": value.detach(), "count": 2}

    def validate(final: bool):
        return {"val_loss": 0.5, "val_maxvio": 0.25, "val_dead_experts": 0}

    loop.run(loss, validate, lambda step, metrics, s: save_checkpoint(out, net, net.cfg, kind="test"))


def _steps(out):
    return [r["step"] for r in read_metrics(out.with_name(out.name + ".log") / "metrics.jsonl")]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("logdata") / "reacher"
    generate(GenerateSpec(scene="Reacher-v5", out=str(root), episodes=5, seed=1, shard_size=5, max_steps=6),
             progress_bar=False)
    return root


def test_a_tokenizer_run_logs_its_figures_beside_its_output(dataset, tmp_path, capsys):
    cfg = TokenizerTrainConfig(steps=4, batch_size=4, save_every=2, warmup=1)
    tiny = TokenizerConfig(channels=(8, 16, 16), levels=(5, 4, 3))
    train_tokenizer([str(dataset)], tmp_path / "tok", tiny, cfg, device="cpu", progress=False)
    lines = (tmp_path / "tok.log" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["step"] for r in records] == [2, 4]  # the saves (log_every is 10)
    for r in records:
        assert {"step", "lr", "loss", "psnr", "val_psnr", "steps_per_s", "time"} <= set(r)
        assert r["steps_per_s"] > 0 and r["lr"] > 0
    assert load_checkpoint(tmp_path / "tok").extra["steps"] == 4  # the checkpoint is unchanged by the log
    # The resolved config beside the log is a file --config reads back.
    config = tmp_path / "tok.log" / "config.json"
    assert json.loads(config.read_text()) == cfg.to_dict()
    capsys.readouterr()
    assert main(["train", "tokenizer", "--config", str(config), "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out).items() >= cfg.to_dict().items()


def test_the_config_a_cli_run_writes_reruns_it_with_every_argument(dataset, tmp_path, capsys):
    """A tokenizer trained with --channels 8 8 8, rerun from its OUT.log/config.json, trains 8/8/8 again
    (the file once held the train config alone, and the rerun silently trained 32/64/128)."""
    out = tmp_path / "tok"
    assert main(["train", "tokenizer", "--data", str(dataset), "--out", str(out), "--channels", "8", "8", "8",
                 "--levels", "5", "4", "3", "--steps", "2", "--batch-size", "4", "--warmup", "1", "--device", "cpu",
                 "--quiet"]) == 0
    config = json.loads((tmp_path / "tok.log" / "config.json").read_text())
    assert config == {"data": [str(dataset)], "out": str(out), "device": "cpu", "channels": [8, 8, 8],
                      "levels": [5, 4, 3], "decoder_channels": None, "decoder_only": False, "fp16": False,
                      "init": None, **TokenizerTrainConfig(steps=2, batch_size=4, warmup=1).to_dict()}
    again = tmp_path / "again"
    assert main(["train", "tokenizer", "--config", str(tmp_path / "tok.log" / "config.json"), "--out", str(again),
                 "--quiet"]) == 0
    first, second = load_checkpoint(out), load_checkpoint(again)
    assert second.config == first.config and tuple(second.config["channels"]) == (8, 8, 8)
    assert {k: v.shape for k, v in second.tensors.items()} == {k: v.shape for k, v in first.tensors.items()}
    assert json.loads((tmp_path / "again.log" / "config.json").read_text()) == {**config, "out": str(again)}


def test_each_logged_step_has_one_line_with_the_training_and_held_out_figures(tmp_path):
    _train(tmp_path / "run")
    records = read_metrics(tmp_path / "run.log" / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert all(r["count"] == 2 and isinstance(r["loss"], float) and r["lr"] > 0 for r in records)
    validated = [r["step"] for r in records if "val_loss" in r]
    assert validated == [2, 4, 6]
    assert records[1]["val_maxvio"] == 0.25 and records[1]["val_dead_experts"] == 0


def test_the_lines_are_means_over_the_steps_since_the_last(tmp_path):
    log = MetricsLog(tmp_path / "log", 0)
    for v in (1.0, 2.0, 6.0):
        log.add({"loss": torch.tensor(v), "skipped": "text"})
    first = log.write(3, 0.1)
    log.add({"loss": float("nan")})
    second = log.write(4, 0.1, {"val_loss": float("inf")})
    log.close()
    assert first["loss"] == 3.0 and "skipped" not in first
    assert second["loss"] is None and second["val_loss"] is None  # not finite: null
    assert (tmp_path / "log" / "metrics.jsonl").read_text().count("\n") == 2
    assert "NaN" not in (tmp_path / "log" / "metrics.jsonl").read_text()


def test_a_resumed_run_drops_the_lines_past_its_state_so_no_step_repeats(tmp_path):
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        _train(out, die_at=5)  # lines 1..5 written, the state saved at step 4
    assert _steps(out) == [1, 2, 3, 4, 5]
    assert load_checkpoint(tmp_path / "killed.train").extra["step"] == 4
    with open(tmp_path / "killed.log" / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 6, "lo')  # the tail of a write cut short
    _train(out)
    assert _steps(out) == [1, 2, 3, 4, 5, 6]
    text = (tmp_path / "killed.log" / "metrics.jsonl").read_text()
    assert all(json.loads(line) for line in text.splitlines())
    assert not list((tmp_path / "killed.log").glob(".*tmp*"))


def test_a_fresh_run_over_an_old_log_starts_it_again(tmp_path):
    _train(tmp_path / "run")
    for p in (tmp_path / "run.train").iterdir():
        p.unlink()
    _train(tmp_path / "run", LoopConfig(steps=2, lr=1e-2, warmup=1, save_every=2, log_every=1))
    assert _steps(tmp_path / "run") == [1, 2]


def test_only_rank_0_writes(tmp_path):
    _train(tmp_path / "run", ranks=Ranks(False, 1, torch.device("cpu")))
    assert not (tmp_path / "run.log").exists()


def test_a_loop_without_state_logs_nothing(tmp_path):
    net = Net()
    TrainLoop(net, list(net.parameters()), CFG, progress=False).run(lambda step: (net(torch.ones(1, 3)), {}))
    assert not list(tmp_path.iterdir())


def test_a_log_path_holding_other_files_is_refused(tmp_path):
    (tmp_path / "a.log").mkdir()
    (tmp_path / "a.log" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="notes.txt, which no training log holds"):
        prepare_outputs(tmp_path / "a", "test")
    (tmp_path / "b.log").write_text("mine")
    with pytest.raises(ValueError, match="is a file, not a log directory"):
        prepare_outputs(tmp_path / "b", "test")
    assert (tmp_path / "a.log" / "notes.txt").read_text() == "mine" and (tmp_path / "b.log").read_text() == "mine"


def test_without_tensorboard_only_the_jsonl_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(ml, "SummaryWriter", None)
    _train(tmp_path / "run")
    assert [p.name for p in (tmp_path / "run.log").iterdir()] == ["metrics.jsonl"]


def test_with_tensorboard_its_event_files_sit_beside_the_jsonl(tmp_path):
    pytest.importorskip("tensorboard")
    _train(tmp_path / "run")
    assert list((tmp_path / "run.log").glob("events.out.tfevents.*"))
    prepare_outputs(tmp_path / "run", "test")  # a rerun accepts the log directory as it is


class FakeWriter:
    """Stands in for TensorBoard's SummaryWriter (the package is optional)."""

    made: list = []

    def __init__(self, log_dir, purge_step=None):
        self.log_dir, self.purge_step, self.scalars, self.closed = log_dir, purge_step, [], False
        FakeWriter.made.append(self)

    def add_scalar(self, tag, value, step, walltime=None):
        self.scalars.append((tag, value, step))

    def flush(self):
        pass

    def close(self):
        self.closed = True


def test_tensorboard_gets_each_figure_and_purges_past_the_resumed_step(tmp_path, monkeypatch):
    FakeWriter.made = []
    monkeypatch.setattr(ml, "SummaryWriter", FakeWriter)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "run", die_at=5)
    _train(tmp_path / "run")
    first, resumed = FakeWriter.made
    assert (first.purge_step, resumed.purge_step) == (1, 5)
    assert first.log_dir == str(tmp_path / "run.log") and first.closed and resumed.closed
    assert ("val_maxvio", 0.25, 4) in first.scalars
    assert {s for t, _, s in resumed.scalars if t == "loss"} == {5, 6}  # from the resumed step on
    assert not any(t in ("step", "time") for t, _, _ in first.scalars)


def test_runs_plot_draws_several_runs_and_refuses_to_overwrite(tmp_path, capsys):
    _train(tmp_path / "a")
    _train(tmp_path / "b", LoopConfig(steps=4, lr=1e-3, warmup=1, save_every=2, log_every=1))
    png = tmp_path / "plots" / "curves.png"
    args = ["runs", "plot", str(tmp_path / "a"), str(tmp_path / "b.log"), "--out", str(png)]
    assert main([*args, "--metrics", "loss,val_loss"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "2 runs, 2 metrics" in capsys.readouterr().out
    before = png.read_bytes()
    assert main(args) == 2
    assert "exists; refusing to overwrite" in capsys.readouterr().err and png.read_bytes() == before
    assert main([*args, "--force"]) == 0  # every figure logged
    assert png.read_bytes() != before and not [p for p in png.parent.iterdir() if p.name != "curves.png"]
    assert main([*args[:-1], str(tmp_path / "c.png"), "--metrics", "nope"]) == 2
    assert "no run logged nope" in capsys.readouterr().err and not (tmp_path / "c.png").exists()
    assert main([*args[:-1], str(tmp_path / "c.jpg")]) == 2
    assert main(["runs", "plot", str(tmp_path / "missing"), "--out", str(tmp_path / "d.png")]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err
