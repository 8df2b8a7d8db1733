"""The README's ``carla-rl evaluate-bag runs/bags/drive1 --checkpoint models/ppo_rltown01.ckpt``: the env is
the checkpoint's (its saved config, 27 measurements) unless --config names one; the per-step detail goes to the
report, the terminal gets a line per episode and a JSON summary; a bad checkpoint or config is one line and
leaves no report directory."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def carla_rl(*args: str, cwd, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "carla_rl_bringup.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, repo):
    """The README's recording command, one short episode (``runs/bags/drive1`` in a scratch directory)."""
    tmp = tmp_path_factory.mktemp("evaluate_bag")
    (tmp / "models").symlink_to(repo / "models")
    (tmp / "short.yaml").write_text("env:\n  episode:\n    max_episode_steps: 40\n")
    drive = carla_rl(
        "drive", "--checkpoint", "models/ppo_rltown01.ckpt", "--episodes", "1", "--config", "short.yaml",
        "--record", "runs/bags/drive1", cwd=tmp,
    )  # fmt: skip
    assert drive.returncode == 0, drive.stderr[-3000:]
    return tmp, json.loads(drive.stdout.splitlines()[-1])


def test_the_readme_command_scores_the_bag_with_the_checkpoints_env(recorded):
    tmp, live = recorded
    proc = carla_rl("evaluate-bag", "runs/bags/drive1", "--checkpoint", "models/ppo_rltown01.ckpt", cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "does not match" not in proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and len(proc.stdout) < 1000, proc.stdout[:2000]  # a line per episode, the summary
    assert lines[0].startswith("env_0 #1: rebuilt, 40 steps, return ")
    summary = json.loads(lines[1])
    assert summary["episodes"] == summary["rebuilt"] == 1 and summary["policy_samples"] == 40
    assert summary["max_return_difference"] == pytest.approx(0.0, abs=1e-4)
    assert summary["mean_return"] == pytest.approx(live["return"], abs=1e-4)
    report = json.loads((tmp / "runs" / "bags" / "drive1_report" / "report.json").read_text())
    assert len(report["episodes"][0]["rewards"]) == 40  # the per-step detail is in the report
    assert report["config"] == ["models/ppo_rltown01.ckpt (its config)"]


def test_a_bad_checkpoint_or_config_is_one_line_and_leaves_no_report(recorded, repo):
    tmp, _ = recorded
    (tmp / "torn.ckpt").write_bytes((repo / "models" / "ppo_rltown01.ckpt").read_bytes()[:4096])
    (tmp / "defaults.yaml").write_text("env: {}\n")
    for args, needle in (
        (["--checkpoint", "torn.ckpt"], "torn.ckpt: truncated or corrupt checkpoint"),
        (
            ["--checkpoint", "models/ppo_rltown01.ckpt", "--config", "defaults.yaml"],
            "(27,), float32)) does not match the env",
        ),
    ):
        proc = carla_rl("evaluate-bag", "runs/bags/drive1", *args, "--out", "failed_report", cwd=tmp)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and len(lines) == 1 and needle in lines[0], proc.stderr[-3000:]
        assert not (tmp / "failed_report").exists()
