"""Closed-loop policy evaluation: the ranking figures on cases with known answers, and a tiny run
against MuJoCo."""

import json
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest

from worldsim.cli import main
from worldsim.envs import make_scene
from worldsim.envs.policies import make_policy
from worldsim.eval.policy_eval import BehaviourPolicy, ScriptedPolicy, evaluate_policies, policy_from_spec, run_real
from worldsim.eval.ranking import mmrv, normalised_error, pearson, ranking_report, ranks, spearman
from worldsim.eval.report import write_report_dir


def test_a_perfect_ranking():
    real, world = [1, 2, 3, 4], [10, 20, 30, 40]
    assert pearson(real, world) == pytest.approx(1) and spearman(real, world) == pytest.approx(1)
    assert mmrv(real, world) == 0
    assert normalised_error(real, world) == pytest.approx(np.mean([9, 18, 27, 36]) / 3)


def test_one_swap():
    """The top two swapped: each of them is violated by a third of the real range."""
    real, world = [0, 1, 2, 3], [0, 1, 3, 2]
    assert mmrv(real, world) == pytest.approx((1 / 3 + 1 / 3) / 4)
    assert spearman(real, world) == pytest.approx(1 - 6 * 2 / (4 * 15))
    assert mmrv(real, [3, 2, 1, 0]) == pytest.approx((1 + 2 / 3 + 2 / 3 + 1) / 4)


def test_ties():
    """A real tie costs nothing; a pair the world ties but the real system orders is a violation."""
    real, world = [0, 0, 1], [0, 1, 1]
    np.testing.assert_array_equal(ranks(real), [1.5, 1.5, 3])
    assert mmrv(real, world) == pytest.approx(1 / 3)
    assert spearman(real, world) == pytest.approx(0.5)
    assert np.isnan(pearson(real, [2, 2, 2])) and np.isnan(normalised_error([1, 1], [0, 2]))
    assert mmrv([1, 1], [0, 2]) == 0
    with pytest.raises(ValueError, match="same length >= 2"):
        ranking_report([1], [1])


def test_behaviour_policies_repeat_after_reset():
    """The data generators' policies, one per row, seeded seed + i, over the env's own action box."""
    box = gym.spaces.Box(-3.0, 3.0, (2,))
    p = BehaviourPolicy("smooth", seed=3)
    with pytest.raises(ValueError, match="reset"):
        p(np.zeros((4, 5)))
    p.reset(box)
    a = [p(np.zeros((4, 5))) for _ in range(3)]
    p.reset(box)
    b = [p(np.zeros((4, 5))) for _ in range(3)]
    np.testing.assert_array_equal(np.stack(a), np.stack(b))
    assert np.stack(a).shape == (3, 4, 2) and np.all(np.abs(np.stack(a)) <= 3) and np.abs(np.stack(a)).max() > 1
    row = make_policy("smooth")
    row.reset(SimpleNamespace(action_space=box), 3 + 1)
    np.testing.assert_array_equal(np.stack(a)[:, 1], np.stack([row.act(None) for _ in range(3)]))
    with pytest.raises(ValueError, match="'random' or 'smooth'"):
        BehaviourPolicy("scripted")


def test_real_returns_are_the_scenes_own():
    """A zero policy's real return is the sum of the task reward MuJoCo gives under zero actions."""
    ret, length = run_real("Reacher-v5", lambda obs: np.zeros((len(obs), 2)), [5, 6], max_steps=7)
    assert length.tolist() == [7, 7]
    sc = make_scene("Reacher-v5")
    sc.reset(seed=5)
    assert ret[0] == pytest.approx(sum(sc.step(np.zeros(2)).reward for _ in range(7)))
    sc.close()


def test_tiny_closed_loop_evaluation(tiny_world, tmp_path):
    ckpt = str(tiny_world(tmp_path / "wm"))
    policies = {"zero": lambda obs: np.zeros((len(obs), 2)), "random": BehaviourPolicy("random", seed=0),
                "push": lambda obs: np.ones((len(obs), 2))}
    rep = evaluate_policies("Reacher-v5", policies, episodes=2, seed=1000, max_steps=5, checkpoint=ckpt,
                            device="cpu")
    assert set(rep["policies"]) == {"zero", "random", "push"}
    for row in rep["policies"].values():
        assert row["real_length"]["mean"] == 5 and row["world_length"]["mean"] == 5
    # Under the squared-action cost the real returns order zero > random > push.
    real = [rep["policies"][k]["real_return"]["mean"] for k in ("zero", "random", "push")]
    assert real[0] > real[1] > real[2]
    assert set(rep["ranking"]) == {"pearson", "spearman", "mmrv", "normalised_return_error"}
    with pytest.raises(ValueError, match="finite actions"):
        evaluate_policies("Reacher-v5", {"bad": lambda obs: np.zeros(3)}, episodes=1, max_steps=2,
                          checkpoint=ckpt, device="cpu")


def test_policy_specs():
    zero = policy_from_spec("zero")
    zero.reset(gym.spaces.Box(-1.0, 1.0, (2,)))
    assert zero(np.zeros((3, 4))).shape == (3, 2) and not zero(np.zeros((3, 4))).any()
    assert isinstance(policy_from_spec("smooth:7"), BehaviourPolicy) and policy_from_spec("smooth:7").seed == 7
    for bad in ("random:x", "const", "zero:1", "scripted:x"):
        with pytest.raises(ValueError, match="built-in policies"):
            policy_from_spec(bad, "Reacher-v5")
    with pytest.raises(ValueError, match="needs the scene"):
        policy_from_spec("scripted")
    assert isinstance(policy_from_spec("scripted:0.2", "Reacher-v5"), ScriptedPolicy)
    with pytest.raises(ValueError, match=">= 0"):
        ScriptedPolicy("Reacher-v5", noise=-1)
    for bad in ("scripted:-0.1", "scripted:nan"):  # the noise's own error, not "unknown policy"
        with pytest.raises(ValueError, match="finite number >= 0"):
            policy_from_spec(bad, "Reacher-v5")


def test_scripted_policy_acts_on_what_it_sees():
    """The pendulum's LQR on the observed state balances to the horizon; with noise at the data
    generator's level it still does for a while, and full-range noise drops the pole at once."""
    lengths = {}
    for noise in (0.0, 1.0):
        _, lengths[noise] = run_real("InvertedPendulum-v5", ScriptedPolicy("InvertedPendulum-v5", noise), [5, 6], 60)
    np.testing.assert_array_equal(lengths[0.0], [60, 60])
    assert lengths[1.0].max() < 30
    p = ScriptedPolicy("Reacher-v5", noise=0.3, seed=2)
    p.reset(gym.spaces.Box(-1.0, 1.0, (2,)))
    obs = np.stack([make_scene("Reacher-v5").reset(seed=s)[0] for s in (1, 2)])
    a = p(obs)
    p.reset(gym.spaces.Box(-1.0, 1.0, (2,)))
    np.testing.assert_array_equal(a, p(obs))


def test_cli_eval_policies_writes_a_report(tiny_world, tmp_path, capsys):
    ckpt = str(tiny_world(tmp_path / "wm"))
    out = tmp_path / "pol"
    assert main(["eval", "policies", "--scene", "Reacher-v5", "--policies", "zero,const:1", "--episodes", "2",
                 "--max-steps", "3", "--checkpoint", ckpt, "--device", "cpu", "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["policies"]) == {"zero", "const:1"} and report["ranking"]["mmrv"] is not None
    assert {p.name for p in out.iterdir()} == {"report.json", "report.md", "returns.png"}
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    assert main(["eval", "policies", "--scene", "Reacher-v5", "--policies", "zero", "--episodes", "1",
                 "--checkpoint", ckpt, "--out", str(tmp_path / "other")]) == 2
    assert (tmp_path / "other" / "keep.txt").read_text() == "mine"
    with pytest.raises(SystemExit):
        main(["eval", "policies", "--scene", "Reacher-v5", "--out", str(out)])  # --policies missing
    assert main(["eval", "policies", "--scene", "Reacher-v5", "--policies", "zero,zero", "--checkpoint", ckpt,
                 "--out", str(tmp_path / "dup")]) == 2


@pytest.mark.parametrize("argv", [["eval", "--scene", "Reacher-v5", "--episodes", "1"],
                                  ["eval", "policies", "--scene", "Reacher-v5", "--policies", "zero", "--episodes", "1"]])
def test_a_report_dir_holding_anything_else_is_refused_before_any_work(tmp_path, capsys, monkeypatch, argv):
    """A directory with a report.json is replaced only when it holds nothing but a report of the same kind."""
    monkeypatch.setattr("worldsim.cli.evaluation.load_world_model", None)  # any work would fail loudly
    monkeypatch.setattr("worldsim.cli.evaluation.evaluate_policies", None)
    wipe = tmp_path / "wipe"
    (wipe / "sub").mkdir(parents=True)
    (wipe / "report.json").write_text('{"mine": 1}')
    (wipe / "thesis.tex").write_text("important")
    (wipe / "sub" / "data.csv").write_text("d")
    assert main([*argv, "--out", str(wipe)]) == 2
    assert "holds sub, thesis.tex, which no `worldsim eval" in capsys.readouterr().err
    assert (wipe / "thesis.tex").read_text() == "important" and (wipe / "sub" / "data.csv").read_text() == "d"
    # A report.json of no kind, and a report of the other kind (its plots would be lost), are refused too.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.json").write_text('{"mine": 1}')
    assert main([*argv, "--out", str(mine)]) == 2
    assert "no readable" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    if argv[1] == "policies":
        (other / "report.json").write_text(json.dumps({"scene": "Reacher-v5", "pcs": 1.0, "metrics": {}}))
    else:
        (other / "report.json").write_text(json.dumps({"kind": "eval-policies", "policies": {}}))
    assert main([*argv, "--out", str(other)]) == 2
    assert "this writes a `worldsim eval" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "other", "wipe"]


def test_a_report_of_the_same_kind_is_replaced(tmp_path):
    out = tmp_path / "rep"
    write_report_dir(out, lambda d: (d / "report.json").write_text('{"kind": "eval", "old": 1}'))
    write_report_dir(out, lambda d: (d / "report.json").write_text('{"kind": "eval", "new": 1}'))
    assert json.loads((out / "report.json").read_text()) == {"kind": "eval", "new": 1}
    # An earlier policy report (written before reports recorded their kind) is one too.
    pol = tmp_path / "pol"
    write_report_dir(pol, lambda d: (d / "report.json").write_text('{"scene": "x", "policies": {}}'),
                     kind="eval-policies")
    write_report_dir(pol, lambda d: (d / "returns.png").write_bytes(b"png"), kind="eval-policies")
    assert [p.name for p in pol.iterdir()] == ["returns.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pol", "rep"]


def test_a_saved_sb3_agent_is_a_policy(tmp_path):
    sb3 = pytest.importorskip("stable_baselines3")
    agent = sb3.PPO("MlpPolicy", gym.make("Reacher-v5"), n_steps=8, batch_size=8, seed=0, device="cpu")
    agent.save(tmp_path / "agent.zip")
    policy = policy_from_spec(f"ppo:{tmp_path / 'agent.zip'}")
    obs = np.zeros((3, 10))
    np.testing.assert_allclose(policy(obs), agent.predict(obs.astype(np.float32), deterministic=True)[0])
    ret, length = run_real("Reacher-v5", policy, [0], max_steps=3)
    assert length.tolist() == [3] and np.isfinite(ret).all()
    with pytest.raises(ValueError, match="no such file"):
        policy_from_spec(f"ppo:{tmp_path / 'missing.zip'}")
    with pytest.raises(ValueError, match="built-in policies"):
        policy_from_spec(f"dqn:{tmp_path / 'agent.zip'}")
    # agent:PATH reads the algorithm from the settings.json beside it.
    with pytest.raises(ValueError, match="names the agent's algorithm"):
        policy_from_spec(f"agent:{tmp_path / 'agent.zip'}")
    (tmp_path / "settings.json").write_text(json.dumps({"algo": "ppo", "scene": "Reacher-v5"}))
    np.testing.assert_allclose(policy_from_spec(f"agent:{tmp_path / 'agent.zip'}")(obs), policy(obs))
    (tmp_path / "settings.json").write_text("[1]")
    with pytest.raises(ValueError, match="JSON object"):
        policy_from_spec(f"agent:{tmp_path / 'agent.zip'}")


def test_an_agent_that_does_not_fit_is_refused_saying_why(tmp_path, capsys, monkeypatch):
    """Another algorithm, another scene, a missing file or not an SB3 save: one line each, before any work."""
    sb3 = pytest.importorskip("stable_baselines3")
    monkeypatch.setattr("worldsim.cli.play.PairedSession", None)  # loading a world would fail loudly
    monkeypatch.setattr("worldsim.cli.evaluation.evaluate_policies", None)
    path = tmp_path / "agent.zip"
    sb3.PPO("MlpPolicy", gym.make("Reacher-v5"), n_steps=8, batch_size=8, seed=0, device="cpu").save(path)
    (tmp_path / "settings.json").write_text(json.dumps({"algo": "ppo", "scene": "Reacher-v5"}))
    out = ["--out", str(tmp_path / "out.mp4")]
    for argv in (["agent", "eval", str(path), "--algo", "sac", "--episodes", "1"],
                 ["eval", "policies", "--scene", "Reacher-v5", "--policies", f"sac:{path}", "--out", str(tmp_path / "r")],
                 ["play", "--headless", "--policy", f"sac:{path}", *out]):
        assert main(argv) == 2
        assert f"agent '{path}' was saved by PPO, not SAC: name its algorithm as ppo" in capsys.readouterr().err
    assert main(["agent", "eval", str(path), "--scene", "InvertedPendulum-v5", "--episodes", "1"]) == 2
    err = capsys.readouterr().err
    assert "observes shape (10,)" in err and "scene 'InvertedPendulum-v5' has observations (4,)" in err
    assert "it was trained on 'Reacher-v5'" in err
    (tmp_path / "settings.json").unlink()
    with pytest.raises(ValueError, match="it fits Reacher-v5"):
        policy_from_spec(f"ppo:{path}", "InvertedPendulum-v5")
    assert main(["agent", "eval", str(tmp_path / "nosuch.zip")]) == 2
    assert capsys.readouterr().err == f"worldsim: error: agent '{tmp_path / 'nosuch.zip'}': no such file (expected " \
                                      "an SB3 .zip)\n"
    (tmp_path / "notes.zip").write_text("notes")
    assert main(["play", "--headless", "--policy", f"ppo:{tmp_path / 'notes.zip'}", *out]) == 2
    assert "is not an SB3 .zip" in capsys.readouterr().err
    assert not (tmp_path / "out.mp4").exists() and not (tmp_path / "r").exists()
