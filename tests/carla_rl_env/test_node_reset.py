"""The env node's reset against the real bridge's behaviour, without a simulator: a failed traffic spawn is
logged with the bridge's error string (once per blueprint), and a teleport sends the lane's z and a zero
velocity."""

from __future__ import annotations

from typing import Any

import pytest
import rclpy
from carla_msgs.srv import SpawnObject

from carla_rl_env.episode import TRAFFIC_BLUEPRINTS, Settle
from carla_rl_env.scenarios import Scenario


class Logger:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, text: str, **_: Any) -> None:
        self.warnings.append(text)

    def __getattr__(self, name: str):
        return lambda *a, **k: None


class Recorder:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    def publish(self, msg: Any) -> None:
        self.sent.append(msg)


def run(coroutine) -> Any:
    """Run a coroutine that awaits only already-finished work."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("the coroutine waited")


@pytest.fixture()
def node():
    from carla_rl_env.node import EnvNode

    rclpy.init()
    env = EnvNode()
    logger = Logger()
    env.get_logger = lambda: logger
    yield env
    env.destroy_node()
    rclpy.try_shutdown()


def test_a_failed_traffic_spawn_is_logged_with_the_bridges_error_string(node):
    # ros-bridge carla_ros_bridge/src/carla_ros_bridge/bridge.py spawn_object answers id -1 and the exception's
    # text in error_string (e.g. a blueprint CARLA's library lacks, actor_factory.py blueprint_lib.find).
    requests = []

    async def call(client, request):
        requests.append(request)
        return SpawnObject.Response(id=-1, error_string=f"blueprint {request.type!r} not found")

    node.spawn_client = type("Ready", (), {"service_is_ready": lambda self: True})()
    node._call = call
    run(node._respawn_traffic(Scenario("s", (0.0, 0.0, 0.0), (10.0, 0.0), 2 * len(TRAFFIC_BLUEPRINTS), 0)))
    assert [r.type for r in requests] == list(TRAFFIC_BLUEPRINTS) * 2  # real CARLA blueprints
    assert all(r.random_pose for r in requests)
    failed = [w for w in node.get_logger().warnings if "could not spawn" in w]
    assert len(failed) == len(TRAFFIC_BLUEPRINTS)  # once per blueprint
    assert all(f"blueprint '{b}' not found" in w for b, w in zip(TRAFFIC_BLUEPRINTS, failed))
    assert node.traffic_ids == []


def test_a_teleport_sends_the_lane_z_and_stops_the_car(node):
    # control/set_transform keeps the physics velocity (actor_control.py on_pose -> actor.set_transform);
    # control/set_target_velocity with a zero Twist stops the car (on_twist).
    node.pub_transform, node.pub_velocity = Recorder(), Recorder()
    settle = Settle((10.0, -2.0, 0.5), settle_frames=1)
    settle.z = 3.25  # as Settle reads it from the map
    node._teleport(settle)
    (pose,), (twist,) = node.pub_transform.sent, node.pub_velocity.sent
    assert (pose.position.x, pose.position.y, pose.position.z) == (10.0, -2.0, 3.25)
    assert pose.orientation.z == pytest.approx(0.2474, abs=1e-4)
    values = (twist.linear.x, twist.linear.y, twist.linear.z, twist.angular.x, twist.angular.y, twist.angular.z)
    assert values == (0.0,) * 6
