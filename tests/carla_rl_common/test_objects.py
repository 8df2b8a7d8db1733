"""Objects files in the carla_spawn_objects JSON format."""

from __future__ import annotations

import copy
import json
import math
import re

import pytest

from carla_rl_common.objects import SUPPORTED_SENSOR_TYPES, Pose6, load_objects, parse_objects

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
                {"type": "sensor.pseudo.bev", "id": "bev", "size": 128},
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
        {"type": "vehicle.lincoln.mkz_2017", "id": "hero", "sensors": [{"type": "sensor.pseudo.bev", "id": "bev"}]},
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
    assert (ego.type, ego.id, len(ego.sensors)) == ("vehicle.tesla.model3", "ego_vehicle", 11)
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
    assert ego.sensors[4].mount == Pose6()  # no spawn point at all


def test_typed_attributes_get_values_and_defaults():
    ego, hero = parse_objects(EXAMPLE).vehicles
    camera, small, bev = ego.sensors[:3]
    assert camera.attributes == {"image_size_x": 800, "image_size_y": 600, "fov": 90.0, "sensor_tick": 0.05}
    assert isinstance(camera.attributes["image_size_y"], int)  # numeric strings are accepted, as CARLA does
    assert small.attributes == {"image_size_x": 800, "image_size_y": 600, "fov": 90.0}  # CARLA's defaults
    assert bev.attributes == {"size": 128, "pixels_per_meter": 5.0}
    assert hero.sensors[0].attributes == {"size": 192, "pixels_per_meter": 5.0}


def test_unknown_sensor_type_names_id_type_file_and_supported_types():
    data = with_change(lambda d: ego_sensors(d).append({"type": "sensor.lidar.ray_cast", "id": "lidar"}))
    with pytest.raises(ValueError) as err:
        parse_objects(data, "my_objects.json")
    message = str(err.value)
    for part in (
        "my_objects.json",
        "'lidar'",
        "'sensor.lidar.ray_cast'",
        "objects[5].sensors[11].type",
        "sensor.camera.rgb",
        "sensor.pseudo.bev",
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
