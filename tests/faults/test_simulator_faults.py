"""Simulator faults over real DDS: a simulator killed (SIGKILL) or stalled (SIGSTOP) mid-episode.

What the stack does (README, "Faults and recovery"): the env node truncates the running episode with reason
``simulator_timeout`` once no frame came for ``env.sensor_timeout`` s; the agent's reset then fails while no
simulator answers, and the gym adapter retries it (the other envs paused) until a simulator is back, either
restarted by ``carla-rl up --restart N`` or resumed (SIGCONT); the episode after the reset runs normally.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from carla_rl_agents.launcher import NodeSpec, ProcessGroup

pytestmark = pytest.mark.slow
TIMEOUT_S = 1.0  # env.sensor_timeout of these tests
HELPERS = Path(__file__).resolve().parents[1] / "helpers"


def _stack(tmp_path, group: ProcessGroup) -> None:
    config = tmp_path / "env.yaml"
    config.write_text(yaml.safe_dump({"env": {"sensor_timeout": TIMEOUT_S}}))
    group.start(NodeSpec("sim", "carla_rl_sim.node", "", {"synchronous_mode_wait_for_vehicle_control_command": True}))
    group.start(NodeSpec("env", "carla_rl_env.node", "", {"config": [str(config)], "use_sim_time": True}))


def _drive(env, steps: int) -> None:
    for k in range(steps):  # distinct commands: the env node pairs each step with its command
        _, _, terminated, truncated, _ = env.step(np.array([0.01 * k, 0.3], np.float32))
        assert not (terminated or truncated)


def _truncation_after(env, fault) -> tuple[float, dict]:
    """Apply ``fault``, step once; the seconds until the truncated step came and its info."""
    fault()
    start = time.monotonic()
    _, _, terminated, truncated, info = env.step(np.array([0.0, 0.2], np.float32))
    assert truncated and not terminated
    return time.monotonic() - start, info


def test_killed_simulator_truncates_the_episode_and_a_restarted_one_is_waited_for(tmp_path):
    from carla_rl_env.gym_env import RosEnv

    with ProcessGroup(dict(os.environ), restarts=1) as group:
        _stack(tmp_path, group)
        env = RosEnv(timeout=30)
        env.recovery_timeout = 90.0
        try:
            env.reset(seed=1)
            _drive(env, 5)
            sim = group.procs["sim"]
            waited, info = _truncation_after(env, lambda: os.killpg(sim.pid, signal.SIGKILL))
            assert info["termination_reason"] == "simulator_timeout"
            assert waited < TIMEOUT_S + 2.0  # the timeout plus the 0.1 s check period, not the agent's 30 s
            # `carla-rl up --restart` in the background, as wait_for does it
            stop = threading.Event()

            def supervise() -> None:
                while not stop.is_set():
                    group.supervise()
                    time.sleep(0.1)

            threading.Thread(target=supervise, daemon=True).start()
            start = time.monotonic()
            obs, _ = env.reset(seed=2)  # retried until the new simulator answers
            recovered = time.monotonic() - start
            stop.set()
            assert group.restarts == {"sim": 1} and group.procs["sim"].pid != sim.pid
            assert env.observation_space.contains(obs)
            _drive(env, 5)
            print(f"\nkill: truncated after {waited:.2f} s; reset answered {recovered:.1f} s after the truncation")
        finally:
            env.close()


def test_stalled_simulator_truncates_the_episode_and_training_goes_on_when_it_resumes(tmp_path):
    from carla_rl_env.gym_env import RosEnv

    with ProcessGroup(dict(os.environ)) as group:
        _stack(tmp_path, group)
        env = RosEnv(timeout=30)
        try:
            env.reset(seed=1)
            _drive(env, 5)
            sim = group.procs["sim"]
            waited, info = _truncation_after(env, lambda: os.killpg(sim.pid, signal.SIGSTOP))
            assert info["termination_reason"] == "simulator_timeout"
            assert waited < TIMEOUT_S + 2.0
            stalled = 3.0
            threading.Timer(stalled, lambda: os.killpg(sim.pid, signal.SIGCONT)).start()
            start = time.monotonic()
            env.reset(seed=2)  # fails while stalled, is retried, answers once the simulator runs again
            recovered = time.monotonic() - start
            assert recovered >= stalled - 0.5
            _drive(env, 5)
            print(f"\nSIGSTOP: truncated after {waited:.2f} s; reset answered {recovered - stalled:.1f} s after SIGCONT")
        finally:
            os.killpg(group.procs["sim"].pid, signal.SIGCONT)
            env.close()


def _crash_spec(name: str, code: int, after: float = 0.0, required: bool = True) -> NodeSpec:
    return NodeSpec(name, "crash_node", arguments=["--exit", str(code), "--after", str(after)], required=required)


@pytest.mark.parametrize("restarts", [0, 2])
def test_up_restarts_a_dying_required_node_up_to_the_limit_then_stops(restarts):
    import io

    log = io.StringIO()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HELPERS), os.environ.get("PYTHONPATH", "")])}
    with ProcessGroup(env, log=log, restarts=restarts) as group:
        group.start(_crash_spec("main", 0, after=60.0))
        group.start(_crash_spec("sim", 9))
        group.start(_crash_spec("viewer", 1, required=False))  # not required: never restarted, never fatal
        assert group.wait_for("main", timeout=30) == 70
    text = log.getvalue()
    assert text.count("required node 'sim' exited with code 9; restarting it") == restarts
    if restarts:
        assert f"restarting it ({restarts} of {restarts})" in text
        assert f"'sim' exited with code 9 (restarted {restarts} times, the limit); stopping the stack" in text
    else:
        assert "'sim' exited with code 9; stopping the stack" in text
    assert "viewer" not in text


def test_up_takes_a_restart_limit():
    from carla_rl_agents.cli import build_parser

    args = build_parser().parse_args(["up", "train", "--restart", "3"])
    assert args.restart == 3
    assert build_parser().parse_args(["train", "--restart", "2"]).restart == 2
