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
MODE=${1:?usage: gpu_learning.sh straight|navigation|all [TRAIN_MINUTES]}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
if [ -z "${PYTHON:-}" ] && compgen -G ".whl/*.whl" > /dev/null; then
  $PY -m pip install -q --no-index --no-deps .whl/*.whl  # the GPU machine's image only
fi
export PYTHONPATH=src/carla_rl_common:src/carla_rl_sim:src/carla_rl_env:src/carla_rl_agents:src/carla_rl_bags:src/carla_rl_bringup
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
    rm -rf "$OUT/ppo_navigation/run/snapshots" "$OUT/ppo_navigation/run/checkpoints"  # the final one is copied
    # the device returns at most 8 files: everything small in one tarball, the checkpoint beside it
    mv "$OUT/ppo_navigation/ppo_navigation.ckpt" "$OUT/"
    (cd "$OUT" && tar --exclude=results.tgz --exclude=ppo_navigation.ckpt -czf results.tgz . \
        && find . -mindepth 1 -not -name results.tgz -not -name ppo_navigation.ckpt -delete)
    ls -la "$OUT"
    exit 0
    ;;
  all)
    # one device call (~9 minutes): straight for the 4 algorithms on cores 0-3 (one core, one env each) beside
    # PPO navigation on cores 4-15 (10 envs); the final navigation checkpoint is evaluated on `navigation` only
    # (run `learning.py table` on it afterwards). Everything small is packed into $OUT/results.tgz.
    MINUTES=${2:-4.5}
    $PY benchmarks/learning.py straight --minutes "$MINUTES" --cores-per-run 1 --num-envs 1 --torch-threads 1 \
        --snapshot-s 30 --max-points 4 --eval-episodes 10 --eval-workers 1 --out "$OUT/straight" \
        > "$OUT/straight.txt" 2>&1 &
    taskset -c 4-15 $PY benchmarks/learning.py curve --algo ppo --suite navigation \
        --config benchmarks/configs/ppo_navigation.yaml --minutes "$MINUTES" --num-envs 10 --torch-threads 2 \
        --snapshot-s 60 --max-points 1 --eval-workers 4 --eval-envs 2 --out "$OUT/ppo_navigation" \
        > "$OUT/navigation.txt" 2>&1 || true
    wait || true
    final=$(ls "$OUT"/ppo_navigation/run/snapshots/*.ckpt 2>/dev/null | tail -1 || true)
    [ -n "$final" ] && cp "$final" "$OUT/ppo_navigation/ppo_navigation.ckpt"
    (cd "$OUT" && find . \( -name '*.json' -o -name '*.png' -o -name '*.txt' -o -name '*.log' -o -name '*.jsonl' \
        -o -name 'ppo_navigation.ckpt' -o -name 'config.yaml' \) -not -path '*/snapshots/*' -not -path '*/checkpoints/*' \
        -print0 | tar -czf results.tgz --null -T -)
    ls -la "$OUT/results.tgz"
    exit 0
    ;;
  *) echo "unknown mode $MODE (straight | navigation | all)" >&2; exit 2 ;;
esac
# the run directories' own logs and curves, without the bulky checkpoints
find "$OUT" -path '*/run/checkpoints' -prune -exec rm -rf {} +
find "$OUT" -name 'snapshots' -type d -prune -exec rm -rf {} +
