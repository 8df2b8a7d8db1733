"""``gymnasium.make`` of the registered ids: the in-process env and the ROS adapter (against a simulator and an
env node in their own processes), both passing gymnasium's own checker."""

from __future__ import annotations

import os
import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import carla_rl_env  # noqa: F401  (registers the ids)
from carla_rl_bringup.launcher import NodeSpec, ProcessGroup


def _unbounded_box_warnings():
    # our measurement spaces are unbounded on purpose (speeds, distances): gymnasium's checker says so
    warnings.filterwarnings("ignore", message=".*Box observation space (minimum|maximum) value is.*infinity")


def test_driving_v0_makes_steps_and_passes_the_checker():
    env = gymnasium.make("carla_rl/Driving-v0", town="RLTown02", suite="straight", seed=3)
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs) and "ego_pose" in info
    for _ in range(5):
        obs, reward, *_, info = env.step(env.action_space.sample())
    assert np.isfinite(reward) and env.observation_space.contains(obs)
    assert env.unwrapped.sim.network.name == "RLTown02"
    with warnings.catch_warnings():
        _unbounded_box_warnings()
        check_env(env.unwrapped, skip_render_check=True)
    env.close()


def test_an_unknown_suite_fails_when_made():
    with pytest.raises(FileNotFoundError, match="no suite 'nowhere'"):
        gymnasium.make("carla_rl/Driving-v0", suite="nowhere")


@pytest.mark.slow
def test_ros_driving_v0_against_a_running_stack(tmp_path):
    group = ProcessGroup(dict(os.environ), log=open(tmp_path / "stack.log", "w"))
    group.start(NodeSpec("sim", "carla_rl_sim.node", "", {"synchronous_mode_wait_for_vehicle_control_command": True}))
    group.start(NodeSpec("env", "carla_rl_env.node", "", {"use_sim_time": True}))
    try:
        env = gymnasium.make("carla_rl/RosDriving-v0", timeout=60)
        obs, _ = env.reset(seed=0)
        obs, reward, *_ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs) and np.isfinite(reward)
        with warnings.catch_warnings():
            _unbounded_box_warnings()
            check_env(env.unwrapped, skip_render_check=True)
        env.close()
    finally:
        group.stop()
