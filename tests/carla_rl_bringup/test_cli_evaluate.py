"""``carla-rl evaluate`` over ROS 2: results under runs/evaluate/ by default (not beside the checkpoint, in the
tracked models/), and the evaluator's progress in the log, one line per finished episode."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml

pytestmark = pytest.mark.slow


def test_evaluate_over_ros_writes_under_runs_and_shows_progress(repo, tmp_path):
    suite = yaml.safe_load((repo / "config" / "suites" / "RLTown01" / "straight.yaml").read_text())
    suite["episodes"] = suite["episodes"][:2]
    (tmp_path / "two.yaml").write_text(yaml.safe_dump(suite))
    checkpoint = repo / "models" / "ppo_rltown01.ckpt"
    proc = subprocess.run(
        [sys.executable, "-m", "carla_rl_bringup.cli", "evaluate", "--checkpoint", str(checkpoint)]
        + ["--suite", "two.yaml", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "runs" / "evaluate" / "ppo_rltown01" / "RLTown01-two"
    assert json.loads((out / "results.json").read_text())["summary"]["episodes"] == 2
    assert f"results in {out.relative_to(tmp_path)}" in proc.stderr
    bars = [line for line in proc.stderr.splitlines() if line.startswith("[carla_rl_evaluator] evaluate:")]
    assert len(bars) == 3, proc.stderr[-3000:]  # the start and each of the two episodes
    assert re.search(r"\| 1/2 \[\d\d:\d\d<\d\d:\d\d, .*succeeded\]$", bars[1]), bars[1]
    assert "Traceback" not in proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["episodes"] == 2
