"""Progress of the ego vehicle along a planned route (a list of RouteWaypoints)."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from carla_rl_common.opendrive.types import RoadOption, RouteWaypoint

# Road options in the order of the measurement vector's one-hot (CARLA's numbering, VOID excluded).
COMMANDS = (RoadOption.LEFT, RoadOption.RIGHT, RoadOption.STRAIGHT, RoadOption.LANEFOLLOW,
            RoadOption.CHANGELANELEFT, RoadOption.CHANGELANERIGHT)


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

    def update(self, x: float, y: float) -> float:
        """Project (x, y) on the route near the last position; returns the progress in metres."""
        lo, hi = self.index, min(self.index + self.window, len(self.seg_len))
        a, b = self.xy[lo:hi], self.xy[lo + 1:hi + 1]
        ab = b - a
        denom = np.maximum((ab ** 2).sum(axis=1), 1e-12)
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

    def distance_to_junction(self, in_junction: Sequence[bool], horizon: float = 50.0) -> float:
        """Metres to the next route waypoint inside a junction (``horizon`` when none is closer)."""
        for i in range(self.index + 1, len(self.waypoints)):
            d = self.cum[i] - self.progress
            if d > horizon:
                break
            if in_junction[i]:
                return max(d, 0.0)
        return horizon

    def command_one_hot(self, lookahead: float = 5.0) -> np.ndarray:
        one_hot = np.zeros(len(COMMANDS), dtype=np.float32)
        one_hot[COMMANDS.index(self.next_command(lookahead))] = 1.0
        return one_hot
