#!/usr/bin/env bash
# Issue 18 on the `device` GPU machine (16 cores, CUDA, Python 3.12, no network, no ROS: in-process only), one
# call of under 10 minutes: two PPO runs side by side, each pinned to its cores, trained on CARLA's Town01 and
# our RLTown01 / RLTown02 (env i on towns[i % 3]; Town02 never):
#   cores 0-9:   measurements + 4 nearby vehicles (benchmarks/configs/ppo_towns.yaml), 10 envs, warm-started
#                from models/ppo_rltown01.ckpt (its first layer zero-padded for the new inputs)
#   cores 10-15: 84x84 camera + speed + route command (benchmarks/configs/ppo_camera.yaml), 6 envs, from scratch
#     (through the device tool) bash benchmarks/gpu_towns.sh [TRAIN_MINUTES=7] [INIT_MEAS] [INIT_CAM]
# Environment: MEAS_CORES / MEAS_ENVS / CAM_CORES / CAM_ENVS (CAM_ENVS=0: no camera run), MEAS_BASE (the
# measurement run's config, default benchmarks/configs/ppo_towns.yaml; MEAS_BASE="benchmarks/configs/ppo_navigation.yaml
# benchmarks/configs/ppo_towns_meas.yaml" fine-tunes the committed model on its own observation), MEAS_CONFIG
# (one more config, e.g. benchmarks/configs/ppo_towns_finetune.yaml), TABLE_WORKERS (N > 0: afterwards the
# learning table of the final measurement checkpoint on ours and CARLA's towns, N workers), SRC (the tree).
# CARLA's maps travel in .maps/ (ignored by git) and are put where ../shared has them here. The final
# checkpoints land in $OUT (ppo_towns.ckpt, ppo_camera.ckpt; copied every 20 s while training), everything small
# in $OUT/results.tgz. Evaluation happens afterwards, anywhere: benchmarks/learning.py table.
set -euo pipefail
MINUTES=${1:-7}
INIT_MEAS=${2:-models/ppo_rltown01.ckpt}
INIT_CAM=${3:-}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" ../shared/data/maps/carla
cp .maps/*.xodr ../shared/data/maps/carla/
PY=python3
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
SRC=${SRC:-src}
export PYTHONPATH=/tmp/site:$SRC/carla_rl_common:$SRC/carla_rl_sim:$SRC/carla_rl_env:$SRC/carla_rl_agents:$SRC/carla_rl_bags:$SRC/carla_rl_bringup
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
  $PY -c "import os, torch; print('cpus', os.cpu_count(), 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
} | tee "$OUT/machine.txt"
TOWNS="Town01 RLTown01 RLTown02"
MEAS_CORES=${MEAS_CORES:-0-9} MEAS_ENVS=${MEAS_ENVS:-10} CAM_CORES=${CAM_CORES:-10-15} CAM_ENVS=${CAM_ENVS:-6}
# the newest snapshot of each run is copied to $OUT every 20 s: a call cut at its limit still returns them
( while sleep 20; do
    for run in ppo_towns ppo_camera; do
      final=$(ls "$OUT/$run"/run/snapshots/*.ckpt 2>/dev/null | tail -1 || true)
      [ -n "$final" ] && cp "$final" "$OUT/$run.ckpt.tmp" && mv "$OUT/$run.ckpt.tmp" "$OUT/$run.ckpt"
    done
  done ) &
COPIER=$!
MEAS_ARGS=()
for file in ${MEAS_BASE:-benchmarks/configs/ppo_towns.yaml} ${MEAS_CONFIG:-}; do MEAS_ARGS+=(--config "$file"); done
taskset -c "$MEAS_CORES" $PY benchmarks/learning.py curve --algo ppo --suite navigation "${MEAS_ARGS[@]}" \
    --towns $TOWNS --init-from "$INIT_MEAS" --minutes "$MINUTES" --num-envs "$MEAS_ENVS" --torch-threads 2 --device cuda \
    --snapshot-s 30 --max-points 1 --eval-episodes 5 --eval-workers 1 --out "$OUT/ppo_towns" \
    > "$OUT/ppo_towns.txt" 2>&1 &
MEAS=$!
if [ "$CAM_ENVS" -gt 0 ]; then  # CAM_ENVS=0: the measurement run alone, on MEAS_CORES
  CAM_INIT=()
  [ -n "$INIT_CAM" ] && CAM_INIT=(--init-from "$INIT_CAM")
  taskset -c "$CAM_CORES" $PY benchmarks/learning.py curve --algo ppo --suite straight --config benchmarks/configs/ppo_camera.yaml \
      --towns $TOWNS "${CAM_INIT[@]}" --minutes "$MINUTES" --num-envs "$CAM_ENVS" --torch-threads 2 --device cuda \
      --snapshot-s 30 --max-points 1 --eval-episodes 5 --eval-workers 1 --out "$OUT/ppo_camera" \
      > "$OUT/ppo_camera.txt" 2>&1 || true
fi
wait $MEAS || true
kill $COPIER 2>/dev/null || true
for run in ppo_towns ppo_camera; do
  final=$(ls "$OUT/$run"/run/snapshots/*.ckpt 2>/dev/null | tail -1 || true)
  [ -n "$final" ] && cp "$final" "$OUT/$run.ckpt"
done
if [ "${TABLE_WORKERS:-0}" -gt 0 ] && [ -f "$OUT/ppo_towns.ckpt" ]; then
  $PY benchmarks/learning.py table --checkpoint "$OUT/ppo_towns.ckpt" --num-envs 1 --workers "$TABLE_WORKERS" \
      --trained-on Town01 RLTown01 RLTown02 --out "$OUT/table" > "$OUT/table.txt" 2>&1 || true
fi
(cd "$OUT" && find . \( -name '*.json' -o -name '*.png' -o -name '*.txt' -o -name '*.log' -o -name '*.jsonl' \
    -o -name 'config.yaml' \) -not -path '*/snapshots/*' -not -path '*/checkpoints/*' -print0 \
    | tar -czf results.tgz --null -T -)
find "$OUT" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
ls -la "$OUT"
tail -3 "$OUT"/*.txt 2>/dev/null || true
