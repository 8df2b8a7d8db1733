"""Objects files in the carla_spawn_objects JSON format, checked with the real bridge's rules."""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path

import pytest

from carla_rl_common.objects import PSEUDO_TYPES, SUPPORTED_SENSOR_TYPES, Pose6, load_objects, parse_objects
from carla_rl_common.paths import default_objects_file

REPO = Path(__file__).resolve().parents[2]

EXAMPLE = {
    "objects": [
        {"type": "sensor.pseudo.traffic_lights", "id": "traffic_lights"},
        {"type": "sensor.pseudo.objects", "id": "objects"},
        {"type": "sensor.pseudo.actor_list", "id": "actor_list"},
        {"type": "sensor.pseudo.markers", "id": "markers"},
        {"type": "sensor.pseudo.opendrive_map", "id": "map"},
        {
            "type": "vehicle.tesla.model3",
            "id": "ego_vehicle",
            "spawn_point": {"x": 10.0, "y": -2.0, "z": 0.3, "roll": 0.0, "pitch": 0.0, "yaw": 90.0},
            "sensors": [
                {
                    "type": "sensor.camera.rgb",
                    "id": "rgb_front",
                    "spawn_point": {"x": 2.0, "y": 0.5, "z": 2.0, "roll": 0.0, "pitch": 10.0, "yaw": -30.0},
                    "image_size_x": 800,
                    "image_size_y": "600",
                    "fov": 90.0,
                    "sensor_tick": 0.05,
                },
                {"type": "sensor.camera.rgb", "id": "rgb_small", "spawn_point": {"x": 1.0, "z": 1.5}},
                {"type": "sensor.other.collision", "id": "collision", "spawn_point": {"x": 0.0, "y": 0.0, "z": 0.0}},
                {"type": "sensor.other.lane_invasion", "id": "lane_invasion"},
                {"type": "sensor.other.gnss", "id": "gnss", "spawn_point": {"x": 1.0, "y": 0.0, "z": 2.0}},
                {"type": "sensor.other.imu", "id": "imu"},
                {"type": "sensor.pseudo.tf", "id": "tf"},
                {"type": "sensor.pseudo.odom", "id": "odometry"},
                {"type": "sensor.pseudo.speedometer", "id": "speedometer"},
                {"type": "actor.pseudo.control", "id": "control"},
            ],
        },
        {
            "type": "vehicle.lincoln.mkz_2017",
            "id": "hero",
            "sensors": [{"type": "actor.pseudo.control", "id": "control"}],
        },
    ]
}


def with_change(change) -> dict:
    data = copy.deepcopy(EXAMPLE)
    change(data)
    return data


def ego_sensors(data: dict) -> list:
    return data["objects"][5]["sensors"]


def test_parses_vehicles_sensors_and_global_pseudo_sensors(tmp_path):
    path = tmp_path / "objects.json"
    path.write_text(json.dumps(EXAMPLE))
    objects = load_objects(path)
    assert objects.source == str(path)
    assert [s.type for s in objects.sensors][:1] == ["sensor.pseudo.traffic_lights"] and len(objects.sensors) == 5
    ego, hero = objects.vehicles
    assert (ego.type, ego.id, len(ego.sensors)) == ("vehicle.tesla.model3", "ego_vehicle", 10)
    assert objects.vehicle("hero") is hero and hero.spawn_point is None
    with pytest.raises(KeyError):
        objects.vehicle("nobody")
    assert {s.type for s in ego.sensors} | {s.type for s in objects.sensors} == set(SUPPORTED_SENSOR_TYPES)


def test_spawn_points_are_ros_poses_in_radians():
    ego = parse_objects(EXAMPLE).vehicles[0]
    # carla_spawn_objects makes a ROS Pose of the numbers as they are: no y/yaw sign flip
    assert ego.spawn_point == pytest.approx(Pose6(10.0, -2.0, 0.3, 0.0, 0.0, math.pi / 2))
    camera = ego.sensors[0]
    assert camera.mount == pytest.approx(Pose6(2.0, 0.5, 2.0, 0.0, math.radians(10.0), math.radians(-30.0)))
    assert ego.sensors[1].mount == Pose6(1.0, 0.0, 1.5, 0.0, 0.0, 0.0)  # missing keys default to 0
    assert ego.sensors[3].mount == Pose6()  # no spawn point at all


def test_typed_attributes_get_values_and_defaults():
    ego = parse_objects(EXAMPLE).vehicles[0]
    camera, small = ego.sensors[:2]
    assert camera.attributes == {"image_size_x": 800, "image_size_y": 600, "fov": 90.0, "sensor_tick": 0.05}
    assert isinstance(camera.attributes["image_size_y"], int)  # numeric strings are accepted, as CARLA does
    assert small.attributes == {"image_size_x": 800, "image_size_y": 600, "fov": 90.0}  # CARLA's defaults


def test_unknown_sensor_type_names_id_type_file_and_supported_types():
    data = with_change(lambda d: ego_sensors(d).append({"type": "sensor.lidar.ray_cast", "id": "lidar"}))
    with pytest.raises(ValueError) as err:
        parse_objects(data, "my_objects.json")
    message = str(err.value)
    for part in (
        "my_objects.json",
        "'lidar'",
        "'sensor.lidar.ray_cast'",
        "objects[5].sensors[10].type",
        "sensor.camera.rgb",
        "actor.pseudo.control",
    ):
        assert part in message


@pytest.mark.parametrize(
    "change,key",
    [
        (lambda d: ego_sensors(d).append({"type": "sensor.other.imu", "id": "imu"}), "objects[5].sensors"),
        (lambda d: d["objects"].append({"type": "vehicle.audi.a2", "id": "hero"}), "objects"),
        (lambda d: d["objects"].append({"type": "sensor.pseudo.markers", "id": "markers"}), "objects"),
    ],
)
def test_duplicate_ids_are_errors(change, key):
    with pytest.raises(ValueError, match=rf"f\.json: {re.escape(key)}: duplicate id"):
        parse_objects(with_change(change), "f.json")


@pytest.mark.parametrize(
    "change,key",
    [
        (lambda d: d.pop("objects"), "objects"),
        (lambda d: d["objects"][5]["spawn_point"].pop("yaw"), r"objects\[5\]\.spawn_point\.yaw"),
        (lambda d: ego_sensors(d)[0].pop("type"), r"objects\[5\]\.sensors\[0\]\.type"),
        (lambda d: d["objects"][0].pop("id"), r"objects\[0\]\.id"),
        (lambda d: ego_sensors(d)[0].update(fov="wide"), r"objects\[5\]\.sensors\[0\]\.fov"),
        (lambda d: ego_sensors(d)[0].update(image_size_x=0), r"objects\[5\]\.sensors\[0\]\.image_size_x"),
        (
            lambda d: ego_sensors(d)[0]["spawn_point"].update(pitch=None),
            r"objects\[5\]\.sensors\[0\]\.spawn_point\.pitch",
        ),
        (lambda d: ego_sensors(d)[0]["spawn_point"].update(w=1.0), r"objects\[5\]\.sensors\[0\]\.spawn_point\.w"),
        (lambda d: d["objects"].append({"type": "sensor.camera.rgb", "id": "cam"}), r"objects\[7\]"),
    ],
)
def test_invalid_entries_name_file_and_key(change, key):
    with pytest.raises(ValueError, match=rf"^f\.json: {key}: "):
        parse_objects(with_change(change), "f.json")


def test_unreadable_and_invalid_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{objects: [")
    with pytest.raises(ValueError, match="bad.json: <file>: invalid JSON"):
        load_objects(bad)
    with pytest.raises(ValueError, match="missing.json: <file>: cannot read"):
        load_objects(tmp_path / "missing.json")


def test_a_top_level_tf_sensor_is_an_error_naming_file_and_key():
    """ros-bridge tf_sensor.py: its update reads its parent's prefix; top-level (no parent) that raises and the
    bridge's synchronous loop (bridge.py) stops on its first tick."""
    data = with_change(lambda d: d["objects"].append({"type": "sensor.pseudo.tf", "id": "tf"}))
    with pytest.raises(ValueError, match=r"^f\.json: objects\[7\]: sensor 'tf' .* must be attached to a vehicle"):
        parse_objects(data, "f.json")


def test_the_embedded_simulators_own_types_only_outside_files():
    """ros-bridge actor_factory.py knows no sensor.pseudo.bev: a file with one fails on a real bridge."""
    data = with_change(lambda d: ego_sensors(d).append({"type": "sensor.pseudo.bev", "id": "bev", "size": 128}))
    with pytest.raises(ValueError, match=r"objects\[5\]\.sensors\[10\]\.type: .*only the embedded simulator"):
        parse_objects(data, "f.json")
    bev = parse_objects(data, "f.json", embedded=True).vehicles[0].sensors[10]
    assert bev.attributes == {"size": 128, "pixels_per_meter": 5.0}
    assert "sensor.pseudo.bev" not in SUPPORTED_SENSOR_TYPES and set(PSEUDO_TYPES) <= set(SUPPORTED_SENSOR_TYPES)


def objects_files() -> list[Path]:
    """Every objects file of the repository (JSON with an ``objects`` list) under config/ and tests/."""
    found = []
    for path in sorted([*(REPO / "config").rglob("*.json"), *(REPO / "tests").rglob("*.json")]):
        try:
            data = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(data, dict) and isinstance(data.get("objects"), list):
            found.append(path)
    return found


@pytest.mark.parametrize("path", objects_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_objects_file_is_valid_for_the_real_bridge(path):
    load_objects(path)  # the bridge's rules (a ConfigError names file and key)


def test_the_default_objects_file_gives_what_the_default_config_needs():
    """The default env config needs other vehicles (lead_vehicle): the bridge's marker sensor
    (marker_sensor.py) must be spawned, and the tf sensor sits on the ego (tf_sensor.py)."""
    objects = load_objects(default_objects_file())
    assert default_objects_file() in objects_files()
    world = {s.type: s.id for s in objects.sensors}
    assert world["sensor.pseudo.markers"] == "markers"  # /carla/markers
    ego = {s.type: s.id for s in objects.vehicle("ego_vehicle").sensors}
    assert ego["sensor.pseudo.tf"] == "tf" and ego["actor.pseudo.control"] == "control"
    assert (ego["sensor.pseudo.odom"], ego["sensor.pseudo.speedometer"]) == ("odometry", "speedometer")


@pytest.mark.parametrize("bad", ["rgb/front", "1cam", "rgb-front", "rgb front", "caméra", "~cam", "{cam}"])
@pytest.mark.parametrize("where", ["sensor", "vehicle", "global"])
def test_ids_that_become_topic_names_follow_the_ros_name_rules(bad, where):
    """A sensor or vehicle id is a token of a topic name (/carla/<vehicle>/<sensor>/...): one the ROS name rules
    refuse ('/' made the simulator crash) is an error naming file, key and the rule, and every accepted id
    makes a topic name rclpy accepts."""
    from rclpy.validate_topic_name import validate_topic_name

    index, key = {
        "sensor": (lambda d: ego_sensors(d)[0], r"objects\[5\]\.sensors\[0\]\.id"),
        "vehicle": (lambda d: d["objects"][5], r"objects\[5\]\.id"),
        "global": (lambda d: d["objects"][0], r"objects\[0\]\.id"),
    }[where]
    with pytest.raises(ValueError, match=rf"^f\.json: {key}: .*ROS name"):
        parse_objects(with_change(lambda d: index(d).update(id=bad)), "f.json")
    objects = parse_objects(with_change(lambda d: index(d).update(id="_cam_2")), "f.json")
    for vehicle in objects.vehicles:
        for sensor in vehicle.sensors:
            validate_topic_name(f"/carla/{vehicle.id}/{sensor.id}/image")
