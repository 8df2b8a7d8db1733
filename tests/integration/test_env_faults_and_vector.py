"""The env node over real DDS: a sensor that stops mid-episode truncates it; four envs run side by side."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from carla_rl_bringup.launcher import NodeSpec, ProcessGroup

pytestmark = pytest.mark.slow


def test_camera_that_stops_publishing_truncates_the_episode(tmp_path):
    from carla_msgs.msg import CarlaActorList
    from carla_msgs.srv import DestroyObject

    from carla_rl_common import bridge
    from carla_rl_env.gym_env import RosEnv, spin_until

    config = tmp_path / "env.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "env": {
                    "sensor_timeout": 1.0,
                    "observation": {"cameras": [{"id": "rgb_front", "width": 32, "height": 32}]},
                }
            }
        )
    )
    with ProcessGroup(dict(os.environ)) as group:
        group.start(
            NodeSpec("sim", "carla_rl_sim.node", "", {"synchronous_mode_wait_for_vehicle_control_command": True})
        )
        group.start(NodeSpec("env", "carla_rl_env.node", "", {"config": [str(config)], "use_sim_time": True}))
        env = RosEnv(timeout=30)
        try:
            obs, _ = env.reset(seed=1)
            assert obs["rgb_front"].shape == (32, 32, 3)
            # distinct commands: a repeated one cannot be told apart from a tick the bridge made on its own
            actions = iter(np.array([[0.01 * k, 0.2] for k in range(10)], np.float32))
            for _ in range(5):
                _, _, terminated, truncated, _ = env.step(next(actions))
                assert not (terminated or truncated)
            # take the camera away, as a crashed sensor would
            actors = []
            env.node.create_subscription(CarlaActorList, "/carla/actor_list", actors.append, bridge.qos_default())
            destroy = env.node.create_client(DestroyObject, "/carla/destroy_object")
            env.step(next(actions))  # a tick publishes the actor list when it changed
            spin_until(env.executor, lambda: bool(actors), 10, "the actor list")
            camera_id = next(a.id for a in actors[-1].actors if a.rolename == "rgb_front")
            future = destroy.call_async(DestroyObject.Request(id=camera_id))
            spin_until(env.executor, future.done, 10, "destroy_object")
            assert future.result().success
            start = time.monotonic()
            _, _, terminated, truncated, info = env.step(next(actions))
            assert truncated and not terminated
            assert info["termination_reason"] == "sensor_timeout: image:rgb_front"
            assert time.monotonic() - start < 5.0  # within the timeout (plus the check period), not a hang
        finally:
            env.close()


def test_four_envs_side_by_side_on_a_suite(tmp_path):
    config = tmp_path / "short.yaml"
    config.write_text(yaml.safe_dump({"env": {"episode": {"max_episode_steps": 40}}}))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "carla_rl_bringup.cli",
            "drive",
            "--agent",
            "random",
            "--num-envs",
            "4",
            "--episodes",
            "4",
            "--config",
            str(config),
            "--suite",
            "one_turn",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(records) >= 4
    assert {r["env_id"] for r in records} == {"env_0", "env_1", "env_2", "env_3"}
    # the four envs split the suite: each ran a different one_turn episode
    first = {r["env_id"]: r["scenario_id"] for r in records if r["episode"] == 1}
    assert sorted(first.values()) == ["one_turn-00", "one_turn-01", "one_turn-02", "one_turn-03"]
    assert all(r["reward_terms"] for r in records)


def test_a_new_goal_replans_the_route():
    from geometry_msgs.msg import PoseStamped
    from nav_msgs.msg import Path as PathMsg

    from carla_rl_common import bridge
    from carla_rl_env.gym_env import RosEnv, spin_until

    t = bridge.BridgeTopics()
    with ProcessGroup(dict(os.environ)) as group:
        group.start(
            NodeSpec("sim", "carla_rl_sim.node", "", {"synchronous_mode_wait_for_vehicle_control_command": True})
        )
        group.start(NodeSpec("env", "carla_rl_env.node", "", {"use_sim_time": True}))
        env = RosEnv(timeout=30)
        try:
            paths = []
            env.node.create_subscription(PathMsg, "/" + t.waypoints, paths.append, bridge.qos_latched())
            env.reset(seed=3)
            spin_until(env.executor, lambda: bool(paths), 10, "the route")
            first_goal = paths[-1].poses[-1].pose.position
            # re-route to a spawn point far from the first goal
            from carla_rl_common.opendrive import RoadNetwork
            from carla_rl_common.towns import town_path

            network = RoadNetwork.from_file(town_path("RLTown01"))
            gx, gy, _, _ = max(
                network.spawn_points(), key=lambda p: (p[0] - first_goal.x) ** 2 + (p[1] - first_goal.y) ** 2
            )
            goal = PoseStamped()
            goal.header.frame_id = bridge.MAP_FRAME
            goal.pose = bridge.pose_msg(gx, gy, 0.0)
            pub = env.node.create_publisher(PoseStamped, "/" + t.goal, bridge.qos_default())
            spin_until(env.executor, lambda: pub.get_subscription_count() > 0, 10, "the env's goal subscription")
            count = len(paths)
            pub.publish(goal)
            spin_until(env.executor, lambda: len(paths) > count, 10, "the re-planned route")
            end = paths[-1].poses[-1].pose.position
            assert abs(end.x - gx) < 5.0 and abs(end.y - gy) < 5.0
        finally:
            env.close()
