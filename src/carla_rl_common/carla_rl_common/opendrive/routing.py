"""Shortest routes over the driving-lane graph, as waypoints with CARLA-style road options.

The search is Dijkstra over ``(lane, phase)`` states. A state's label is the distance driven up
to the *start* of its lane, so following a successor costs the lane's length and a lane change
costs ``lane_change_cost``. Phase 0 marks the lanes reached from the start lane by lane changes
only: the vehicle is part-way along them (at the start's progress), so the goal counts as
reached there only if it lies ahead. Any successor step moves to phase 1.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

from ..geometry import wrap_angle
from .errors import NoRouteError
from .types import Lane, RoadOption, RouteWaypoint

TURN_THRESHOLD = math.radians(35.0)  # CARLA GlobalRoutePlanner: smaller heading change = straight


@dataclass(frozen=True)
class _Edge:
    target: int
    option: RoadOption  # LANEFOLLOW for successors, CHANGELANELEFT/RIGHT for lane changes
    cost: float


@dataclass(frozen=True)
class _Piece:
    """A stretch of one lane on the route, from ``s_in`` to ``s_out`` along the lane."""

    lane: int
    s_in: float
    s_out: float
    entry: RoadOption  # how the lane was entered


class RoutePlanner:
    """Lane graph of the driving lanes, with successor and lane-change edges."""

    def __init__(self, lanes: list[Lane], lane_change_cost: float = 5.0) -> None:
        self.lanes = lanes
        self.index = {lane.key: i for i, lane in enumerate(lanes)}
        self.edges = [self._edges_of(lane, lane_change_cost) for lane in lanes]

    def _edges_of(self, lane: Lane, lane_change_cost: float) -> list[_Edge]:
        edges = [_Edge(self.index[k], RoadOption.LANEFOLLOW, lane.length) for k in lane.successors if k in self.index]
        if lane.junction < 0:
            for neighbor, option in (
                (lane.left_neighbor, RoadOption.CHANGELANELEFT),
                (lane.right_neighbor, RoadOption.CHANGELANERIGHT),
            ):
                if neighbor in self.index and neighbor.lane * lane.key.lane > 0:  # same direction
                    edges.append(_Edge(self.index[neighbor], option, lane_change_cost))
        return edges

    def plan(self, start: int, s_start: float, goal: int, s_goal: float, spacing: float) -> list[RouteWaypoint]:
        """Waypoints every ``spacing`` metres from ``(start, s_start)`` to ``(goal, s_goal)``."""
        path = self._search(start, s_start, goal, s_goal)
        return self._waypoints(self._pieces(path, s_start, s_goal), spacing)

    def distance(self, start: int, s_start: float, goal: int, s_goal: float) -> float:
        """Length along the lanes of the route :meth:`plan` would follow, without its waypoints (a tenth of
        the cost: scenario sampling tries many start/goal pairs)."""
        pieces = self._pieces(self._search(start, s_start, goal, s_goal), s_start, s_goal)
        return float(sum(p.s_out - p.s_in for p in pieces))

    # -- search --------------------------------------------------------------------------------

    def _search(self, start: int, s_start: float, goal: int, s_goal: float) -> list[tuple[int, RoadOption]]:
        """Lanes of the shortest route, each with the option by which it is entered."""
        progress = s_start / max(self.lanes[start].length, 1e-9)
        goal_progress = s_goal / max(self.lanes[goal].length, 1e-9)
        labels: dict[tuple[int, int], float] = {(start, 0): -s_start}
        parents: dict[tuple[int, int], tuple[tuple[int, int], RoadOption] | None] = {(start, 0): None}
        heap = [(-s_start, start, 0)]
        while heap:
            label, lane, phase = heapq.heappop(heap)
            if label > labels[(lane, phase)]:
                continue
            if lane == goal and (phase == 1 or goal_progress >= progress - 1e-9):
                return _unwind(parents, (lane, phase))
            for edge in self.edges[lane]:
                state = (edge.target, 1 if edge.option == RoadOption.LANEFOLLOW else phase)
                if label + edge.cost < labels.get(state, math.inf):
                    labels[state] = label + edge.cost
                    parents[state] = ((lane, phase), edge.option)
                    heapq.heappush(heap, (label + edge.cost, *state))
        raise NoRouteError(f"no route from lane {self.lanes[start].key} to lane {self.lanes[goal].key}")

    # -- waypoints -----------------------------------------------------------------------------

    def _pieces(self, path: list[tuple[int, RoadOption]], s_start: float, s_goal: float) -> list[_Piece]:
        """Turn the lane sequence into stretches. A lane change happens halfway between the
        current position and the point where the lane change chain must be done (the lane's
        end, or the goal), landing at the same relative progress on the neighbour."""
        lengths = [max(self.lanes[lane].length, 1e-9) for lane, _ in path]
        limits = [0.0] * len(path)  # progress (fraction of the lane) at which to leave each lane
        limits[-1] = s_goal / lengths[-1]
        for i in range(len(path) - 2, -1, -1):
            limits[i] = 1.0 if path[i + 1][1] == RoadOption.LANEFOLLOW else limits[i + 1]
        pieces = []
        progress = s_start / lengths[0]
        for i, (lane, entry) in enumerate(path):
            changing = i + 1 < len(path) and path[i + 1][1] != RoadOption.LANEFOLLOW
            leave = max((progress + limits[i]) / 2 if changing else limits[i], progress)
            pieces.append(_Piece(lane, progress * lengths[i], leave * lengths[i], entry))
            progress = leave if changing else 0.0
        return pieces

    def _waypoints(self, pieces: list[_Piece], spacing: float) -> list[RouteWaypoint]:
        """Stations every ``spacing`` metres along each piece, then the goal itself."""
        options = self._options(pieces)
        waypoints: list[RouteWaypoint] = []
        for piece, option in zip(pieces, options, strict=True):
            lane = self.lanes[piece.lane]
            stations = np.arange(piece.s_in, piece.s_out - 1e-6, spacing)
            labels = [option] * len(stations)
            if piece.entry != RoadOption.LANEFOLLOW:  # a lane change: CARLA labels both of its ends
                if waypoints:
                    waypoints[-1] = waypoints[-1]._replace(road_option=piece.entry)
                stations = stations if len(stations) else np.array([piece.s_in])
                labels = [piece.entry] + [option] * (len(stations) - 1)
            xs, ys, yaws = lane_points(lane, stations)
            waypoints.extend(
                RouteWaypoint(float(x), float(y), float(yaw), lane.key, label)
                for x, y, yaw, label in zip(xs, ys, yaws, labels, strict=True)
            )
        lane = self.lanes[pieces[-1].lane]
        waypoints.append(RouteWaypoint(*lane_point(lane, pieces[-1].s_out), lane.key, options[-1]))
        return waypoints

    def _options(self, pieces: list[_Piece]) -> list[RoadOption]:
        """LANEFOLLOW outside junctions; inside, the turn of the whole junction traversal."""
        options = [RoadOption.LANEFOLLOW] * len(pieces)
        i = 0
        while i < len(pieces):
            if self.lanes[pieces[i].lane].junction < 0:
                i += 1
                continue
            j = i
            while j + 1 < len(pieces) and self.lanes[pieces[j + 1].lane].junction >= 0:
                j += 1
            entry = self.lanes[pieces[i].lane].headings[0]
            exit_ = self.lanes[pieces[j].lane].headings[-1]
            options[i : j + 1] = [turn_option(entry, exit_)] * (j + 1 - i)
            i = j + 1
        return options


def turn_option(entry_yaw: float, exit_yaw: float, threshold: float = TURN_THRESHOLD) -> RoadOption:
    """STRAIGHT below ``threshold``, else LEFT for anticlockwise (positive) turns, RIGHT otherwise."""
    change = float(wrap_angle(exit_yaw - entry_yaw))
    if abs(change) < threshold:
        return RoadOption.STRAIGHT
    return RoadOption.LEFT if change > 0 else RoadOption.RIGHT


def lane_points(lane: Lane, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``x, y, yaw`` arrays on a lane's centreline at arc lengths ``s`` (clamped to the lane)."""
    s = np.clip(np.asarray(s, dtype=float), 0.0, lane.length)
    last = max(len(lane.s) - 2, 0)
    i = np.clip(np.searchsorted(lane.s, s, side="right") - 1, 0, last)
    j = np.minimum(i + 1, len(lane.s) - 1)
    step = lane.s[j] - lane.s[i]
    u = np.where(step > 0, (s - lane.s[i]) / np.where(step > 0, step, 1.0), 0.0)
    xy = lane.centerline[i] + u[:, None] * (lane.centerline[j] - lane.centerline[i])
    yaw = wrap_angle(lane.headings[i] + u * wrap_angle(lane.headings[j] - lane.headings[i]))
    return xy[:, 0], xy[:, 1], yaw


def lane_point(lane: Lane, s: float) -> tuple[float, float, float]:
    """``x, y, yaw`` on a lane's centreline at arc length ``s`` (clamped to the lane)."""
    x, y, yaw = lane_points(lane, np.array([s]))
    return float(x[0]), float(y[0]), float(yaw[0])


def _unwind(parents: dict, state: tuple[int, int]) -> list[tuple[int, RoadOption]]:
    path = []
    entry = RoadOption.LANEFOLLOW
    while parents[state] is not None:
        previous, option = parents[state]
        path.append((state[0], option))
        state = previous
    path.append((state[0], entry))
    return path[::-1]
