import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import worldsim.train.tokenizer as tt
from worldsim.cli import main
from worldsim.core.checkpoint import load_checkpoint, save_checkpoint
from worldsim.envs.dataset import GenerateSpec, generate
from worldsim.envs.loader import load_frames, split_episodes
from worldsim.model.tokenizer import Tokenizer, TokenizerConfig
from worldsim.train.tokenizer import TokenizerTrainConfig, tokenizer_scenes, train_tokenizer

TINY = TokenizerConfig(channels=(8, 16, 16), levels=(5, 4, 3))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokdata") / "reacher"
    generate(GenerateSpec(scene="Reacher-v5", out=str(root), episodes=5, seed=1, shard_size=5, max_steps=6),
             progress_bar=False)
    return root


def test_split_holds_out_the_last_episodes():
    assert split_episodes(10, 0.2) == (list(range(8)), [8, 9])
    assert split_episodes(3, 0.1) == ([0, 1], [2])
    with pytest.raises(ValueError, match="too small"):
        split_episodes(1, 0.1)


def test_killed_run_resumes_to_the_same_weights(dataset, tmp_path, monkeypatch):
    cfg = TokenizerTrainConfig(steps=4, batch_size=4, save_every=2, warmup=1)
    train_tokenizer([str(dataset)], tmp_path / "straight", TINY, cfg, device="cpu", progress=False)

    calls = {"n": 0}
    real_validate = tt.validate

    def validate_then_die(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:  # at step 4, after the step-2 state was saved
            raise KeyboardInterrupt
        return real_validate(*a, **k)

    monkeypatch.setattr(tt, "validate", validate_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_tokenizer([str(dataset)], tmp_path / "killed", TINY, cfg, device="cpu", progress=False)
    assert not (tmp_path / "killed").exists()
    assert load_checkpoint(tmp_path / "killed.train").extra["step"] == 2
    monkeypatch.setattr(tt, "validate", real_validate)
    train_tokenizer([str(dataset)], tmp_path / "killed", TINY, cfg, device="cpu", progress=False)

    a = load_checkpoint(tmp_path / "straight").tensors
    b = load_checkpoint(tmp_path / "killed").tensors
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_continues_only_the_same_run(dataset, tmp_path):
    cfg = TokenizerTrainConfig(steps=2, batch_size=4, save_every=2, warmup=1)
    train_tokenizer([str(dataset)], tmp_path / "tok", TINY, cfg, device="cpu", progress=False)
    other = tmp_path / "other"
    generate(GenerateSpec(scene="Reacher-v5", out=str(other), episodes=5, seed=2, shard_size=5, max_steps=6),
             progress_bar=False)
    with pytest.raises(ValueError, match=r"holds another run \(data: begun with \['[0-9a-f]{64}'\], asked for"):
        train_tokenizer([str(other)], tmp_path / "tok", TINY, cfg.replace(steps=4), device="cpu", progress=False)
    with pytest.raises(ValueError, match=r"train_config.lr: begun with 0.002, asked for 0.01"):
        train_tokenizer([str(dataset)], tmp_path / "tok", TINY, cfg.replace(steps=4, lr=1e-2), device="cpu",
                        progress=False)
    with pytest.raises(ValueError, match=r"model_config.levels: begun with \[5, 4, 3\], asked for \[5, 5, 3\]"):
        train_tokenizer([str(dataset)], tmp_path / "tok", TokenizerConfig(channels=(8, 16, 16), levels=(5, 5, 3)),
                        cfg, device="cpu", progress=False)
    assert load_checkpoint(tmp_path / "tok").extra["steps"] == 2  # untouched by the refused reruns
    # The same data under another path is the same data; more steps resume.
    shutil.copytree(dataset, tmp_path / "moved")
    train_tokenizer([str(tmp_path / "moved")], tmp_path / "tok", TINY, cfg.replace(steps=3), device="cpu",
                    progress=False)
    assert load_checkpoint(tmp_path / "tok").extra["steps"] == 3


def test_cli_train_then_eval(dataset, tmp_path, capsys):
    import json

    out = tmp_path / "tk"
    assert main(["train", "tokenizer", "--data", str(dataset), "--out", str(out), "--steps", "2",
                 "--batch-size", "4", "--channels", "8", "16", "16", "--levels", "5", "4", "3",
                 "--save-every", "1", "--quiet", "--fp16", "--device", "cpu"]) == 0
    ck = load_checkpoint(out)
    assert all(t.dtype == torch.float16 for t in ck.tensors.values() if t.is_floating_point())
    capsys.readouterr()
    assert main(["tokenizer", "eval", "--scene", "Reacher-v5", "--checkpoint", str(out), "--episodes", "1",
                 "--max-steps", "4", "--json", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= {"psnr", "ssim", "code_usage"} and report["frames"] == 5


def test_frames_of_the_wrong_size_are_refused(dataset, tmp_path):
    with pytest.raises(ValueError, match="frames are 64x64, the tokenizer takes 32x32"):
        train_tokenizer([str(dataset)], tmp_path / "x", TokenizerConfig(image_size=32, channels=(8, 16, 16)),
                        TokenizerTrainConfig(steps=1), device="cpu", progress=False)


@pytest.mark.slow
def test_torchrun_data_parallel_keeps_replicas_equal(dataset, tmp_path):
    # torchrun lives beside this interpreter (the venv's bin/, which may not be on PATH).
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    assert torchrun is not None, "torchrun (installed with torch) not found"
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", "-m", "worldsim", "train", "tokenizer",
                        "--data", str(dataset), "--out", str(out), "--steps", "3", "--batch-size", "2",
                        "--channels", "8", "16", "16", "--levels", "5", "4", "3", "--save-every", "3",
                        "--quiet", "--device", "cpu"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert load_checkpoint(out).extra["steps"] == 3


def test_init_fine_tunes_from_another_tokenizer(dataset, tmp_path):
    cfg = TokenizerTrainConfig(steps=1, batch_size=2, save_every=1, warmup=1)
    train_tokenizer([str(dataset)], tmp_path / "a", TINY, cfg, device="cpu", progress=False)
    before = load_checkpoint(tmp_path / "a").tensors
    train_tokenizer([str(dataset)], tmp_path / "b", TINY, cfg.replace(lr=1e-12), device="cpu", progress=False,
                    init=tmp_path / "a")
    after = load_checkpoint(tmp_path / "b").tensors
    for k in before:
        torch.testing.assert_close(after[k], before[k], rtol=0, atol=1e-6)
    other = TokenizerConfig(channels=(8, 16, 24), levels=(5, 4, 3))
    with pytest.raises(ValueError, match="differs from the one asked for"):
        train_tokenizer([str(dataset)], tmp_path / "c", other, cfg, device="cpu", progress=False, init=tmp_path / "a")


def test_decoder_only_trains_a_narrower_decoder_for_the_same_codes(dataset, tmp_path):
    """--decoder-only keeps --init's encoder (so its codes) and trains a narrower decoder, started from
    --init's; it needs --init, the same encoder, and widths at most --init's."""
    cfg = TokenizerTrainConfig(steps=2, batch_size=2, save_every=1, warmup=1)
    wide = TINY.replace(decoder_channels=(16, 16, 24))
    train_tokenizer([str(dataset)], tmp_path / "wide", wide, cfg, device="cpu", progress=False)
    small = TINY.replace(decoder_channels=(8, 16, 16))
    train_tokenizer([str(dataset)], tmp_path / "small", small, cfg.replace(steps=3), device="cpu", progress=False,
                    init=tmp_path / "wide", decoder_only=True)
    a, b = load_checkpoint(tmp_path / "wide"), load_checkpoint(tmp_path / "small")
    assert b.config["decoder_channels"] == [8, 16, 16] and b.extra["steps"] == 3
    for k, t in a.tensors.items():
        if k.startswith("encoder."):
            assert torch.equal(t, b.tensors[k]), k
        else:
            assert b.tensors[k].shape != t.shape or not torch.equal(b.tensors[k], t), k
    with pytest.raises(ValueError, match="pass init"):
        train_tokenizer([str(dataset)], tmp_path / "x", small, cfg, device="cpu", progress=False, decoder_only=True)
    with pytest.raises(ValueError, match="its encoder's config"):
        train_tokenizer([str(dataset)], tmp_path / "y", small.replace(levels=(5, 4, 4)), cfg, device="cpu",
                        progress=False, init=tmp_path / "wide", decoder_only=True)
    with pytest.raises(ValueError, match="narrower than the ones asked for"):
        train_tokenizer([str(dataset)], tmp_path / "z", TINY.replace(decoder_channels=(16, 16, 32)), cfg,
                        device="cpu", progress=False, init=tmp_path / "wide", decoder_only=True)


def test_coded_frames_pair_each_frame_with_its_codes(dataset):
    torch.manual_seed(0)
    tok = Tokenizer(TINY)
    pool, _ = load_frames([str(dataset)], 0.2, 64)
    coded = tt.CodedFrames(pool, tok, progress=False, chunk=7)
    frames, codes = coded.sample(np.random.default_rng(0), 5)
    assert torch.equal(codes, tok.encode(frames))


def test_train_dynamics_checks_the_tokenizer_against_the_data_first(dataset, tmp_path, capsys, monkeypatch):
    """Tokenizers record their scenes; a world's data of another scene is named, another frame size refused."""
    monkeypatch.setattr("worldsim.cli.train.train_dynamics", lambda *a, **k: {})  # no training here
    argv = ["train", "dynamics", "--data", str(dataset), "--out", str(tmp_path / "w"), "--quiet"]
    assert main([*argv, "--tokenizer", "InvertedPendulum-v5"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("worldsim: warning: --tokenizer InvertedPendulum-v5 was trained on frames of "
                          f"InvertedPendulum-v5, and --data {dataset} holds Reacher-v5") and err.count("\n") == 1
    assert main([*argv, "--tokenizer", "Reacher-v5"]) == 0 and capsys.readouterr().err == ""
    Tokenizer(TokenizerConfig(channels=(8, 16, 16), levels=(5, 4, 3), image_size=32)).save(tmp_path / "t32")
    assert main([*argv, "--tokenizer", str(tmp_path / "t32")]) == 2
    assert "takes 32x32 frames, and --data" in capsys.readouterr().err
    # A tokenizer trained here records the scenes of its data.
    train_tokenizer([str(dataset)], tmp_path / "tok", TINY, TokenizerTrainConfig(steps=1, batch_size=2, warmup=1),
                    device="cpu", progress=False)
    assert load_checkpoint(tmp_path / "tok").extra["scenes"] == ["Reacher-v5"]
    assert tokenizer_scenes(str(tmp_path / "tok")) == ["Reacher-v5"]
    assert main([*argv, "--tokenizer", str(tmp_path / "tok")]) == 0 and capsys.readouterr().err == ""


@pytest.mark.parametrize("trainer", [["tokenizer", "--data", "D"], ["dynamics", "--data", "D", "--tokenizer", "T"],
                                     ["outcome", "--checkpoint", "C", "--state-data", "D"]])
def test_a_rerun_asking_fewer_steps_than_its_state_has_is_refused(tmp_path, capsys, trainer):
    kind = {"tokenizer": "tokenizer", "dynamics": "world_model", "outcome": "world_model"}[trainer[0]]
    save_checkpoint(tmp_path / "out.train", torch.nn.Linear(2, 2), TINY, kind=f"{kind}-train", extra={"step": 8})
    assert main(["train", *trainer, "--out", str(tmp_path / "out"), "--steps", "4"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'out.train'} is already at step 8, past --steps 4: rerun with --steps 8 or more" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.train"]
