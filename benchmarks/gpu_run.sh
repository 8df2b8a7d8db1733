#!/usr/bin/env bash
# One session on the `device` GPU machine (16 cores, CUDA, Python 3.12, no network): in-process env scaling,
# then PPO training in-process on 16 envs for a fixed wall-clock budget. Wheels the image lacks travel in .whl/.
#   (through the device tool) bash benchmarks/gpu_run.sh 420
set -euo pipefail
BUDGET=${1:-420}
python3 -m pip install -q --no-index --no-deps .whl/*.whl
export PYTHONPATH=src/carla_rl_common:src/carla_rl_sim:src/carla_rl_env:src/carla_rl_agents:src/carla_rl_bags:src/carla_rl_bringup
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/machine.txt"
python3 -c "import os, torch; print('cpus', os.cpu_count(), 'torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/machine.txt"
python3 benchmarks/bench_scaling.py --envs 1 4 8 16 --seconds 8 --json | tee "$OUT/scaling.json"
timeout "$BUDGET" python3 -m carla_rl_bringup.cli train --inprocess --algo ppo \
    --config benchmarks/configs/ppo_pretrain.yaml --run-dir /tmp/run 2> >(tail -c 4000 > "$OUT/train.log") || true
ls /tmp/run /tmp/run/checkpoints | tee "$OUT/run_files.txt"
cp "$(ls /tmp/run/checkpoints/*.ckpt | tail -1)" "$OUT/ppo_rltown01.ckpt"
cp /tmp/run/episodes.jsonl /tmp/run/config.yaml "$OUT/"
python3 -c "from carla_rl_agents.training import plot_learning_curve as p; p('/tmp/run/episodes.jsonl', '$OUT/learning_curve.png')"
