#!/usr/bin/env bash
# A v4 transformer whose state comes from its own head (no side models), trained the same 300 steps
# with and without the 8-step open-loop loss (--rollout-steps 8), then scored open loop.
#   bash benchmarks/rollout_loss_probe.sh     (about 12 minutes on 2 cores, one thread per run)
# DATA and RUNS choose the folders; the figures are in docs/world_model.md.
set -euo pipefail
export MUJOCO_GL=egl OMP_NUM_THREADS=1
DATA=${DATA:-data/probe}
RUNS=${RUNS:-runs/probe}
mkdir -p "$RUNS"
worldsim data generate --scene Reacher-v5 --episodes 200 --policy mixed --seed 1 --workers 2 --out "$DATA/reacher" --quiet
common=(--data "$DATA/reacher" --tokenizer Reacher-v5 --preset v4 --steps 300 --save-every 100 --quiet --device cpu)
worldsim train dynamics "${common[@]}" --out "$RUNS/base" > "$RUNS/base.log" 2>&1 &
worldsim train dynamics "${common[@]}" --out "$RUNS/k8" --rollout-steps 8 > "$RUNS/k8.log" 2>&1 &
wait
for r in base k8; do
  worldsim eval --scene Reacher-v5 --checkpoint "$RUNS/$r" --episodes 32 --horizon 50 --seed 1000 --no-video \
      --quiet --out "$RUNS/eval-$r"
done
