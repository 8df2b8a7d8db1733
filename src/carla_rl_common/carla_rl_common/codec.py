"""Our and the bridge's messages as plain values, and back: each conversion written once.

:mod:`carla_rl_common.bridge` spells out the contract (names, QoS, coordinates, field-by-field conversions);
this module holds what every reader and writer of those messages shares:

* the values as they cross the wire (:func:`as_float32`, :func:`control_as_sent`, :func:`yaw_as_sent`,
  :func:`impulse_norm`, :func:`longitudinal_acceleration`): the in-process env applies them to the simulator's
  own numbers, so that its frames equal the env node's bit for bit;
* ``visualization_msgs/MarkerArray`` -> the vehicles' boxes (:func:`marker_boxes`): the env node, the offline
  evaluator and the viewers read the bridge's ``markers`` the same way;
* ``carla_rl_msgs/Step`` <-> the observation dict (:func:`put_observation`, :func:`step_observation`);
* ``carla_rl_msgs/EpisodeSummary`` <-> the episode record, the JSON object ``carla-rl drive`` prints per episode
  (:func:`summary_record`, :func:`summary_msg`).

Messages are passed in (filled or read), so this module imports no message package.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from carla_rl_common import bridge
from carla_rl_common.bridge import Control

# visualization_msgs/Marker constants: the bridge's markers draw each vehicle as one ADDed CUBE
MARKER_CUBE, MARKER_ADD = 1, 0

#: the episode record's totals that an env reports in its final step's info (carla_rl_agents.evaluation)
EPISODE_TOTALS = ("route_completion", "collisions", "lane_invasions", "distance")


# --- values as the wire carries them --------------------------------------------------------------------
def as_float32(value: float) -> float:
    """``value`` as a float32 message field carries it (speed, control, reward fields)."""
    return float(np.float32(value))


def control_as_sent(control: Any) -> Control:
    """``control`` (any object with the CarlaEgoVehicleControl fields) as the message carries it: throttle,
    steer and brake are float32 fields (carla_rl_env.episode.CommandMatcher says which fields make a command)."""
    return Control(
        as_float32(control.throttle),
        as_float32(control.steer),
        as_float32(control.brake),
        bool(control.hand_brake),
        bool(control.reverse),
        int(control.gear),
        bool(control.manual_gear_shift),
    )


def yaw_as_sent(yaw: float) -> float:
    """``yaw`` after the trip through a pose's quaternion (:func:`bridge.pose_msg`, :func:`bridge.pose_to_xyyaw`)."""
    return bridge.quaternion_to_yaw(*bridge.yaw_to_quaternion(yaw))


def longitudinal_acceleration(ax: float, ay: float, yaw: float) -> float:
    """The acceleration along the heading ``yaw`` (m/s^2) of a map-frame acceleration ``(ax, ay)``: what
    vehicle_status.acceleration.linear carries (CARLA's world acceleration, converted x, -y, z by ros-bridge
    carla_common/transforms.py; ego_vehicle.py), not a body-frame one."""
    return ax * math.cos(yaw) + ay * math.sin(yaw)


def impulse_norm(x: float, y: float, z: float) -> float:
    """|impulse| of a collision event's ``normal_impulse``: what the task counts a collision by."""
    return math.sqrt(x**2 + y**2 + z**2)


# --- MarkerArray -> vehicle boxes ----------------------------------------------------------------------
@dataclass(frozen=True)
class MarkerBoxes:
    """The vehicles of one bridge ``MarkerArray``."""

    stamp_ns: int  # the markers' stamp; -1 when there are none
    ids: np.ndarray  # (N,) int64 actor ids of the other vehicles
    boxes: np.ndarray  # (N, 6) x, y, yaw, length, width, height of the other vehicles
    ego: tuple[float, float, float, float, float, float] | None  # the ego's box, when among the markers


def marker_boxes(msg: Any, ego_id: int = -1) -> MarkerBoxes:
    """The boxes of a bridge ``MarkerArray``: every ADDed CUBE, the ego's (``ego_id``) apart. Non-finite boxes
    are kept (the caller decides what to say about them)."""
    ids, boxes, ego = [], [], None
    for m in msg.markers:
        if m.type != MARKER_CUBE or m.action != MARKER_ADD:
            continue
        x, y, yaw = bridge.pose_to_xyyaw(m.pose)
        box = (x, y, yaw, m.scale.x, m.scale.y, m.scale.z)
        if m.id == ego_id:
            ego = box
        else:
            ids.append(int(m.id))
            boxes.append(box)
    stamp = bridge.stamp_to_ns(msg.markers[0].header.stamp) if msg.markers else -1
    return MarkerBoxes(stamp, np.array(ids, dtype=np.int64), np.array(boxes, dtype=np.float64).reshape(-1, 6), ego)


# --- Step <-> observation ------------------------------------------------------------------------------
def image_encoding(channels: int) -> str:
    """The encoding an observation image of ``channels`` channels is sent with (the BEV's layers: 8UC<n>)."""
    return {1: "mono8", 3: "bgr8"}.get(channels, f"8UC{channels}")


def put_observation(msg: Any, observation: dict[str, np.ndarray], measurement_names: list[str]) -> Any:
    """Fill a Step's observation fields: ``measurements`` and ``goal`` as float32 arrays, every other entry an
    image named by its key (stamped as the Step)."""
    for name, value in observation.items():
        if name == "measurements":
            msg.measurement_names = list(measurement_names)
            msg.measurements = value.astype("float32").tolist()
        elif name == "goal":
            msg.goal = value.astype("float32").tolist()
        else:
            msg.images.append(bridge.numpy_to_image(value, image_encoding(value.shape[2]), msg.header.stamp, name))
            msg.image_names.append(name)
    return msg


def step_observation(msg: Any) -> dict[str, np.ndarray]:
    """The observation a Step carries (images copied out of the message); ValueError on a malformed image."""
    out = {name: bridge.image_to_numpy(image).copy() for name, image in zip(msg.image_names, msg.images)}
    if msg.measurements:
        out["measurements"] = np.asarray(msg.measurements, dtype=np.float32)
    if msg.goal:
        out["goal"] = np.asarray(msg.goal, dtype=np.float32)
    return out


# --- EpisodeSummary <-> record -------------------------------------------------------------------------
def summary_record(msg: Any) -> dict[str, Any]:
    """The record of an EpisodeSummary: the JSON object ``carla-rl drive`` prints (the keys users' scripts read)."""
    return {
        "env_id": msg.env_id,
        "episode": int(msg.episode),
        "scenario_id": msg.scenario_id,
        "seed": int(msg.seed),
        "length": int(msg.length),
        "return": float(msg.episode_return),
        "success": bool(msg.success),
        "route_completion": float(msg.route_completion),
        "collisions": int(msg.collisions),
        "lane_invasions": int(msg.lane_invasions),
        "distance": float(msg.distance),
        "mean_speed": float(msg.mean_speed),
        "termination_reason": msg.termination_reason,
        "reward_terms": {n: float(v) for n, v in zip(msg.reward_term_names, msg.reward_term_sums)},
    }


def summary_msg(record: dict[str, Any], msg: Any) -> Any:
    """Fill an EpisodeSummary from a record (the inverse of :func:`summary_record`)."""
    msg.env_id, msg.episode = record["env_id"], record["episode"]
    msg.scenario_id, msg.seed = record["scenario_id"], record["seed"]
    msg.length, msg.episode_return, msg.success = record["length"], record["return"], record["success"]
    msg.route_completion, msg.collisions = record["route_completion"], record["collisions"]
    msg.lane_invasions, msg.distance = record["lane_invasions"], record["distance"]
    msg.mean_speed = record["mean_speed"]
    msg.termination_reason = record["termination_reason"]
    msg.reward_term_names = list(record["reward_terms"])
    msg.reward_term_sums = [float(v) for v in record["reward_terms"].values()]
    return msg
