"""Objects files in the ``carla_spawn_objects`` JSON format: which vehicles to spawn and their sensors.

Example::

    {"objects": [
        {"type": "sensor.pseudo.traffic_lights", "id": "traffic_lights"},
        {"type": "vehicle.tesla.model3", "id": "ego_vehicle",
         "spawn_point": {"x": 10.0, "y": -2.0, "z": 0.3, "roll": 0.0, "pitch": 0.0, "yaw": 90.0},
         "sensors": [
            {"type": "sensor.camera.rgb", "id": "rgb_front",
             "spawn_point": {"x": 2.0, "y": 0.0, "z": 2.0, "roll": 0.0, "pitch": 0.0, "yaw": 0.0},
             "image_size_x": 800, "image_size_y": 600, "fov": 90.0},
            {"type": "sensor.pseudo.tf", "id": "tf"},
            {"type": "actor.pseudo.control", "id": "control"}]}]}

Coordinates: ``carla_spawn_objects`` turns every ``spawn_point`` into a ROS ``geometry_msgs/Pose`` with
``quaternion_from_euler(radians(roll), radians(pitch), radians(yaw))`` and the bridge's spawn service then
converts that ROS pose to CARLA (y -> -y, pitch -> -pitch, yaw -> -yaw). So the numbers in the file are
already in the ROS convention (right-handed: x forward, y left, z up; angles in degrees, yaw
counter-clockwise, positive pitch looks down); no handedness flip is applied here, only degrees ->
radians. A vehicle's spawn point is in the ``map`` frame, a sensor's relative to its vehicle.

Rules, as ``carla_spawn_objects`` applies them: a vehicle spawn point needs all six keys (without one the
vehicle spawns at a random pose); attached sensors default missing spawn point keys to 0. Stricter than it:
problems are errors instead of log lines, ids must be unique (vehicles, global sensors, and sensors of one
vehicle) and valid ROS name tokens (they become parts of topic names), and physical sensors must be attached to a
vehicle.

The bridge's rules (ros-bridge master e9063d9) hold for every objects file, since the same file feeds a real
bridge: ``sensor.pseudo.tf`` must be attached to a vehicle (``tf_sensor.py`` publishes its parent's transform;
top-level, its first update raises and the bridge's synchronous loop stops ticking), and a type the bridge's
``actor_factory.py`` does not know is an error (it fails the same way). The embedded simulator's own
``sensor.pseudo.bev`` is accepted only by ``parse_objects(..., embedded=True)``: a spawn request to the
embedded simulator or a benchmark's in-memory objects, never a file.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from carla_rl_common.config import ConfigError, read_config_text

# The bridge's pseudo actors (ros-bridge ``PseudoActor`` subclasses, what /carla/get_blueprints adds to CARLA's).
PSEUDO_TYPES = (
    "sensor.pseudo.tf",
    "sensor.pseudo.odom",
    "sensor.pseudo.speedometer",
    "sensor.pseudo.markers",
    "sensor.pseudo.actor_list",
    "sensor.pseudo.objects",
    "sensor.pseudo.traffic_lights",
    "sensor.pseudo.opendrive_map",
    "actor.pseudo.control",
)
# Types an objects file may hold: the CARLA sensors the embedded simulator models, and the bridge's pseudo actors.
SUPPORTED_SENSOR_TYPES = (
    "sensor.camera.rgb",
    "sensor.other.collision",
    "sensor.other.lane_invasion",
    "sensor.other.gnss",
    "sensor.other.imu",
    *PSEUDO_TYPES,
)
# The embedded simulator's own sensors: no bridge knows them (see the module doc).
EMBEDDED_SENSOR_TYPES = ("sensor.pseudo.bev",)
# types that only make sense on a vehicle (the bridge needs a parent for each)
ATTACHED_ONLY = frozenset(
    {
        "sensor.camera.rgb",
        "sensor.other.collision",
        "sensor.other.lane_invasion",
        "sensor.other.gnss",
        "sensor.other.imu",
        "sensor.pseudo.tf",
        "sensor.pseudo.odom",
        "sensor.pseudo.speedometer",
        "actor.pseudo.control",
        "sensor.pseudo.bev",
    }
)
# typed attributes with their defaults (CARLA's defaults for the camera)
_ATTRIBUTES: dict[str, dict[str, int | float]] = {
    "sensor.camera.rgb": {"image_size_x": 800, "image_size_y": 600, "fov": 90.0},
    "sensor.pseudo.bev": {"size": 192, "pixels_per_meter": 5.0},
}
_POSE_KEYS = ("x", "y", "z", "roll", "pitch", "yaw")
# An id becomes one token of topic names (/carla/<vehicle id>/<sensor id>/...): the ROS 2 rule for a token is
# ASCII letters, digits and '_', not starting with a digit (rcl's topic name validation).
_ROS_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Pose6(NamedTuple):
    """Position (m) and roll/pitch/yaw (rad) in the ROS convention."""

    x: float = 0.0
    y: float = 0.0
    z: float = 0.0
    roll: float = 0.0
    pitch: float = 0.0
    yaw: float = 0.0


@dataclass(frozen=True)
class SensorSpec:
    type: str
    id: str
    mount: Pose6  # relative to the vehicle (for global pseudo sensors: the map origin)
    attributes: Mapping[str, Any] = field(default_factory=dict)  # typed defaults filled, other keys as given


@dataclass(frozen=True)
class VehicleSpec:
    type: str
    id: str  # the role name
    spawn_point: Pose6 | None  # map frame; None = random
    sensors: tuple[SensorSpec, ...] = ()


@dataclass(frozen=True)
class ObjectsFile:
    source: str
    vehicles: tuple[VehicleSpec, ...]
    sensors: tuple[SensorSpec, ...]  # global pseudo sensors (not attached to a vehicle)

    def vehicle(self, role_name: str) -> VehicleSpec:
        for vehicle in self.vehicles:
            if vehicle.id == role_name:
                return vehicle
        raise KeyError(f"{self.source}: no vehicle with id {role_name!r} (have {[v.id for v in self.vehicles]})")


def load_objects(path: str | Path) -> ObjectsFile:
    """Read and validate an objects file; :class:`ConfigError` (a ``ValueError``) names file and key."""
    path = Path(path)
    text = read_config_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(str(path), "<file>", f"invalid JSON: {exc}") from exc
    return parse_objects(data, str(path))


def parse_objects(data: Any, source: str = "<objects>", *, embedded: bool = False) -> ObjectsFile:
    """Validate already-decoded JSON; ``source`` names it in errors. ``embedded``: also accept the embedded
    simulator's own sensor types (:data:`EMBEDDED_SENSOR_TYPES`), which a real bridge fails on."""
    if not isinstance(data, dict) or "objects" not in data:
        raise ConfigError(source, "objects", "missing: the file must be a mapping with an 'objects' list")
    objects = data["objects"]
    if not isinstance(objects, list):
        raise ConfigError(source, "objects", f"expected a list, got {type(objects).__name__}")
    vehicles: list[VehicleSpec] = []
    sensors: list[SensorSpec] = []
    for i, obj in enumerate(objects):
        key = f"objects[{i}]"
        kind, ident = _type_and_id(obj, source, key)
        if kind.startswith("vehicle."):
            vehicles.append(_vehicle(obj, source, key, kind, ident, embedded))
        else:
            sensors.append(_sensor(obj, source, key, attached=False, embedded=embedded))
    _check_unique([v.id for v in vehicles], source, "objects", "vehicles")
    _check_unique([s.id for s in sensors], source, "objects", "global sensors")
    return ObjectsFile(source, tuple(vehicles), tuple(sensors))


def _type_and_id(obj: Any, source: str, key: str) -> tuple[str, str]:
    if not isinstance(obj, dict):
        raise ConfigError(source, key, f"expected a mapping, got {type(obj).__name__}")
    for name in ("type", "id"):
        if name not in obj:
            raise ConfigError(source, f"{key}.{name}", "missing")
        if not isinstance(obj[name], str) or not obj[name]:
            raise ConfigError(source, f"{key}.{name}", f"expected a non-empty string, got {obj[name]!r}")
    if not _ROS_TOKEN.fullmatch(obj["id"]):
        raise ConfigError(
            source,
            f"{key}.id",
            f"{reprlib.repr(obj['id'])} is not a valid ROS name token (it becomes part of topic names such as "
            "/carla/<vehicle id>/<sensor id>): use ASCII letters, digits and '_', not starting with a digit",
        )
    return obj["type"], obj["id"]


def _vehicle(obj: dict, source: str, key: str, kind: str, ident: str, embedded: bool) -> VehicleSpec:
    spawn = None
    if "spawn_point" in obj:
        spawn = _pose(obj["spawn_point"], source, f"{key}.spawn_point", required=True)
    raw_sensors = obj.get("sensors", [])
    if not isinstance(raw_sensors, list):
        raise ConfigError(source, f"{key}.sensors", f"expected a list, got {type(raw_sensors).__name__}")
    sensors = tuple(
        _sensor(s, source, f"{key}.sensors[{j}]", attached=True, embedded=embedded) for j, s in enumerate(raw_sensors)
    )
    _check_unique([s.id for s in sensors], source, f"{key}.sensors", f"sensors of vehicle {ident!r}")
    return VehicleSpec(kind, ident, spawn, sensors)


def _sensor(obj: Any, source: str, key: str, attached: bool, embedded: bool) -> SensorSpec:
    kind, ident = _type_and_id(obj, source, key)
    if kind in EMBEDDED_SENSOR_TYPES and not embedded:
        raise ConfigError(
            source,
            f"{key}.type",
            f"sensor {ident!r} has type {kind!r}, which only the embedded simulator knows: a real bridge's actor "
            "factory fails on it and stops ticking (spawn it through the embedded simulator's /carla/spawn_object, "
            "or let the env node draw the BEV: env.observation.bev)",
        )
    if kind not in SUPPORTED_SENSOR_TYPES + EMBEDDED_SENSOR_TYPES:
        raise ConfigError(
            source,
            f"{key}.type",
            f"sensor {ident!r} has unsupported type {kind!r} (supported: {', '.join(SUPPORTED_SENSOR_TYPES)})",
        )
    if not attached and kind in ATTACHED_ONLY:
        why = (
            " (the bridge's TF sensor publishes its parent's transform: top-level, its first update raises and "
            "the bridge stops ticking)"
            if kind == "sensor.pseudo.tf"
            else ""
        )
        raise ConfigError(
            source,
            key,
            f"sensor {ident!r} of type {kind!r} must be attached to a vehicle (listed in a vehicle's 'sensors'){why}",
        )
    mount = _pose(obj["spawn_point"], source, f"{key}.spawn_point", required=False) if "spawn_point" in obj else Pose6()
    attributes: dict[str, Any] = {k: v for k, v in obj.items() if k not in ("type", "id", "spawn_point")}
    for name, default in _ATTRIBUTES.get(kind, {}).items():
        attributes[name] = _number(attributes.get(name, default), type(default), source, f"{key}.{name}")
    if kind == "sensor.camera.rgb" and not 0.0 < attributes["fov"] < 180.0:
        raise ConfigError(source, f"{key}.fov", f"must be between 0 and 180 degrees, got {attributes['fov']}")
    for name in ("image_size_x", "image_size_y", "size", "pixels_per_meter"):
        if name in _ATTRIBUTES.get(kind, {}) and attributes[name] <= 0:
            raise ConfigError(source, f"{key}.{name}", f"must be positive, got {attributes[name]}")
    return SensorSpec(kind, ident, mount, attributes)


def _pose(obj: Any, source: str, key: str, required: bool) -> Pose6:
    """A spawn point in degrees -> :class:`Pose6` in radians (no handedness change, see module doc)."""
    if not isinstance(obj, dict):
        raise ConfigError(source, key, f"expected a mapping with {', '.join(_POSE_KEYS)}, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(_POSE_KEYS))
    if unknown:
        raise ConfigError(source, f"{key}.{unknown[0]}", f"unknown key (known: {', '.join(_POSE_KEYS)})")
    values = []
    for name in _POSE_KEYS:
        if name not in obj and required:
            raise ConfigError(
                source, f"{key}.{name}", f"missing (a vehicle spawn point needs all of {', '.join(_POSE_KEYS)})"
            )
        values.append(_number(obj.get(name, 0.0), float, source, f"{key}.{name}"))
    x, y, z, roll, pitch, yaw = values
    return Pose6(x, y, z, math.radians(roll), math.radians(pitch), math.radians(yaw))


def _number(value: Any, kind: type, source: str, key: str) -> int | float:
    """An int or float from a JSON number or numeric string (carla_spawn_objects passes attributes as text)."""
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or (kind is int and number != int(number)):
        raise ConfigError(source, key, f"expected {'an integer' if kind is int else 'a number'}, got {value!r}")
    return int(number) if kind is int else number


def _check_unique(ids: list[str], source: str, key: str, what: str) -> None:
    seen: set[str] = set()
    for ident in ids:
        if ident in seen:
            raise ConfigError(source, key, f"duplicate id {ident!r} among the {what} (ids must be unique)")
        seen.add(ident)
