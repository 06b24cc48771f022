"""A tiny paired evaluation against MuJoCo, end to end: rollouts, metrics, score, files and CLI."""

import json

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from worldsim.cli import main
from worldsim.core.registry import SHIPPED
from worldsim.eval.ceiling import relative_to_reference
from worldsim.eval.harness import EvalConfig, _truth_features, evaluate, score
from worldsim.eval.paired import from_truth
from worldsim.eval.report import plot_relative, summary, write_report
from worldsim.model.dynamics import DynamicsConfig
from worldsim.model.tokenizer import TokenizerConfig
from worldsim.model.world_model import WorldModel, WorldModelConfig

TOK = TokenizerConfig(channels=(8, 16, 16), levels=(5, 4, 3))


def tiny_model(scene: str, state_dim: int, action_dim: int) -> WorldModel:
    dyn = DynamicsConfig(state_dim=state_dim, action_dim=action_dim, grid=8, codebook_size=60, width=32, layers=2,
                         heads=2, context=2, ffn_hidden=64)
    torch.manual_seed(0)
    wm = WorldModel(WorldModelConfig(scene=scene, preset="dense", tokenizer=TOK, dynamics=dyn)).eval()
    wm.state_std.fill_(0.5)
    return wm


@pytest.fixture(scope="module")
def reacher():
    return tiny_model("Reacher-v5", 10, 2)


@pytest.fixture(scope="module")
def reacher_result(reacher):
    return evaluate(reacher, EvalConfig(scene="Reacher-v5", episodes=2, horizon=6, seed=5))


def test_report_has_every_metric_by_horizon(reacher_result):
    r = reacher_result.report
    assert r["horizons"] == [1, 6] and r["episodes"] == 2
    for name in ("state_nrmse", "valid_horizon", "psnr", "ssim", "body_pos_error", "body_vel_error", "reward_mae",
                 "termination_agreement"):
        assert set(r["metrics"][name]) == {1, 6}
        for b in ("copy_last", "constant_velocity"):
            assert set(r["baselines"][b][name]) == {1, 6}
    # MuJoCo from a state moved by 1e-6, under the same actions: almost exact over 6 steps.
    ref = r["baselines"]["mujoco_perturbed"]
    assert 0 < ref["state_nrmse"][6] < 1e-3 and ref["valid_horizon"][6] == 6 and ref["psnr"][6] > 40
    assert r["baseline_pcs"]["mujoco_perturbed"] > 95
    # Reacher never terminates: the termination rule on predicted states agrees everywhere.
    assert r["metrics"]["termination_agreement_rule"] == {1: 1.0, 6: 1.0}
    assert "termination_agreement_rule" not in r["baselines"]["copy_last"]  # theirs is the rule already
    assert 0 <= r["pcs"] <= 100 and len(r["per_step"]["model"]["state_nrmse"]) == 6
    assert r["config"]["seed"] == 5 and len(r["seeds"]["episodes"]) == 2 and "mujoco" in r["versions"]
    # Copy-last's first step is exact in frames but not in state; its error grows.
    cl = r["baselines"]["copy_last"]["state_nrmse"]
    assert 0 < cl[1] < cl[6]
    # The same figures as fractions of the perturbed reference's.
    rel = r["relative_to_reference"]
    assert rel["pcs"] == pytest.approx(r["pcs"] / r["baseline_pcs"]["mujoco_perturbed"])
    assert rel["valid_horizon"][6] == pytest.approx(r["metrics"]["valid_horizon"][6] / 6)
    assert rel["psnr"][6] == pytest.approx(r["metrics"]["psnr"][6] / ref["psnr"][6])


def test_relative_to_reference_known_answers():
    model = {"valid_horizon": {10: 5.0, 50: 20.0}, "psnr": {10: 30.0}, "state_nrmse": {10: 0.1}}
    ref = {"valid_horizon": {10: 10.0, 50: 0.0}, "psnr": {10: None}}
    rel = relative_to_reference(model, ref, 40.0, 80.0)
    assert rel == {"pcs": 0.5, "valid_horizon": {10: 0.5, 50: None}, "psnr": {10: None}}


def test_mujoco_against_itself_scores_100_and_copy_last_low(reacher_result):
    truth, cfg = reacher_result.truth, EvalConfig(scene="Reacher-v5", episodes=2, horizon=6, seed=5)
    std = np.full(10, 0.5)
    ref = score(truth, from_truth(truth), std, cfg, _truth_features(truth, cfg))
    assert ref.pcs == 100.0
    assert ref.by_horizon["state_nrmse"][6] == 0 and ref.by_horizon["valid_horizon"][6] == 6
    assert ref.by_horizon["psnr"][6] == 100.0 and ref.by_horizon["ssim"][6] == pytest.approx(1.0)
    assert reacher_result.scored["copy_last"].pcs < 40


def test_same_seed_same_report(reacher, reacher_result):
    again = evaluate(reacher, EvalConfig(scene="Reacher-v5", episodes=2, horizon=6, seed=5))
    assert again.report["metrics"] == reacher_result.report["metrics"]
    assert np.array_equal(again.predictions["model"].frames, reacher_result.predictions["model"].frames)


def test_a_recorded_truth_scores_another_evaluation_as_recording_it_again(reacher, reacher_result):
    cfg = EvalConfig(scene="Reacher-v5", episodes=2, horizon=6, seed=5)
    reused = evaluate(reacher, cfg, truth=reacher_result.truth)
    assert reused.truth is reacher_result.truth
    assert reused.report["metrics"] == reacher_result.report["metrics"]
    assert reused.report["baselines"] == reacher_result.report["baselines"]
    with pytest.raises(ValueError, match="truth holds 2 episodes of 6 steps"):
        evaluate(reacher, cfg.replace(episodes=3), truth=reacher_result.truth)


def test_the_plot_of_fractions_of_the_reference():
    fig, ax = plt.subplots()
    plot_relative(ax, {"pcs": 0.4, "valid_horizon": {1: 1.0, 10: 0.5}, "psnr": {1: None, 10: None}})
    assert len(ax.lines) == 2 and "PCS 0.40" in ax.get_title()  # one curve, and the line at 1
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [1.0, 0.5])
    plt.close(fig)


def test_write_report_files_and_json(reacher_result, tmp_path):
    out = write_report(reacher_result, tmp_path / "rep")
    names = {p.name for p in out.iterdir()}
    assert names == {"report.json", "report.md", "error_vs_horizon.png", "trajectories.png", "video_median.mp4",
                     "video_worst.mp4"}
    r = json.loads((out / "report.json").read_text())
    assert r["metrics"]["state_nrmse"].keys() == {"1", "6"} and r["figure_episodes"].keys() == {"median", "worst"}
    assert "Physics Consistency Score" in (out / "report.md").read_text()
    assert "valid_horizon / reference" in (out / "report.md").read_text() and "relative_to_reference" in r
    s = summary(reacher_result.report)
    assert set(s) >= {"scene", "episodes", "horizons", "pcs", "metrics", "baselines"}
    assert set(s["baselines"]) == {"copy_last", "constant_velocity", "mujoco_perturbed"}
    # Written again over an earlier report: replaced, and no temporary directory left behind.
    write_report(reacher_result, out, videos=False)
    assert "video_median.mp4" not in {p.name for p in out.iterdir()}
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]


def test_out_dir_is_not_clobbered_or_half_written(reacher_result, tmp_path, monkeypatch):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="holds notes.txt, which no `worldsim eval` report holds"):
        write_report(reacher_result, foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"

    import worldsim.eval.report as report

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report, "plot_trajectories", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        write_report(reacher_result, tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_bounce_physics_metrics(tmp_path):
    wm = tiny_model("bounce", 8, 1)  # two balls
    res = evaluate(wm, EvalConfig(scene="bounce", episodes=2, horizon=12, seed=0))
    m = res.report["metrics"]
    for name in ("contact_precision", "contact_recall", "contact_timing_error", "energy_drift", "penetration_rate",
                 "ball_vanish_rate", "ball_duplicate_rate"):
        assert set(m[name]) == {1, 10, 12}
    cfg = EvalConfig(scene="bounce", episodes=2, horizon=12, seed=0)
    ref = score(res.truth, from_truth(res.truth), wm.state_std.double().numpy(), cfg, _truth_features(res.truth, cfg))
    assert ref.pcs == 100.0 and ref.by_horizon["contact_recall"][12] == 1.0
    assert ref.by_horizon["ball_vanish_rate"][12] == 0.0
    assert res.scored["copy_last"].pcs < 40


def test_cli_eval_json(reacher, tmp_path, capsys):
    reacher.save(tmp_path / "wm")
    argv = ["eval", "--scene", "Reacher-v5", "--checkpoint", str(tmp_path / "wm"), "--episodes", "2", "--horizon",
            "3", "--out", str(tmp_path / "rep"), "--json", "--quiet", "--no-video"]
    assert main(argv) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["scene"] == "Reacher-v5" and r["horizons"] == [1, 3] and {"1", "3"} == set(r["metrics"]["psnr"])
    assert (tmp_path / "rep" / "report.json").is_file() and "mujoco_perturbed" in r["baselines"]
    assert main(argv + ["--perturbation", "0"]) == 0  # no reference
    assert set(json.loads(capsys.readouterr().out)["baselines"]) == {"copy_last", "constant_velocity"}


def test_cli_eval_bad_inputs(reacher, tmp_path, capsys, monkeypatch):
    reacher.save(tmp_path / "wm")
    base = ["eval", "--checkpoint", str(tmp_path / "wm"), "--out", str(tmp_path / "rep"), "--quiet"]
    cases = [
        (["--scene", "Nope-v0"], "unknown scene 'Nope-v0'"),
        (["--scene", "Reacher-v5", "--horizon", "0"], "horizon must be an int >= 1, got 0"),
        (["--scene", "Reacher-v5", "--episodes", "0"], "episodes must be an int >= 1, got 0"),
        (["--scene", "bounce"], "trained on scene 'Reacher-v5', not 'bounce'"),
        (["--scene", "Reacher-v5", "--context", "3"], "at most the model's window of 2"),
        (["--scene", "Reacher-v5", "--perturbation", "-1"], "perturbation must be a finite number >= 0"),
        (["--scene", "Reacher-v5", "--perturbation", "inf"], "perturbation must be a finite number >= 0"),
    ]
    for extra, msg in cases:
        assert main(base + extra) == 2
        assert msg in capsys.readouterr().err
    monkeypatch.delitem(SHIPPED["world_model"], "Pusher-v5")  # a scene with no world shipped
    assert main(["eval", "--scene", "Pusher-v5", "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err
    assert "no world model is shipped for scene 'Pusher-v5'" in err and "--checkpoint" in err
    assert not (tmp_path / "rep").exists()


def test_rule_termination_reads_the_predicted_states():
    """The pendulum's rule (|angle| > 0.2) on predicted states, step by step, scored against the truth."""
    from worldsim.envs import make_scene
    from worldsim.eval.paired import Prediction, Truth, with_rule_termination

    E, T = 2, 6
    states = np.zeros((E, T + 1, 4))
    states[0, 3:, 1] = 0.3  # episode 0's pole passes 0.2 at step 3; episode 1's never
    term = np.zeros((E, T), bool)
    term[0, 3] = True  # MuJoCo terminates episode 0 one step later
    truth = Truth("InvertedPendulum-v5", 0.04, states, np.zeros((E, T + 1, 64, 64, 3), np.uint8),
                  np.zeros((E, T, 1), np.float32), np.ones((E, T)), term, np.array([4, T]), np.zeros((E, 4)),
                  np.zeros((E, 1, 64, 64, 3), np.uint8), states[:, :1], np.zeros((E, 0, 1)))
    pred = Prediction("model", states, None, np.ones((E, T)), np.zeros((E, T), bool))
    scene = make_scene("InvertedPendulum-v5")
    try:
        pred = with_rule_termination(scene, truth, pred)
    finally:
        scene.close()
    assert pred.terminated_rule.tolist() == [[False, False, True, True, True, True], [False] * T]
    cfg = EvalConfig(scene="InvertedPendulum-v5", episodes=E, horizon=T, seed=0, frames=False)
    by_h = score(truth, pred, np.ones(4), cfg).by_horizon
    assert by_h["termination_agreement_rule"][T] == 1.0  # steps 3 and 4: within the tolerance of 2
    assert by_h["termination_agreement"][T] == 0.5  # the head never fires: episode 0 disagrees
