#!/usr/bin/env bash
# The GPU table, on a machine with CUDA and this project installed (nothing is fetched from the network):
#   1. batched world steps/s of every shipped world, state and pixel observations, at 1k, 4k and 16k envs,
#      in fp32 and bf16 (benchmarks/world_throughput.py);
#   2. the Triton kernels against SDPA (flash and masked), torch._grouped_mm and the references at the
#      shipped presets' shapes, in bf16 and in fp32 (benchmarks/kernels.py).
# Each part has a wall-clock budget, so the whole run ends within 8 minutes.
# Usage: bash benchmarks/gpu.sh [--tiny]   (--tiny: a few envs and steps, the size the CPU test runs)
# Environment: PYTHON (default python), PRECISION ("fp32" or "bf16" to time one precision only; default:
# fp32, and bf16 where the device has it). A part that overruns its budget is cut and says so; the
# parts after it still run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
if [ "${1:-}" = "--tiny" ]; then
  ENVS=(4 8); STEPS=2; REPEATS=1; BUDGET=280; PRESETS=(v4-lite); KERNEL_DTYPES=(fp32)
else
  ENVS=(1024 4096 16384); STEPS=20; REPEATS=3; BUDGET=270; PRESETS=(v4-lite v4 v4-gpu); KERNEL_DTYPES=(bf16 fp32)
fi
echo "## world steps/s"
timeout 300 "$PY" benchmarks/world_throughput.py --envs "${ENVS[@]}" --steps $STEPS --repeats $REPEATS \
    --budget-s $BUDGET ${PRECISION:+--precision $PRECISION} || echo "(world steps/s cut short: exit $?)"
for dtype in "${KERNEL_DTYPES[@]}"; do
  echo "## kernels, $dtype"
  timeout 80 "$PY" benchmarks/kernels.py --presets "${PRESETS[@]}" --batch 16 --dtype "$dtype" --reps 1 \
      || echo "(kernels, $dtype, cut short: exit $?)"
done
