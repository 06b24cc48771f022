#!/usr/bin/env bash
# Reproduces the v4 / dense / no-bias table of the README: the runs, a fresh held-out set, the table.
# Every run resumes after a kill. One CPU thread per run, so two run side by side on a 2-core machine.
# Usage: bash benchmarks/v4_vs_dense.sh [DATA_DIR] [RUN_DIR]
set -euo pipefail
DATA=${1:-data}
RUN=${2:-runs}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
worldsim data generate --scene Reacher-v5 --episodes 400 --seed 1 --out "$DATA/reacher" --workers 2
worldsim data generate --scene Reacher-v5 --episodes 200 --seed 1000 --out "$DATA/reacher-heldout" --workers 2

T="--data $DATA/reacher --tokenizer Reacher-v5 --save-every 250 --quiet"
time worldsim train dynamics $T --preset v4 --out "$RUN/reacher-v4" --steps 1500          # ~31 min
time worldsim train dynamics $T --preset dense --out "$RUN/reacher-dense" --steps 1500    # ~40 min
time worldsim train dynamics $T --preset v4 --out "$RUN/reacher-nobias" --steps 1500 --no-balance
# 3000 steps: the 1500-step runs resumed to the longer budget (the cosine restarts over 3000 steps).
# The shipped Reacher world is the v4 one (see train_world_models.sh).
[ -d "$RUN/reacher-v4-long.train" ] || cp -r "$RUN/reacher-v4.train" "$RUN/reacher-v4-long.train"
[ -d "$RUN/reacher-dense-3000.train" ] || cp -r "$RUN/reacher-dense.train" "$RUN/reacher-dense-3000.train"
time worldsim train dynamics $T --preset v4 --out "$RUN/reacher-v4-long" --steps 3000
time worldsim train dynamics $T --preset dense --out "$RUN/reacher-dense-3000" --steps 3000

python benchmarks/v4_vs_dense.py --data "$DATA/reacher" --heldout "$DATA/reacher-heldout" --episodes 200 \
    --models v4="$RUN/reacher-v4" dense="$RUN/reacher-dense" nobias="$RUN/reacher-nobias" \
    v4-3000="$RUN/reacher-v4-long" dense-3000="$RUN/reacher-dense-3000"

# Against drift: the same 1500-step budget with noise on the input states (README), both presets.
time worldsim train dynamics $T --preset v4 --out "$RUN/reacher-v4-noise" --steps 1500 --state-noise 0.03
time worldsim train dynamics $T --preset dense --out "$RUN/reacher-dense-noise" --steps 1500 --state-noise 0.03
python benchmarks/v4_vs_dense.py --data "$DATA/reacher" --heldout "$DATA/reacher-heldout" --episodes 200 \
    --models v4-noise="$RUN/reacher-v4-noise" dense="$RUN/reacher-dense-noise"
