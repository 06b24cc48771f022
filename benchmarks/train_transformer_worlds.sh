#!/usr/bin/env bash
# Reproduces the shipped transformer worlds (worldsim/weights/world-*): the transformer carries the
# state, reward, termination and frame codes, with no side model on the step path. Each starts from
# the `mlp` baseline world's transformer (--init worldsim:mlp-*, whose frame prediction is trained),
# grows a state head, and trains on three losses every step: the teacher-forced window loss, the
# 8-step open-loop loss through the KV-cached step with frames (--rollout-steps 8), and the 16-step
# open-loop loss on windows without frames (--state-only-batch, --state-rollout-steps 16), drawn from
# the frame data and a state-only dataset (15, 19 and 2 times the frame data's transitions for Reacher,
# the pendulum and bounce).
# One CPU thread a run, two runs side by side on a 2-core machine; every command resumes after a kill.
# Usage: bash benchmarks/train_transformer_worlds.sh [DATA_DIR] [RUN_DIR] [PHASE...]
#   phases: data reacher pendulum bounce dense export (default: all, in that order)
set -euo pipefail
DATA=${1:-data}
RUN=${2:-runs}
shift $(( $# > 2 ? 2 : $# ))
PHASES=${*:-data reacher pendulum bounce dense export}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MUJOCO_GL=${MUJOCO_GL:-egl}
W=${WORLDSIM:-worldsim}
LOSSES=(--rollout-prob 0 --rollout-steps 8 --rollout-batch 8 --state-only-batch 64 --state-rollout-steps 16
        --lr 5e-4 --warmup 100 --save-every 250 --device cpu --quiet)

for phase in $PHASES; do
  case $phase in
  data)  # about 4 minutes on 2 cores
    $W data generate --scene Reacher-v5 --episodes 400 --seed 1 --out "$DATA/reacher" --workers 2 --quiet
    $W data generate --scene Reacher-v5 --episodes 6000 --seed 11 --no-frames --shard-size 500 \
        --out "$DATA/reacher-states" --workers 2 --quiet
    $W data generate --scene InvertedPendulum-v5 --episodes 150 --max-steps 200 --seed 1 --out "$DATA/pendulum" \
        --workers 2 --quiet
    $W data generate --scene InvertedPendulum-v5 --episodes 3000 --max-steps 200 --seed 5 --no-frames \
        --shard-size 250 --out "$DATA/pendulum-states" --workers 2 --quiet
    $W data generate --scene bounce --episodes 400 --seed 6 --out "$DATA/bounce" --workers 2 --quiet
    $W data generate --scene bounce --episodes 4000 --seed 8 --max-steps 48 --no-frames --shard-size 500 \
        --out "$DATA/bounce-states" --workers 2 --quiet ;;
  reacher)
    $W train dynamics --data "$DATA/reacher" --state-data "$DATA/reacher-states" --tokenizer Reacher-v5 \
        --preset v4-lite --init worldsim:mlp-reacher --out "$RUN/reacher" --steps "${REACHER_STEPS:-1500}" "${LOSSES[@]}" ;;
  pendulum)
    $W train dynamics --data "$DATA/pendulum" --state-data "$DATA/pendulum-states" --tokenizer InvertedPendulum-v5 \
        --preset v4-lite --init worldsim:mlp-pendulum --out "$RUN/pendulum" --steps "${PENDULUM_STEPS:-2000}" "${LOSSES[@]}" ;;
  bounce)
    $W train dynamics --data "$DATA/bounce" --state-data "$DATA/bounce-states" --tokenizer bounce \
        --preset v4 --init worldsim:mlp-bounce --out "$RUN/bounce" --steps "${BOUNCE_STEPS:-500}" "${LOSSES[@]}" ;;
  dense)  # V4 against dense at equal training: v4-lite and dense-lite (v4-lite without pruning and MoE), 400
          # steps each, the same data, losses and start (dense-lite's FFN starts fresh)
    for p in v4-lite dense-lite; do
      $W train dynamics --data "$DATA/reacher" --state-data "$DATA/reacher-states" --tokenizer Reacher-v5 \
          --preset $p --init worldsim:mlp-reacher --out "$RUN/reacher-$p-short" --steps "${DENSE_STEPS:-400}" "${LOSSES[@]}" &
    done
    wait ;;
  export)
    for s in reacher pendulum bounce; do
      $W export "$RUN/$s" --out "$RUN/export-$s" --tokenizer-ref "worldsim:tokenizer-$s"
    done ;;
  *) echo "unknown phase $phase" >&2; exit 2 ;;
  esac
done
