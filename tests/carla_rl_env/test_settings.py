"""Start-up checks of an env config against its objects file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carla_rl_common.config import ConfigError
from carla_rl_env.settings import check_sensors, load_env_config

EGO = {
    "type": "vehicle.tesla.model3",
    "id": "ego_vehicle",
    "sensors": [{"type": "sensor.pseudo.odom", "id": "odometry"}],
}
MARKERS = {"type": "sensor.pseudo.markers", "id": "markers"}


def objects_file(tmp_path: Path, *objects: dict) -> str:
    path = tmp_path / "objects.json"
    path.write_text(json.dumps({"objects": list(objects)}))
    return str(path)


@pytest.mark.parametrize(
    "needs",
    [
        {"observation": {"bev": True}},
        {"observation": {"lead_vehicle": True}},
        {"observation": {"nearby_vehicles": 2}},
        {"reward": {"lead_gap": 6.0}},
    ],
    ids=["bev", "lead_vehicle", "nearby_vehicles", "lead_gap"],
)
def test_a_config_that_needs_other_vehicles_needs_the_markers_pseudo_sensor(tmp_path: Path, needs: dict):
    # The bridge publishes /carla/markers only when the objects file spawns sensor.pseudo.markers (ros-bridge
    # carla_ros_bridge/src/carla_ros_bridge/actor_factory.py, marker_sensor.py); without it the env would never
    # see another vehicle.
    objects = objects_file(tmp_path, EGO)
    config = load_env_config([], {"env": {"objects_file": objects, **needs}})
    with pytest.raises(ConfigError) as err:
        check_sensors(config, "my_run.yaml")
    message = str(err.value)
    assert "my_run.yaml" in message and objects in message and "sensor.pseudo.markers" in message
    check_sensors(load_env_config([], {"env": {"objects_file": objects_file(tmp_path, EGO, MARKERS), **needs}}))


def test_a_config_without_other_vehicles_needs_no_markers(tmp_path: Path):
    check_sensors(load_env_config([], {"env": {"objects_file": objects_file(tmp_path, EGO)}}))
