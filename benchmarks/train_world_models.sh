#!/usr/bin/env bash
# Reproduces the shipped world models (worldsim/weights/world-*): the datasets (the tokenizer's own,
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

# The shipped Reacher and pendulum worlds are v4-lite (README, "v4-lite"); bounce is v4 (plus the parts below). Reacher's transformer
# trains on 1600 more episodes (seed 2), and its state pathway also fits the seed-1 set's transitions.
# Wall time, one thread each, two runs side by side: Reacher ~45 min, pendulum ~35 min.
worldsim data generate --scene Reacher-v5 --episodes 1600 --seed 2 --out "$DATA/reacher2" --workers 2
time worldsim train dynamics --data "$DATA/reacher2" --state-data "$DATA/reacher" --tokenizer Reacher-v5 --preset v4-lite \
    --out "$RUN/reacher-lite-big" --steps 3000 --state-pretrain 10000 --quiet
time worldsim train dynamics --data "$DATA/pendulum" --tokenizer InvertedPendulum-v5 --preset v4-lite \
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

# Bounce keeps its v4 transformer and gains a state pathway (8-step unrolled loss, 1000 state-only
# episodes, 4 min to generate) that carries the state, and a state renderer whose frames replace the
# transformer's: about 15 + 10 min.
worldsim data generate --scene bounce --episodes 1000 --seed 5 --no-frames --shard-size 50 \
    --out "$DATA/bounce-states" --workers 2
time worldsim train pathway --checkpoint "$RUN/bounce-v4" --width 256 --state-data "$DATA/bounce-states" \
    --out "$RUN/bounce-pw" --steps 10000 --unroll 8 --quiet
time worldsim train renderer --checkpoint "$RUN/bounce-pw" --data "$DATA/bounce" --mix replace \
    --out "$RUN/bounce-final" --steps 6000 --quiet

W=$(python -c "import worldsim.pretrained as p; print(p.WEIGHTS_DIR)")
# --static-from: the shipped runs predate the trainer recording state bounds; it adds them from the data.
worldsim export "$RUN/reacher-final" --out "$W/world-reacher" --tokenizer-ref ../tokenizer --static-from "$DATA/reacher2"
worldsim export "$RUN/pendulum-pw" --out "$W/world-pendulum" --tokenizer-ref ../tokenizer --static-from "$DATA/pendulum"
worldsim export "$RUN/bounce-final" --out "$W/world-bounce" --tokenizer-ref ../tokenizer --static-from "$DATA/bounce"
