#!/usr/bin/env bash
# Reproduces docs/world_model.md's table of the `mlp` preset on Reacher: capacity 0.3 and 0.4 with the transformer's state
# head trained beside the pathway (--state-residual), the same weights with that head zeroed, and the
# shipped run (train_world_models.sh). One CPU thread per run: ~35 min each, two side by side.
# Usage: bash benchmarks/v4_lite_ablation.sh [DATA_DIR] [RUN_DIR]
set -euo pipefail
DATA=${1:-data}
RUN=${2:-runs}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
worldsim data generate --scene Reacher-v5 --episodes 400 --seed 1 --out "$DATA/reacher" --workers 2
T="--data $DATA/reacher --tokenizer Reacher-v5 --preset mlp --state-residual --steps 3000 --state-pretrain 10000 --quiet"
time worldsim train dynamics $T --capacity 0.3 --out "$RUN/reacher-lite-c3"
time worldsim train dynamics $T --capacity 0.4 --out "$RUN/reacher-lite-c4"
python benchmarks/pathway_alone.py "$RUN/reacher-lite-c3" "$RUN/reacher-lite-c3-pathonly"
python benchmarks/pathway_alone.py "$RUN/reacher-lite-c4" "$RUN/reacher-lite-c4-pathonly"
for r in reacher-lite-c3 reacher-lite-c3-pathonly reacher-lite-c4-pathonly; do
    worldsim eval --scene Reacher-v5 --checkpoint "$RUN/$r" --episodes 32 --horizon 240 --seed 1000 --out "reports/$r"
done
