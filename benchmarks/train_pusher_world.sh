#!/usr/bin/env bash
# Reproduces the shipped Pusher-v5 world (worldsim/weights/world-pusher): a v4-lite transformer that
# carries the state, reward, termination and frame codes, trained from scratch on the Pusher
# tokenizer's codes (train_tokenizer.sh makes the two frame datasets).
#   teacher: the teacher-forced window loss alone (about 0.5 s a step on one thread), to learn the
#            frames and the one-step dynamics cheaply;
#   rollout: resumes from it with the 8-step open-loop loss through the KV-cached step with frames and
#            the 16-step open-loop loss on windows without frames (state-only data), as the other
#            shipped worlds train (about 2.6 s a step; 800 steps).
# One CPU thread a run; every command resumes after a kill.
# Usage: bash benchmarks/train_pusher_world.sh [DATA_DIR] [RUN_DIR] [PHASE...]
#   phases: data teacher rollout export (default: all, in that order)
set -euo pipefail
DATA=${1:-data}
RUN=${2:-runs}
shift $(( $# > 2 ? 2 : $# ))
PHASES=${*:-data teacher rollout export}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MUJOCO_GL=${MUJOCO_GL:-egl}
W=${WORLDSIM:-worldsim}
COMMON=(--data "$DATA/pusher2" --tokenizer Pusher-v5 --preset v4-lite --save-every 250 --device cpu --quiet)

for phase in $PHASES; do
  case $phase in
  data)
    $W data generate --scene Pusher-v5 --episodes 2000 --seed 12 --no-frames --shard-size 250 \
        --out "$DATA/pusher-states" --workers 2 --quiet ;;
  teacher)
    $W train dynamics "${COMMON[@]}" --out "$RUN/pusher-teacher" --steps "${TEACHER_STEPS:-3000}" \
        --rollout-prob 0 --lr 1e-3 --warmup 200 ;;
  rollout)
    $W train dynamics "${COMMON[@]}" --init "$RUN/pusher-teacher" --out "$RUN/pusher" \
        --state-data "$DATA/pusher" "$DATA/pusher-states" --steps "${ROLLOUT_STEPS:-800}" \
        --rollout-prob 0 --rollout-steps 8 --rollout-batch 8 --state-only-batch 64 --state-rollout-steps 16 \
        --lr 5e-4 --warmup 100 ;;
  export)
    $W export "$RUN/pusher" --out "$RUN/export-pusher" --tokenizer-ref worldsim:tokenizer-pusher ;;
  *) echo "unknown phase $phase" >&2; exit 2 ;;
  esac
done
