"""Small hand-built road networks (dicts of ``Lane``) for the simulator tests; no OpenDRIVE parser involved."""

from __future__ import annotations

import math

import numpy as np

from carla_rl_common.opendrive.types import Lane, LaneKey, RoadMark

LANE_WIDTH = 3.5
SOLID = RoadMark("solid", "standard", 0.15)
BROKEN = RoadMark("broken", "standard", 0.15)
YELLOW_SOLID = RoadMark("solid", "yellow", 0.15)
NO_MARK = RoadMark()


def make_lane(
    key: LaneKey,
    points: np.ndarray,
    *,
    width: float = LANE_WIDTH,
    type: str = "driving",
    junction: int = -1,
    left_mark: RoadMark = NO_MARK,
    right_mark: RoadMark = NO_MARK,
    successors: list[LaneKey] | None = None,
    speed_limit: float = 0.0,
) -> Lane:
    """A lane along ``points`` (driving direction), boundaries offset by half the width."""
    points = np.asarray(points, dtype=float)
    d = np.gradient(points, axis=0)
    headings = np.arctan2(d[:, 1], d[:, 0])
    s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(points, axis=0).T))])
    normal = np.column_stack([-np.sin(headings), np.cos(headings)])  # to the left
    return Lane(
        key=key,
        type=type,
        junction=junction,
        centerline=points,
        headings=headings,
        s=s,
        left_boundary=points + normal * width / 2,
        right_boundary=points - normal * width / 2,
        widths=np.full(len(s), width),
        left_mark=left_mark,
        right_mark=right_mark,
        speed_limit=speed_limit,
        successors=list(successors or []),
    )


def line(x0: float, y0: float, x1: float, y1: float, step: float = 2.0) -> np.ndarray:
    n = max(2, int(math.hypot(x1 - x0, y1 - y0) / step) + 1)
    return np.column_stack([np.linspace(x0, x1, n), np.linspace(y0, y1, n)])


def straight_road(length: float = 200.0, sidewalks: bool = True) -> dict[LaneKey, Lane]:
    """Road "r" along +x from x=0: lane -1 drives east at y=-1.75, lane 1 west at y=+1.75 (dead ends).

    The centre line (y=0) is broken white, the outer edges (y=+-3.5) solid white, sidewalks beyond.
    """
    east, west = LaneKey("r", 0, -1), LaneKey("r", 0, 1)
    half = LANE_WIDTH / 2
    lanes = {
        east: make_lane(east, line(0, -half, length, -half), left_mark=BROKEN, right_mark=SOLID),
        west: make_lane(west, line(length, half, 0, half), left_mark=BROKEN, right_mark=SOLID),
    }
    if sidewalks:
        for lane_id, y in ((-2, -LANE_WIDTH - 1.0), (2, LANE_WIDTH + 1.0)):
            key = LaneKey("r", 0, lane_id)
            lanes[key] = make_lane(key, line(0, y, length, y), width=2.0, type="sidewalk")
    return lanes


def ring_road(radius: float = 50.0, pieces: int = 4) -> dict[LaneKey, Lane]:
    """A one-way counter-clockwise ring of ``pieces`` lanes, each the successor of the previous one."""
    keys = [LaneKey(f"ring{i}", 0, -1) for i in range(pieces)]
    lanes = {}
    for i, key in enumerate(keys):
        angles = np.linspace(2 * math.pi * i / pieces, 2 * math.pi * (i + 1) / pieces, 40)
        points = np.column_stack([radius * np.cos(angles), radius * np.sin(angles)])
        lanes[key] = make_lane(key, points, left_mark=SOLID, right_mark=SOLID, successors=[keys[(i + 1) % pieces]])
    return lanes


def crossroads(arm: float = 100.0, inner: float = 10.0) -> dict[LaneKey, Lane]:
    """Four one-lane arms entering junction 7 at the origin and going straight through it.

    Approach road ``in_<dir>`` -> junction lane ``j_<dir>`` -> exit road ``out_<dir>``, for vehicles coming
    from the west, south, east and north (right-hand traffic, lane centres 1.75 m right of the axes).
    The two crossing streams conflict inside the junction.
    """
    half = LANE_WIDTH / 2
    lanes: dict[LaneKey, Lane] = {}
    for name, angle in (("w", 0.0), ("s", math.pi / 2), ("e", math.pi), ("n", -math.pi / 2)):
        c, s = math.cos(angle), math.sin(angle)

        def at(along: float, c: float = c, s: float = s) -> tuple[float, float]:
            return along * c + half * s, along * s - half * c  # right of the travel direction

        k_in, k_j, k_out = LaneKey(f"in_{name}", 0, -1), LaneKey(f"j_{name}", 0, -1), LaneKey(f"out_{name}", 0, -1)
        lanes[k_in] = make_lane(k_in, line(*at(-arm), *at(-inner)), right_mark=SOLID, successors=[k_j])
        lanes[k_j] = make_lane(k_j, line(*at(-inner), *at(inner), step=1.0), junction=7, successors=[k_out])
        lanes[k_out] = make_lane(k_out, line(*at(inner), *at(arm)), right_mark=SOLID)
    return lanes


def box_corners(x: float, y: float, yaw: float, length: float, width: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    local = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]]) * [length / 2, width / 2]
    return local @ np.array([[c, s], [-s, c]]) + [x, y]


def boxes_overlap(a, b) -> bool:
    """Separating-axis test of two oriented boxes given as (x, y, yaw, length, width, ...)."""
    ca, cb = box_corners(*a[:5]), box_corners(*b[:5])
    for corners in (ca, cb):
        for i in range(2):
            axis = corners[i + 1] - corners[i]
            pa, pb = ca @ axis, cb @ axis
            if pa.max() < pb.min() or pb.max() < pa.min():
                return False
    return True


def any_overlap(boxes: np.ndarray) -> bool:
    """Whether any two of the (N, >=5) boxes overlap."""
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            if math.hypot(*(boxes[i, :2] - boxes[j, :2])) < 6.0 and boxes_overlap(boxes[i], boxes[j]):
                return True
    return False
