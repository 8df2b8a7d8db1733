"""A clean run prints no warning: users who learn to ignore warnings miss the real one (issue 20).

A one-episode `carla-rl drive` of the pretrained agent and of the random one, over ROS: not one WARN (or ERROR)
line from any node, from its start (no agent yet) to its stop (the agent gone, the stack stopping)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("agent", [["--checkpoint", "models/ppo_rltown01.ckpt"], ["--agent", "random"]])
def test_a_one_episode_drive_prints_no_warning(agent):
    result = subprocess.run(
        [sys.executable, "-m", "carla_rl_bringup.cli", "drive", *agent, "--episodes", "1"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len([json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]) == 1
    noisy = [line for line in result.stderr.splitlines() if "WARN" in line or "ERROR" in line or "Warning" in line]
    assert noisy == [], "\n".join(noisy)
