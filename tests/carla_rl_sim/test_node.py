"""The simulator node as a separate process, checked the way the CARLA ROS bridge's own test checks the
bridge (topics, types, frame ids, encodings, sizes), plus the synchronous-mode semantics. The bridge's
behaviour beyond names, fact by fact, is tests/conformance/."""

from __future__ import annotations

import json
import os
import time

import pytest
import rclpy
from carla_msgs.msg import (
    CarlaActorList,
    CarlaControl,
    CarlaEgoVehicleControl,
    CarlaEgoVehicleInfo,
    CarlaEgoVehicleStatus,
    CarlaStatus,
    CarlaWorldInfo,
)
from geometry_msgs.msg import Vector3
from nav_msgs.msg import Odometry
from rclpy.executors import SingleThreadedExecutor
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, Imu, NavSatFix
from std_msgs.msg import Float32, String

from carla_rl_bringup.launcher import NodeSpec, ProcessGroup
from carla_rl_common import bridge
from carla_rl_common.bridge import BridgeTopics

pytestmark = pytest.mark.slow

OBJECTS = {
    "objects": [
        {
            "type": "vehicle.tesla.model3",
            "id": "ego_vehicle",
            "sensors": [
                {
                    "type": "sensor.camera.rgb",
                    "id": "rgb_front",
                    "image_size_x": 800,
                    "image_size_y": 600,
                    "fov": 90.0,
                    "spawn_point": {"x": 2.0, "y": 0.0, "z": 2.0, "roll": 0.0, "pitch": 0.0, "yaw": 0.0},
                },
                {"type": "sensor.other.gnss", "id": "gnss", "spawn_point": {"x": 0.0, "y": 0.0, "z": 0.0}},
                {"type": "sensor.other.imu", "id": "imu", "spawn_point": {"x": 0.0, "y": 0.0, "z": 0.0}},
                {"type": "sensor.other.collision", "id": "collision"},
                {"type": "sensor.other.lane_invasion", "id": "lane_invasion"},
                {"type": "sensor.pseudo.odom", "id": "odometry"},
                {"type": "sensor.pseudo.speedometer", "id": "speedometer"},
            ],
        },
        # pseudo sensors publish only when spawned, as on the bridge
        {"type": "sensor.pseudo.opendrive_map", "id": "map"},
        {"type": "sensor.pseudo.actor_list", "id": "actor_list"},
        {"type": "sensor.pseudo.traffic_lights", "id": "traffic_lights"},
    ]
}


@pytest.fixture
def sim_node(tmp_path):
    """Start the simulator node in its own process; yields (start(params), node, executor)."""
    objects = tmp_path / "objects.json"
    objects.write_text(json.dumps(OBJECTS))
    rclpy.init()
    node = rclpy.create_node("sim_contract_test")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    groups = []

    def start(**params):
        group = ProcessGroup(dict(os.environ))
        group.start(NodeSpec("sim", "carla_rl_sim.node", "", {"objects_file": str(objects), **params}))
        groups.append(group)

    yield start, node, executor
    for g in groups:
        g.stop()
    node.destroy_node()
    rclpy.shutdown()


def collect(node, executor, subscriptions, until, timeout=20.0):
    got = {name: [] for name in subscriptions}
    for name, (msg_type, topic, qos) in subscriptions.items():
        node.create_subscription(msg_type, topic, lambda m, n=name: got[n].append(m), qos)
    deadline = time.monotonic() + timeout
    while not until(got) and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    return got


def test_bridge_contract(sim_node):
    start, node, executor = sim_node
    start()
    t = BridgeTopics("ego_vehicle")
    qos, latched = bridge.qos_default(), bridge.qos_latched()
    subs = {
        "clock": (Clock, "/clock", qos),
        "status": (CarlaStatus, "/carla/status", qos),
        "world_info": (CarlaWorldInfo, "/carla/world_info", latched),
        "map": (String, "/carla/map", latched),
        "actor_list": (CarlaActorList, "/carla/actor_list", qos),
        "vehicle_status": (CarlaEgoVehicleStatus, "/carla/ego_vehicle/vehicle_status", qos),
        "vehicle_info": (CarlaEgoVehicleInfo, "/carla/ego_vehicle/vehicle_info", latched),
        "odometry": (Odometry, "/carla/ego_vehicle/odometry", qos),
        "speedometer": (Float32, "/carla/ego_vehicle/speedometer", qos),
        "gnss": (NavSatFix, "/carla/ego_vehicle/gnss", qos),
        "imu": (Imu, "/carla/ego_vehicle/imu", qos),
        "image": (Image, "/carla/ego_vehicle/rgb_front/image", qos),
        "camera_info": (CameraInfo, "/carla/ego_vehicle/rgb_front/camera_info", qos),
    }
    # the contract module spells the same names (relative; the root namespace makes them these)
    assert "/" + t.image("rgb_front") == subs["image"][1] and "/" + t.vehicle_info == subs["vehicle_info"][1]
    got = collect(
        node,
        executor,
        subs,
        lambda g: (
            all(len(v) >= 2 or (k in ("world_info", "map", "vehicle_info", "actor_list") and v) for k, v in g.items())
            # DDS matches each topic on its own: wait until both streams hold a common frame (asserted below)
            and _stamps(g["vehicle_status"]) & _stamps(g["image"])
        ),
    )
    missing = [k for k, v in got.items() if not v]
    assert not missing, f"nothing received on {missing}"

    assert got["clock"][-1].clock.sec > 0 or got["clock"][-1].clock.nanosec > 0
    status = got["vehicle_status"][-1]
    assert status.header.frame_id == "map"
    assert (status.orientation.x, status.orientation.y, status.orientation.z, status.orientation.w) != (0, 0, 0, 0)
    info = got["vehicle_info"][0]
    assert (info.type, info.rolename, len(info.wheels)) == ("vehicle.tesla.model3", "ego_vehicle", 4)
    for field in (
        "max_rpm",
        "moi",
        "damping_rate_full_throttle",
        "damping_rate_zero_throttle_clutch_engaged",
        "damping_rate_zero_throttle_clutch_disengaged",
        "gear_switch_time",
        "mass",
        "clutch_strength",
        "drag_coefficient",
    ):
        assert getattr(info, field) != 0.0, field
    assert info.center_of_mass != Vector3()
    odom = got["odometry"][-1]
    assert (odom.header.frame_id, odom.child_frame_id) == ("map", "ego_vehicle")
    gnss = got["gnss"][-1]
    assert gnss.header.frame_id == "ego_vehicle/gnss"
    assert gnss.latitude != 0.0 and gnss.longitude != 0.0 and gnss.altitude != 0.0
    assert got["imu"][-1].header.frame_id == "ego_vehicle/imu"
    image, cam = got["image"][-1], got["camera_info"][-1]
    assert (image.width, image.height, image.encoding, image.header.frame_id) == (
        800,
        600,
        "bgra8",
        "ego_vehicle/rgb_front",
    )
    assert len(image.data) == 800 * 600 * 4
    assert (cam.width, cam.height, cam.header.frame_id) == (800, 600, "ego_vehicle/rgb_front")
    assert cam.k[0] == pytest.approx(400.0) and cam.k[2] == pytest.approx(400.0)  # fov 90: fx = w / 2
    world = got["world_info"][0]
    assert world.map_name == "RLTown01" and world.opendrive.startswith("<?xml")
    assert got["map"][0].data == world.opendrive
    assert got["actor_list"][-1].actors
    # every message of a frame carries that frame's sim time
    assert _stamps(got["vehicle_status"]) & _stamps(got["image"])


def test_pause_step_once_play_and_wait_for_control(sim_node):
    start, node, executor = sim_node
    start(synchronous_mode_wait_for_vehicle_control_command=True)
    statuses = []
    node.create_subscription(CarlaStatus, "/carla/status", statuses.append, bridge.qos_default(100))
    control = node.create_publisher(CarlaControl, "/carla/control", bridge.qos_default())
    command = node.create_publisher(
        CarlaEgoVehicleControl, "/carla/ego_vehicle/vehicle_control_cmd", bridge.qos_default()
    )

    def spin(seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.02)

    deadline = time.monotonic() + 20
    while not statuses and time.monotonic() < deadline:
        spin(0.1)
    assert statuses, "the simulator never ticked"
    # without commands the bridge ticks once per 1 s wait
    statuses.clear()
    spin(2.6)
    assert 2 <= len(statuses) <= 3
    # with commands: one tick per command
    statuses.clear()
    for _ in range(10):
        before = len(statuses)
        command.publish(CarlaEgoVehicleControl(throttle=0.2))
        end = time.monotonic() + 0.5
        while len(statuses) == before and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.01)
    assert len(statuses) == 10
    frames = [s.frame for s in statuses]
    assert frames == list(range(frames[0], frames[0] + 10))
    # PAUSE: no ticks at all, even with commands and past the 1 s wait; a status says so (the frame unchanged)
    control.publish(CarlaControl(command=CarlaControl.PAUSE))
    spin(1.5)  # the current wait for a command ends (after 1 s), then the pause
    last = statuses[-1].frame
    assert (statuses[-1].frame, statuses[-1].synchronous_mode_running) == (last, False)
    statuses.clear()
    command.publish(CarlaEgoVehicleControl(throttle=0.2))
    spin(1.5)
    assert statuses == []
    # STEP_ONCE: exactly one tick, then paused again
    control.publish(CarlaControl(command=CarlaControl.STEP_ONCE))
    spin(1.5)
    assert [(s.frame, s.synchronous_mode_running) for s in statuses] == [
        (last, True),
        (last + 1, True),
        (last + 1, False),
    ]
    # PLAY: ticking resumes
    statuses.clear()
    control.publish(CarlaControl(command=CarlaControl.PLAY))
    spin(1.5)
    assert len({s.frame for s in statuses}) >= 2


def test_spawn_destroy_services_and_traffic_lights(sim_node):
    from carla_msgs.msg import CarlaTrafficLightInfoList, CarlaTrafficLightStatusList
    from carla_msgs.srv import DestroyObject, SpawnObject
    from diagnostic_msgs.msg import KeyValue

    start, node, executor = sim_node
    start(traffic_lights=True)
    qos, latched = bridge.qos_default(), bridge.qos_latched()
    got = collect(
        node,
        executor,
        {
            "actors": (CarlaActorList, "/carla/actor_list", qos),
            "lights": (CarlaTrafficLightStatusList, "/carla/traffic_lights/status", qos),
            "light_info": (CarlaTrafficLightInfoList, "/carla/traffic_lights/info", latched),
        },
        lambda g: all(g.values()),
    )
    assert got["lights"][-1].traffic_lights and got["light_info"][0].traffic_lights
    assert {s.state for s in got["lights"][-1].traffic_lights} <= {0, 1, 2}
    ego_id = next(a.id for a in got["actors"][-1].actors if a.rolename == "ego_vehicle")

    spawn = node.create_client(SpawnObject, "/carla/spawn_object")
    destroy = node.create_client(DestroyObject, "/carla/destroy_object")
    assert spawn.wait_for_service(timeout_sec=10)

    def call(client, request):
        future = client.call_async(request)
        deadline = time.monotonic() + 10
        while not future.done() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        return future.result()

    car = call(spawn, SpawnObject.Request(type="vehicle.audi.a2", id="npc", random_pose=True))
    assert car.id > 0 and car.error_string == ""
    camera = SpawnObject.Request(
        type="sensor.camera.rgb",
        id="rgb_rear",
        attach_to=ego_id,
        attributes=[KeyValue(key="image_size_x", value="64"), KeyValue(key="image_size_y", value="48")],
    )
    camera.transform = bridge.pose_msg(-2.0, 0.0, 3.14159, z=1.5)
    cam = call(spawn, camera)
    assert cam.id > 0, cam.error_string
    images = collect(node, executor, {"img": (Image, "/carla/ego_vehicle/rgb_rear/image", qos)}, lambda g: g["img"])
    assert (images["img"][0].width, images["img"][0].height, images["img"][0].encoding) == (64, 48, "bgra8")
    bad = call(spawn, SpawnObject.Request(type="walker.pedestrian.0001", id="w"))
    assert bad.id == -1 and "blueprints" in bad.error_string
    assert call(destroy, DestroyObject.Request(id=cam.id)).success
    assert call(destroy, DestroyObject.Request(id=car.id)).success
    assert not call(destroy, DestroyObject.Request(id=987654)).success


def _stamps(messages) -> set[int]:
    return {bridge.stamp_to_ns(m.header.stamp) for m in messages}
