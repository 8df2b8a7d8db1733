#!/usr/bin/env bash
# Regenerate requirements.txt (the full pinned lock) from the current .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
{
  echo "# Every dependency of carla-rl, pinned: a full lock written by scripts/lock_requirements.sh."
  echo "# ROS 2 Jazzy (LTS) comes from PyPI wheels; torch is the CPU wheel on local disk (plain 'torch' pulls CUDA)."
  .venv/bin/pip freeze --exclude-editable 2>/dev/null \
    | grep -v -E "^(carla_msgs|carla_rl_msgs|carla-msgs|carla-rl-msgs|torch|pytest-repeat|pytest-rerunfailures|pytest-cov|coverage)==" \
    | grep -v -E "^-e "
  echo "torch==2.13.0"
} > requirements.txt
