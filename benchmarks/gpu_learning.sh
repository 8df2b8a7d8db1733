#!/usr/bin/env bash
# Learning curves on the `device` GPU machine (16 cores, CUDA, Python 3.12, no network, no ROS: in-process
# only), one mode per call, each under ~9 minutes of wall clock. Wheels the image lacks travel in .whl/.
#   (through the device tool) bash benchmarks/gpu_learning.sh straight [TRAIN_MINUTES=5]
#       A2C, ACKTR, PPO and HER on `straight`, in parallel: 4 cores each (taskset), 3 envs each, 1 torch thread;
#       then their snapshots and a random policy evaluated on the 25 straight episodes.
#   (through the device tool) bash benchmarks/gpu_learning.sh navigation [TRAIN_MINUTES=6]
#       PPO with benchmarks/configs/ppo_navigation.yaml on 16 envs, snapshots evaluated on `navigation`, then
#       the table of every suite in RLTown01 (trained on) and RLTown02 (never seen); the final checkpoint is
#       $OUT/ppo_navigation/ppo_navigation.ckpt (the candidate for models/ppo_rltown01.ckpt).
# LEARNING_ARGS adds options of benchmarks/learning.py (e.g. "--eval-episodes 2" for a smoke run).
# Results land in $OUT (curve.json/curve.png per run, straight.png, table.json, logs).
set -euo pipefail
MODE=${1:?usage: gpu_learning.sh straight|navigation [TRAIN_MINUTES]}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
if [ -z "${PYTHON:-}" ] && compgen -G ".whl/*.whl" > /dev/null; then
  $PY -m pip install -q --no-index --no-deps .whl/*.whl  # the GPU machine's image only
fi
export PYTHONPATH=src/carla_rl_common:src/carla_rl_sim:src/carla_rl_env:src/carla_rl_agents
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
  $PY -c "import os, torch; print('cpus', os.cpu_count(), 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
} | tee "$OUT/machine.txt"
case "$MODE" in
  straight)
    MINUTES=${2:-5}
    $PY benchmarks/learning.py straight --minutes "$MINUTES" --cores-per-run 4 --num-envs 3 --torch-threads 1 \
        --snapshot-s 30 --max-points 8 --eval-workers 4 --out "$OUT/straight" ${LEARNING_ARGS:-} 2>&1 | tee "$OUT/straight.txt"
    ;;
  navigation)
    MINUTES=${2:-6}
    $PY benchmarks/learning.py navigation --minutes "$MINUTES" --num-envs 16 --torch-threads 2 \
        --snapshot-s 45 --max-points 6 --eval-workers 8 --eval-envs 2 --out "$OUT/ppo_navigation" ${LEARNING_ARGS:-} \
        2>&1 | tee "$OUT/navigation.txt"
    rm -rf "$OUT/ppo_navigation/run/snapshots"  # keep the final checkpoint only (the copy above)
    ;;
  *) echo "unknown mode $MODE (straight | navigation)" >&2; exit 2 ;;
esac
# the run directories' own logs and curves, without the bulky checkpoints
find "$OUT" -path '*/run/checkpoints' -prune -exec rm -rf {} +
find "$OUT" -name 'snapshots' -type d -prune -exec rm -rf {} +
