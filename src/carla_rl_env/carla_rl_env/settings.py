"""The env configuration schema: every key, its type and its default (see carla_rl_common.config), and the
range of every numeric key (ENV_BOUNDS, SIM_BOUNDS: a value outside is a ConfigError before anything starts).

``config/base.yaml`` documents the same keys for users; this module is the single source of the defaults.
The ranges are far wider than any sensible run needs: they keep out NaN, infinities, negative counts and
sizes that would exhaust memory, not unusual settings.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from carla_rl_common.bridge import BridgeTopics
from carla_rl_common.config import ConfigError, Range, load_config, merge, short
from carla_rl_common.objects import load_objects
from carla_rl_common.paths import default_objects_file

ENV_SCHEMA: dict[str, Any] = {
    "role_name": "ego_vehicle",
    "objects_file": "",  # carla_spawn_objects JSON; empty: config/objects.json of this repository
    "sensor_timeout": 2.0,  # s of wall time to wait for a frame's messages before truncating the episode
    "settle_frames": 5,  # frames of full brake after a reset teleport, so the car rests before step 0
    "observation": {
        "measurements": True,
        # names of the fixed measurement block to keep, in its order (empty: all); `command` keeps the route
        # command one-hot. [speed, command] is the CARLA paper's camera agent: nothing privileged about the route
        "fixed_measurements": [],
        "goal": True,
        "goal_scale": 50.0,  # goal vector = ego-frame goal position (m) / goal_scale
        "cameras": [],  # list of {id, width, height, grayscale, crop: [top, bottom, left, right]}
        "bev": False,  # the BEV raster rendered by the env node from the map, route and objects
        "bev_size": 96,
        "bev_pixels_per_meter": 3.0,
        "frame_stack": 1,
        # m ahead: the route there as ego-frame points, plus the reward's target speed, in the measurements
        "route_lookahead": [],
        "lead_vehicle": False,  # gap and closing speed to the vehicle ahead on the route, in the measurements
        # the K nearest other vehicles within nearby_radius m, appended to the measurements (0: none; configs
        # without the key, such as saved checkpoints' configs, keep their measurement vector)
        "nearby_vehicles": 0,
        "nearby_radius": 30.0,  # m
    },
    "action": {
        "type": "continuous",  # continuous | discrete
        "combined_throttle_brake": True,
        "table": "carla-original",
        "throttle_cutoff_kmh": 30.0,  # discrete tables only, as the CARLA paper's agent
    },
    "reward": {
        # weighted terms; names from carla_rl_env.rewards.REWARD_TERMS
        "terms": {},
        "target_speed": 8.0,  # m/s, capped by the lane's speed limit
        "curve_lateral_acceleration": 0.0,  # m/s^2: cap the target speed for the route's curves ahead; 0 = off
        "deceleration": 2.5,  # m/s^2: braking that the curve and lead-vehicle caps of the target speed assume
        "lead_gap": 0.0,  # m: cap the target speed to stop this far behind the vehicle ahead; 0 = off
        # the lane_invasion term's cost per crossed marking, by carla.LaneMarkingType name (bridge.LANE_MARKING_TYPES)
        "lane_marking_costs": {
            "other": 0.2,
            "broken": 0.2,
            "solid": 1.0,
            "solid_solid": 2.0,
            "solid_broken": 1.0,
            "broken_solid": 1.0,
            "broken_broken": 0.2,
            "botts_dots": 0.2,
            "grass": 2.0,
            "curb": 2.0,
            "none": 0.0,
        },
    },
    "episode": {
        "terminate_on_collision": True,
        "terminate_on_off_road": True,
        "off_road_fraction": 0.5,  # of the car's footprint
        "max_route_deviation": 6.0,  # m from the route
        "wrong_way_angle_deg": 120.0,
        "goal_radius": 4.0,  # m of remaining route
        "min_average_speed": 2.0,  # m/s: time limit = route length / this + time_limit_margin
        "time_limit_margin": 10.0,  # s
        "max_episode_steps": 0,  # hard cap, 0 = only the route-based limit
        "stuck_seconds": 10.0,
        "stuck_speed": 0.3,  # m/s
    },
    "scenario": {
        "suite": "",  # a suite YAML, or empty for random routes
        "route_length_min": 60.0,
        "route_length_max": 250.0,
        "traffic": 0,
    },
}

_WEIGHT = Range(-1e6, 1e6)  # reward weights and costs: any finite size a user could mean
# distances and durations reach far beyond a town, so that a huge value can switch a check off (as 1e6 m of
# max_route_deviation does); 1e6 m is the OpenDRIVE reader's coordinate limit
_METRES = Range(0.0, 1e6, unit="m")
_LENGTH = Range(0.0, 1e6, low_open=True, unit="m")  # a distance that must be positive
_SPEED = Range(0.0, 100.0, unit="m/s")
_SECONDS = Range(0.0, 1e7, low_open=True, unit="s")
_VEHICLES = Range(0, 1000)  # traffic vehicles per simulator

ENV_BOUNDS: dict[str, Any] = {
    "sensor_timeout": Range(0.0, 3600.0, low_open=True, unit="s"),
    "settle_frames": Range(0, 10000),
    "observation": {
        "goal_scale": Range(0.0, 1e6, low_open=True),
        "bev_size": Range(8, 1024, unit="px"),
        "bev_pixels_per_meter": Range(0.0, 100.0, low_open=True),
        "frame_stack": Range(1, 64),
        "route_lookahead": Range(0.0, 1e4, unit="m", max_items=64),  # points ahead on the route: within a town
        "nearby_vehicles": Range(0, 64),
        "nearby_radius": _LENGTH,
    },
    "action": {"throttle_cutoff_kmh": Range(0.0, 1000.0, unit="km/h")},
    "reward": {
        "terms": _WEIGHT,
        "target_speed": _SPEED,
        "curve_lateral_acceleration": Range(0.0, 100.0, unit="m/s^2"),
        "deceleration": Range(0.0, 100.0, low_open=True, unit="m/s^2"),
        "lead_gap": _METRES,
        "lane_marking_costs": dict.fromkeys(ENV_SCHEMA["reward"]["lane_marking_costs"], _WEIGHT),
    },
    "episode": {
        "off_road_fraction": Range(0.0, 1.0),
        "max_route_deviation": _LENGTH,
        "wrong_way_angle_deg": Range(0.0, 360.0, unit="deg"),  # over 180: never wrong way
        "goal_radius": _LENGTH,
        "min_average_speed": Range(0.0, 100.0, low_open=True, unit="m/s"),
        "time_limit_margin": Range(0.0, 1e7, unit="s"),
        "max_episode_steps": Range(0, 10**9),
        "stuck_seconds": _SECONDS,
        "stuck_speed": _SPEED,
    },
    "scenario": {"route_length_min": _LENGTH, "route_length_max": _LENGTH, "traffic": _VEHICLES},
}

DEFAULT_REWARD_TERMS = {
    "route_progress": 1.0,
    "speed_tracking": 0.05,
    "lane_centering": 0.05,
    "collision": 10.0,
    "off_road": 1.0,
    "goal_bonus": 10.0,
}

SIM_SCHEMA: dict[str, Any] = {
    "town": "RLTown01",  # a shipped town name or a path to any .xodr (CARLA's own towns load too)
    "fixed_delta_seconds": 0.05,
    "traffic": 0,
    "seed": 0,  # added to each simulator's seed (the run's seed + the env index)
}
SIM_BOUNDS: dict[str, Any] = {
    # CARLA's physics needs steps of at most 0.1 s (substepping aside); 0.5 s still integrates, slowly
    "fixed_delta_seconds": Range(0.001, 0.5, unit="s"),
    "traffic": _VEHICLES,
    "seed": Range(0, 2**31 - 1),
}

# An env node reads the same run config files as the trainer: it checks its own sections and leaves the
# trainer's (validated by carla_rl_agents.settings) alone.
TRAINER_SECTIONS: dict[str, Any] = {"algo": None, "policy": {}, "algo_kwargs": {}, "train": {}}
SCHEMA: dict[str, Any] = {"env": ENV_SCHEMA, "sim": SIM_SCHEMA, **TRAINER_SECTIONS}
BOUNDS: dict[str, Any] = {"env": ENV_BOUNDS, "sim": SIM_BOUNDS}


def needs_vehicles(env: dict[str, Any]) -> bool:
    """Does an ``env`` config observe or reward the other vehicles (so a frame source must provide them)?
    The BEV draws them, the lead vehicle and the nearby vehicles are measured, ``lead_gap`` caps the target
    speed behind the lead vehicle."""
    obs = env["observation"]
    return bool(
        obs.get("bev")
        or obs.get("lead_vehicle")
        or obs.get("nearby_vehicles", 0) > 0
        or env["reward"].get("lead_gap", 0.0) > 0
    )


MARKERS_SENSOR = "sensor.pseudo.markers"  # the bridge's pseudo sensor of every actor's box: /carla/<id>
MARKERS_ID = BridgeTopics.markers.rsplit("/", 1)[-1]  # the id that names it as the env node listens: markers


def check_observation(env: dict[str, Any], source: str = "<config>") -> None:
    """An ``env`` section built in code (not loaded by :func:`load_env_config`) checked as a loaded one is:
    types and ranges of every key (ENV_BOUNDS), the camera entries (:func:`check_cameras`), and that it
    observes something (a policy needs at least one input)."""
    obs = merge(ENV_SCHEMA, copy.deepcopy(ENV_SCHEMA), env, source, "env.", ENV_BOUNDS)["observation"]
    check_cameras(env, source)
    if not (obs["measurements"] or obs["goal"] or obs["bev"] or obs["cameras"]):
        raise ConfigError(
            source, "env.observation", "observes nothing: turn on measurements, goal or bev, or add a camera"
        )


_CAMERA_SIZE = Range(1, 4096, unit="px")


def check_cameras(env: dict[str, Any], source: str) -> None:
    """``env.observation.cameras``: mappings with an ``id``, an image size in [1, 4096] px, a boolean
    ``grayscale`` and a ``crop`` of four pixel counts that leave some of the image."""
    for i, cam in enumerate(env["observation"]["cameras"]):
        key = f"env.observation.cameras[{i}]"
        if not isinstance(cam, dict) or not isinstance(cam.get("id"), str):
            raise ConfigError(source, key, f"expected a mapping with a string id, got {short(cam)}")
        for name in ("width", "height"):
            value = cam.get(name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(source, f"{key}.{name}", f"expected an int in {_CAMERA_SIZE}, got {short(value)}")
            if _CAMERA_SIZE.problem(value):
                raise ConfigError(source, f"{key}.{name}", _CAMERA_SIZE.problem(value))
        if not isinstance(cam.get("grayscale", False), bool):
            raise ConfigError(source, f"{key}.grayscale", f"expected a bool, got {short(cam['grayscale'])}")
        crop = cam.get("crop", [0, 0, 0, 0])
        valid = (
            isinstance(crop, list)
            and len(crop) == 4
            and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in crop)
        )
        if not valid or crop[0] + crop[1] >= cam["height"] or crop[2] + crop[3] >= cam["width"]:
            raise ConfigError(
                source,
                f"{key}.crop",
                f"expected [top, bottom, left, right] pixel counts >= 0 that leave part of the "
                f"{cam['width']}x{cam['height']} image, got {short(crop)}",
            )


def check_sensors(config: dict[str, Any], source: str = "<config>") -> None:
    """Every camera the observation names must be a camera of the ego in the objects file, and a config that
    observes or rewards other vehicles (:func:`needs_vehicles`) needs the objects file's markers pseudo sensor:
    the bridge publishes ``/carla/markers`` only when the file spawns ``sensor.pseudo.markers``
    (ros-bridge actor_factory.py, marker_sensor.py)."""
    env = config["env"]
    objects = load_objects(env["objects_file"] or default_objects_file())
    if needs_vehicles(env) and not any(s.type == MARKERS_SENSOR and s.id == MARKERS_ID for s in objects.sensors):
        raise ConfigError(
            source,
            "env.observation",
            "observes or rewards other vehicles (bev, lead_vehicle, nearby_vehicles or reward.lead_gap), which "
            f"come from /{BridgeTopics.markers}, but the objects file {objects.source} spawns no top-level "
            f'{{"type": "{MARKERS_SENSOR}", "id": "{MARKERS_ID}"}}: add it there, or turn those keys off',
        )
    try:
        vehicle = objects.vehicle(env["role_name"])
    except KeyError as exc:
        raise ConfigError(source, "env.role_name", str(exc.args[0])) from None
    cameras = sorted(s.id for s in vehicle.sensors if s.type == "sensor.camera.rgb")
    for i, cam in enumerate(env["observation"]["cameras"]):
        if not isinstance(cam, dict) or cam.get("id") not in cameras:
            name = cam.get("id") if isinstance(cam, dict) else cam
            raise ConfigError(
                source,
                f"env.observation.cameras[{i}].id",
                f"{short(name)} is not a camera of {env['role_name']} in {objects.source} "
                f"(cameras: {', '.join(cameras) or 'none'})",
            )


def load_env_config(paths: Iterable[str | Path] = (), overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults, then YAML files in order; unknown keys and wrong types raise ConfigError naming file and key."""
    paths = list(paths)
    config = load_config(SCHEMA, paths, overrides, BOUNDS)
    check_cameras(config["env"], ", ".join(map(str, paths)) or "<defaults>")
    if not config["env"]["reward"]["terms"]:
        config["env"]["reward"]["terms"] = dict(DEFAULT_REWARD_TERMS)
    return config
