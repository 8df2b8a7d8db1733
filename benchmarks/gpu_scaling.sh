#!/usr/bin/env bash
# On the `device` GPU machine (16 cores, CUDA, Python 3.12, no network; wheels it lacks travel in .whl/):
# in-process env scaling (1, 4, 8, 16 envs) as is and with one BLAS/OpenMP thread per process, the CPU
# topology, and training steps/s per algorithm with the policy on CUDA and on the CPU. Results in $OUT.
#   (through the device tool) bash benchmarks/gpu_scaling.sh
set -euo pipefail
python3 -m pip install -q --no-index --no-deps .whl/*.whl
export PYTHONPATH=src/carla_rl_common:src/carla_rl_sim:src/carla_rl_env:src/carla_rl_agents:src/carla_rl_bags:src/carla_rl_bringup:src/carla_rl_viz
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  lscpu | grep -E "^(Model name|CPU\(s\)|Thread\(s\) per core|Core\(s\) per socket|Socket\(s\))"
  python3 -c "import os, torch; print('cpus', os.cpu_count(), 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
} | tee "$OUT/machine.txt"
python3 benchmarks/bench_scaling.py --envs 1 4 8 16 --seconds 8 --json | tee "$OUT/scaling.json"
if [ -n "${ONE_THREAD:-}" ]; then  # one BLAS/OpenMP thread per process (made no difference on 2026-11-30)
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \
        python3 benchmarks/bench_scaling.py --envs 1 4 8 16 --seconds 8 --json | tee "$OUT/scaling_one_thread.json"
fi
for device in cuda cpu; do
    python3 benchmarks/bench_train.py --modes inprocess --device $device --steps 4096 --json \
        2>> "$OUT/train.log" | tail -1 | tee "$OUT/train_$device.json"
done
