#!/usr/bin/env bash
# Ships new tokenizers that keep the shipped encoders (a narrower decoder from `train tokenizer
# --decoder-only`, benchmarks/train_tokenizer.sh stage 3) and points every shipped world at them. The
# worlds' dynamics weights and codes do not change; only their tokenizer's config and checksum do.
# Usage: bash benchmarks/swap_decoder.sh NEW_SHARED_TOKENIZER NEW_PUSHER_TOKENIZER RUN_DIR
set -euo pipefail
SHARED=$1
PUSHER=$2
RUN=$3
W=${WORLDSIM:-worldsim}
WEIGHTS=$(python -c "from worldsim.core.registry import WEIGHTS_DIR; print(WEIGHTS_DIR)")
WORLDS="world-reacher world-pendulum world-bounce mlp-reacher mlp-pendulum mlp-bounce"
mkdir -p "$RUN"
# 1. Each world with the new tokenizer copied in (self-contained), while the old one is still shipped.
for w in $WORLDS; do
  $W export "$WEIGHTS/$w" --out "$RUN/swap-$w" --tokenizer "$SHARED" --fp32
done
# 2. The new tokenizers replace the shipped ones.
for pair in "tokenizer:$SHARED" "tokenizer-pusher:$PUSHER"; do
  name=${pair%%:*}
  src=${pair#*:}
  rm -rf "$WEIGHTS/$name.new"
  cp -r "$src" "$WEIGHTS/$name.new"
  rm -rf "$WEIGHTS/$name"
  mv "$WEIGHTS/$name.new" "$WEIGHTS/$name"
done
# 3. Each world shipped again in fp16, referencing the new shared tokenizer.
for w in $WORLDS; do
  $W export "$RUN/swap-$w" --out "$WEIGHTS/$w" --tokenizer-ref worldsim:tokenizer --force
done
$W tokenizer eval --scene all --episodes 8 --seed 1000
