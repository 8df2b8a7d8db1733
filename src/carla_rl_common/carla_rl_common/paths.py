"""Where the repository's shipped files live (config/, models/), for an editable or colcon install."""

from __future__ import annotations

import os
from pathlib import Path

# src/carla_rl_common/carla_rl_common/paths.py -> the workspace root; CARLA_RL_HOME overrides it (installs
# outside the repository, containers).
REPO_ROOT = Path(os.environ.get("CARLA_RL_HOME", Path(__file__).resolve().parents[3]))
CONFIG_DIR = REPO_ROOT / "config"


def default_objects_file() -> Path:
    """The carla_spawn_objects file of the ego vehicle and its sensors, shared by real CARLA and our simulator."""
    return CONFIG_DIR / "objects.json"
