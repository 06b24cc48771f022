#!/usr/bin/env bash
# Reproduces the shipped narrow decoders (docs/tokenizer.md, "Decoder width"): each scene's tokenizer
# keeps the encoder and codebook of the tokenizer its worlds were trained on, and carries its own
# decoder of widths 16-32-56 (57 MFLOP a frame against 247). Only the decoder trains, on codes encoded
# once. The pendulum starts from one shared narrow decoder; Reacher, bounce and Pusher start from their
# tokenizer's decoder, narrowed to its most active channels on their own frames.
# The wide tokenizers they start from are train_tokenizer.sh's (RUN/tokenizer, RUN/tokenizer-pusher2),
# whose encoders the shipped tokenizers keep.
# One CPU thread a run, two runs side by side on a 2-core machine; every command resumes after a kill.
# Usage: bash benchmarks/train_decoders.sh [DATA_DIR] [RUN_DIR] [PHASE...]
#   phases: shared reacher pendulum bounce pusher eval (default: all, in that order); the data are
#   train_tokenizer.sh's and train_world.sh's
set -euo pipefail
DATA=${1:-data}
RUN=${2:-runs}
shift $(( $# > 2 ? 2 : $# ))
PHASES=${*:-shared reacher pendulum bounce pusher eval}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MUJOCO_GL=${MUJOCO_GL:-egl}
W=${WORLDSIM:-worldsim}
NARROW=(--decoder-only --decoder-channels 16 32 56 --batch-size 64 --warmup 200 --save-every 500 --seed 0 --fp16)
STEPS=${STEPS:-8000}

for phase in $PHASES; do
  case $phase in
  shared)  # about 32 min
    $W train tokenizer --data "$DATA/reacher" "$DATA/bounce" "$DATA/pendulum" --init "$RUN/tokenizer" \
        --out "$RUN/dec-shared" --steps 8000 --lr 2e-3 "${NARROW[@]}" ;;
  pendulum)  # about 25 min
    $W train tokenizer --data "$DATA/pendulum" --init "$RUN/dec-shared" --out "$RUN/dec-pendulum" \
        --steps "$STEPS" --lr 1e-3 "${NARROW[@]}" ;;
  reacher|bounce)  # from the shipped decoder narrowed on the scene's own frames: from the shared
                   # narrow decoder, bounce's green and blue balls stay one colour
    $W train tokenizer --data "$DATA/$phase" --init "$RUN/tokenizer" --out "$RUN/dec-$phase-w" \
        --steps "$STEPS" --lr 2e-3 "${NARROW[@]}" ;;
  pusher)
    $W train tokenizer --data "$DATA/pusher" "$DATA/pusher2" --init "$RUN/tokenizer-pusher2" \
        --out "$RUN/dec-pusher-$STEPS" --steps "$STEPS" --lr 2e-3 "${NARROW[@]}" ;;
  eval)
    for s in reacher-w:Reacher-v5 pendulum:InvertedPendulum-v5 bounce-w:bounce pusher-$STEPS:Pusher-v5; do
      $W tokenizer eval --scene "${s#*:}" --checkpoint "$RUN/dec-${s%%:*}" --episodes 8 --seed 1000
    done ;;
  *) echo "unknown phase $phase" >&2; exit 2 ;;
  esac
done
