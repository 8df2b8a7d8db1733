"""`carla-rl drive --record`, `carla-rl bag info` and `carla-rl evaluate-bag` from the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def carla_rl(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "carla_rl_bringup.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def test_record_a_drive_then_inspect_and_score_it(tmp_path):
    config = tmp_path / "short.yaml"
    config.write_text("env:\n  episode:\n    max_episode_steps: 60\n")
    bag = tmp_path / "run"
    drive = carla_rl("drive", "--agent", "random", "--episodes", "2", "--config", str(config), "--record", str(bag))
    assert drive.returncode == 0, drive.stderr[-3000:]
    live = [json.loads(line) for line in drive.stdout.splitlines() if line.startswith("{")]

    info = carla_rl("bag", "info", str(bag), "--json")
    assert info.returncode == 0, info.stderr
    topics = {t["name"] if isinstance(t, dict) and "name" in t else t: t for t in json.loads(info.stdout)["topics"]}
    assert any("carla_rl/step" in str(name) for name in topics)

    scored = carla_rl("evaluate-bag", str(bag), "--config", str(config), "--out", str(tmp_path / "report"))
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert json.loads(scored.stdout.strip().splitlines()[-1])["rebuilt"] == len(live)  # the summary
    report = json.loads((tmp_path / "report" / "report.json").read_text())  # the detail is in the report
    # every episode rebuilt: frames lost by the recorder would turn one into "recorded steps only" (with a note)
    assert all(e["mode"] == "rebuilt" for e in report["episodes"]), [
        (e["episode"], e["notes"]) for e in report["episodes"]
    ]
    rebuilt = {e["episode"]: e["return"] for e in report["episodes"]}
    for episode in live:  # observations and rewards rebuilt from the raw bridge topics match the live run
        assert rebuilt[episode["episode"]] == pytest.approx(episode["return"], abs=1e-4)
    assert (tmp_path / "report" / "report.md").is_file()


def test_a_cut_bag_is_reported_with_its_name(tmp_path):
    bag = tmp_path / "nothing"
    bag.mkdir()
    (bag / "metadata.yaml").write_text("not: [a, rosbag2")
    proc = carla_rl("bag", "info", str(bag))
    assert proc.returncode == 1 and str(bag) in proc.stderr
