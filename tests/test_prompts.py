"""Prompt-conditioned generation end to end on a tiny world: `train prompt` fits the prefix alone (the
world's own weights unchanged), `WorldModel.generate`, `reset(options={"prompt": ...})` on both envs,
`worldsim generate` and `worldsim eval prompts`, and their refusals."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

import worldsim  # noqa: F401  (registers DSV4World-v0)
from worldsim.cli import main
from worldsim.core.checkpoint import load_checkpoint_extra
from worldsim.envs.captions import caption_dataset
from worldsim.envs.dataset import GenerateSpec, generate
from worldsim.envs.registry import make_scene
from worldsim.model.generation import start_from_prompt
from worldsim.model.prompt_language import PromptError
from worldsim.model.world_model import WorldModel
from worldsim.train.prompt import PromptTrainConfig, train_prompt

PROMPT = "The red ball starts high on the left, moving right. The blue ball hits the floor first."


@pytest.fixture(scope="module")
def prompted(tmp_path_factory, tiny_world):
    """A tiny bounce world with a prompt prefix, its data, and the world it started from."""
    root = tmp_path_factory.mktemp("prompts")
    states, framed = root / "states", root / "framed"
    generate(GenerateSpec(scene="bounce", out=str(states), episodes=40, seed=1, shard_size=20, max_steps=30,
                          frames=False), progress_bar=False)
    generate(GenerateSpec(scene="bounce", out=str(framed), episodes=6, seed=2, shard_size=6, max_steps=12),
             progress_bar=False)
    for d in (states, framed):
        caption_dataset(d)
    base = tiny_world(root / "base", scene="bounce", state_dim=12, action_dim=1)
    out = root / "world"
    cfg = PromptTrainConfig(steps=6, batch_size=8, frame_batch=4, save_every=3, val_prompts=8, warmup=2)
    metrics = train_prompt(base, [str(states), str(framed)], out, cfg, device="cpu", progress=False)
    return {"root": root, "base": base, "world": out, "states": states, "metrics": metrics}


def test_train_prompt_fits_the_prefix_alone(prompted):
    assert {"val_adherence", "val_combo_adherence", "val_state_ce", "val_frame_acc"} <= set(prompted["metrics"])
    # The output is the validated checkpoint with the best held-out adherence (steps 3 and 6), not the last.
    logged = [json.loads(line) for line in (prompted["world"].parent / "world.log" / "metrics.jsonl").open()]
    validated = {r["step"]: r["val_adherence"] for r in logged if "val_adherence" in r}
    assert set(validated) == {3, 6}
    best = max(validated, key=lambda k: (validated[k], -k))
    kept = load_checkpoint_extra(prompted["world"], kind="world_model")
    assert prompted["metrics"]["best_step"] == kept["steps"] == best
    assert kept["val_adherence"] == prompted["metrics"]["val_adherence"]
    base = WorldModel.from_pretrained(prompted["base"])
    wm = WorldModel.from_pretrained(prompted["world"])
    assert wm.prompt is not None and "red" in wm.cfg.prompt.vocabulary
    own = base.state_dict()
    for k, v in wm.state_dict().items():
        if not k.startswith("prompt."):
            assert torch.equal(v, own[k]), k  # the world without a prompt is the same, bit for bit


def test_generate_samples_starts_and_rolls_out(prompted):
    wm = WorldModel.from_pretrained(prompted["world"])
    clips = wm.generate(PROMPT, samples=3, steps=5, seed=4)
    assert clips.states.shape == (3, 6, 12) and clips.tokens.shape == (3, 6, 8, 8)
    assert clips.slots["red.x"] == "left" and clips.slots["blue.hits"] == "floor"
    again = wm.generate(PROMPT, samples=3, steps=5, seed=4)
    assert torch.equal(clips.states, again.states) and torch.equal(clips.tokens, again.tokens)
    assert not torch.equal(clips.states[0, 0], clips.states[1, 0])  # a prompt leaves things unsaid: samples differ
    assert wm.generate("", steps=2).note.startswith("the prompt is empty")
    frames = wm.decode(clips.tokens)
    assert frames.shape == (3, 6, 64, 64, 3) and frames.dtype == torch.uint8


def test_starts_the_scene_cannot_have_are_drawn_again(prompted):
    scene = make_scene("bounce")
    real = np.stack([scene.reset(seed=i)[0] for i in range(20)])
    assert scene.start_is_valid(real).all()
    overlapping = real.copy()
    overlapping[:, 2:4] = overlapping[:, 0:2] + 0.1  # ball 1 inside ball 0
    assert not scene.start_is_valid(overlapping).any()
    wm = WorldModel.from_pretrained(prompted["world"])
    clips = wm.generate(PROMPT, samples=8, steps=1, seed=2, valid=lambda s: s[:, 0] > 0)
    assert bool((clips.states[:, 0, 0] > 0).all())
    pinned = wm.generate(PROMPT, samples=4, steps=1, seed=2, consistent=lambda s: np.full_like(s, 0.5))
    assert bool((pinned.states[:, 0] == 0.5).all())  # every sample goes through the scene's consistency


class _RightmostRed:
    """A rollout check that scores a rollout by how far right the red ball ends: the start chosen is then
    the candidate whose red ball ends furthest right."""

    slots, steps = ("hits",), 2

    def says(self, said):
        return "red.x" in said

    def __call__(self, said, states):
        return float(np.tanh(states[-1, 0]))  # below 1, the count of hits the prompt says


def test_generation_keeps_the_start_whose_rollout_shows_the_prompt(prompted):
    wm = WorldModel.from_pretrained(prompted["world"])
    plain = wm.generate(PROMPT, samples=32, steps=2, seed=1, frames=False)
    chosen = wm.generate(PROMPT, samples=8, steps=2, seed=1, frames=False, check=_RightmostRed(), candidates=8)
    assert float(chosen.states[:, -1, 0].min()) > float(plain.states[:, -1, 0].median())
    assert chosen.note.startswith("8 of 8 clip(s) do not show")  # a float score never reaches the slots' count
    unsaid = wm.generate("the blue ball hits the floor", samples=2, steps=2, seed=1, frames=False,
                         check=_RightmostRed(), candidates=8)
    first = wm.generate("the blue ball hits the floor", samples=2, steps=2, seed=1, frames=False)
    assert unsaid.note == "" and torch.equal(unsaid.states, first.states)  # the check reads no slot said
    gen = torch.Generator().manual_seed(0)
    short = torch.zeros(2, 1, 1)  # actions for 1 step of the check's 2: zero after
    st, _ = start_from_prompt(wm, [PROMPT, PROMPT], gen, frames=False, check=_RightmostRed(), candidates=3,
                              actions=short)
    assert st.shape == (2, 12)
    with pytest.raises(ValueError, match="a row per prompt"):
        start_from_prompt(wm, [PROMPT, PROMPT], gen, check=_RightmostRed(), actions=torch.zeros(1, 1))
    with pytest.raises(ValueError, match="candidates must be >= 1"):
        wm.generate(PROMPT, steps=1, candidates=0)


@pytest.mark.parametrize("text, message", [
    ("a purple ball", "has no purple"),
    ("the red ball starts left and right", "contradicts itself"),
    ("the red ball teleports", "'teleports'"),
])
def test_generate_refuses_bad_prompts(prompted, text, message):
    wm = WorldModel.from_pretrained(prompted["world"])
    with pytest.raises(PromptError, match=message):
        wm.generate(text, steps=1)


def test_a_world_without_a_prefix_says_so(prompted):
    wm = WorldModel.from_pretrained(prompted["base"])
    with pytest.raises(ValueError, match="reads no prompts"):
        wm.generate(PROMPT, steps=1)


def test_env_reset_from_a_prompt(prompted):
    env = gym.make("DSV4World-v0", scene="bounce", checkpoint=str(prompted["world"]), obs_type="dict",
                   render_mode="rgb_array")
    obs, info = env.reset(seed=3, options={"prompt": PROMPT})
    assert info["prompt"] == PROMPT and obs["pixels"].shape == (64, 64, 3)
    obs2, _ = env.reset(seed=3, options={"prompt": PROMPT})
    assert np.array_equal(obs["state"], obs2["state"])  # the seed fixes the sampled start
    env.step(env.action_space.sample())
    with pytest.raises(ValueError, match="has no purple"):
        env.reset(options={"prompt": "the purple ball"})
    with pytest.raises(ValueError, match="give 'prompt' alone"):
        env.reset(options={"prompt": PROMPT, "qpos": np.zeros(6)})
    _, info = env.reset(seed=1)
    assert "prompt" not in info
    env.close()
    with pytest.raises(ValueError, match="context_frames=1"):
        env2 = gym.make("DSV4World-v0", scene="bounce", checkpoint=str(prompted["world"]), context_frames=2)
        env2.reset(options={"prompt": PROMPT})


def test_vector_env_reset_from_prompts_and_autoreset_keeps_them(prompted):
    envs = gym.make_vec("DSV4World-v0", num_envs=2, scene="bounce", checkpoint=str(prompted["world"]),
                        max_episode_steps=2)
    obs, _ = envs.reset(seed=0, options={"prompt": [PROMPT, ""]})
    assert obs.shape == (2, 12)
    assert envs.unwrapped.batch.prompts.tolist() == [PROMPT, ""]
    for _ in range(3):
        envs.step(np.zeros((2, 1), np.float32))
    assert envs.unwrapped.batch.prompts.tolist() == [PROMPT, ""]
    with pytest.raises(ValueError, match="a list of 2"):
        envs.reset(options={"prompt": [PROMPT]})
    envs.close()


def test_generate_command_writes_a_clip(prompted, tmp_path, capsys):
    out = tmp_path / "clip.mp4"
    args = ["generate", "--scene", "bounce", "--checkpoint", str(prompted["world"]), "--prompt", PROMPT,
            "--seconds", "0.5", "--fps", "24", "--samples", "2", "--out", str(out), "--json"]
    assert main(args) == 0
    info = json.loads(capsys.readouterr().out)
    assert out.stat().st_size > 0 and info["frames"] == 13 and info["steps"] == 12
    assert main(args) == 2  # an existing clip is not replaced without --force
    assert "exists" in capsys.readouterr().err
    side = tmp_path / "side.mp4"
    assert main(args[:-3] + ["--out", str(side), "--side-by-side"]) == 0
    assert side.stat().st_size > 0
    assert main(["generate", "--scene", "bounce", "--vocabulary"]) == 0
    assert "red" in capsys.readouterr().out
    assert main(["generate", "--scene", "bounce", "--checkpoint", str(prompted["world"]), "--prompt",
                 "the red ball moonwalks", "--out", str(tmp_path / "x.mp4")]) == 2
    assert "'moonwalks'" in capsys.readouterr().err and not (tmp_path / "x.mp4").exists()


def test_eval_prompts_writes_a_report(prompted, tmp_path):
    out = tmp_path / "rep"
    assert main(["eval", "prompts", "--scene", "bounce", "--checkpoint", str(prompted["world"]), "--data",
                 str(prompted["states"]), "--prompts", "4", "--clips", "2", "--reference-clips", "1",
                 "--seconds", "0.5", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["kind"] == "eval-prompts"
    for name in ("held_out_prompts", "held_out_combinations"):
        assert 0 <= report[name]["adherence"]["all"] <= 1
        assert set(report[name]["physics"]) == {"nrmse_h1", "nrmse_h10", "valid_horizon"}
    assert report["abnormal_clips"]["clips"] == 2
    assert report["abnormal_clips_world_states_drawn_exactly"]["clips"] == 1
    assert "| held out prompts |" in (out / "report.md").read_text()
