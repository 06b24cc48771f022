"""Paired-rollout evaluation against MuJoCo: metrics, harness, reports and videos.

- `metrics`: pure functions on arrays (PSNR, SSIM, state nRMSE, valid horizon, event matching, ...).
- `physics`: physical readouts of state trajectories (named bodies, bounce energy, contacts, walls,
  balls in frames).
- `paired`: MuJoCo's rollouts and the predictors' (the world model, copy-last, constant velocity).
- `score`: the Physics Consistency Score and its formula.
- `harness`: `EvalConfig` and `evaluate`, every metric by horizon.
- `report`: report.json, report.md, plots and side-by-side videos, written atomically.

Submodules are imported on use, so `worldsim.eval.metrics` stays light.
"""
