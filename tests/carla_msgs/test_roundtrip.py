"""Every carla_msgs message and service crosses a process boundary over real DDS and comes back intact."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import carla_msgs.msg as cm
import carla_msgs.srv as cs
import pytest
import rclpy
from diagnostic_msgs.msg import KeyValue
from rclpy.executors import SingleThreadedExecutor

from carla_rl_common.bridge import qos_default

HELPER = Path(__file__).resolve().parents[1] / "helpers" / "echo_node.py"
MESSAGE_TYPES = sorted(n for n in dir(cm) if n.startswith("Carla"))
# The contract note lists these 18 messages; a missing one would silently shrink the test.
EXPECTED = {
    "CarlaActorInfo",
    "CarlaActorList",
    "CarlaBoundingBox",
    "CarlaCollisionEvent",
    "CarlaControl",
    "CarlaEgoVehicleControl",
    "CarlaEgoVehicleInfo",
    "CarlaEgoVehicleInfoWheel",
    "CarlaEgoVehicleStatus",
    "CarlaLaneInvasionEvent",
    "CarlaStatus",
    "CarlaTrafficLightInfo",
    "CarlaTrafficLightInfoList",
    "CarlaTrafficLightStatus",
    "CarlaTrafficLightStatusList",
    "CarlaWalkerControl",
    "CarlaWeatherParameters",
    "CarlaWorldInfo",
}


def fill(msg, seed: int):
    """Give every field a distinct non-default value (recursively), so a dropped field shows."""
    for i, (name, kind) in enumerate(msg.get_fields_and_field_types().items()):
        value = seed * 7 + i + 1
        if kind == "string":
            setattr(msg, name, f"{name}-{value}")
        elif kind == "boolean":
            setattr(msg, name, True)
        elif kind in ("float", "double"):
            setattr(msg, name, value + 0.25)
        elif kind.startswith(("int", "uint")):
            setattr(msg, name, value % 100)
        elif kind.startswith("sequence<int"):
            setattr(msg, name, [0, 1, 2])
        elif kind.startswith("sequence<"):
            inner = kind[len("sequence<") : -1].replace("/", ".msg.").split(".")
            inner_type = getattr(cm, inner[-1]) if inner[0] == "carla_msgs" else None
            setattr(msg, name, [fill(inner_type(), seed + 1), fill(inner_type(), seed + 2)])
        elif kind == "builtin_interfaces/Time":
            getattr(msg, name).sec = value
        else:
            fill(getattr(msg, name), seed + i + 1)
    return msg


@pytest.fixture(scope="module")
def echo():
    proc = subprocess.Popen([sys.executable, str(HELPER)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    rclpy.init()
    node = rclpy.create_node("carla_msgs_roundtrip")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    yield node, executor
    node.destroy_node()
    rclpy.shutdown()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=10)


def spin_until(executor, done, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    return done()


def test_all_contract_messages_exist():
    assert set(MESSAGE_TYPES) == EXPECTED
    assert cm.CarlaLaneInvasionEvent.LANE_MARKING_SOLID == 2 and cm.CarlaControl.STEP_ONCE == 2
    assert cm.CarlaTrafficLightStatus.UNKNOWN == 4


@pytest.mark.parametrize("name", MESSAGE_TYPES)
def test_message_roundtrip(echo, name):
    node, executor = echo
    msg_type = getattr(cm, name)
    received = []
    sub = node.create_subscription(msg_type, f"echo_out/{name}", received.append, qos_default())
    pub = node.create_publisher(msg_type, f"echo_in/{name}", qos_default())
    sent = fill(msg_type(), seed=3)
    try:
        assert spin_until(executor, lambda: pub.get_subscription_count() > 0 and sub.get_publisher_count() > 0)
        pub.publish(sent)
        assert spin_until(executor, lambda: received), f"{name} did not come back"
        assert received[0] == sent
    finally:
        node.destroy_subscription(sub)
        node.destroy_publisher(pub)


def test_services_roundtrip(echo):
    node, executor = echo
    spawn = node.create_client(cs.SpawnObject, "echo/spawn_object")
    destroy = node.create_client(cs.DestroyObject, "echo/destroy_object")
    blueprints = node.create_client(cs.GetBlueprints, "echo/get_blueprints")
    for client in (spawn, destroy, blueprints):
        assert client.wait_for_service(timeout_sec=10.0)
    req = cs.SpawnObject.Request(
        type="vehicle.tesla.model3",
        id="hero",
        attributes=[KeyValue(key="role_name", value="hero")],
        attach_to=7,
        random_pose=True,
    )
    futures = [
        spawn.call_async(req),
        destroy.call_async(cs.DestroyObject.Request(id=42)),
        blueprints.call_async(cs.GetBlueprints.Request(filter="vehicle.*,sensor.*")),
    ]
    assert spin_until(executor, lambda: all(f.done() for f in futures))
    assert (futures[0].result().id, futures[0].result().error_string) == (5, "vehicle.tesla.model3")
    assert futures[1].result().success is True
    assert list(futures[2].result().blueprints) == ["vehicle.*", "sensor.*"]
