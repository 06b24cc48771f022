"""The command line: flags generated from the config dataclasses, `--config FILE`, `--print-config`,
defaults in every `--help`, `worldsim info SCENE`."""

import argparse
import dataclasses
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Literal

import pytest

import worldsim.cli.train as cli_train
from worldsim.cli import build_parser, main
from worldsim.core.cli_config import add_config_file_flags, add_config_flags, field_docs, resolve_config, resolve_run
from worldsim.core.config import ConfigBase
from worldsim.core.registry import SHIPPED
from worldsim.eval.harness import EvalConfig
from worldsim.train.dynamics import DynamicsTrainConfig
from worldsim.train.parts import OutcomeTrainConfig, PathwayTrainConfig, RendererTrainConfig
from worldsim.train.tokenizer import TokenizerTrainConfig

CONFIGS = {("train", "tokenizer"): TokenizerTrainConfig, ("train", "dynamics"): DynamicsTrainConfig,
           ("train", "pathway"): PathwayTrainConfig, ("train", "outcome"): OutcomeTrainConfig,
           ("train", "renderer"): RendererTrainConfig, ("eval",): EvalConfig}


@dataclass(frozen=True)
class Toy(ConfigBase):
    batch_size: int = 32
    """frames per step, 100% of them"""
    levels: tuple[int, ...] = (8, 5)
    """FSQ levels"""
    mode: Literal["v4", "dense"] = "v4"
    prune: bool = True
    """prune tokens"""
    capacity: float | None = 0.7


@dataclass(frozen=True)
class Toy2(Toy):
    batch_size: int = 8


def _toy_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="toy")
    add_config_file_flags(p)
    add_config_flags(p, Toy2)
    return p


def test_field_docs_are_the_strings_after_the_fields_and_inherited():
    docs = field_docs(Toy2)
    assert docs == {"batch_size": "frames per step, 100% of them", "levels": "FSQ levels", "prune": "prune tokens"}
    assert field_docs(RendererTrainConfig)["steps"] == field_docs(PathwayTrainConfig)["steps"] == "optimiser steps"


def test_generated_flags_parse_to_the_config():
    p = _toy_parser()
    cfg = resolve_config(Toy2, p.parse_args(["--batch-size", "4", "--levels", "7", "5", "5", "--mode", "dense",
                                              "--no-prune", "--capacity", "0.5"]))
    assert cfg == Toy2(batch_size=4, levels=(7, 5, 5), mode="dense", prune=False, capacity=0.5)
    assert resolve_config(Toy2, p.parse_args([])) == Toy2()
    with pytest.raises(SystemExit):
        p.parse_args(["--mode", "sparse"])
    text = p.format_help()
    assert "frames per step, 100% of them (default: 8)" in text and "(default: 8 5)" in text
    assert "--prune, --no-prune" in text and "{v4,dense}" in text


@pytest.mark.parametrize("cmd", list(CONFIGS), ids=" ".join)
def test_every_config_field_is_a_documented_flag_showing_its_default(cmd, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # no line breaks inside a help text (textwrap breaks at hyphens)
    cls = CONFIGS[cmd]
    docs = field_docs(cls)
    with pytest.raises(SystemExit):
        main([*cmd, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(cls):
        assert f.name in docs, f"{cls.__name__}.{f.name} has no docstring"
        flag = "--" + f.name.replace("_", "-")
        assert flag in text
        shown = "(required" if cls is EvalConfig and f.name == "scene" else f"(default: {f.default}"
        assert f"{docs[f.name]} {shown}" in text


def test_hand_written_flags_show_their_defaults_read_from_code(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    with pytest.raises(SystemExit):
        main(["train", "tokenizer", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 32 64 128)" in text and "(default: 8 5 5 5)" in text and "(default: auto)" in text


def _print_config(argv, capsys) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_config_file_then_flags(tmp_path, capsys):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"steps": 7, "lr": 0.01, "mix": "replace"}))
    got = _print_config(["train", "renderer", "--config", str(f), "--steps", "9", "--print-config"], capsys)
    run = {"checkpoint": None, "data": None, "out": None, "device": "auto"}  # the run's other flags, unset here
    assert got == {**run, **RendererTrainConfig().to_dict(), "steps": 9, "lr": 0.01, "mix": "replace"}
    # The printed config is a file to start from: read back, it gives the same config.
    f.write_text(json.dumps(got))
    assert _print_config(["train", "renderer", "--config", str(f), "--print-config"], capsys) == got


def test_yaml_config(tmp_path, capsys):
    pytest.importorskip("yaml")
    f = tmp_path / "c.yaml"
    f.write_text("steps: 5\nbalance: false\n")
    got = _print_config(["train", "dynamics", "--config", str(f), "--print-config"], capsys)
    assert got["steps"] == 5 and got["balance"] is False
    # YAML 1.1 reads 1e-3 (no dot) as a string; a config file reads it as the float it means.
    f.write_text("lr: 1e-3\nweight_decay: -2.5E+1\nsteps: 7\n")
    got = _print_config(["train", "dynamics", "--config", str(f), "--print-config"], capsys)
    assert got["lr"] == 1e-3 and got["weight_decay"] == -25.0 and got["steps"] == 7
    f.write_text("lr: fast\n")
    assert main(["train", "dynamics", "--config", str(f), "--print-config"]) == 2
    assert "lr" in capsys.readouterr().err


@pytest.mark.parametrize("content, match", [
    ({"stpes": 3, "lr": 1.0}, r"unknown key\(s\) \['stpes'\] for TokenizerTrainConfig; known keys are \["),
    ({"steps": "3"}, "TokenizerTrainConfig.steps: expected an int"),
    ([1, 2], "expected an object"),
])
def test_bad_config_files_are_clear_errors(tmp_path, capsys, content, match):
    f = tmp_path / "c.json"
    f.write_text(json.dumps(content))
    assert main(["train", "tokenizer", "--config", str(f), "--print-config"]) == 2
    err = capsys.readouterr().err
    assert re.search(match, err), err
    # A missing file is bad input, as a bad one is.
    assert main(["train", "tokenizer", "--config", str(tmp_path / "none.json"), "--print-config"]) == 2
    assert capsys.readouterr().err == f"worldsim: error: --config {tmp_path / 'none.json'}: no such file\n"


def test_config_values_reach_the_trainer(tmp_path, monkeypatch):
    seen = {}

    def fake_train(data, out, model_cfg, cfg, **kwargs):
        seen.update(data=data, out=out, model_cfg=model_cfg, cfg=cfg, **kwargs)
        return {}

    monkeypatch.setattr(cli_train, "train_tokenizer", fake_train)
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"steps": 11, "warmup": 3}))
    assert main(["train", "tokenizer", "--data", "D1", "D2", "--out", "O", "--config", str(f), "--warmup", "4",
                 "--levels", "7", "5", "--quiet"]) == 0
    assert seen["cfg"] == TokenizerTrainConfig(steps=11, warmup=4) and seen["data"] == ["D1", "D2"]
    assert seen["model_cfg"].levels == (7, 5) and seen["progress"] is False


def test_required_flags_unless_print_config(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "pathway", "--state-data", "D"])
    assert e.value.code == 2 and "required: --checkpoint, --out" in capsys.readouterr().err
    assert main(["eval", "--out", "x"]) == 2
    assert "--scene is required" in capsys.readouterr().err
    assert _print_config(["eval", "--print-config", "--episodes", "2"], capsys)["episodes"] == 2


def test_old_flags_keep_working():
    p = build_parser()
    args = p.parse_args(["train", "dynamics", "--data", "D", "--tokenizer", "T", "--out", "O", "--no-balance",
                         "--state-batch", "4", "--capacity", "0.25", "--state-residual"])
    assert resolve_run(DynamicsTrainConfig, args)[0] == DynamicsTrainConfig(balance=False, state_batch=4)
    assert args.capacity == 0.25 and args.context == 4 and args.preset == "v4" and args.state_residual
    args = p.parse_args(["train", "renderer", "--checkpoint", "C", "--data", "D", "--out", "O", "--mix", "replace",
                         "--width", "8"])
    assert resolve_config(RendererTrainConfig, args) == RendererTrainConfig(mix="replace", width=8)


@pytest.mark.parametrize("scene, kind, world", [("Reacher-v5", "world_model", True), ("Pusher-v5", "world_model", True),
                                               ("Pusher-v5", "tokenizer", False)])
def test_info_of_a_scene_describes_its_shipped_world(scene, kind, world, capsys, monkeypatch):
    if not world:  # a scene with a tokenizer and no world
        monkeypatch.delitem(SHIPPED["world_model"], scene)
    assert main(["info", scene, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["scene"] == scene and info["kind"] == kind


def test_python_dash_m_runs():
    r = subprocess.run([sys.executable, "-m", "worldsim", "eval", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--config FILE" in r.stdout and "(default: 32)" in r.stdout


def _fake_trainer(monkeypatch, name: str) -> dict:
    """Replace `worldsim.cli.train`'s `name` with a recorder of its arguments (positional as `args`)."""
    seen: dict = {}

    def fake(*args, **kwargs):
        seen.clear()
        seen.update(kwargs, args=args)
        return {}

    monkeypatch.setattr(cli_train, name, fake)
    return seen


def test_a_tokenizer_runs_config_file_holds_every_argument_and_reruns_it(tmp_path, monkeypatch):
    seen = _fake_trainer(monkeypatch, "train_tokenizer")
    assert main(["train", "tokenizer", "--data", "D1", "D2", "--out", "O", "--channels", "8", "8", "8", "--levels",
                 "7", "5", "--init", "T0", "--fp16", "--device", "cpu", "--steps", "5", "--quiet", "--force"]) == 0
    first = dict(seen)
    record = first["log_config"]
    assert record == {"data": ["D1", "D2"], "out": "O", "device": "cpu", "channels": [8, 8, 8], "levels": [7, 5],
                      "decoder_channels": None, "decoder_only": False, "fp16": True, "init": "T0",
                      **TokenizerTrainConfig(steps=5).to_dict()}  # --quiet and --force are not the run's
    f = tmp_path / "config.json"
    f.write_text(json.dumps(record))
    assert main(["train", "tokenizer", "--config", str(f)]) == 0
    assert seen["args"] == first["args"] and seen["args"][2].channels == (8, 8, 8)
    assert {k: seen[k] for k in ("device", "fp16", "init", "log_config")} == \
        {k: first[k] for k in ("device", "fp16", "init", "log_config")}
    assert seen["force"] is False and seen["progress"] is True
    # The command line still wins over the file.
    assert main(["train", "tokenizer", "--config", str(f), "--out", "O2", "--channels", "16", "16", "16"]) == 0
    assert seen["args"][1] == "O2" and seen["args"][2].channels == (16, 16, 16)


def test_dynamics_and_part_runs_take_every_argument_from_the_config_file(tmp_path, monkeypatch, capsys):
    seen = _fake_trainer(monkeypatch, "train_dynamics")
    f = tmp_path / "c.json"
    run = {"data": "D", "tokenizer": "T", "out": "O", "preset": "dense", "context": 3, "capacity": 0.5,
           "bias_gamma": None, "state_residual": True, "state_data": ["S1"], "init": "W", "device": "cpu", "steps": 4}
    f.write_text(json.dumps(run))
    assert main(["train", "dynamics", "--config", str(f)]) == 0
    assert seen["args"][:3] == ("D", "T", "O") and seen["cfg"] == DynamicsTrainConfig(steps=4)
    assert {k: seen[k] for k in ("preset", "context", "capacity", "state_data", "init", "device")} == \
        {"preset": "dense", "context": 3, "capacity": 0.5, "state_data": ["S1"], "init": "W", "device": "cpu"}
    assert seen["state_residual"] is True
    assert _print_config(["train", "dynamics", "--config", str(f), "--print-config"], capsys) == \
        {**run, **DynamicsTrainConfig(steps=4).to_dict()}
    seen = _fake_trainer(monkeypatch, "train_pathway")
    monkeypatch.setitem(cli_train._PARTS, "pathway", (PathwayTrainConfig, cli_train.train_pathway, "state_data",
                                                      lambda m, cfg: "fitted"))
    f.write_text(json.dumps({"checkpoint": "C", "state_data": ["S1", "S2"], "out": "O", "unroll": 3}))
    assert main(["train", "pathway", "--config", str(f)]) == 0
    assert seen["args"][:3] == ("C", ["S1", "S2"], "O") and seen["args"][3].unroll == 3
    assert seen["log_config"]["checkpoint"] == "C" and seen["log_config"]["unroll"] == 3


@pytest.mark.parametrize("content, match", [
    ({"channels": [8, 8]}, r"channels: expected a list of 3 values, got \[8, 8\]"),
    ({"levels": ["8"]}, r"levels: expected an int, got '8'"),
    ({"fp16": "yes"}, "fp16: expected true or false"),
    ({"out": 3}, "out: expected a string, got 3"),
    ({"chanels": [8, 8, 8]}, r"unknown key\(s\) \['chanels'\] for TokenizerTrainConfig; known keys are .*'channels'"),
])
def test_bad_run_flags_in_a_config_file_are_clear_errors(tmp_path, capsys, content, match):
    f = tmp_path / "c.json"
    f.write_text(json.dumps(content))
    assert main(["train", "tokenizer", "--config", str(f), "--print-config"]) == 2
    err = capsys.readouterr().err
    assert re.search(match, err), err
