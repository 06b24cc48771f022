#!/usr/bin/env bash
# Reproduces the `mlp` baseline worlds (worldsim/weights/mlp-*; the shipped transformer worlds are
# train_world.sh's): the datasets (the tokenizer's own,
# see train_tokenizer.sh), the dynamics training runs on the shipped tokenizer, and the export
# (fp16 weights, the tokenizer referenced rather than copied). Every step resumes after a kill.
# Each run uses one CPU thread, so two run side by side on a 2-core machine.
# Usage: bash benchmarks/train_world_models.sh [DATA_DIR] [RUN_DIR]
set -euo pipefail
DATA=${1:-data}
RUN=${2:-runs}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
worldsim data generate --scene Reacher-v5 --episodes 400 --seed 1 --out "$DATA/reacher" --workers 2
worldsim data generate --scene bounce --episodes 120 --seed 1 --out "$DATA/bounce" --workers 2
worldsim data generate --scene InvertedPendulum-v5 --episodes 150 --max-steps 200 --seed 1 --out "$DATA/pendulum" --workers 2

time worldsim train dynamics --data "$DATA/bounce" --tokenizer bounce --preset v4 --out "$RUN/bounce-v4" --steps 1500 --quiet

# The Reacher and pendulum baselines are `mlp` (docs/world_model.md); bounce's is v4 (plus the parts below). Reacher's transformer
# trains on 1600 more episodes (seed 2), and its state pathway also fits the seed-1 set's transitions.
# Wall time, one thread each, two runs side by side: Reacher ~45 min, pendulum ~35 min.
worldsim data generate --scene Reacher-v5 --episodes 1600 --seed 2 --out "$DATA/reacher2" --workers 2
time worldsim train dynamics --data "$DATA/reacher2" --state-data "$DATA/reacher" --tokenizer Reacher-v5 --preset mlp \
    --out "$RUN/reacher-lite-big" --steps 3000 --state-pretrain 10000 --quiet
time worldsim train dynamics --data "$DATA/pendulum" --tokenizer InvertedPendulum-v5 --preset mlp \
    --out "$RUN/pendulum-lite" --steps 2000 --state-pretrain 10000 --quiet

# Reacher's state pathway refitted with an 8-step unrolled loss, then a state renderer added
# (README, "Refitting parts of a trained world"): about 12 + 15 min on one thread.
time worldsim train pathway --checkpoint "$RUN/reacher-lite-big" --state-data "$DATA/reacher2" "$DATA/reacher" \
    --out "$RUN/reacher-pw" --steps 8000 --unroll 8 --quiet
time worldsim train renderer --checkpoint "$RUN/reacher-pw" --data "$DATA/reacher2" "$DATA/reacher" \
    --out "$RUN/reacher-final" --steps 6000 --quiet

# The pendulum's pathway refitted the same way on 3000 more state-only episodes (2 min to generate).
worldsim data generate --scene InvertedPendulum-v5 --episodes 3000 --max-steps 200 --seed 5 --no-frames \
    --shard-size 250 --out "$DATA/pendulum-states" --workers 2
time worldsim train pathway --checkpoint "$RUN/pendulum-lite" --state-data "$DATA/pendulum-states" "$DATA/pendulum" \
    --out "$RUN/pendulum-pw" --steps 8000 --unroll 8 --quiet

# Both gain an outcome head: reward and termination read from the predicted state (under a minute each).
time worldsim train outcome --checkpoint "$RUN/reacher-final" --state-data "$DATA/reacher2" "$DATA/reacher" \
    --out "$RUN/reacher-out" --quiet
time worldsim train outcome --checkpoint "$RUN/pendulum-pw" --state-data "$DATA/pendulum-states" "$DATA/pendulum" \
    --out "$RUN/pendulum-out" --quiet

# Bounce keeps its v4 transformer and gains a state pathway (8-step unrolled loss, 1000 state-only
# episodes, 4 min to generate) that carries the state, and a state renderer whose frames replace the
# transformer's: about 15 + 10 min.
worldsim data generate --scene bounce --episodes 1000 --seed 5 --no-frames --shard-size 50 \
    --out "$DATA/bounce-states" --workers 2
time worldsim train pathway --checkpoint "$RUN/bounce-v4" --width 256 --state-data "$DATA/bounce-states" \
    --out "$RUN/bounce-pw" --steps 10000 --unroll 8 --quiet
time worldsim train renderer --checkpoint "$RUN/bounce-pw" --data "$DATA/bounce" --mix replace \
    --out "$RUN/bounce-r" --steps 6000 --quiet
# Then both fitted further on the start of an episode, where the balls are high and fast: the
# 240-step episodes hold few such states (the balls settle within about 60 steps). The pathway on
# 8000 short (48-step) state-only episodes (5 min to generate, 18 min to fit); the renderer (a second
# `train renderer` of the same width fits the model's renderer further) on 3000 short episodes with
# frames and 400 long ones (15 min to generate, 30 min to fit, half of it encoding the frames); then
# an outcome head (under a minute).
worldsim data generate --scene bounce --episodes 8000 --seed 8 --max-steps 48 --no-frames --shard-size 500 \
    --out "$DATA/bounce-states-early" --workers 2
time worldsim train pathway --checkpoint "$RUN/bounce-r" --state-data "$DATA/bounce-states" \
    "$DATA/bounce-states-early" --out "$RUN/bounce-pw-early" --steps 10000 --unroll 8 --quiet
worldsim data generate --scene bounce --episodes 400 --seed 6 --out "$DATA/bounce2" --workers 2
worldsim data generate --scene bounce --episodes 1000 --seed 7 --max-steps 48 --shard-size 50 \
    --out "$DATA/bounce-early" --workers 2
worldsim data generate --scene bounce --episodes 2000 --seed 9 --max-steps 48 --shard-size 100 \
    --out "$DATA/bounce-early2" --workers 2
time worldsim train renderer --checkpoint "$RUN/bounce-pw-early" --data "$DATA/bounce2" "$DATA/bounce-early" \
    "$DATA/bounce-early2" --mix replace --out "$RUN/bounce-r2" --steps 10000 --quiet
time worldsim train outcome --checkpoint "$RUN/bounce-r2" --state-data "$DATA/bounce-states" \
    "$DATA/bounce-states-early" --out "$RUN/bounce-final" --quiet

# Pusher's baseline: the transformer of the `mlp` preset on the scene's framed set (train_world.sh's
# data phase makes both sets), its state pathway fitted on the frameless set first and then refitted
# with the 8-step unrolled loss, and an outcome head.
time worldsim train dynamics --data "$DATA/pusher2" --state-data "$DATA/pusher-states" --tokenizer Pusher-v5 \
    --preset mlp --out "$RUN/pusher-lite" --steps 600 --state-pretrain 10000 --quiet
time worldsim train pathway --checkpoint "$RUN/pusher-lite" --state-data "$DATA/pusher-states" "$DATA/pusher2" \
    --out "$RUN/pusher-pw" --steps 8000 --unroll 8 --quiet
time worldsim train outcome --checkpoint "$RUN/pusher-pw" --state-data "$DATA/pusher-states" "$DATA/pusher2" \
    --out "$RUN/pusher-out" --quiet

W=$(python -c "import worldsim.core.registry as p; print(p.WEIGHTS_DIR)")
# --static-from: the shipped runs predate the trainer recording state bounds; it adds them from the data.
worldsim export "$RUN/reacher-out" --out "$W/mlp-reacher" --tokenizer-ref worldsim:tokenizer-reacher --static-from "$DATA/reacher2"
worldsim export "$RUN/pendulum-out" --out "$W/mlp-pendulum" --tokenizer-ref worldsim:tokenizer-pendulum --static-from "$DATA/pendulum"
worldsim export "$RUN/bounce-final" --out "$W/mlp-bounce" --tokenizer-ref worldsim:tokenizer-bounce --static-from "$DATA/bounce"
worldsim export "$RUN/pusher-out" --out "$W/mlp-pusher" --tokenizer-ref worldsim:tokenizer-pusher
