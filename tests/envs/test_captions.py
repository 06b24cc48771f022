"""Captions from ground truth: slots read off states agree with the simulator's own events, captions
say only slots the episode has (never a held-out combination whole), and a dataset's captions file is
written atomically and the same on a rerun."""

import json

import numpy as np
import pytest

from worldsim.cli import main
from worldsim.envs.bounce import DT, RADIUS
from worldsim.envs.captions import (
    CAPTIONS,
    HELD_OUT,
    caption,
    caption_dataset,
    episode_slots,
    held_out,
    held_out_prompts,
    read_captions,
    rollout_check,
)
from worldsim.envs.dataset import GenerateSpec, generate
from worldsim.envs.loader import EpisodeDataset
from worldsim.envs.registry import make_scene
from worldsim.model.prompt_language import language, parse


def _flight(x, z, vx, vz, steps=40):
    """One ball in free flight with a bounce off whatever it reaches (a crude integrator, for slots only)."""
    out = []
    for _ in range(steps):
        out.append([x, z, vx, vz])
        vz -= 9.81 * DT
        x, z = x + vx * DT, z + vz * DT
        if z < RADIUS:
            z, vz = RADIUS, -0.75 * vz
        if abs(x) > 1 - RADIUS:
            x, vx = np.sign(x) * (1 - RADIUS), -0.75 * vx
    return np.asarray(out)


def test_bounce_slots_of_simple_flights():
    s = _flight(-0.8, 1.6, 0.0, 0.0)[:, [0, 1, 2, 3]]
    one_ball = np.concatenate([s[:, :2], s[:, 2:]], 1)
    slots = episode_slots("bounce", one_ball)
    assert slots == {"red.x": "left", "red.height": "high", "red.motion": "still", "red.hits": "floor"}
    s = _flight(0.5, 1.0, 3.0, 2.0)
    assert episode_slots("bounce", s) == {"red.x": "right", "red.height": "middle", "red.motion": "up-right",
                                          "red.hits": "right wall"}


def test_first_hits_agree_with_recorded_contacts(tmp_path):
    root = tmp_path / "b"
    generate(GenerateSpec(scene="bounce", out=str(root), episodes=24, seed=3, shard_size=12, max_steps=40,
                          frames=False), progress_bar=False)
    data = EpisodeDataset(root, frames=False)
    pairs = data.manifest["contact_pairs"]
    names = {"floor": "floor", "ceiling": "ceiling", "wall_left": "left wall", "wall_right": "right wall",
             "ball0": "red ball", "ball1": "green ball", "ball2": "blue ball"}
    agree = total = 0
    for i in range(len(data)):
        ep = data.episode(i)
        slots = episode_slots("bounce", ep["states"])
        for b, colour in enumerate(("red", "green", "blue")):
            firsts = []
            for k, (a, c) in enumerate(pairs):
                if f"ball{b}" in (a, c) and not {"world", "back"} & {a, c}:
                    t = np.flatnonzero(ep["contacts"][1:, k])
                    if len(t):
                        firsts.append((t[0], c if a == f"ball{b}" else a))
            if firsts:
                total += 1
                agree += names[min(firsts)[1]] == slots[f"{colour}.hits"]
    assert total > 40
    assert agree / total >= 0.85


def test_rollout_check_counts_the_hits_an_episode_shows(tmp_path):
    root = tmp_path / "b"
    generate(GenerateSpec(scene="bounce", out=str(root), episodes=6, seed=4, shard_size=6, max_steps=48,
                          frames=False), progress_bar=False)
    data = EpisodeDataset(root, frames=False)
    check = rollout_check("bounce")
    assert check.steps == 48 and rollout_check("InvertedPendulum-v5") is None
    for i in range(len(data)):
        states = data.episode(i)["states"]
        slots = episode_slots("bounce", states)
        said = {k: v for k, v in slots.items() if k.endswith((".hits", ".x"))}
        assert check.says(said) and not check.says({k: v for k, v in said.items() if k.endswith(".x")})
        assert check(said, states) == 3  # a ball's x is not the check's to count
        wrong = {k: ("ceiling" if v != "ceiling" else "floor") for k, v in said.items() if k.endswith(".hits")}
        assert check(wrong, states) == 0


def test_other_scenes_slots_come_from_their_states():
    pend = make_scene("InvertedPendulum-v5")
    s, _ = pend.reset(seed=1)
    slots = episode_slots("InvertedPendulum-v5", np.stack([s, s * 0 + [0, 0.3, 0, 0]]))
    assert slots["pole.falls"] == "yes" and slots["pole.tilt"] == ("right" if s[1] > 0 else "left")
    reacher = make_scene("Reacher-v5")
    s, _ = reacher.reset(seed=2)
    got = episode_slots("Reacher-v5", s[None])
    assert set(got) == {"target.side", "target.reach", "arm.bend"}
    with pytest.raises(ValueError, match="has no captions"):
        episode_slots("Ant-v5", s[None])


def test_captions_say_only_the_episodes_slots_and_never_a_held_out_combination():
    rng = np.random.default_rng(0)
    slots = {"red.x": "right", "red.height": "high", "red.motion": "up", "red.hits": "floor",
             "green.x": "left", "green.height": "low", "green.motion": "still", "green.hits": "nothing",
             "blue.x": "centre", "blue.height": "middle", "blue.motion": "up", "blue.hits": "red ball"}
    for _ in range(300):
        text, said = caption("bounce", slots, rng)
        assert said and all(slots[k] == v for k, v in said.items())
        assert "green.hits" not in said  # "nothing" is never said
        assert not held_out("bounce", said)
        assert parse(language("bounce"), text) == said
    prompts = held_out_prompts("bounce", [slots], 6, rng)
    assert len(prompts) == 6 and all(held_out("bounce", s) for _, s in prompts)
    assert all(parse(language("bounce"), t) == s for t, s in prompts)
    assert all(HELD_OUT[k] for k in ("bounce", "InvertedPendulum-v5", "Reacher-v5", "Pusher-v5"))


def test_caption_dataset_writes_the_same_file_again(tmp_path):
    root = tmp_path / "p"
    generate(GenerateSpec(scene="InvertedPendulum-v5", out=str(root), episodes=4, seed=1, shard_size=4, max_steps=20,
                          frames=False), progress_bar=False)
    assert main(["data", "caption", str(root)]) == 0
    first = (root / CAPTIONS).read_bytes()
    caps = read_captions(root)
    assert [e["episode"] for e in caps["episodes"]] == [0, 1, 2, 3]
    assert all(len(e["captions"]) == 4 for e in caps["episodes"])
    caption_dataset(root)
    assert (root / CAPTIONS).read_bytes() == first
    assert not [p for p in root.iterdir() if ".tmp" in p.name]
    (root / CAPTIONS).write_text(json.dumps({"captioner_version": 0}))
    with pytest.raises(ValueError, match="another captioner"):
        read_captions(root)
    (root / CAPTIONS).unlink()
    with pytest.raises(ValueError, match="worldsim data caption"):
        read_captions(root)
