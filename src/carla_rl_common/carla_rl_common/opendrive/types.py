"""Data types of the OpenDRIVE road network (no ROS dependency).

All coordinates are in the OpenDRIVE inertial frame, which is also the ROS ``map`` frame
of the CARLA bridge (x forward/east, y left/north, yaw counter-clockwise, radians).
Everything a consumer (simulator, renderer, env node, reward terms) needs is expressed
with these types, so the parser internals can change without touching them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

#: Lane types CARLA builds as road surface beside the driving lanes: a car rolls over them without a contact.
PAVED_LANE_TYPES = frozenset(
    {"shoulder", "parking", "biking", "bidirectional", "entry", "exit", "onRamp", "offRamp", "connectingRamp", "stop"}
)
#: Lane types that are a kerb or a raised or green strip: touching one is a contact with a static object.
KERB_LANE_TYPES = frozenset({"sidewalk", "curb", "border", "median", "restricted"})


class LaneKey(NamedTuple):
    """Identifies one lane of one lane section: ``(road id, section index, lane id)``."""

    road: str
    section: int
    lane: int

    def __str__(self) -> str:  # used as the GeoJSON ``key`` property
        return f"{self.road}:{self.section}:{self.lane}"


class RoadOption(enum.IntEnum):
    """Route commands, numbered exactly like CARLA's ``agents.navigation.local_planner.RoadOption``."""

    VOID = -1
    LEFT = 1
    RIGHT = 2
    STRAIGHT = 3
    LANEFOLLOW = 4
    CHANGELANELEFT = 5
    CHANGELANERIGHT = 6


@dataclass(frozen=True)
class RoadMark:
    """A lane boundary marking (OpenDRIVE ``<roadMark>``), e.g. type ``broken``/``solid``/``none``."""

    type: str = "none"
    color: str = "standard"
    width: float = 0.12


@dataclass
class Lane:
    """One lane of one lane section, sampled along its driving direction.

    ``centerline``, ``left_boundary`` and ``right_boundary`` are ``(N, 2)`` arrays ordered in the
    driving direction (for right-hand traffic lanes with a negative id run along the road's
    reference line, positive ids against it). ``left``/``right`` are relative to that direction.
    For non-driving lanes (sidewalk, shoulder, ...) the order follows the reference line.
    """

    key: LaneKey
    type: str  # OpenDRIVE lane type: driving, sidewalk, shoulder, border, parking, biking, ...
    junction: int  # junction id, or -1 outside junctions
    centerline: np.ndarray  # (N, 2)
    headings: np.ndarray  # (N,) yaw of the driving direction at each sample
    s: np.ndarray  # (N,) arc length from the lane's start, in its driving direction
    left_boundary: np.ndarray  # (N, 2)
    right_boundary: np.ndarray  # (N, 2)
    widths: np.ndarray  # (N,)
    left_mark: RoadMark = field(default_factory=RoadMark)
    right_mark: RoadMark = field(default_factory=RoadMark)
    speed_limit: float = 0.0  # m/s, 0 when the map gives none
    successors: list[LaneKey] = field(default_factory=list)
    predecessors: list[LaneKey] = field(default_factory=list)
    left_neighbor: LaneKey | None = None  # adjacent lane on the left, same direction or not
    right_neighbor: LaneKey | None = None
    elevation: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (N,) z of the centreline (m); empty: 0

    @property
    def length(self) -> float:
        return float(self.s[-1]) if len(self.s) else 0.0

    @property
    def is_driving(self) -> bool:
        return self.type == "driving"

    @property
    def polygon(self) -> np.ndarray:
        """``(2N, 2)`` outline: the left boundary, then the right one back (for filling and containment)."""
        return np.concatenate([self.left_boundary, self.right_boundary[::-1]])


class LaneLocation(NamedTuple):
    """Result of locating a world point on the road network."""

    key: LaneKey | None  # lane containing the point (nearest driving lane when off-road)
    s: float  # arc length along the lane in its driving direction
    t: float  # signed lateral offset from the lane centre (positive to the left of driving direction)
    heading_error: float  # query yaw minus lane heading, wrapped to [-pi, pi]
    on_road: bool  # inside a driving lane's boundaries
    distance: float  # distance to that lane's centreline


class RouteWaypoint(NamedTuple):
    x: float
    y: float
    yaw: float
    key: LaneKey
    road_option: RoadOption


@dataclass(frozen=True)
class Signal:
    id: str
    road: str
    s: float
    t: float
    type: str
    subtype: str
    name: str
    x: float
    y: float
    yaw: float


@dataclass(frozen=True)
class Junction:
    id: int
    name: str
    # (incoming road, connecting road, contact point) per <connection>
    connections: tuple[tuple[str, str, str], ...]
