"""Generate the project's own OpenDRIVE towns (``RLTown01``, ``RLTown02``) deterministically.

A build-time tool, not part of any runtime package: run ``python tools/towns/generate.py`` from the
repository root to rewrite the shipped ``.xodr`` files of :mod:`carla_rl_common.towns` (``--check`` only
compares, ``--out DIR`` writes elsewhere). It carries its own small OpenDRIVE writer model (roads, lanes,
junctions as they are written); the runtime reader is :mod:`carla_rl_common.opendrive`.

Why code and not hand-edited files: every junction connecting road, lane link and geometry is
derived from a small town description (junction positions + streets between them), so the
links are continuous by construction and a layout change is a one-line edit.

How the towns are built (in the style of CARLA's Town01/Town02, written from scratch):

* A town is a set of junction *nodes* and *streets* between them. A street may turn at
  rounded corners (arc or clothoid-arc-clothoid) and may carry a gentle bulge.
* Every street becomes one road (or, with ``split_corners``, one road per straight stretch and
  per corner, linked road-to-road with contact points and lane links, some of them reversed).
  Reference lines run along the road centre; right-hand traffic: lanes ``-1..-n`` drive along
  the reference line, ``1..n`` against it; outside the driving lanes come a ``shoulder``
  (curb) and a ``sidewalk`` on each side.
* Roads stop short of each junction centre (far enough to clear the crossing roads); the
  junction then gets one connecting road per allowed movement (straight, left, right; no
  U-turns) with the driving lane ``-1`` on the right of its reference line, which starts at
  the incoming lane's inner border and ends at the outgoing lane's inner border, exactly as
  CARLA's maps do. Right turns (and straight moves along an open T-junction side) also carry
  the shoulder and sidewalk so pedestrians' sidewalks stay continuous around corners.
* Geometry is built by a small "turtle" (:class:`PlanView`) whose poses are evaluated
  exactly for lines and arcs and by fine Simpson integration for clothoids, and every
  generated curve is checked to land on its target pose (to 1e-6 m) before writing.

Output is byte-for-byte deterministic: no clocks, no randomness, fixed number formatting.
"""

from __future__ import annotations

import argparse
import math
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from carla_rl_common.towns import TOWNS_DIR

LANE_WIDTH = 3.5
"""Width of every driving lane (m)."""
SHOULDER_WIDTH = 0.5
"""Width of the shoulder between the outer driving lane and the sidewalk (m)."""
SIDEWALK_WIDTH = 2.5
"""Width of each sidewalk (m)."""
JUNCTION_MARGIN = 5.5
"""Extra distance (m) between a crossing road's outer sidewalk edge and where a road stops."""
GEO_REFERENCE = (
    "+proj=tmerc +lat_0=49 +lon_0=8 +k=1 +x_0=0 +y_0=0 +datum=WGS84 +units=m "
    "+geoidgrids=egm96_15.gtx +vunits=m +no_defs"
)
"""Same projection origin as CARLA's maps (so GNSS coordinates look alike)."""
HEADER_DATE = "2025-01-01T00:00:00"
"""Fixed on purpose: the output must not depend on when it was generated."""
POSE_TOLERANCE = 1e-6
"""How close (m / rad) a built curve must land on its target pose."""

ROAD_ID_START = 1
JUNCTION_ID_START = 1000


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------


def wrap_angle(angle: float) -> float:
    """Wrap an angle to ``(-pi, pi]``.

    Not :func:`carla_rl_common.geometry.wrap_angle` (``[-pi, pi)``) on purpose: westbound roads are written
    with ``hdg="3.14159265359"``; the shared wrap would write ``-3.14159265359`` and change the shipped files.
    """
    wrapped = math.fmod(angle + math.pi, 2.0 * math.pi)
    if wrapped <= 0.0:
        wrapped += 2.0 * math.pi
    return wrapped - math.pi


@dataclass(frozen=True)
class Pose:
    """A point with a heading (OpenDRIVE inertial frame, radians counter-clockwise from x)."""

    x: float
    y: float
    hdg: float

    def reversed(self) -> Pose:
        """The same point facing the other way."""
        return Pose(self.x, self.y, wrap_angle(self.hdg + math.pi))

    def offset(self, t: float) -> Pose:
        """Shift by ``t`` along the left normal (negative: to the right), keeping the heading."""
        return Pose(self.x - t * math.sin(self.hdg), self.y + t * math.cos(self.hdg), self.hdg)

    def advanced(self, distance: float) -> Pose:
        """Move ``distance`` straight ahead."""
        return Pose(self.x + distance * math.cos(self.hdg), self.y + distance * math.sin(self.hdg), self.hdg)

    def close_to(self, other: Pose, tol: float = POSE_TOLERANCE) -> bool:
        """Whether position and heading agree within ``tol``."""
        close = math.hypot(self.x - other.x, self.y - other.y) <= tol
        return close and abs(wrap_angle(self.hdg - other.hdg)) <= tol


def _clothoid_pose(start: Pose, length: float, k0: float, k1: float, steps: int = 512) -> Pose:
    """Pose after ``length`` metres of a clothoid whose curvature goes linearly ``k0 -> k1``.

    Composite Simpson integration of ``(cos, sin)(heading(s))``; with 512 steps over the short
    spirals used here the error is far below 1e-9 m.
    """
    if length <= 0.0:
        return start
    rate = (k1 - k0) / length

    def heading(s: float) -> float:
        return start.hdg + k0 * s + 0.5 * rate * s * s

    h = length / steps
    sx = math.cos(heading(0.0)) + math.cos(heading(length))
    sy = math.sin(heading(0.0)) + math.sin(heading(length))
    for i in range(1, steps):
        w = 4.0 if i % 2 else 2.0
        a = heading(i * h)
        sx += w * math.cos(a)
        sy += w * math.sin(a)
    return Pose(start.x + sx * h / 3.0, start.y + sy * h / 3.0, wrap_angle(heading(length)))


@dataclass(frozen=True)
class Geometry:
    """One ``<geometry>`` record of a plan view.

    ``kind`` is ``line``, ``arc`` (``curv_start`` is its curvature), ``spiral`` (curvature
    ``curv_start -> curv_end``) or ``poly3`` (``paramPoly3`` with normalized ``pRange``;
    ``poly`` holds ``aU bU cU dU aV bV cV dV`` in the local frame of ``start``).
    """

    kind: str
    s: float
    start: Pose
    length: float
    curv_start: float = 0.0
    curv_end: float = 0.0
    poly: tuple[float, ...] = ()

    def pose_at(self, ds: float) -> Pose:
        """Pose ``ds`` metres (for ``poly3``: ``ds / length`` of the parameter range) along."""
        p = self.start
        if self.kind == "line":
            return p.advanced(ds)
        if self.kind == "arc":
            k = self.curv_start
            if abs(k) < 1e-15:
                return p.advanced(ds)
            hdg = p.hdg + k * ds
            return Pose(
                p.x + (math.sin(hdg) - math.sin(p.hdg)) / k,
                p.y - (math.cos(hdg) - math.cos(p.hdg)) / k,
                wrap_angle(hdg),
            )
        if self.kind == "spiral":
            k_at = self.curv_start + (self.curv_end - self.curv_start) * ds / self.length
            return _clothoid_pose(p, ds, self.curv_start, k_at)
        if self.kind == "poly3":
            t = ds / self.length
            au, bu, cu, du, av, bv, cv, dv = self.poly
            u = au + t * (bu + t * (cu + t * du))
            v = av + t * (bv + t * (cv + t * dv))
            du_dt = bu + t * (2.0 * cu + 3.0 * t * du)
            dv_dt = bv + t * (2.0 * cv + 3.0 * t * dv)
            c, s = math.cos(p.hdg), math.sin(p.hdg)
            hdg = wrap_angle(p.hdg + math.atan2(dv_dt, du_dt))
            return Pose(p.x + u * c - v * s, p.y + u * s + v * c, hdg)
        raise ValueError(f"unknown geometry kind {self.kind!r}")

    def end(self) -> Pose:
        """Pose at the end of this geometry."""
        return self.pose_at(self.length)


def _tangent_lengths(a: Pose, b: Pose) -> tuple[float, float]:
    """Distances from ``a`` forward, and from there on to ``b``, via the tangents' intersection."""
    ux0, uy0 = math.cos(a.hdg), math.sin(a.hdg)
    ux1, uy1 = math.cos(b.hdg), math.sin(b.hdg)
    det = ux0 * uy1 - uy0 * ux1
    dx, dy = b.x - a.x, b.y - a.y
    return (dx * uy1 - dy * ux1) / det, (ux0 * dy - uy0 * dx) / det


def _unit_spiral_tangent(turn: float) -> float:
    """Tangent length of a symmetric clothoid-arc-clothoid turn of ``turn`` rad with arc radius 1.

    Each clothoid turns a sixth of the angle, the arc the remaining two thirds. The shape
    scales linearly with the radius, so a real turn uses ``radius = tangent / this``.
    """
    plan = PlanView(Pose(0.0, 0.0, 0.0))
    _append_spiral_turn(plan, 1.0, turn)
    return _tangent_lengths(Pose(0.0, 0.0, 0.0), plan.pose)[0]


def _append_spiral_turn(plan: PlanView, radius: float, turn: float) -> None:
    """Append clothoid (0 -> k), arc (k), clothoid (k -> 0) turning ``turn`` rad (signed)."""
    k = math.copysign(1.0 / radius, turn)
    spiral_len = abs(turn) * radius / 3.0
    plan.spiral(spiral_len, 0.0, k)
    plan.arc(2.0 * abs(turn) * radius / 3.0, k)
    plan.spiral(spiral_len, k, 0.0)


def _bezier_poly3(tangent: float, turn: float) -> tuple[tuple[float, ...], float]:
    """``paramPoly3`` coefficients (normalized range) and arc length of a symmetric turn.

    A cubic Bezier from ``(0, 0)`` heading 0 to the point ``tangent`` past the corner at
    ``(tangent, 0)``, heading ``turn``, with the control arm of the best circle approximation.
    """
    radius = tangent / math.tan(abs(turn) / 2.0)
    arm = 4.0 / 3.0 * math.tan(abs(turn) / 4.0) * radius
    b0 = (0.0, 0.0)
    b1 = (arm, 0.0)
    b3 = (tangent + tangent * math.cos(turn), tangent * math.sin(turn))
    b2 = (b3[0] - arm * math.cos(turn), b3[1] - arm * math.sin(turn))
    coeffs: list[float] = []
    for i in (0, 1):
        coeffs += [
            b0[i],
            3.0 * (b1[i] - b0[i]),
            3.0 * (b0[i] - 2.0 * b1[i] + b2[i]),
            -b0[i] + 3.0 * b1[i] - 3.0 * b2[i] + b3[i],
        ]
    _, bu, cu, du, _, bv, cv, dv = coeffs

    def speed(t: float) -> float:
        return math.hypot(bu + t * (2 * cu + 3 * t * du), bv + t * (2 * cv + 3 * t * dv))

    steps = 256
    inner = sum((4.0 if i % 2 else 2.0) * speed(i / steps) for i in range(1, steps))
    total = speed(0.0) + speed(1.0) + inner
    return tuple(coeffs), total / (3.0 * steps)


class PlanView:
    """A reference line under construction: a start pose and appended geometries."""

    def __init__(self, start: Pose) -> None:
        self.start = start
        self.geometries: list[Geometry] = []
        self.pose = start
        self.length = 0.0

    def _append(self, geometry: Geometry) -> None:
        self.geometries.append(geometry)
        self.pose = geometry.end()
        self.length += geometry.length

    def line(self, length: float) -> None:
        """Append a straight line."""
        self._append(Geometry("line", self.length, self.pose, length))

    def arc(self, length: float, curvature: float) -> None:
        """Append an arc of constant curvature (positive: turning left)."""
        self._append(Geometry("arc", self.length, self.pose, length, curvature, curvature))

    def spiral(self, length: float, curv_start: float, curv_end: float) -> None:
        """Append a clothoid whose curvature changes linearly."""
        self._append(Geometry("spiral", self.length, self.pose, length, curv_start, curv_end))

    def curve_to(self, target: Pose, style: str) -> None:
        """Append geometry that ends exactly on ``target``.

        Same heading: a straight line (``target`` must lie straight ahead). Otherwise a turn
        tangent to both headings in ``style`` (``arc``, ``spiral`` = clothoid-arc-clothoid,
        ``poly3`` = cubic Bezier), preceded or followed by a straight piece when the two
        tangent lengths differ.
        """
        start = self.pose
        turn = wrap_angle(target.hdg - start.hdg)
        if abs(turn) < 1e-9:
            along = (target.x - start.x) * math.cos(start.hdg) + (target.y - start.y) * math.sin(start.hdg)
            self.line(along)
        else:
            t_in, t_out = _tangent_lengths(start, target)
            if t_in <= 0.0 or t_out <= 0.0:
                raise ValueError(f"cannot turn from {start} to {target}: tangents {t_in:.3f}, {t_out:.3f}")
            tangent = min(t_in, t_out)
            if t_in - tangent > 1e-9:
                self.line(t_in - tangent)
            self._turn(tangent, turn, style)
            if t_out - tangent > 1e-9:
                self.line(t_out - tangent)
        if not self.pose.close_to(target):
            raise ValueError(f"curve_to({style}) landed at {self.pose}, wanted {target}")

    def _turn(self, tangent: float, turn: float, style: str) -> None:
        """Append a symmetric turn of ``turn`` rad whose tangent lengths are both ``tangent``."""
        if style == "arc":
            radius = tangent / math.tan(abs(turn) / 2.0)
            self.arc(radius * abs(turn), math.copysign(1.0 / radius, turn))
        elif style == "spiral":
            _append_spiral_turn(self, tangent / _unit_spiral_tangent(abs(turn)), turn)
        elif style == "poly3":
            coeffs, length = _bezier_poly3(tangent, turn)
            self._append(Geometry("poly3", self.length, self.pose, length, poly=coeffs))
        else:
            raise ValueError(f"unknown turn style {style!r}")

    def bulge(self, length: float, radius: float, angle: float) -> None:
        """Append a straight stretch of ``length`` with a symmetric sideways bulge in its middle.

        Arcs of ``+angle``, ``-2*angle``, ``+angle`` bring the line back onto its axis.
        """
        span = 4.0 * radius * math.sin(angle)
        lead = (length - span) / 2.0
        if lead <= 0.0:
            raise ValueError("bulge longer than the road")
        self.line(lead)
        self.arc(radius * angle, 1.0 / radius)
        self.arc(2.0 * radius * angle, -1.0 / radius)
        self.arc(radius * angle, 1.0 / radius)
        self.line(lead)


# --------------------------------------------------------------------------------------------
# Road model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoadMark:
    """A lane's outer-border marking (``<roadMark>``)."""

    type: str = "none"
    color: str = "standard"
    lane_change: str = "none"
    width: float = 0.15


NO_MARK = RoadMark()
SOLID_WHITE = RoadMark("solid", "white", "none")
BROKEN_WHITE = RoadMark("broken", "white", "both")
SOLID_YELLOW = RoadMark("solid", "yellow", "none")
DOUBLE_YELLOW = RoadMark("solid solid", "yellow", "none", 0.3)
CURB = RoadMark("curb", "standard", "none")


@dataclass
class Lane:
    """One lane of a road's single lane section, with its (optional) lane links."""

    id: int
    type: str
    width: float
    mark: RoadMark = NO_MARK
    predecessor: int | None = None
    successor: int | None = None


@dataclass(frozen=True)
class Link:
    """A road's ``<predecessor>``/``<successor>``: a junction, or a road at a contact point."""

    element_type: str
    element_id: int
    contact: str | None = None


@dataclass
class Road:
    """A road: reference line, lanes (symmetric about it, or right-only inside junctions), links."""

    id: int
    name: str
    plan: PlanView
    lanes: list[Lane]
    center_mark: RoadMark
    speed_kmh: float
    junction: int = -1
    predecessor: Link | None = None
    successor: Link | None = None

    def lane(self, lane_id: int) -> Lane:
        """The lane with this id."""
        for lane in self.lanes:
            if lane.id == lane_id:
                return lane
        raise KeyError(f"road {self.id} has no lane {lane_id}")

    def set_link(self, end: str, link: Link) -> None:
        """Set the predecessor (``end == 'start'``) or successor (``'end'``) link."""
        if end == "start":
            self.predecessor = link
        else:
            self.successor = link


@dataclass(frozen=True)
class Connection:
    """One ``<connection>`` of a junction, with its ``(from, to)`` lane links."""

    incoming: int
    connecting: int
    contact: str
    lane_links: tuple[tuple[int, int], ...]


@dataclass
class Junction:
    """A junction and its connections."""

    id: int
    name: str
    connections: list[Connection] = field(default_factory=list)


@dataclass(frozen=True)
class Profile:
    """A road class: driving lanes per direction, centre marking and speed limit."""

    name: str
    lanes_per_direction: int
    speed_kmh: float
    center_mark: RoadMark

    @property
    def half_width(self) -> float:
        """Distance from the reference line to the outer sidewalk edge."""
        return self.lanes_per_direction * LANE_WIDTH + SHOULDER_WIDTH + SIDEWALK_WIDTH

    def build_lanes(self) -> list[Lane]:
        """Lanes of one side then the other: driving lanes (broken white between them, solid
        white outside), a shoulder with a curb, and a sidewalk."""
        n = self.lanes_per_direction
        lanes: list[Lane] = []
        for side in (1, -1):
            for k in range(1, n + 1):
                lanes.append(Lane(side * k, "driving", LANE_WIDTH, BROKEN_WHITE if k < n else SOLID_WHITE))
            lanes.append(Lane(side * (n + 1), "shoulder", SHOULDER_WIDTH, CURB))
            lanes.append(Lane(side * (n + 2), "sidewalk", SIDEWALK_WIDTH))
        return lanes


def link_roads(a: Road, a_end: str, b: Road, b_end: str) -> None:
    """Link two roads that touch at ``a_end`` of ``a`` and ``b_end`` of ``b`` (both directions).

    Lanes map to the same physical lane: same id when the roads continue each other
    (end -> start), opposite id when they meet head to head (end -> end or start -> start).
    """
    flip = 1 if a_end != b_end else -1
    a.set_link(a_end, Link("road", b.id, b_end))
    b.set_link(b_end, Link("road", a.id, a_end))
    for road, end, other in ((a, a_end, b), (b, b_end, a)):
        other_ids = {lane.id for lane in other.lanes}
        for lane in road.lanes:
            if flip * lane.id in other_ids:
                if end == "start":
                    lane.predecessor = flip * lane.id
                else:
                    lane.successor = flip * lane.id


# --------------------------------------------------------------------------------------------
# Town description
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """A junction centre and the geometry style of its turning connections."""

    name: str
    x: float
    y: float
    turn_style: str = "arc"


@dataclass(frozen=True)
class Corner:
    """A rounded corner of a street: tangent lines meet at ``(x, y)``.

    ``reverse``: with ``split_corners`` the corner road's reference line runs against the
    street, so it meets its neighbours head to head (exercises ``contactPoint="end"`` links).
    """

    x: float
    y: float
    tangent: float
    style: str = "arc"
    reverse: bool = False


@dataclass(frozen=True)
class Bulge:
    """A gentle sideways bulge in the middle of a straight street."""

    radius: float
    angle_deg: float


@dataclass(frozen=True)
class Street:
    """A road between two junction nodes, optionally through rounded corners."""

    start: str
    end: str
    profile: Profile
    corners: tuple[Corner, ...] = ()
    split_corners: bool = False
    bulge: Bulge | None = None


@dataclass(frozen=True)
class TownSpec:
    """Everything that defines a town."""

    name: str
    nodes: tuple[Node, ...]
    streets: tuple[Street, ...]


@dataclass
class Arm:
    """A road end at a junction: where it stops and which way leads out of the junction."""

    road: Road
    contact: str  # which end of the road touches the junction
    profile: Profile
    outbound: Pose  # on the reference line at the road end, heading away from the junction

    @property
    def inbound(self) -> Pose:
        """The same point heading into the junction."""
        return self.outbound.reversed()

    def in_lane(self, k: int) -> int:
        """Lane id of the ``k``-th lane (1 = next to the centre) driving into the junction."""
        return -k if self.contact == "end" else k

    def out_lane(self, k: int) -> int:
        """Lane id of the ``k``-th lane driving out of the junction."""
        return -k if self.contact == "start" else k


# --------------------------------------------------------------------------------------------
# Building roads
# --------------------------------------------------------------------------------------------


def _unit(dx: float, dy: float) -> tuple[float, float]:
    norm = math.hypot(dx, dy)
    return dx / norm, dy / norm


def _street_waypoints(spec: TownSpec, street: Street) -> list[tuple[float, float]]:
    nodes = {n.name: n for n in spec.nodes}
    a, b = nodes[street.start], nodes[street.end]
    return [(a.x, a.y)] + [(c.x, c.y) for c in street.corners] + [(b.x, b.y)]


def _arm_distances(spec: TownSpec) -> dict[tuple[int, str], float]:
    """How far from its junction centre each street end stops, keyed ``(street, 'start'|'end')``.

    Far enough to clear the outer sidewalk of every crossing (non-collinear) street plus
    :data:`JUNCTION_MARGIN`.
    """
    arms: dict[str, list[tuple[int, str, tuple[float, float]]]] = {n.name: [] for n in spec.nodes}
    for i, street in enumerate(spec.streets):
        pts = _street_waypoints(spec, street)
        arms[street.start].append((i, "start", _unit(pts[1][0] - pts[0][0], pts[1][1] - pts[0][1])))
        arms[street.end].append((i, "end", _unit(pts[-2][0] - pts[-1][0], pts[-2][1] - pts[-1][1])))
    distances: dict[tuple[int, str], float] = {}
    for node, node_arms in arms.items():
        if len(node_arms) < 3:
            raise ValueError(f"node {node} has {len(node_arms)} streets; junctions need at least 3")
        for i, end, (ux, uy) in node_arms:
            crossing = [
                spec.streets[j].profile.half_width for j, _, (vx, vy) in node_arms if abs(ux * vy - uy * vx) > 0.5
            ]
            distances[(i, end)] = max(crossing) + JUNCTION_MARGIN
    return distances


def _segment_poses(
    spec: TownSpec, street: Street, distances: dict[tuple[int, str], float], index: int
) -> list[tuple[Pose, Pose, str]]:
    """Split a street into ``(start pose, end pose, style)`` pieces: straights and corners."""
    pts = _street_waypoints(spec, street)
    pieces: list[tuple[Pose, Pose, str]] = []
    ux, uy = _unit(pts[1][0] - pts[0][0], pts[1][1] - pts[0][1])
    d0 = distances[(index, "start")]
    cursor = Pose(pts[0][0] + d0 * ux, pts[0][1] + d0 * uy, math.atan2(uy, ux))
    for i, corner in enumerate(street.corners):
        vx, vy = _unit(pts[i + 2][0] - corner.x, pts[i + 2][1] - corner.y)
        enter = Pose(corner.x - corner.tangent * ux, corner.y - corner.tangent * uy, math.atan2(uy, ux))
        leave = Pose(corner.x + corner.tangent * vx, corner.y + corner.tangent * vy, math.atan2(vy, vx))
        pieces.append((cursor, enter, "line"))
        pieces.append((enter, leave, corner.style))
        cursor, (ux, uy) = leave, (vx, vy)
    d1 = distances[(index, "end")]
    end = Pose(pts[-1][0] - d1 * ux, pts[-1][1] - d1 * uy, math.atan2(uy, ux))
    pieces.append((cursor, end, "line"))
    return pieces


@dataclass
class StreetRoads:
    """The road(s) of one street and which end of the first/last road touches its junctions."""

    roads: list[Road]
    start_contact: str = "start"
    end_contact: str = "end"


def build_street_roads(
    spec: TownSpec, street: Street, index: int, distances: dict[tuple[int, str], float], next_id: int
) -> StreetRoads:
    """Build the road(s) of one street, linked to each other; junction links are set later."""
    pieces = _segment_poses(spec, street, distances, index)
    profile = street.profile
    name = f"{street.start}-{street.end}"

    def new_road(road_id: int, road_name: str, plan: PlanView) -> Road:
        return Road(road_id, road_name, plan, profile.build_lanes(), profile.center_mark, profile.speed_kmh)

    if street.bulge is not None:
        if street.corners:
            raise ValueError(f"{name}: a bulge needs a straight street")
        ((start, end, _),) = pieces
        plan = PlanView(start)
        length = math.hypot(end.x - start.x, end.y - start.y)
        plan.bulge(length, street.bulge.radius, math.radians(street.bulge.angle_deg))
        if not plan.pose.close_to(end):
            raise ValueError(f"bulge of {name} missed its end")
        return StreetRoads([new_road(next_id, name, plan)])

    if not street.split_corners:
        plan = PlanView(pieces[0][0])
        for _, end, style in pieces:
            plan.curve_to(end, style)
        return StreetRoads([new_road(next_id, name, plan)])

    roads: list[Road] = []
    reversed_flags: list[bool] = []
    corners = iter(street.corners)
    for i, (start, end, style) in enumerate(pieces):
        reverse = style != "line" and next(corners).reverse
        plan = PlanView(end.reversed() if reverse else start)
        plan.curve_to(start.reversed() if reverse else end, style)
        part = "straight" if style == "line" else "corner"
        road = new_road(next_id + i, f"{name} {part} {i}", plan)
        if roads:
            # the street-wise end of the previous piece touches the street-wise start of this one
            link_roads(roads[-1], "start" if reversed_flags[-1] else "end", road, "end" if reverse else "start")
        roads.append(road)
        reversed_flags.append(reverse)
    return StreetRoads(
        roads,
        "end" if reversed_flags[0] else "start",
        "start" if reversed_flags[-1] else "end",
    )


# --------------------------------------------------------------------------------------------
# Building junctions
# --------------------------------------------------------------------------------------------


def _movement(a: Arm, b: Arm) -> str:
    """``straight``, ``left``, ``right`` or ``uturn`` for driving in at ``a`` and out at ``b``."""
    turn = wrap_angle(b.outbound.hdg - a.inbound.hdg)
    if abs(turn) < math.radians(30):
        return "straight"
    if abs(turn) > math.radians(150):
        return "uturn"
    return "left" if turn > 0 else "right"


def _lane_pairs(a: Arm, b: Arm, movement: str) -> list[tuple[int, int]]:
    """Which incoming lane ``k`` feeds which outgoing lane ``k'`` (1 = next to the centre).

    Straight: lane by lane. Right turns: outermost to outermost. Left turns: innermost to
    innermost. (Other lanes reach a turn by changing lanes before the junction.)
    """
    n_in, n_out = a.profile.lanes_per_direction, b.profile.lanes_per_direction
    if movement == "straight":
        return [(k, min(k, n_out)) for k in range(1, n_in + 1)]
    if movement == "right":
        return [(n_in, n_out)]
    return [(1, 1)]


def build_connecting_road(
    road_id: int, junction: Junction, a: Arm, b: Arm, k_in: int, k_out: int, style: str, with_edge: bool
) -> tuple[Road, Connection]:
    """One connecting road from incoming lane ``k_in`` of ``a`` to outgoing lane ``k_out`` of ``b``.

    Its reference line follows the inner border of the lane (``-1``, 3.5 m); with
    ``with_edge`` it also carries the shoulder (``-2``) and sidewalk (``-3``).
    """
    start = a.inbound.offset(-(k_in - 1) * LANE_WIDTH)
    end = b.outbound.offset(-(k_out - 1) * LANE_WIDTH)
    plan = PlanView(start)
    plan.curve_to(end, style)
    pairs = [(-1, "driving", LANE_WIDTH, a.in_lane(k_in), b.out_lane(k_out))]
    if with_edge:
        n_in, n_out = a.profile.lanes_per_direction, b.profile.lanes_per_direction
        pairs.append((-2, "shoulder", SHOULDER_WIDTH, a.in_lane(n_in + 1), b.out_lane(n_out + 1)))
        pairs.append((-3, "sidewalk", SIDEWALK_WIDTH, a.in_lane(n_in + 2), b.out_lane(n_out + 2)))
    lanes = [Lane(lid, kind, width, NO_MARK, pred, succ) for lid, kind, width, pred, succ in pairs]
    road = Road(
        road_id,
        f"{junction.name} {a.road.id}:{a.in_lane(k_in)} to {b.road.id}:{b.out_lane(k_out)}",
        plan,
        lanes,
        NO_MARK,
        min(a.profile.speed_kmh, b.profile.speed_kmh),
        junction=junction.id,
        predecessor=Link("road", a.road.id, a.contact),
        successor=Link("road", b.road.id, b.contact),
    )
    connection = Connection(a.road.id, road_id, "start", tuple((lane.predecessor, lane.id) for lane in lanes))
    return road, connection


def build_junction(junction: Junction, arms: list[Arm], style: str, next_id: int) -> list[Road]:
    """All connecting roads of a junction (every movement but U-turns) and its connections."""
    roads: list[Road] = []
    for a in arms:
        moves = [(b, _movement(a, b)) for b in arms if b is not a]
        moves = [(b, m) for b, m in moves if m != "uturn"]
        open_right = all(m != "right" for _, m in moves)
        for b, movement in moves:
            for k_in, k_out in _lane_pairs(a, b, movement):
                outermost = k_in == a.profile.lanes_per_direction
                with_edge = movement == "right" or (movement == "straight" and open_right and outermost)
                road, connection = build_connecting_road(
                    next_id + len(roads),
                    junction,
                    a,
                    b,
                    k_in,
                    k_out,
                    style if movement != "straight" else "line",
                    with_edge,
                )
                roads.append(road)
                junction.connections.append(connection)
    return roads


# --------------------------------------------------------------------------------------------
# The town
# --------------------------------------------------------------------------------------------


@dataclass
class Town:
    """A built town: roads (normal first, then connecting) and junctions."""

    name: str
    roads: list[Road]
    junctions: list[Junction]


def build_town(spec: TownSpec) -> Town:
    """Build every road, then every junction's connecting roads, with consecutive ids."""
    distances = _arm_distances(spec)
    roads: list[Road] = []
    arms: dict[str, list[Arm]] = {n.name: [] for n in spec.nodes}
    for index, street in enumerate(spec.streets):
        built = build_street_roads(spec, street, index, distances, ROAD_ID_START + len(roads))
        first, last = built.roads[0], built.roads[-1]
        ends = ((street.start, first, built.start_contact), (street.end, last, built.end_contact))
        for node, road, contact in ends:
            arms[node].append(Arm(road, contact, street.profile, _outward_pose(road, contact)))
        roads.extend(built.roads)

    junctions: list[Junction] = []
    for i, node in enumerate(spec.nodes):
        junction = Junction(JUNCTION_ID_START + i, f"junction {node.name}")
        for arm in arms[node.name]:
            arm.road.set_link(arm.contact, Link("junction", junction.id))
        roads.extend(build_junction(junction, arms[node.name], node.turn_style, ROAD_ID_START + len(roads)))
        junctions.append(junction)
    return Town(spec.name, roads, junctions)


def _outward_pose(road: Road, end: str) -> Pose:
    """Reference-line pose at a road end, facing away from its junction (into the road)."""
    return road.plan.start if end == "start" else road.plan.pose.reversed()


# --------------------------------------------------------------------------------------------
# The two towns
# --------------------------------------------------------------------------------------------

PERIMETER = Profile("perimeter", 1, 50.0, SOLID_YELLOW)
STREET = Profile("street", 1, 30.0, BROKEN_WHITE)
ARTERIAL = Profile("arterial", 3, 60.0, DOUBLE_YELLOW)
AVENUE = Profile("avenue", 2, 50.0, DOUBLE_YELLOW)
MINOR = Profile("minor", 1, 30.0, BROKEN_WHITE)


def rltown01() -> TownSpec:
    """A 400 x 360 m grid of 3 x 3 blocks (70-150 m edges) in the style of CARLA's Town01.

    Perimeter road (50 km/h, solid yellow centre line) with rounded corners (one clothoid,
    three arcs, split into corner roads, two of them reversed); interior streets (30 km/h,
    broken white centre line), one with a bulge. Four 4-way junctions and eight T junctions;
    turns are arcs except at N01/N02 (clothoids) and N21 (paramPoly3).
    """
    xs, ys = (0.0, 130.0, 250.0, 400.0), (0.0, 140.0, 210.0, 360.0)
    style = {"N01": "spiral", "N02": "spiral", "N21": "poly3"}
    nodes = tuple(
        Node(f"N{i}{j}", xs[i], ys[j], style.get(f"N{i}{j}", "arc"))
        for j in range(4)
        for i in range(4)
        if (i in (0, 3)) + (j in (0, 3)) < 2
    )
    perimeter = (
        Street("N10", "N01", PERIMETER, (Corner(0.0, 0.0, 25.0, "spiral"),), split_corners=True),
        Street("N10", "N20", PERIMETER),
        Street("N20", "N31", PERIMETER, (Corner(400.0, 0.0, 25.0, "arc", reverse=True),), split_corners=True),
        Street("N31", "N32", PERIMETER),
        Street("N32", "N23", PERIMETER, (Corner(400.0, 360.0, 25.0, "arc"),), split_corners=True),
        Street("N23", "N13", PERIMETER),
        Street("N13", "N02", PERIMETER, (Corner(0.0, 360.0, 25.0, "arc", reverse=True),), split_corners=True),
        Street("N02", "N01", PERIMETER),
    )
    interior = tuple(Street(f"N{i}{j}", f"N{i + 1}{j}", STREET) for j in (1, 2) for i in range(3)) + tuple(
        Street(f"N{i}{j}", f"N{i}{j + 1}", STREET, bulge=Bulge(80.0, 12.0) if (i, j) == (1, 2) else None)
        for i in (1, 2)
        for j in range(3)
    )
    return TownSpec("RLTown01", nodes, perimeter + interior)


def rltown02() -> TownSpec:
    """A 500 x 300 m multi-lane town: a loop arterial with 3 lanes per direction (60 km/h,
    double yellow centre, broken white between lanes, clothoid corners), an avenue with 2
    lanes per direction (50 km/h) across it, and four two-lane minor streets (30 km/h).

    Six T junctions on the loop, two 4-way junctions avenue x minor street; turns are arcs
    except at L/R (clothoids) and C2 (paramPoly3).
    """
    nodes = (
        Node("B1", 170.0, 0.0),
        Node("B2", 330.0, 0.0),
        Node("T1", 170.0, 300.0),
        Node("T2", 330.0, 300.0),
        Node("L", 0.0, 150.0, "spiral"),
        Node("R", 500.0, 150.0, "spiral"),
        Node("C1", 170.0, 150.0),
        Node("C2", 330.0, 150.0, "poly3"),
    )
    streets = (
        Street("B1", "L", ARTERIAL, (Corner(0.0, 0.0, 50.0, "spiral"),)),
        Street("L", "T1", ARTERIAL, (Corner(0.0, 300.0, 50.0, "spiral"),)),
        Street("T1", "T2", ARTERIAL),
        Street("T2", "R", ARTERIAL, (Corner(500.0, 300.0, 50.0, "spiral"),)),
        Street("R", "B2", ARTERIAL, (Corner(500.0, 0.0, 50.0, "spiral"),)),
        Street("B2", "B1", ARTERIAL),
        Street("L", "C1", AVENUE),
        Street("C1", "C2", AVENUE),
        Street("C2", "R", AVENUE),
        Street("B1", "C1", MINOR),
        Street("C1", "T1", MINOR),
        Street("B2", "C2", MINOR),
        Street("C2", "T2", MINOR),
    )
    return TownSpec("RLTown02", nodes, streets)


TOWN_SPECS = {"RLTown01": rltown01, "RLTown02": rltown02}


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def fmt(value: float) -> str:
    """Fixed, platform-stable number formatting (12 significant digits, no ``-0``)."""
    if abs(value) < 1e-12:
        return "0"
    return f"{value:.12g}"


def _poly_attrs(s_name: str, s: float, a: float) -> dict[str, str]:
    return {s_name: fmt(s), "a": fmt(a), "b": "0", "c": "0", "d": "0"}


def _mark_element(parent: ET.Element, mark: RoadMark) -> None:
    attrs = {"sOffset": "0", "type": mark.type, "weight": "standard", "color": mark.color, "material": "standard"}
    if mark.type != "none":
        attrs["width"] = fmt(mark.width)
    attrs["laneChange"] = mark.lane_change
    ET.SubElement(parent, "roadMark", attrs)


def _lane_element(parent: ET.Element, lane: Lane) -> None:
    el = ET.SubElement(parent, "lane", {"id": str(lane.id), "type": lane.type, "level": "false"})
    link = ET.SubElement(el, "link")
    if lane.predecessor is not None:
        ET.SubElement(link, "predecessor", {"id": str(lane.predecessor)})
    if lane.successor is not None:
        ET.SubElement(link, "successor", {"id": str(lane.successor)})
    ET.SubElement(el, "width", _poly_attrs("sOffset", 0.0, lane.width))
    _mark_element(el, lane.mark)


def _geometry_element(parent: ET.Element, geo: Geometry) -> None:
    p = geo.start
    attrs = {"s": fmt(geo.s), "x": fmt(p.x), "y": fmt(p.y), "hdg": fmt(p.hdg), "length": fmt(geo.length)}
    el = ET.SubElement(parent, "geometry", attrs)
    if geo.kind == "line":
        ET.SubElement(el, "line")
    elif geo.kind == "arc":
        ET.SubElement(el, "arc", {"curvature": fmt(geo.curv_start)})
    elif geo.kind == "spiral":
        ET.SubElement(el, "spiral", {"curvStart": fmt(geo.curv_start), "curvEnd": fmt(geo.curv_end)})
    else:
        names = ("aU", "bU", "cU", "dU", "aV", "bV", "cV", "dV")
        attrs = {n: fmt(v) for n, v in zip(names, geo.poly)}
        attrs["pRange"] = "normalized"
        ET.SubElement(el, "paramPoly3", attrs)


def _link_element(parent: ET.Element, tag: str, link: Link | None) -> None:
    if link is None:
        return
    attrs = {"elementType": link.element_type, "elementId": str(link.element_id)}
    if link.contact is not None:
        attrs["contactPoint"] = link.contact
    ET.SubElement(parent, tag, attrs)


def road_element(road: Road) -> ET.Element:
    """The ``<road>`` element (OpenDRIVE 1.4 child order)."""
    attrs = {"name": road.name, "length": fmt(road.plan.length), "id": str(road.id), "junction": str(road.junction)}
    el = ET.Element("road", attrs)
    link = ET.SubElement(el, "link")
    _link_element(link, "predecessor", road.predecessor)
    _link_element(link, "successor", road.successor)
    road_type = ET.SubElement(el, "type", {"s": "0", "type": "town"})
    ET.SubElement(road_type, "speed", {"max": fmt(road.speed_kmh), "unit": "km/h"})
    plan = ET.SubElement(el, "planView")
    for geo in road.plan.geometries:
        _geometry_element(plan, geo)
    ET.SubElement(ET.SubElement(el, "elevationProfile"), "elevation", _poly_attrs("s", 0.0, 0.0))
    ET.SubElement(ET.SubElement(el, "lateralProfile"), "superelevation", _poly_attrs("s", 0.0, 0.0))
    lanes = ET.SubElement(el, "lanes")
    ET.SubElement(lanes, "laneOffset", _poly_attrs("s", 0.0, 0.0))
    section = ET.SubElement(lanes, "laneSection", {"s": "0"})
    left = sorted((lane for lane in road.lanes if lane.id > 0), key=lambda lane: -lane.id)
    right = sorted((lane for lane in road.lanes if lane.id < 0), key=lambda lane: -lane.id)
    if left:
        side = ET.SubElement(section, "left")
        for lane in left:
            _lane_element(side, lane)
    center = ET.SubElement(ET.SubElement(section, "center"), "lane", {"id": "0", "type": "none", "level": "false"})
    _mark_element(center, road.center_mark)
    if right:
        side = ET.SubElement(section, "right")
        for lane in right:
            _lane_element(side, lane)
    return el


def junction_element(junction: Junction) -> ET.Element:
    """The ``<junction>`` element with one ``<connection>`` per connecting road."""
    el = ET.Element("junction", {"id": str(junction.id), "name": junction.name})
    for i, conn in enumerate(junction.connections):
        attrs = {
            "id": str(i),
            "incomingRoad": str(conn.incoming),
            "connectingRoad": str(conn.connecting),
            "contactPoint": conn.contact,
        }
        c = ET.SubElement(el, "connection", attrs)
        for frm, to in conn.lane_links:
            ET.SubElement(c, "laneLink", {"from": str(frm), "to": str(to)})
    return el


def _bounds(town: Town) -> tuple[float, float, float, float]:
    """(north, south, east, west) of the reference lines widened by each road's outer width."""
    xs: list[float] = []
    ys: list[float] = []
    for road in town.roads:
        reach = sum(lane.width for lane in road.lanes if lane.id < 0)
        for geo in road.plan.geometries:
            steps = max(1, math.ceil(geo.length / 5.0))
            for i in range(steps + 1):
                p = geo.pose_at(geo.length * i / steps)
                for t in (-reach, reach):
                    q = p.offset(t)
                    xs.append(q.x)
                    ys.append(q.y)
    return max(ys), min(ys), max(xs), min(xs)


def town_xml(town: Town) -> str:
    """The complete ``.xodr`` text of a town."""
    root = ET.Element("OpenDRIVE")
    north, south, east, west = _bounds(town)
    header = ET.SubElement(
        root,
        "header",
        {
            "revMajor": "1",
            "revMinor": "4",
            "name": town.name,
            "version": "1",
            "date": HEADER_DATE,
            "north": fmt(north),
            "south": fmt(south),
            "east": fmt(east),
            "west": fmt(west),
            "vendor": "carla-rl",
        },
    )
    ET.SubElement(header, "geoReference").text = GEO_REFERENCE
    for road in town.roads:
        root.append(road_element(road))
    for junction in town.junctions:
        root.append(junction_element(junction))
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def generate_town(name: str) -> str:
    """Build the named town and return its ``.xodr`` text."""
    try:
        spec = TOWN_SPECS[name]()
    except KeyError:
        raise KeyError(f"unknown town {name!r}; known: {', '.join(sorted(TOWN_SPECS))}") from None
    return town_xml(build_town(spec))


def write_towns(out_dir: Path = TOWNS_DIR) -> list[Path]:
    """Write every town to ``out_dir/<name>.xodr``; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in TOWN_SPECS:
        path = out_dir / f"{name}.xodr"
        path.write_bytes(generate_town(name).encode("utf-8"))
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    """CLI: regenerate the towns (default), or ``--check`` that the shipped files are current."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=TOWNS_DIR, help="output directory (default: the carla_rl_common.towns package)"
    )
    parser.add_argument("--check", action="store_true", help="only compare the files in --out with fresh output")
    args = parser.parse_args(argv)
    if args.check:
        stale = [
            name
            for name in TOWN_SPECS
            if not (args.out / f"{name}.xodr").is_file()
            or (args.out / f"{name}.xodr").read_bytes() != generate_town(name).encode("utf-8")
        ]
        for name in stale:
            print(f"{name}.xodr is out of date; run python tools/towns/generate.py", file=sys.stderr)
        return 1 if stale else 0
    for path in write_towns(args.out):
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
