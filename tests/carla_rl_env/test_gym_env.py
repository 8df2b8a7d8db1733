"""The gymnasium adapter's consumer side over real DDS: malformed step messages are logged and dropped."""

from __future__ import annotations

import time

import numpy as np
import pytest
import rclpy
from carla_rl_msgs.msg import Step
from gymnasium import spaces
from rclpy.executors import SingleThreadedExecutor

from carla_rl_common import bridge
from carla_rl_env.gym_env import EnvClient


@pytest.fixture
def ros():
    rclpy.init()
    node = rclpy.create_node("gym_env_consumer")
    producer = rclpy.create_node("gym_env_producer")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(producer)
    yield node, producer, executor
    node.destroy_node()
    producer.destroy_node()
    rclpy.shutdown()


def step_msg(step: int, image: np.ndarray) -> Step:
    msg = Step(episode=1, step=step, measurements=[0.5] * 4, goal=[1.0, 2.0])
    msg.images.append(bridge.numpy_to_image(image, "bgr8"))
    msg.image_names.append("rgb_front")
    return msg


def test_wrong_sized_image_is_dropped_and_consumer_keeps_running(ros):
    node, producer, executor = ros
    client = EnvClient(node)
    client.observation_space = spaces.Dict(
        {
            "rgb_front": spaces.Box(0, 255, (8, 8, 3), np.uint8),
            "measurements": spaces.Box(-np.inf, np.inf, (4,), np.float32),
            "goal": spaces.Box(-np.inf, np.inf, (2,), np.float32),
        }
    )
    client.episode = 1
    pub = producer.create_publisher(Step, "/" + bridge.BridgeTopics().step, bridge.qos_default())
    deadline = time.monotonic() + 10
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)

    pub.publish(step_msg(1, np.zeros((6, 8, 3), np.uint8)))  # wrong size
    pub.publish(step_msg(2, np.full((8, 8, 3), 7, np.uint8)))  # good
    got = None
    deadline = time.monotonic() + 10
    while got is None and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
        got = client.take_step()
    assert got is not None, "the valid step after a malformed one never came through"
    msg, obs = got
    assert msg.step == 2 and client.dropped == 1
    assert obs["rgb_front"].shape == (8, 8, 3) and obs["rgb_front"][0, 0, 0] == 7
    np.testing.assert_array_equal(obs["goal"], [1.0, 2.0])


def test_image_with_inconsistent_byte_count_is_rejected():
    msg = bridge.numpy_to_image(np.zeros((4, 4, 3), np.uint8), "bgr8")
    msg.data = msg.data[:-1]
    with pytest.raises(ValueError, match="should have 48 bytes"):
        bridge.image_to_numpy(msg)
