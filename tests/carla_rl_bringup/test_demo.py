"""`carla-rl demo` (what `make demo` runs) end to end: a short PPO run over ROS 2, then the shipped pretrained
model drives over ROS 2 and is recorded; the closing lines say where the curve, the logs and the video are."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]
REPO = Path(__file__).resolve().parents[2]


def test_demo_trains_then_the_pretrained_model_drives_on_video(tmp_path):
    run_dir = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "carla_rl_bringup.cli", "demo", "--episodes", "1", "--run-dir", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    where = dict(line.strip().split("  ", 1) for line in proc.stdout.split("Where to look:", 1)[1].strip().splitlines())
    where = {label: text.strip() for label, text in where.items()}
    assert set(where) == {
        "learning curve (1/2)",
        "TensorBoard",
        "a pretrained episode (2/2)",
        "its scores",
        "the browser view, live",
    }, proc.stdout

    curve = (REPO / where["learning curve (1/2)"]).resolve()
    assert curve == (run_dir / "learning_curve.png").resolve() and curve.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tensorboard, logdir = where["TensorBoard"].split(" --logdir ")
    assert (REPO / tensorboard).is_file() and list((REPO / logdir).glob("events.out.tfevents.*"))

    results = json.loads((REPO / where["its scores"]).with_name("results.json").read_text())
    (episode,) = results["episodes"]
    assert episode["success"], episode  # the pretrained model reaches the goal of the shortest one_turn route
    video = REPO / where["a pretrained episode (2/2)"]
    assert video.name == "env_0_episode_0.mp4"  # results.md's row 0
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = sum(1 for _ in container.decode(stream))
    assert frames == episode["length"]  # one frame per step over ROS

    view = where["the browser view, live"].split()
    assert view[1:3] == ["up", "drive"] and "--viz" in view and (REPO / view[view.index("--checkpoint") + 1]).is_file()
