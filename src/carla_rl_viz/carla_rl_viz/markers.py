"""Pure conversions from the stack's messages to rviz2 markers and TF (no node, no I/O: easy to test).

Everything is in the bridge's ``map`` frame (the OpenDRIVE inertial frame). Two marker topics, because a
latched topic keeps only its last message: the *map* markers (lane boundaries and the road surface) are
built once from ``/carla/world_info`` and published TRANSIENT_LOCAL; the *step* markers (remaining route,
goal, ego and traffic boxes, a text panel) are rebuilt per ``carla_rl_msgs/Step`` and start with a
DELETEALL so that vanished traffic disappears.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point, TransformStamped
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from carla_rl_common import bridge
from carla_rl_common.geometry import world_to_ego

# Topics of this package, relative like the bridge's (env_i namespaces resolve them per env).
STEP_MARKERS_TOPIC = "carla_rl/markers"
MAP_MARKERS_TOPIC = "carla_rl/markers/map"
BEV_IMAGE_TOPIC = "carla_rl/bev"
TF_TOPIC, TF_STATIC_TOPIC = "tf", "tf_static"

# Namespaces of the markers (rviz lists them per display).
NS_ROAD, NS_SOLID, NS_BROKEN, NS_EDGE = "road", "lane_marking_solid", "lane_marking_broken", "road_edge"
NS_ROUTE, NS_GOAL, NS_EGO, NS_TRAFFIC, NS_TEXT = "route", "goal", "ego", "traffic", "text"

DEFAULT_EGO_SIZE = (4.79, 2.16, 1.49)  # length, width, height of CARLA's vehicle.tesla.model3 (m)
# Sensor types that are physical frames on the vehicle (the bridge publishes a transform for each of them).
FRAMED_SENSOR_TYPES = ("sensor.camera.", "sensor.other.", "sensor.lidar.", "sensor.pseudo.bev")


def rgba(r: float, g: float, b: float, a: float = 1.0) -> ColorRGBA:
    return ColorRGBA(r=float(r), g=float(g), b=float(b), a=float(a))


WHITE, GREY, YELLOW = rgba(0.95, 0.95, 0.93), rgba(0.6, 0.6, 0.6), rgba(0.95, 0.8, 0.1)
ROAD_COLOUR, ROUTE_COLOUR, GOAL_COLOUR = rgba(0.3, 0.3, 0.32, 0.6), rgba(0.1, 1.0, 0.2, 0.9), rgba(1.0, 0.1, 0.6, 0.9)
EGO_COLOUR, TRAFFIC_COLOUR, TEXT_COLOUR = rgba(0.1, 0.6, 1.0, 0.9), rgba(1.0, 0.5, 0.1, 0.8), rgba(1.0, 1.0, 1.0, 1.0)


def points(xy: np.ndarray, z: float = 0.0) -> list[Point]:
    """(N, 2) map-frame metres -> geometry_msgs/Point list."""
    return [Point(x=float(x), y=float(y), z=float(z)) for x, y in np.asarray(xy, dtype=float)[:, :2]]


def _marker(ns: str, marker_id: int, kind: int, stamp=None, frame_id: str = bridge.MAP_FRAME) -> Marker:
    m = Marker(ns=ns, id=int(marker_id), type=kind, action=Marker.ADD)
    m.header.frame_id = frame_id
    if stamp is not None:
        m.header.stamp = stamp
    m.pose.orientation.w = 1.0
    m.lifetime = Duration()  # forever: per-step arrays replace themselves through DELETEALL
    return m


def _segments(polyline: np.ndarray) -> np.ndarray:
    """(N, 2) polyline -> (2(N-1), 2) LINE_LIST vertex pairs."""
    return np.repeat(polyline, 2, axis=0)[1:-1] if len(polyline) >= 2 else np.zeros((0, 2))


# --- static map markers ------------------------------------------------------------------------------------
def _every(n: int, stride: int) -> np.ndarray:
    """Indices 0, stride, 2 stride, ... and always the last one."""
    idx = np.arange(0, n, max(1, stride))
    return idx if idx[-1] == n - 1 else np.append(idx, n - 1)


def map_markers(lanes: Iterable, line_width: float = 0.15, stride: int = 4) -> MarkerArray:
    """Lane boundaries of every lane (solid and broken markings, unmarked road edges) and the road surface.

    ``lanes`` are :class:`carla_rl_common.opendrive.types.Lane` objects (``RoadNetwork.lanes.values()``).
    One marker per kind (LINE_LIST / TRIANGLE_LIST), so rviz draws a whole town in a handful of calls.
    Boundaries keep every ``stride``-th sample (2 m at the network's 0.5 m sampling: a 10 m curve radius
    then sags 5 cm), which keeps a town's markers to a few tens of thousands of points.
    """
    lines: dict[str, list[np.ndarray]] = {NS_SOLID: [], NS_BROKEN: [], NS_EDGE: []}
    yellow: dict[str, list[bool]] = {NS_SOLID: [], NS_BROKEN: [], NS_EDGE: []}
    triangles: list[np.ndarray] = []
    for lane in lanes:
        left, right = np.asarray(lane.left_boundary), np.asarray(lane.right_boundary)
        if not lane.is_driving or len(left) < 2 or len(right) != len(left):
            continue
        keep = _every(len(left), stride)
        left, right = left[keep], right[keep]
        # two triangles per sample interval of the lane polygon
        a, b, c, d = left[:-1], right[:-1], right[1:], left[1:]
        triangles.append(np.stack([a, b, c, a, c, d], axis=1).reshape(-1, 2))
        for boundary, mark in ((left, lane.left_mark), (right, lane.right_mark)):
            kind = NS_BROKEN if "broken" in mark.type else NS_SOLID if "solid" in mark.type else NS_EDGE
            segs = _segments(boundary)
            lines[kind].append(segs)
            yellow[kind].extend([mark.color == "yellow"] * len(segs))
    out = MarkerArray()
    if triangles:
        road = _marker(NS_ROAD, 0, Marker.TRIANGLE_LIST)
        road.scale.x = road.scale.y = road.scale.z = 1.0
        road.pose.position.z = -0.05
        road.color = ROAD_COLOUR
        road.points = points(np.concatenate(triangles))
        out.markers.append(road)
    base = {NS_SOLID: WHITE, NS_BROKEN: GREY, NS_EDGE: rgba(0.15, 0.15, 0.15)}
    for ns, parts in lines.items():
        if not parts:
            continue
        m = _marker(ns, 0, Marker.LINE_LIST)
        m.scale.x = line_width
        m.color = base[ns]
        m.points = points(np.concatenate(parts), z=0.02)
        if any(yellow[ns]):  # per-vertex colours only where some marking is yellow
            m.colors = [YELLOW if y else base[ns] for y in yellow[ns]]
        out.markers.append(m)
    return out


# --- per-step markers --------------------------------------------------------------------------------------
def delete_all() -> Marker:
    return Marker(action=Marker.DELETEALL)


def route_marker(route: Sequence[Point], stamp=None, width: float = 0.4) -> Marker:
    """LINE_STRIP through ``route`` (already converted, e.g. the remaining part of the planned route)."""
    m = _marker(NS_ROUTE, 0, Marker.LINE_STRIP, stamp)
    m.scale.x = width
    m.color = ROUTE_COLOUR
    m.points = list(route)
    return m


def goal_marker(x: float, y: float, stamp=None, radius: float = 1.5) -> Marker:
    m = _marker(NS_GOAL, 0, Marker.CYLINDER, stamp)
    m.pose.position.x, m.pose.position.y, m.pose.position.z = float(x), float(y), 1.0
    m.scale.x = m.scale.y = 2.0 * radius
    m.scale.z = 2.0
    m.color = GOAL_COLOUR
    return m


def box_marker(
    ns: str, marker_id: int, x: float, y: float, yaw: float, size: Sequence[float], colour: ColorRGBA, stamp=None
) -> Marker:
    """A vehicle's bounding box: ``size`` = (length, width, height), standing on the ground."""
    m = _marker(ns, marker_id, Marker.CUBE, stamp)
    m.pose = bridge.pose_msg(x, y, yaw, z=float(size[2]) / 2.0)
    m.scale.x, m.scale.y, m.scale.z = (float(v) for v in size)
    m.color = colour
    return m


def step_text(step) -> str:
    """The text panel of a ``carla_rl_msgs/Step``: episode/step, speed, the applied action, reward terms."""
    c = step.control
    lines = [
        f"episode {step.episode}  step {step.step}",
        f"speed {step.speed * 3.6:5.1f} km/h",
        f"throttle {c.throttle:.2f}  steer {c.steer:+.2f}  brake {c.brake:.2f}",
        f"reward {step.reward:+.3f}",
    ]
    lines += [f"  {name} {value:+.3f}" for name, value in zip(step.reward_term_names, step.reward_terms)]
    if step.termination_reason:
        lines.append(f"end: {step.termination_reason}")
    return "\n".join(lines)


def text_marker(text: str, x: float, y: float, stamp=None, height: float = 0.9) -> Marker:
    """TEXT_VIEW_FACING panel floating above (x, y)."""
    m = _marker(NS_TEXT, 0, Marker.TEXT_VIEW_FACING, stamp)
    m.pose.position.x, m.pose.position.y, m.pose.position.z = float(x), float(y), 6.0
    m.scale.z = height
    m.color = TEXT_COLOUR
    m.text = text
    return m


def traffic_boxes(markers: MarkerArray, ego_id: int = -1) -> list[Marker]:
    """The other vehicles' CUBE markers of the bridge's ``/carla/markers`` (ego and non-boxes skipped)."""
    return [m for m in markers.markers if m.type == Marker.CUBE and m.action == Marker.ADD and m.id != ego_id]


def step_markers(
    step,
    route: Sequence[Point],
    goal_xy: tuple[float, float] | None,
    traffic: Sequence[Marker] = (),
    ego_size: Sequence[float] = DEFAULT_EGO_SIZE,
) -> MarkerArray:
    """The per-step MarkerArray: DELETEALL, remaining route, goal, ego box, traffic boxes, text panel."""
    stamp = step.header.stamp
    x, y, yaw = bridge.pose_to_xyyaw(step.ego_pose)
    out = MarkerArray()
    out.markers.append(delete_all())
    if len(route) >= 2:
        out.markers.append(route_marker(route, stamp))
    if goal_xy is not None:
        out.markers.append(goal_marker(*goal_xy, stamp))
    out.markers.append(box_marker(NS_EGO, 0, x, y, yaw, ego_size, EGO_COLOUR, stamp))
    for i, t in enumerate(traffic):
        q = t.pose.orientation
        tyaw = bridge.quaternion_to_yaw(q.x, q.y, q.z, q.w)
        out.markers.append(
            box_marker(
                NS_TRAFFIC,
                i,
                t.pose.position.x,
                t.pose.position.y,
                tyaw,
                (t.scale.x, t.scale.y, t.scale.z),
                TRAFFIC_COLOUR,
                stamp,
            )
        )
    out.markers.append(text_marker(step_text(step), x, y, stamp))
    return out


class RouteCursor:
    """The planned route with the index of the point nearest the ego, searched in a window ahead so that
    progress never jumps across a loop (as the env's RouteTracker); converted to Points once."""

    def __init__(self, xy: np.ndarray, window: int = 40):
        self.xy = np.asarray(xy, dtype=float).reshape(-1, 2)
        self.points = points(self.xy, z=0.1)
        self.window = window
        self.index = 0

    @property
    def goal(self) -> tuple[float, float] | None:
        return (float(self.xy[-1, 0]), float(self.xy[-1, 1])) if len(self.xy) else None

    def advance(self, x: float, y: float) -> list[Point]:
        """Move to the route point nearest (x, y) ahead of the last one; returns the remaining route."""
        if len(self.xy) == 0:
            return []
        lo, hi = self.index, min(self.index + self.window, len(self.xy))
        d = np.hypot(self.xy[lo:hi, 0] - x, self.xy[lo:hi, 1] - y)
        self.index = lo + int(np.argmin(d))
        return [Point(x=float(x), y=float(y), z=0.1), *self.points[self.index + 1 :]]


# --- TF ----------------------------------------------------------------------------------------------------
def transform(
    parent: str, child: str, x: float, y: float, z: float, q: Sequence[float], stamp=None
) -> TransformStamped:
    t = TransformStamped()
    if stamp is not None:
        t.header.stamp = stamp
    t.header.frame_id, t.child_frame_id = parent, child
    t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = float(x), float(y), float(z)
    t.transform.rotation.x, t.transform.rotation.y, t.transform.rotation.z, t.transform.rotation.w = map(float, q)
    return t


def ego_transform(odometry) -> TransformStamped:
    """map -> <role> from the bridge's odometry (frame ``map``, child ``<role>``), at its stamp."""
    p, q = odometry.pose.pose.position, odometry.pose.pose.orientation
    return transform(
        odometry.header.frame_id or bridge.MAP_FRAME,
        odometry.child_frame_id,
        p.x,
        p.y,
        p.z,
        (q.x, q.y, q.z, q.w),
        odometry.header.stamp,
    )


def sensor_transforms(vehicle, stamp=None) -> list[TransformStamped]:
    """<role> -> <role>/<sensor id> for each physical sensor of a ``carla_rl_sim.objects.VehicleSpec``.

    The objects file's mounts are already in the ROS convention (see ``carla_rl_sim.objects``), radians.
    """
    out = []
    for sensor in vehicle.sensors:
        if not sensor.type.startswith(FRAMED_SENSOR_TYPES):
            continue
        m = sensor.mount
        out.append(
            transform(
                bridge.ego_frame(vehicle.id),
                bridge.sensor_frame(vehicle.id, sensor.id),
                m.x,
                m.y,
                m.z,
                bridge.rpy_to_quaternion(m.roll, m.pitch, m.yaw),
                stamp,
            )
        )
    return out


def goal_in_ego(goal_xy: tuple[float, float], step) -> tuple[float, float]:
    """The goal in the ego frame (x forward, y left), as the observation's unscaled ``goal``."""
    x, y, yaw = bridge.pose_to_xyyaw(step.ego_pose)
    gx, gy = world_to_ego(goal_xy, x, y, yaw)
    return float(gx), float(gy)
