"""Helpers of the conformance suite (see conftest.py): objects files, spawn points and the probe node."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from carla_msgs.msg import CarlaEgoVehicleControl, CarlaEgoVehicleStatus
from rclpy._rclpy_pybind11 import NodeNameNonExistentError
from rclpy.executors import SingleThreadedExecutor

from carla_rl_common import bridge
from carla_rl_common.opendrive import RoadNetwork

TOWN = "RLTown01"
SIM_NODE = "carla_ros_bridge"  # the node name of the simulator, as the bridge's
CAMERA = {
    "type": "sensor.camera.rgb",
    "id": "rgb_front",
    "image_size_x": 32,
    "image_size_y": 24,
    "fov": 90.0,
    "spawn_point": {"x": 2.0, "y": 0.0, "z": 2.0, "roll": 0.0, "pitch": 0.0, "yaw": 0.0},
}
#: every sensor and pseudo actor a vehicle can carry, under the ids config/objects.json uses
EGO_SENSORS = [
    CAMERA,
    {"type": "sensor.other.collision", "id": "collision"},
    {"type": "sensor.other.lane_invasion", "id": "lane_invasion"},
    {"type": "sensor.other.imu", "id": "imu"},
    {"type": "sensor.pseudo.odom", "id": "odometry"},
    {"type": "sensor.pseudo.speedometer", "id": "speedometer"},
    {"type": "sensor.pseudo.tf", "id": "tf"},
    {"type": "actor.pseudo.control", "id": "control"},
]


def vehicle(role: str = "ego_vehicle", sensors: list | None = None, spawn: tuple | None = None) -> dict:
    """An objects-file vehicle; ``spawn`` = (x, y, yaw rad) in the map frame (default: a random spawn point)."""
    obj: dict[str, Any] = {
        "type": "vehicle.tesla.model3",
        "id": role,
        "sensors": EGO_SENSORS if sensors is None else sensors,
    }
    if spawn is not None:
        x, y, yaw = spawn
        obj["spawn_point"] = {"x": x, "y": y, "z": 0.0, "roll": 0.0, "pitch": 0.0, "yaw": math.degrees(yaw)}
    return obj


def objects(*entries: dict) -> dict:
    return {"objects": list(entries)}


def spawn_point(network: RoadNetwork, heading: Callable[[float], bool] = lambda yaw: abs(math.sin(yaw)) > 0.999):
    """(x, y, yaw, lane key) of the first spawn point whose heading passes ``heading`` (default: along y, where
    a map-frame and a body-frame vector differ most) and whose lane has a driving lane on its left. RLTown01's
    first ones start a long straight."""
    for x, y, yaw, key in network.spawn_points():
        lane = network.lanes[key]
        if heading(yaw) and lane.left_neighbor is not None:
            return x, y, yaw, key
    raise AssertionError("no such spawn point")


class Probe:
    """This test's node: what it received per topic, publishers, service calls and lockstep ticks."""

    def __init__(self, node) -> None:
        self.node = node
        self.executor = SingleThreadedExecutor(context=node.context)
        self.executor.add_node(node)
        self.got: dict[str, list] = {}
        self._pubs: dict[str, Any] = {}

    def subscribe(self, msg_type: type, topic: str, qos=None) -> list:
        """Every message on ``topic`` from now on, in arrival order (the list fills while the probe spins)."""
        got = self.got.setdefault(topic, [])
        self.node.create_subscription(msg_type, topic, got.append, qos or bridge.qos_default(1000))
        return got

    def publish(self, msg_type: type, topic: str, msg, qos=None) -> None:
        if topic not in self._pubs:
            self._pubs[topic] = self.node.create_publisher(msg_type, topic, qos or bridge.qos_default())
        self._pubs[topic].publish(msg)

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.01)

    def spin_until(self, done: Callable[[], bool], timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.01)
        return done()

    def call(self, srv_type: type, name: str, request, timeout: float = 10.0):
        client = self.node.create_client(srv_type, name)
        assert client.wait_for_service(timeout_sec=timeout), f"no service {name}"
        future = client.call_async(request)
        assert self.spin_until(future.done, timeout), f"{name} did not answer"
        return future.result()

    def publishers_of_sim(self) -> set[str]:
        return self._names(self.node.get_publisher_names_and_types_by_node)

    def subscriptions_of_sim(self) -> set[str]:
        return self._names(self.node.get_subscriber_names_and_types_by_node)

    def _names(self, by_node) -> set[str]:
        try:
            return {name for name, _ in by_node(SIM_NODE, "/")}
        except NodeNameNonExistentError:  # not discovered yet
            return set()

    def wait_for_sim(self, timeout: float = 30.0) -> None:
        assert self.spin_until(lambda: "/carla/status" in self.publishers_of_sim(), timeout), "the simulator is not up"

    def step(self, role: str = "ego_vehicle", **control) -> CarlaEgoVehicleStatus:
        """Send one command (the simulator runs with the wait flag) and return the vehicle_status of the tick it
        caused; a command lost before the simulator matched us is sent again."""
        topic = f"/carla/{role}/vehicle_status"
        statuses = self.got.get(topic) or self.subscribe(CarlaEgoVehicleStatus, topic)
        before = len(statuses)
        for _ in range(20):
            self.publish(
                CarlaEgoVehicleControl, f"/carla/{role}/vehicle_control_cmd", CarlaEgoVehicleControl(**control)
            )
            if self.spin_until(lambda: len(statuses) > before, 0.5):
                self.spin_until(lambda: False, 0.0)
                return statuses[-1]
        raise AssertionError("the simulator did not tick on a command")


def yaw_of(status: CarlaEgoVehicleStatus) -> float:
    q = status.orientation
    return bridge.quaternion_to_yaw(q.x, q.y, q.z, q.w)
