"""Progress of the ego vehicle along a planned route (a list of RouteWaypoints)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from carla_rl_common.opendrive.types import RoadOption, RouteWaypoint

# Road options in the order of the measurement vector's one-hot (CARLA's numbering, VOID excluded).
COMMANDS = (
    RoadOption.LEFT,
    RoadOption.RIGHT,
    RoadOption.STRAIGHT,
    RoadOption.LANEFOLLOW,
    RoadOption.CHANGELANELEFT,
    RoadOption.CHANGELANERIGHT,
)
LEAD_HORIZON = 40.0  # m of route ahead searched for a lead vehicle
LEAD_CORRIDOR = 2.5  # m: a vehicle whose centre is this close to the route ahead is in the car's path


class RouteTracker:
    """Tracks the closest route point ahead of the car, so progress never jumps across a loop."""

    def __init__(self, waypoints: Sequence[RouteWaypoint], search_window: int = 20):
        if len(waypoints) < 2:
            raise ValueError("a route needs at least two waypoints")
        self.waypoints = list(waypoints)
        self.xy = np.array([(w.x, w.y) for w in waypoints], dtype=np.float64)
        seg = np.diff(self.xy, axis=0)
        self.seg_len = np.hypot(seg[:, 0], seg[:, 1])
        self.cum = np.concatenate([[0.0], np.cumsum(self.seg_len)])
        self.length = float(self.cum[-1])
        self.window = search_window
        self.index = 0  # segment the car is on
        self.progress = 0.0  # metres along the route
        self.deviation = 0.0  # metres from the route polyline
        self.curvature = route_curvature(self.xy, self.cum)

    def update(self, x: float, y: float) -> float:
        """Project (x, y) on the route near the last position; returns the progress in metres."""
        lo, hi = self.index, min(self.index + self.window, len(self.seg_len))
        a, b = self.xy[lo:hi], self.xy[lo + 1 : hi + 1]
        ab = b - a
        denom = np.maximum((ab**2).sum(axis=1), 1e-12)
        u = np.clip(((np.array([x, y]) - a) * ab).sum(axis=1) / denom, 0.0, 1.0)
        proj = a + ab * u[:, None]
        dist = np.hypot(proj[:, 0] - x, proj[:, 1] - y)
        k = int(np.argmin(dist))
        self.index = lo + k
        self.deviation = float(dist[k])
        # progress is monotone: reversing does not undo it, and a projection behind the last one is ignored
        self.progress = max(self.progress, float(self.cum[self.index] + u[k] * self.seg_len[self.index]))
        return self.progress

    @property
    def remaining(self) -> float:
        return max(self.length - self.progress, 0.0)

    @property
    def completion(self) -> float:
        return min(self.progress / self.length, 1.0) if self.length > 0 else 1.0

    def heading(self) -> float:
        d = self.xy[self.index + 1] - self.xy[self.index]
        return math.atan2(d[1], d[0])

    def lateral_offset(self, x: float, y: float) -> float:
        """Signed distance from the route (positive to the left of its direction)."""
        a, b = self.xy[self.index], self.xy[self.index + 1]
        d = b - a
        n = math.hypot(d[0], d[1]) or 1.0
        return float((d[0] * (y - a[1]) - d[1] * (x - a[0])) / n)

    def next_command(self, lookahead: float = 5.0) -> RoadOption:
        """The first non-LANEFOLLOW command within ``lookahead`` m, else LANEFOLLOW (like CARLA's planner)."""
        end = self.progress + lookahead
        i = self.index
        while i < len(self.waypoints) and self.cum[i] <= end:
            if self.waypoints[i].road_option not in (RoadOption.LANEFOLLOW, RoadOption.VOID):
                return self.waypoints[i].road_option
            i += 1
        option = self.waypoints[min(self.index + 1, len(self.waypoints) - 1)].road_option
        return option if option != RoadOption.VOID else RoadOption.LANEFOLLOW

    def points_ahead(self, distances: Sequence[float]) -> np.ndarray:
        """Map-frame route points ``distances`` metres ahead of the car's progress, ``(len(distances), 2)``
        (the goal for distances past it): the shape of the road to come, e.g. a turn before it starts."""
        s = np.minimum(self.progress + np.asarray(distances, dtype=np.float64), self.length)
        return np.stack([np.interp(s, self.cum, self.xy[:, 0]), np.interp(s, self.cum, self.xy[:, 1])], axis=1)

    def curve_speed(self, lateral_acceleration: float, deceleration: float, horizon: float = 40.0) -> float:
        """The highest speed (m/s) from which the car can slow down (at ``deceleration``) to take every curve
        of the next ``horizon`` metres at ``lateral_acceleration`` (v^2 kappa); inf on straight roads.

        The usual speed profile of motion planners: ``min_i sqrt(a_lat / kappa_i + 2 b d_i)`` over route
        points ``i`` ahead (``d_i`` their distance, ``kappa_i`` the curvature there). The point the car is at
        counts too, so the limit holds through the curve and not only before it.
        """
        lo = self.index
        hi = int(np.searchsorted(self.cum, self.progress + horizon, side="right"))
        kappa = self.curvature[lo : hi + 1]
        ahead = np.maximum(self.cum[lo : hi + 1] - self.progress, 0.0)
        limits = lateral_acceleration / np.maximum(kappa, 1e-9) + 2.0 * deceleration * ahead
        return float(math.sqrt(limits.min())) if len(limits) else math.inf

    def distance_to_junction(self, in_junction: Sequence[bool], horizon: float = 50.0) -> float:
        """Metres to the next route waypoint inside a junction (``horizon`` when none is closer)."""
        for i in range(self.index + 1, len(self.waypoints)):
            d = self.cum[i] - self.progress
            if d > horizon:
                break
            if in_junction[i]:
                return max(d, 0.0)
        return horizon

    def lead_gap(self, vehicles: np.ndarray, x: float, y: float, ego_length: float) -> float:
        """Gap in m to the nearest of ``vehicles`` (rows ``x, y, yaw, length, ...``) on the route ahead of the
        car at ``(x, y)``: one whose centre lies within ``LEAD_CORRIDOR`` m of the route's next ``LEAD_HORIZON``
        m, bumper to bumper along the route; ``LEAD_HORIZON`` when there is none."""
        gap = LEAD_HORIZON
        if len(vehicles):
            near = vehicles[np.hypot(vehicles[:, 0] - x, vehicles[:, 1] - y) < LEAD_HORIZON + 10.0]
            if len(near):
                hi = int(np.searchsorted(self.cum, self.progress + LEAD_HORIZON + 5.0, side="right"))
                path, along = self.xy[self.index : hi + 1], self.cum[self.index : hi + 1] - self.progress
                d = np.hypot(near[:, None, 0] - path[None, :, 0], near[:, None, 1] - path[None, :, 1])
                j = d.argmin(axis=1)
                hit = (d[np.arange(len(near)), j] < LEAD_CORRIDOR) & (along[j] > 0)
                if hit.any():
                    gaps = along[j][hit] - (near[hit, 3] + ego_length) / 2.0
                    gap = float(np.clip(gaps.min(), 0.0, LEAD_HORIZON))
        return gap

    def command_one_hot(self, lookahead: float = 5.0) -> np.ndarray:
        one_hot = np.zeros(len(COMMANDS), dtype=np.float32)
        one_hot[COMMANDS.index(self.next_command(lookahead))] = 1.0
        return one_hot


def route_curvature(xy: np.ndarray, cum: np.ndarray, half_window: float = 3.0) -> np.ndarray:
    """Unsigned curvature (1/m) at each route point: heading change over +-``half_window`` m of route,
    divided by the arc length, so the ~2 m spacing of route points and short segments add no noise."""
    seg = np.diff(xy, axis=0)
    lengths = np.hypot(seg[:, 0], seg[:, 1])
    keep = lengths > 1e-6  # duplicate points have no heading
    if not keep.any():
        return np.zeros(len(xy))
    heading = np.unwrap(np.arctan2(seg[keep, 1], seg[keep, 0]))
    mid = (cum[:-1] + lengths / 2.0)[keep]
    if len(mid) == 1:
        return np.zeros(len(xy))
    lo = np.clip(cum - half_window, mid[0], mid[-1])
    hi = np.clip(cum + half_window, mid[0], mid[-1])
    turned = np.abs(np.interp(hi, mid, heading) - np.interp(lo, mid, heading))
    return np.where(hi - lo > 1e-6, turned / np.maximum(hi - lo, 1e-6), 0.0)
