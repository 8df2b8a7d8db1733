"""The committed pretrained PPO drives over ROS 2, and `carla-rl evaluate` scores it on a suite."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
CHECKPOINT = REPO / "models" / "ppo_rltown01.ckpt"


def carla_rl(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "carla_rl_bringup.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def two_episode_suite(tmp_path) -> Path:
    suite = yaml.safe_load((REPO / "config" / "suites" / "RLTown01" / "straight.yaml").read_text())
    suite["episodes"] = suite["episodes"][:2]
    path = tmp_path / "straight2.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def test_drive_from_the_pretrained_checkpoint(tmp_path):
    proc = carla_rl(
        "drive", "--checkpoint", str(CHECKPOINT), "--episodes", "1", "--suite", str(two_episode_suite(tmp_path))
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (record,) = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert record["scenario_id"] == "straight-00"
    assert record["success"] and record["termination_reason"] == "goal_reached"


def test_evaluate_prints_the_summary_as_json(tmp_path):
    proc = carla_rl(
        "evaluate",
        "--checkpoint",
        str(CHECKPOINT),
        "--suite",
        str(two_episode_suite(tmp_path)),
        "--seed",
        "3",
        "--json",
        "--out",
        str(tmp_path / "results"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["episodes"] == 2 and 0.0 <= summary["success_rate"] <= 1.0
    assert (tmp_path / "results" / "RLTown01-straight2" / "results.md").is_file()


def test_a_checkpoint_of_another_algorithm_or_a_cut_file_is_refused(tmp_path):
    from carla_rl_agents.checkpoints import CheckpointError, read_meta

    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(CHECKPOINT.read_bytes()[: CHECKPOINT.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=str(cut)):
        read_meta(cut)
    with pytest.raises(CheckpointError, match="ppo"):
        read_meta(CHECKPOINT, expected_algo="a2c")
