"""`carla-rl drive`: simulator, env and agent nodes as three processes in lockstep over real DDS."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import pytest
import yaml
from observer import Observer

from carla_rl_common import bridge
from carla_rl_env.episode import CommandMatcher

pytestmark = pytest.mark.slow

STEPS = 150
LONG_EPISODES = {
    "env": {
        "episode": {
            "max_episode_steps": STEPS,
            "terminate_on_collision": False,
            "terminate_on_off_road": False,
            "max_route_deviation": 1.0e6,
            "wrong_way_angle_deg": 181.0,
            "stuck_seconds": 1.0e6,
            "min_average_speed": 0.01,
        }
    }
}


def control_tuple(c):
    """The command's fields of a control message: a step carries the applied control, whose gear and reverse
    are the gearbox's (ros-bridge carla_ros_bridge/src/carla_ros_bridge/ego_vehicle.py copies
    actor.get_control())."""
    return CommandMatcher.key(bridge.msg_to_control(c))


def test_random_agent_lockstep(tmp_path):
    config = tmp_path / "long.yaml"
    config.write_text(yaml.safe_dump(LONG_EPISODES))
    observer = Observer()
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "carla_rl_bringup.cli",
                "drive",
                "--agent",
                "random",
                "--episodes",
                "3",
                "--config",
                str(config),
                "--seed",
                "3",
            ],
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        observer.close()
    assert proc.returncode == 0, proc.stderr[-3000:]

    # one JSON line per episode, with the keys users' scripts read
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 3
    for record in lines:
        for key in ("env_id", "episode", "length", "return", "success", "termination_reason", "reward_terms"):
            assert key in record
        assert isinstance(record["reward_terms"], dict) and record["reward_terms"]
        assert record["length"] == STEPS and record["termination_reason"] == "max_episode_steps"
        assert sum(record["reward_terms"].values()) == pytest.approx(record["return"], rel=1e-4, abs=1e-3)
    assert [r["episode"] for r in lines] == [1, 2, 3]  # each reset starts a fresh episode

    # The observer may join a moment after the stack starts: judge the episodes it saw from their start.
    steps = observer.of("step")
    full = [e for e in (1, 2, 3) if [s.step for s in steps if s.episode == e] == list(range(1, STEPS + 1))]
    assert len(full) >= 2, f"observed complete episodes: {full}"
    judged = [s for s in steps if s.episode in full]
    assert len(judged) >= 300
    for episode in full:
        ep = [s for s in judged if s.episode == episode]
        assert all(b.frame - a.frame == 1 for a, b in itertools.pairwise(ep))  # one tick per step

    # no frame skipped: /carla/status frame numbers go up by exactly one (a status repeats the last number when
    # synchronous_mode_running changes, and the start-up one carries 0: ros-bridge carla_status_publisher.py)
    frames = [f for f, _ in itertools.groupby(m.frame for m in observer.of("status")) if f]
    assert len(frames) >= 300
    assert all(b - a == 1 for a, b in itertools.pairwise(frames)), "a frame was skipped or repeated"

    # each step carries exactly the control the agent sent for that frame: the agent stamps a command with
    # the sim time of the observation it answers, so the command for step k has step k-1's stamp
    commands = {
        bridge.stamp_to_ns(c.header.stamp): c
        for c in observer.of("control")
        if c.header.stamp.sec or c.header.stamp.nanosec
    }
    dt_ns = 50_000_000
    # The agent starts last: the observer may match its command topic a few commands after the steps'.
    first_command = min(commands)
    checked = [s for s in judged if bridge.stamp_to_ns(s.header.stamp) - dt_ns >= first_command]
    assert len(checked) >= 290, f"only {len(checked)} steps after the first observed command"
    for step in checked:
        command = commands.get(bridge.stamp_to_ns(step.header.stamp) - dt_ns)
        assert command is not None, f"no command answered the observation before step {step.step}"
        assert control_tuple(step.control) == control_tuple(command), f"step {step.step} of episode {step.episode}"
