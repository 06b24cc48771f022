#!/usr/bin/env bash
# One shipped transformer world, physics first (docs/world_model.md#physics-first):
#   data     the scene's frameless episodes (cheap: no rendering) and a smaller set with frames;
#   physics  teacher-forced windows without frames at a large batch, with input-state noise;
#   rollout  the K-step open-loop loss without frames (K ramped up, a lower rate), beside the
#            teacher-forced loss: kept only where the held-out open-loop score improves, since every
#            stage's output is its best-scoring checkpoint (its starting weights included);
#   frames   windows with frames, the frameless teacher-forced loss kept beside them; frame tokens read
#            the physics, never the other way round, so the physics is disturbed only through the
#            shared weights, and the score (physics and open-loop frame-token accuracy) guards it;
#   export   fp16 weights that read the scene's shipped tokenizer.
# Every run resumes after a kill (rerun the same command); each stage's wall time is in its
# OUT.log/metrics.jsonl (`worldsim runs plot RUN_DIR/SCENE-*`).
# Usage: bash benchmarks/train_world.sh SCENE [DATA_DIR] [RUN_DIR] [PHASE...]
#   SCENE: reacher pendulum bounce pusher; phases: data physics rollout frames export (default: all)
set -euo pipefail
SCENE=${1:?usage: train_world.sh SCENE [DATA_DIR] [RUN_DIR] [PHASE...]}
DATA=${2:-data}
RUN=${3:-runs}
shift $(( $# > 3 ? 3 : $# ))
PHASES=${*:-data physics rollout frames export}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} MUJOCO_GL=${MUJOCO_GL:-egl}
W=${WORLDSIM:-worldsim}
case $SCENE in
  reacher)  NAME=Reacher-v5;          PRESET=v4-lite; TOK=Reacher-v5;          FRAMES=reacher;  H=50
            GEN_STATES=(--episodes 6000 --seed 11 --shard-size 500); GEN_FRAMES=(--episodes 400 --seed 1) ;;
  pendulum) NAME=InvertedPendulum-v5; PRESET=v4-lite; TOK=InvertedPendulum-v5; FRAMES=pendulum; H=60
            GEN_STATES=(--episodes 3000 --max-steps 200 --seed 5 --shard-size 250)
            GEN_FRAMES=(--episodes 150 --max-steps 200 --seed 1) ;;
  bounce)   NAME=bounce;              PRESET=v4;      TOK=bounce;              FRAMES=bounce;   H=48
            GEN_STATES=(--episodes 4000 --max-steps 48 --seed 8 --shard-size 500); GEN_FRAMES=(--episodes 400 --seed 6) ;;
  pusher)   NAME=Pusher-v5;           PRESET=v4-lite; TOK=Pusher-v5;           FRAMES=pusher2;  H=100
            GEN_STATES=(--episodes 2000 --seed 12 --shard-size 250); GEN_FRAMES=(--episodes 240 --seed 2) ;;
  *) echo "unknown scene $SCENE (reacher, pendulum, bounce, pusher)" >&2; exit 2 ;;
esac
STATES="$DATA/$SCENE-states"
COMMON=(--tokenizer "$TOK" --preset "$PRESET" --open-loop-horizon "$H" --save-every 250 --device cpu --quiet)

for phase in $PHASES; do
  case $phase in
  data)
    $W data generate --scene $NAME "${GEN_STATES[@]}" --no-frames --out "$STATES" --workers 2 --quiet
    $W data generate --scene $NAME "${GEN_FRAMES[@]}" --out "$DATA/$FRAMES" --workers 2 --quiet ;;
  physics)
    $W train dynamics --stage physics --data "$STATES" --out "$RUN/$SCENE-physics" "${COMMON[@]}" \
        --steps "${PHYSICS_STEPS:-4000}" --batch-size 256 --lr 1e-3 --warmup 100 --weight-decay 0 --state-noise 0.01 ;;
  rollout)
    $W train dynamics --stage rollout --data "$STATES" --init "$RUN/$SCENE-physics" --out "$RUN/$SCENE-rollout" \
        "${COMMON[@]}" --steps "${ROLLOUT_STEPS:-1000}" --batch-size 64 --rollout-steps 8 --rollout-ramp 500 \
        --state-only-batch 128 --lr 2e-4 --warmup 50 --weight-decay 0 --state-noise 0.01 ;;
  frames)
    $W train dynamics --stage frames --data "$DATA/$FRAMES" --state-data "$STATES" --init "$RUN/$SCENE-rollout" \
        --out "$RUN/$SCENE-frames" "${COMMON[@]}" --steps "${FRAMES_STEPS:-1500}" --batch-size 16 \
        --state-only-batch 128 --rollout-prob 0 --lr 5e-4 --warmup 100 --state-noise 0.01 ;;
  export)
    $W export "$RUN/$SCENE-frames" --out "$RUN/export-$SCENE" --tokenizer-ref "worldsim:tokenizer-$SCENE" ;;
  *) echo "unknown phase $phase" >&2; exit 2 ;;
  esac
done
