"""Pseudo sensors and the world-level answers: what exists only when spawned, the actor list, blueprints, /tf."""

from __future__ import annotations

import itertools

import pytest
from carla_msgs.msg import CarlaActorList, CarlaTrafficLightStatusList
from carla_msgs.srv import GetBlueprints
from conformance_support import CAMERA, objects, vehicle
from rclpy.qos import DurabilityPolicy, ReliabilityPolicy
from tf2_msgs.msg import TFMessage

from carla_rl_common import bridge
from carla_rl_common.objects import PSEUDO_TYPES

pytestmark = pytest.mark.slow

BARE = [CAMERA, {"type": "sensor.other.collision", "id": "collision"}]  # no pseudo sensor at all
# every pseudo sensor, under ids of our own: the topics follow them
WORLD = [
    {"type": "sensor.pseudo.markers", "id": "boxes"},
    {"type": "sensor.pseudo.traffic_lights", "id": "lights"},
    {"type": "sensor.pseudo.actor_list", "id": "actors"},
    {"type": "sensor.pseudo.opendrive_map", "id": "xodr"},
]
EGO = [
    *BARE,
    {"type": "sensor.pseudo.odom", "id": "odom"},
    {"type": "sensor.pseudo.speedometer", "id": "speed"},
    {"type": "sensor.pseudo.tf", "id": "tf"},
    {"type": "actor.pseudo.control", "id": "ctl"},
]


def tick_a_few(probe, n: int = 3) -> None:
    for _ in range(n):
        probe.step()
    probe.spin(0.5)  # discovery of every publisher


def test_no_pseudo_topics_unless_spawned(start_sim, probe):
    """ros-bridge actor_factory.py creates marker_sensor.py, traffic_lights_sensor.py, actor_list_sensor.py,
    opendrive_sensor.py, odom_sensor.py, speedometer_sensor.py and actor_control.py only for objects that
    carla_spawn_objects spawns: without them there is no such topic (the ego's own ones stay)."""
    start_sim(objects(vehicle(sensors=BARE)), traffic_lights=True)
    probe.wait_for_sim()
    tick_a_few(probe)
    published, subscribed = probe.publishers_of_sim(), probe.subscriptions_of_sim()
    for topic in (
        "/carla/markers",
        "/carla/markers/static",
        "/carla/objects",
        "/carla/traffic_lights/info",
        "/carla/traffic_lights/status",
        "/carla/actor_list",
        "/carla/map",
        "/carla/ego_vehicle/odometry",
        "/carla/ego_vehicle/speedometer",
    ):
        assert topic not in published, topic
    assert "/carla/ego_vehicle/control/set_transform" not in subscribed
    assert "/carla/ego_vehicle/control/set_target_velocity" not in subscribed
    for topic in (
        "/carla/status",
        "/carla/world_info",
        "/carla/ego_vehicle/vehicle_status",
        "/carla/ego_vehicle/vehicle_info",
    ):
        assert topic in published, topic
    assert "/carla/ego_vehicle/vehicle_control_cmd" in subscribed


def test_pseudo_topics_are_named_after_their_ids_with_the_bridges_qos(start_sim, probe):
    """pseudo_actor.py names a pseudo sensor's topic ``/carla/[<role>/]<id>``; marker_sensor.py adds
    ``<id>/static`` (TRANSIENT_LOCAL, depth 1), traffic_lights_sensor.py ``<id>/info`` and ``<id>/status`` (both
    TRANSIENT_LOCAL), opendrive_sensor.py's map is TRANSIENT_LOCAL, actor_control.py subscribes
    ``<id>/set_transform`` and ``<id>/set_target_velocity``."""
    start_sim(objects(vehicle(sensors=EGO), *WORLD), traffic_lights=True)
    probe.wait_for_sim()
    tick_a_few(probe)
    published, subscribed = probe.publishers_of_sim(), probe.subscriptions_of_sim()
    durability = {
        "/carla/boxes": DurabilityPolicy.VOLATILE,
        "/carla/boxes/static": DurabilityPolicy.TRANSIENT_LOCAL,
        "/carla/lights/info": DurabilityPolicy.TRANSIENT_LOCAL,
        "/carla/lights/status": DurabilityPolicy.TRANSIENT_LOCAL,
        "/carla/actors": DurabilityPolicy.VOLATILE,
        "/carla/xodr": DurabilityPolicy.TRANSIENT_LOCAL,
        "/carla/ego_vehicle/odom": DurabilityPolicy.VOLATILE,
        "/carla/ego_vehicle/speed": DurabilityPolicy.VOLATILE,
    }
    for topic, expected in durability.items():
        assert topic in published, topic
        (info,) = probe.node.get_publishers_info_by_topic(topic)
        assert (info.qos_profile.durability, info.qos_profile.reliability) == (expected, ReliabilityPolicy.RELIABLE)
    assert {"/carla/ego_vehicle/ctl/set_transform", "/carla/ego_vehicle/ctl/set_target_velocity"} <= subscribed
    assert "/carla/markers" not in published and "/carla/map" not in published


def test_traffic_light_status_is_latched_and_sent_on_change_only(start_sim, probe):
    """ros-bridge traffic_lights_sensor.py publishes the status list only when it differs from the last one sent,
    TRANSIENT_LOCAL: a late subscriber still gets the current one."""
    start_sim(objects(vehicle(sensors=BARE), *WORLD), traffic_lights=True)
    probe.wait_for_sim()
    statuses = probe.subscribe(CarlaTrafficLightStatusList, "/carla/lights/status", bridge.qos_latched())
    for _ in range(120):
        probe.step()
    probe.spin(0.3)
    assert statuses and statuses[0].traffic_lights, "no latched status for a subscriber that came late"
    states = [[(s.id, s.state) for s in msg.traffic_lights] for msg in statuses]
    assert all(a != b for a, b in itertools.pairwise(states)), "a status repeated the last one"
    assert len(states) < 60, "a status per tick"


def test_actor_list_has_carla_actors_only(start_sim, probe):
    """ros-bridge actor_list_sensor.py lists the actors that are CARLA actors (vehicles, sensors, traffic
    lights), skipping pseudo actors."""
    start_sim(objects(vehicle(sensors=EGO), *WORLD), traffic_lights=True)
    probe.wait_for_sim()
    actors = probe.subscribe(CarlaActorList, "/carla/actors")
    probe.step()
    assert probe.spin_until(lambda: actors)
    types = {a.type for a in actors[-1].actors}
    assert not [t for t in types if "pseudo" in t], types
    assert {"vehicle.tesla.model3", "sensor.camera.rgb", "sensor.other.collision", "traffic.traffic_light"} <= types
    ego = next(a for a in actors[-1].actors if a.rolename == "ego_vehicle")
    assert {a.type for a in actors[-1].actors if a.parent_id == ego.id} == {
        "sensor.camera.rgb",
        "sensor.other.collision",
    }


def test_get_blueprints_filters_with_carlas_wildcards(start_sim, probe):
    """ros-bridge bridge.py get_blueprints: CARLA's ``blueprint_library.filter(pattern)`` (default ``*``), then
    every pseudo type whatever the pattern, sorted."""
    start_sim(objects(vehicle(sensors=BARE)))
    probe.wait_for_sim()

    def blueprints(pattern: str) -> list[str]:
        return list(
            probe.call(GetBlueprints, "/carla/get_blueprints", GetBlueprints.Request(filter=pattern)).blueprints
        )

    everything, vehicles, teslas = blueprints(""), blueprints("vehicle.*"), blueprints("vehicle.tesla.*")
    assert everything == blueprints("*") == sorted(everything)
    assert set(PSEUDO_TYPES) <= set(vehicles) and vehicles == sorted(vehicles)
    assert {b for b in vehicles if b not in PSEUDO_TYPES} == {b for b in everything if b.startswith("vehicle.")}
    assert "vehicle.tesla.model3" in teslas and all(b.startswith("vehicle.tesla.") or b in PSEUDO_TYPES for b in teslas)
    assert "sensor.camera.rgb" in everything and "sensor.camera.rgb" not in vehicles
    assert not [b for b in everything if "carla_rl" in b], "a blueprint CARLA lacks"


def test_tf_from_the_tf_sensor_and_every_sensor(start_sim, probe):
    """ros-bridge tf_sensor.py (on a vehicle) sends ``map -> <role>``; sensor.py sends every sensor's
    ``<role> -> <role>/<id>`` at its spawn pose, camera.py in the optical frame (z forward, x right, y down)."""
    start_sim(objects(vehicle(sensors=EGO)))
    probe.wait_for_sim()
    tf = probe.subscribe(TFMessage, "/tf")
    status = None
    for _ in range(3):
        status = probe.step()
    probe.spin(0.2)
    frame = [t for msg in tf for t in msg.transforms if t.header.stamp == status.header.stamp]
    pairs = {(t.header.frame_id, t.child_frame_id): t for t in frame}
    assert ("map", "ego_vehicle") in pairs
    camera = pairs[("ego_vehicle", "ego_vehicle/rgb_front")].transform
    assert (camera.translation.x, camera.translation.y, camera.translation.z) == pytest.approx((2.0, 0.0, 2.0))
    r = camera.rotation
    assert (r.x, r.y, r.z, r.w) == pytest.approx((-0.5, 0.5, -0.5, 0.5))  # the optical frame of a camera at yaw 0
    assert ("ego_vehicle", "ego_vehicle/tf") not in pairs and ("ego_vehicle", "ego_vehicle/odom") not in pairs


def test_no_map_to_ego_transform_without_a_tf_sensor(start_sim, probe):
    """ros-bridge tf_sensor.py is what sends ``map -> <role>``: without it only the sensors' transforms go out."""
    start_sim(objects(vehicle(sensors=BARE)))
    probe.wait_for_sim()
    tf = probe.subscribe(TFMessage, "/tf")
    for _ in range(3):
        probe.step()
    probe.spin(0.3)
    pairs = {(t.header.frame_id, t.child_frame_id) for msg in tf for t in msg.transforms}
    assert ("ego_vehicle", "ego_vehicle/rgb_front") in pairs and ("map", "ego_vehicle") not in pairs
