"""The bridge's pseudo sensors and world-level answers, as the embedded simulator node gives them. No rclpy here.

A pseudo actor exists only when an objects file (or /carla/spawn_object) spawns it, and its topics are named
after its ``id`` under its parent's prefix (ros-bridge ``pseudo_actor.py``: ``carla/<id>`` top-level,
``carla/<role>/<id>`` on a vehicle). What each one publishes is read from ros-bridge master e9063d9
(``carla_ros_bridge/src/carla_ros_bridge/``): ``marker_sensor.py`` (``<id>`` every tick, ``<id>/static``
latched depth 1), ``traffic_lights_sensor.py`` (``<id>/info`` and ``<id>/status``, latched depth 10, each sent
only when it changed), ``actor_list_sensor.py`` (CARLA actors only), ``opendrive_sensor.py`` (latched, once),
``odom_sensor.py``, ``speedometer_sensor.py``, ``tf_sensor.py`` (``map -> <role>``), ``actor_control.py``
(``<id>/set_transform``, ``<id>/set_target_velocity``). Names are relative, as everything of
:class:`carla_rl_common.bridge.BridgeTopics` (a node namespace moves them).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from carla_rl_common.objects import PSEUDO_TYPES

#: sensors whose data a tick carries, with a transform each (ros-bridge ``sensor.py`` sends one per datum)
FRAMED_TYPES = ("sensor.camera.rgb", "sensor.other.imu", "sensor.other.gnss")
#: event sensors: a transform only with an event (``is_event_sensor``)
EVENT_TYPES = ("sensor.other.collision", "sensor.other.lane_invasion")
#: (x, y, z, w) that turns a camera's body frame into its optical frame (z forward, x right, y down), the
#: rotation ros-bridge ``camera.py`` appends to a camera's transform
OPTICAL_ROTATION = (-0.5, 0.5, -0.5, 0.5)
#: depth of the traffic-light and OpenDRIVE latched topics (the marker sensor's static topic keeps 1)
LATCHED_DEPTH = 10
#: the simulator's own actor standing for the map in :meth:`carla_rl_sim.core.Simulator.actors`: no CARLA actor
MAP_ACTOR_TYPE = "map"


@dataclass
class PseudoActor:
    """One spawned pseudo sensor or pseudo actor, with the node's ROS entities for it."""

    uid: int
    type: str
    name: str  # the objects file's id
    role: str | None  # the ego vehicle it is attached to; None: the world
    publishers: dict[str, Any] = field(default_factory=dict)
    subscriptions: list[Any] = field(default_factory=list)
    last: Any = None  # traffic lights: the (ids, states) last sent

    @property
    def prefix(self) -> str:
        """Its topic name (relative): ``carla/[<role>/]<id>``."""
        return f"carla/{self.role}/{self.name}" if self.role else f"carla/{self.name}"


def is_pseudo(type_id: str) -> bool:
    """A bridge pseudo actor (or the embedded simulator's own): not a CARLA actor (the bridge tests ``"pseudo"``)."""
    return "pseudo" in type_id


def is_carla_actor(type_id: str) -> bool:
    """What /carla/actor_list lists: CARLA actors only (``actor_list_sensor.py`` skips pseudo actors)."""
    return not is_pseudo(type_id) and type_id != MAP_ACTOR_TYPE


def filter_blueprints(blueprints: Iterable[str], pattern: str) -> list[str]:
    """/carla/get_blueprints: CARLA's ``BlueprintLibrary.filter`` (a wildcard matched against a blueprint's id or
    one of its tags, the parts of the id; empty = ``*``), plus every pseudo type whatever the filter, sorted
    (ros-bridge ``bridge.py get_blueprints``)."""
    pattern = pattern or "*"
    matched = [b for b in blueprints if any(fnmatch.fnmatchcase(s, pattern) for s in (b, *b.split(".")))]
    return sorted({*matched, *PSEUDO_TYPES})


def quaternion_multiply(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, float, float, float]:
    """Hamilton product of two (x, y, z, w) quaternions: rotation ``a`` then, in its frame, ``b``."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return (
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    )


def body_to_map(vx: float, vy: float, yaw: float) -> tuple[float, float]:
    """A vehicle-frame planar vector in the map frame (``actor_control.py`` rotates a Twist by the actor's pose)."""
    c, s = math.cos(yaw), math.sin(yaw)
    return c * vx - s * vy, s * vx + c * vy
