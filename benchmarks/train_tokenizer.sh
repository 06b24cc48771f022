#!/usr/bin/env bash
# Reproduces the shipped tokenizer (worldsim/weights/tokenizer): the four training datasets, the
# training run, and the held-out evaluation. Every step resumes where a killed run stopped.
# Usage: bash benchmarks/train_tokenizer.sh [DATA_DIR] [RUN_DIR]
set -euo pipefail
DATA=${1:-data}
RUN=${2:-runs}
STEPS=${STEPS:-6000}
STEPS2=${STEPS2:-7500}
worldsim data generate --scene Reacher-v5 --episodes 400 --seed 1 --out "$DATA/reacher" --workers 2
worldsim data generate --scene bounce --episodes 120 --seed 1 --out "$DATA/bounce" --workers 2
worldsim data generate --scene InvertedPendulum-v5 --episodes 150 --max-steps 200 --seed 1 --out "$DATA/pendulum" --workers 2
worldsim data generate --scene Pusher-v5 --episodes 120 --seed 1 --out "$DATA/pusher" --workers 2
time worldsim train tokenizer --data "$DATA/reacher" "$DATA/bounce" "$DATA/pendulum" "$DATA/pusher" \
    --out "$RUN/tokenizer" --steps "$STEPS" --batch-size 32 --lr 2e-3 --save-every 250 --seed 0 --fp16
# Stage 2: resume the same run to STEPS2 with Pusher (the hardest scene) drawn twice as often; the
# learning rate continues down the cosine of the longer budget.
worldsim train tokenizer --data "$DATA/reacher" "$DATA/bounce" "$DATA/pendulum" "$DATA/pusher" "$DATA/pusher" \
    --out "$RUN/tokenizer" --steps "$STEPS2" --batch-size 32 --lr 2e-3 --save-every 250 --seed 0 --fp16
# Held-out: fresh episodes from seed 1000 (training used seed 1).
worldsim tokenizer eval --scene all --checkpoint "$RUN/tokenizer" --episodes 8 --seed 1000

# Pusher's own tokenizer (worldsim/weights/tokenizer-pusher): the shared one above reaches 31.2 dB on
# Pusher, short of 32. Fine-tune it on Pusher alone, then on 240 more Pusher episodes (seed 2).
# Same architecture; ~22 + ~34 min on one thread of a shared 2-core machine.
worldsim data generate --scene Pusher-v5 --episodes 240 --seed 2 --out "$DATA/pusher2" --workers 2
worldsim train tokenizer --data "$DATA/pusher" --init "$RUN/tokenizer" --out "$RUN/tokenizer-pusher" \
    --steps 1800 --batch-size 32 --lr 5e-4 --save-every 300 --seed 0 --fp16
worldsim train tokenizer --data "$DATA/pusher" "$DATA/pusher2" --init "$RUN/tokenizer-pusher" \
    --out "$RUN/tokenizer-pusher2" --steps 3000 --batch-size 32 --lr 5e-4 --save-every 250 --seed 0 --fp16
worldsim tokenizer eval --scene Pusher-v5 --checkpoint "$RUN/tokenizer-pusher2" --episodes 16 --seed 1000
