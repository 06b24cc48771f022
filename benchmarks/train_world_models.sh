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

# Reacher: 1500 steps, then the same run resumed to 3000 (the cosine schedule restarts over the
# longer budget). Wall time on one thread of a shared 2-core machine: ~31 min + ~35 min.
time worldsim train dynamics --data "$DATA/reacher" --tokenizer Reacher-v5 --preset v4 --out "$RUN/reacher-v4" --steps 1500 --quiet
time worldsim train dynamics --data "$DATA/reacher" --tokenizer Reacher-v5 --preset v4 --out "$RUN/reacher-v4" --steps 3000 --quiet
time worldsim train dynamics --data "$DATA/pendulum" --tokenizer InvertedPendulum-v5 --preset v4 --out "$RUN/pendulum-v4" --steps 2000 --quiet
time worldsim train dynamics --data "$DATA/bounce" --tokenizer bounce --preset v4 --out "$RUN/bounce-v4" --steps 2000 --quiet

W=$(python -c "import worldsim.pretrained as p; print(p.WEIGHTS_DIR)")
# (this run predates the trainer recording static state dims: Reacher's target is held fixed from the data)
worldsim export "$RUN/reacher-v4" --out "$W/world-reacher" --tokenizer-ref ../tokenizer --static-from "$DATA/reacher"
worldsim export "$RUN/pendulum-v4" --out "$W/world-pendulum" --tokenizer-ref ../tokenizer
worldsim export "$RUN/bounce-v4" --out "$W/world-bounce" --tokenizer-ref ../tokenizer
