"""Background traffic: vehicles that follow driving lanes with IDM car following, and traffic lights.

Each traffic vehicle is a point on a lane (lane, arc length ``s``, speed) plus a planned chain of the next
lanes (random successors, i.e. random turns at junctions). Its pose is interpolated from the lane centreline,
so traffic never leaves the road and needs no vehicle dynamics.

Leaders are found geometrically, which covers car following, merges and crossing traffic in junctions with
one mechanism: the path ahead of each vehicle (its lane chain, sampled every ``lookahead_step`` metres from
the front bumper) is tested against every obstacle (other traffic and the ego vehicles), each covered by
three circles along its length. An obstacle whose circles come within the path corridor is a leader at
the path distance where that happens (minus the circle radius: gaps are slightly underestimated, which
errs on the safe side). When two vehicles block each other's path (a crossing conflict), the one nearer
the conflict (the smaller gap, i.e. already committed) drives on while the other waits, so two-vehicle
deadlocks cannot occur; longer cycles (gridlock of three or more vehicles) are not resolved.

Crossing traffic is also kept apart before it meets: junction lanes whose centrelines cross or merge
conflict, and a vehicle about to enter a junction waits at its entry while a conflicting lane is held by a
vehicle inside the junction or reserved by one with priority (one that can no longer stop, else the one
nearer the junction). Optional traffic lights (:class:`TrafficLightController`) stop vehicles at red, and
at yellow when they can still stop comfortably.

Everything per step is vectorised over vehicles with numpy; Python loops run only over lane changes and
over the few vehicles about to enter a junction.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from carla_rl_common.geometry import world_to_ego, wrap_angle
from carla_rl_common.opendrive.types import Lane, LaneKey

RED, YELLOW, GREEN = 0, 1, 2  # carla_msgs/CarlaTrafficLightStatus codes
_ROW_STRIDE = 1.0e7  # m: larger than any lane chain, so that rows of path coordinates never interleave
GRID_STEP = 0.25  # m, resolution of the resampled lanes used for path samples
_FAR = 1.0e9  # m, where path samples beyond a dead end are put
_CIRCLE_OFFSETS = np.array([[-1.0 / 3.0, 0.0, 1.0 / 3.0]])  # circle centres along an obstacle, x its length

# (type_id, length, width, height): common CARLA car blueprints with their bounding boxes
DEFAULT_BLUEPRINTS: tuple[tuple[str, float, float, float], ...] = (
    ("vehicle.tesla.model3", 4.79, 2.16, 1.49),
    ("vehicle.lincoln.mkz_2017", 4.89, 2.13, 1.48),
    ("vehicle.audi.a2", 3.71, 1.79, 1.55),
    ("vehicle.nissan.micra", 3.64, 1.85, 1.50),
    ("vehicle.toyota.prius", 4.51, 2.01, 1.52),
    ("vehicle.mercedes.coupe", 5.03, 2.15, 1.64),
)


@dataclass(frozen=True)
class TrafficParams:
    """IDM and path-following parameters (IDM values as in Treiber's urban defaults)."""

    default_speed: float = 30.0 / 3.6  # m/s where a lane has no speed limit
    speed_factor: tuple[float, float] = (0.8, 1.1)  # per-vehicle uniform range multiplying the desired speed
    max_accel: float = 1.5  # IDM a, m/s^2
    comfort_decel: float = 2.0  # IDM b, m/s^2
    min_gap: float = 2.0  # IDM s0, m (bumper to bumper at standstill)
    time_headway: float = 1.5  # IDM T, s
    accel_exponent: float = 4.0  # IDM delta
    max_decel: float = 9.0  # m/s^2, physical limit of the IDM output
    max_lateral_accel: float = 2.5  # m/s^2, sets the speed through curves and turns
    lookahead_step: float = 1.5  # m between path samples
    lookahead_samples: int = 32  # path samples per vehicle (32 * 1.5 = 48 m ahead of the bumper)
    path_lanes: int = 8  # lanes planned ahead (current included)
    corridor_margin: float = 0.3  # m added to the half widths when testing the path corridor
    stop_line_margin: float = 1.0  # m before the lane end where vehicles stop at red or to yield
    conflict_distance: float = 2.6  # m: junction lanes whose centrelines come this close conflict
    commit_decel: float = 4.0  # m/s^2: a vehicle that cannot stop before a junction with it has priority
    junction_horizon: float = 15.0  # m (plus braking distance) before a junction where vehicles reserve it
    yellow_decel: float = 3.0  # m/s^2: stop at yellow only if this deceleration suffices
    spawn_spacing: float = 3.0  # m of free road between bumpers at spawn
    first_id: int = 1000  # actor id of the first spawned vehicle (ids increase and are never reused)
    blueprints: tuple[tuple[str, float, float, float], ...] = DEFAULT_BLUEPRINTS


class TrafficVehicle(NamedTuple):
    id: int
    type_id: str
    x: float
    y: float
    yaw: float
    speed: float
    length: float
    width: float
    height: float


class Obstacle(NamedTuple):
    """Something traffic must not drive into (the ego vehicle): centre pose, box size, forward speed."""

    x: float
    y: float
    yaw: float
    length: float
    width: float
    speed: float = 0.0


class _LaneTable:
    """Driving lanes in flat arrays for vectorised interpolation: lane index + arc length -> pose.

    All centrelines are concatenated; lane ``k``'s samples have global arc length ``base[k] + s`` with a gap
    between lanes, so one ``searchsorted`` locates points on many different lanes at once.
    """

    def __init__(self, lanes: Mapping[LaneKey, Lane], max_lateral_accel: float, conflict_distance: float):
        usable = [lane for lane in lanes.values() if lane.is_driving and len(lane.s) >= 2 and lane.length > 0.0]
        if not usable:
            raise ValueError("traffic needs at least one driving lane with two or more samples")
        self.keys: list[LaneKey] = [lane.key for lane in usable]
        self.index: dict[LaneKey, int] = {key: i for i, key in enumerate(self.keys)}
        self.length = np.array([lane.length for lane in usable])
        self.speed_limit = np.array([lane.speed_limit for lane in usable])
        self.junction = np.array([lane.junction >= 0 for lane in usable])
        self.successors: list[list[int]] = [
            [self.index[k] for k in lane.successors if k in self.index] for lane in usable
        ]
        self.curve_speed = np.array([math.sqrt(max_lateral_accel / max(_max_curvature(lane), 1e-4)) for lane in usable])
        self.base = np.concatenate([[0.0], np.cumsum(self.length + 1.0)[:-1]])
        self.gs = np.concatenate([self.base[i] + lane.s for i, lane in enumerate(usable)])
        px = np.concatenate([lane.centerline[:, 0] for lane in usable])
        py = np.concatenate([lane.centerline[:, 1] for lane in usable])
        heading = np.concatenate([np.unwrap(lane.headings) for lane in usable])
        seg = np.diff(self.gs)
        inv_seg = np.append(np.where(seg > 1e-9, 1.0 / np.maximum(seg, 1e-9), 0.0), 0.0)
        # per sample: value and slope (d/ds) towards the next sample
        self.px, self.sx = px, np.append(np.diff(px), 0.0) * inv_seg
        self.py, self.sy = py, np.append(np.diff(py), 0.0) * inv_seg
        self.heading, self.sh = heading, np.append(np.diff(heading), 0.0) * inv_seg
        self._last = len(self.gs) - 1
        # every lane resampled on a uniform grid, for fast approximate lookups (path samples)
        counts = np.floor(self.length / GRID_STEP).astype(np.int64) + 2
        self.grid_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.grid_last = counts - 1
        grid_s = np.concatenate(
            [np.minimum(np.arange(c) * GRID_STEP, length) for c, length in zip(counts, self.length)]
        )
        lane_of = np.repeat(np.arange(len(usable)), counts)
        self.grid_x, self.grid_y = self.xy(lane_of, grid_s)
        self.conflicts = self._junction_conflicts(usable, conflict_distance)

    def _junction_conflicts(self, usable: list[Lane], distance: float) -> list[frozenset[int]]:
        """Per lane, the lanes of its junction that cross or merge into it (empty outside junctions).

        Lanes that start at the same point (diverging from one approach) or follow one another do not
        conflict: car following keeps their vehicles apart.
        """
        conflicts: list[set[int]] = [set() for _ in usable]
        by_junction: dict[int, list[int]] = {}
        for i, lane in enumerate(usable):
            if lane.junction >= 0:
                by_junction.setdefault(lane.junction, []).append(i)
        points = [usable[i].centerline for i in range(len(usable))]
        for members in by_junction.values():
            for a_pos, a in enumerate(members):
                for b in members[a_pos + 1 :]:
                    if b in self.successors[a] or a in self.successors[b]:
                        continue
                    if np.hypot(*(points[a][0] - points[b][0])) < 0.5:
                        continue
                    d = np.linalg.norm(points[a][:, None, :] - points[b][None, :, :], axis=2)
                    if d.min() < distance:
                        conflicts[a].add(b)
                        conflicts[b].add(a)
        return [frozenset(c) for c in conflicts]

    def _locate(self, lane: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sample index at or before arc length ``s`` (clamped to the lane) and the distance past it."""
        g = self.base[lane] + np.minimum(np.maximum(s, 0.0), self.length[lane])
        i = np.minimum(np.maximum(np.searchsorted(self.gs, g, side="right") - 1, 0), self._last)
        return i, g - self.gs[i]

    def xy(self, lane: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Centreline x, y at arc length ``s`` of lane indices ``lane`` (same shapes)."""
        i, t = self._locate(lane, s)
        return self.px[i] + t * self.sx[i], self.py[i] + t * self.sy[i]

    def grid_xy(self, lane: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`xy` but from the uniform grid (within ``GRID_STEP / 2``); ``s`` must be >= 0."""
        i = self.grid_start[lane] + np.minimum((s * (1.0 / GRID_STEP) + 0.5).astype(np.int64), self.grid_last[lane])
        return self.grid_x.take(i), self.grid_y.take(i)

    def pose(self, lane: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """x, y and driving-direction yaw (wrapped to [-pi, pi)) at arc length ``s`` of lanes ``lane``."""
        i, t = self._locate(lane, s)
        yaw = self.heading[i] + t * self.sh[i]
        return self.px[i] + t * self.sx[i], self.py[i] + t * self.sy[i], wrap_angle(yaw)


def _max_curvature(lane: Lane, window: float = 10.0) -> float:
    """Largest mean curvature of the lane over ``window`` metres (robust to sampling noise)."""
    heading = np.unwrap(lane.headings)
    if lane.length <= window:
        return abs(float(heading[-1] - heading[0])) / max(lane.length, 1e-3)
    ahead = np.interp(lane.s + window, lane.s, heading)
    valid = lane.s + window <= lane.length
    return float(np.max(np.abs(ahead[valid] - heading[valid]))) / window


class TrafficLightController:
    """Cycles one light per junction approach (all driving lanes of one road entering the junction).

    The approaches of a junction get green one after the other (green, yellow, then red while the
    others run), each junction with its own random phase offset. Junctions with fewer than
    ``min_approaches`` approaches (plain road connections) get no lights.
    """

    def __init__(
        self,
        lanes: Mapping[LaneKey, Lane],
        rng: np.random.Generator,
        green: float = 10.0,
        yellow: float = 3.0,
        min_approaches: int = 3,
        first_id: int = 5000,
    ):
        self.green, self.yellow = green, yellow
        groups: dict[tuple[int, str], list[Lane]] = {}
        for lane in lanes.values():
            if not lane.is_driving or lane.junction >= 0 or len(lane.s) < 2:
                continue
            for key in lane.successors:
                nxt = lanes.get(key)
                if nxt is not None and nxt.junction >= 0:
                    groups.setdefault((nxt.junction, lane.key.road), []).append(lane)
                    break
        by_junction: dict[int, list[tuple[int, str]]] = {}
        for junction, road in sorted(groups):
            by_junction.setdefault(junction, []).append((junction, road))
        self.lane_light: dict[LaneKey, int] = {}
        poses, slot, count, offset = [], [], [], []
        for approaches in by_junction.values():
            if len(approaches) < min_approaches:
                continue
            junction_offset = float(rng.uniform(0.0, len(approaches) * (green + yellow)))
            for position, group in enumerate(approaches):
                members = groups[group]
                for lane in members:
                    self.lane_light[lane.key] = len(poses)
                rightmost = max(members, key=lambda ln: abs(ln.key.lane))  # outermost lane
                end = rightmost.right_boundary[-1]
                poses.append((float(end[0]), float(end[1]), float(rightmost.headings[-1])))
                slot.append(position)
                count.append(len(approaches))
                offset.append(junction_offset)
        self.ids = [first_id + i for i in range(len(poses))]
        self.poses = poses
        self._slot = np.array(slot, dtype=float)
        self._count = np.array(count, dtype=float)
        self._offset = np.array(offset)
        self.time = 0.0
        self.state = np.full(len(poses), RED, dtype=np.int64)
        self._update()

    def __len__(self) -> int:
        return len(self.poses)

    def step(self, dt: float) -> None:
        self.time += dt
        self._update()

    def _update(self) -> None:
        period = self.green + self.yellow
        local = (self.time + self._offset) % (self._count * period)
        own = local - self._slot * period  # time since this approach's green began
        self.state = np.where(
            (own >= 0.0) & (own < self.green), GREEN, np.where((own >= self.green) & (own < period), YELLOW, RED)
        )

    def states(self) -> list[tuple[int, int, tuple[float, float, float]]]:
        """``(id, state, (x, y, yaw))`` per light; state in CARLA's codes, pose at the approach's stop line."""
        return [(i, int(s), pose) for i, s, pose in zip(self.ids, self.state, self.poses)]


class TrafficManager:
    """Spawns, drives and removes traffic vehicles on the driving lanes of a road network."""

    def __init__(
        self,
        lanes: Mapping[LaneKey, Lane],
        rng: np.random.Generator,
        params: TrafficParams | None = None,
        lights: TrafficLightController | None = None,
    ):
        """``rng`` drives every random choice (spawn places, blueprints, speeds, turns): same seed, same traffic.
        ``lights`` are obeyed and advanced by :meth:`step`."""
        self.params = params or TrafficParams()
        self.rng = rng
        self.table = _LaneTable(lanes, self.params.max_lateral_accel, self.params.conflict_distance)
        self.lights = lights
        self._lane_light = np.full(len(self.table.keys), -1, dtype=np.int64)
        if lights is not None:
            for key, light in lights.lane_light.items():
                if key in self.table.index:
                    self._lane_light[self.table.index[key]] = light
        self._next_id = self.params.first_id
        self._offsets = np.arange(self.params.lookahead_samples) * self.params.lookahead_step
        self.clear()

    # --- population --------------------------------------------------------------------------------------
    def clear(self) -> None:
        """Remove every vehicle."""
        k = self.params.path_lanes
        self.ids = np.zeros(0, dtype=np.int64)
        self.type_ids: list[str] = []
        self.lane = np.zeros(0, dtype=np.int64)
        self.s = np.zeros(0)
        self.speed = np.zeros(0)
        self.speed_factor = np.zeros(0)
        self.size = np.zeros((0, 3))  # length, width, height
        self.path = np.zeros((0, k), dtype=np.int64)
        self._paths_dirty = True
        self._update_poses()

    def __len__(self) -> int:
        return len(self.ids)

    def blueprint_ids(self) -> list[str]:
        """The CARLA blueprint ids traffic vehicles are drawn from (``params.blueprints``)."""
        return [b[0] for b in self.params.blueprints]

    def spawn(
        self, n: int, avoid: Iterable[tuple[float, float, float]] = (), blueprint: str | None = None
    ) -> list[int]:
        """Place up to ``n`` vehicles at random on driving lanes, clear of each other and of ``avoid``.

        ``avoid`` holds ``(x, y, radius)`` discs (the ego vehicles) that no new vehicle may touch. Lanes
        outside junctions are preferred. ``blueprint`` (one of :meth:`blueprint_ids`) gives every vehicle that
        blueprint; None draws one per vehicle. Returns the new ids; fewer than ``n`` when the road is full.
        """
        p, table = self.params, self.table
        if blueprint is not None and blueprint not in self.blueprint_ids():
            raise KeyError(f"blueprint {blueprint!r} is not one of {', '.join(self.blueprint_ids())}")
        chosen = self.blueprint_ids().index(blueprint) if blueprint is not None else -1
        avoid = [tuple(map(float, a)) for a in avoid]
        candidates = np.flatnonzero(~table.junction) if (~table.junction).any() else np.arange(len(table.keys))
        weights = table.length[candidates] / table.length[candidates].sum()
        new_ids: list[int] = []
        for _ in range(50 * n):
            if len(new_ids) == n:
                break
            lane = int(self.rng.choice(candidates, p=weights))
            s = float(self.rng.uniform(0.0, table.length[lane]))
            drawn = int(self.rng.integers(len(p.blueprints)))  # drawn either way: a seed gives the same places
            type_id, length, width, height = p.blueprints[drawn if blueprint is None else chosen]
            x, y, yaw = (float(v[0]) for v in table.pose(np.array([lane]), np.array([s])))
            if self._is_free(x, y, yaw, length, width, avoid):
                new_ids.append(self._add(lane, s, 0.0, type_id, (length, width, height)))
        return new_ids

    def add(self, key: LaneKey, s: float, speed: float = 0.0, blueprint: int = 0) -> int:
        """Place one vehicle at arc length ``s`` of lane ``key`` (no overlap check); returns its id.

        ``blueprint`` indexes ``params.blueprints``. Used for scripted scenarios and tests.
        """
        if key not in self.table.index:
            raise KeyError(f"lane {key} is not a driving lane of this network")
        type_id, *size = self.params.blueprints[blueprint]
        return self._add(self.table.index[key], float(s), float(speed), type_id, tuple(size))

    def _is_free(
        self, x: float, y: float, yaw: float, length: float, width: float, avoid: list[tuple[float, float, float]]
    ) -> bool:
        for ax, ay, radius in avoid:
            if math.hypot(ax - x, ay - y) < radius + length / 2.0:
                return False
        if not len(self.ids):
            return True
        along, across = np.abs(world_to_ego(np.column_stack([self.x, self.y]), x, y, yaw)).T
        near_along = along < (length + self.size[:, 0]) / 2.0 + self.params.spawn_spacing
        near_across = across < (width + self.size[:, 1]) / 2.0 + 0.5
        return not np.any(near_along & near_across)

    def _add(self, lane: int, s: float, speed: float, type_id: str, size: tuple[float, float, float]) -> int:
        low, high = self.params.speed_factor
        vid = self._next_id
        self._next_id += 1
        path = [lane]
        while len(path) < self.params.path_lanes:
            path.append(self._choose_successor(path[-1]))
        self.ids = np.append(self.ids, vid)
        self.type_ids.append(type_id)
        self.lane = np.append(self.lane, lane)
        self.s = np.append(self.s, s)
        self.speed = np.append(self.speed, speed)
        self.speed_factor = np.append(self.speed_factor, self.rng.uniform(low, high))
        self.size = np.vstack([self.size, size])
        self.path = np.vstack([self.path, path])
        self._paths_dirty = True
        self._update_poses()
        return vid

    def _choose_successor(self, lane: int) -> int:
        """A random successor of a lane index, -1 after a dead end (or after -1)."""
        if lane < 0 or not self.table.successors[lane]:
            return -1
        options = self.table.successors[lane]
        return options[int(self.rng.integers(len(options)))] if len(options) > 1 else options[0]

    def despawn(self, vehicle_id: int) -> bool:
        """Remove one vehicle; False when the id is unknown."""
        hits = np.flatnonzero(self.ids == vehicle_id)
        if not len(hits):
            return False
        keep = self.ids != vehicle_id
        i = int(hits[0])
        self.ids, self.lane, self.s, self.speed = self.ids[keep], self.lane[keep], self.s[keep], self.speed[keep]
        self.speed_factor, self.size, self.path = self.speed_factor[keep], self.size[keep], self.path[keep]
        del self.type_ids[i]
        self._paths_dirty = True
        self._update_poses()
        return True

    # --- views ---------------------------------------------------------------------------------------------
    def vehicles(self) -> list[TrafficVehicle]:
        return [
            TrafficVehicle(int(i), t, float(x), float(y), float(yaw), float(v), float(ln), float(w), float(h))
            for i, t, (x, y), yaw, v, (ln, w, h) in zip(
                self.ids, self.type_ids, self.xy, self.yaw, self.speed, self.size
            )
        ]

    def boxes(self) -> np.ndarray:
        """``(N, 6)`` rows of ``x, y, yaw, length, width, height``: what the renderers take."""
        return np.column_stack([self.x, self.y, self.yaw, self.size])

    @property
    def xy(self) -> np.ndarray:
        return np.column_stack([self.x, self.y])

    def _update_poses(self) -> None:
        self.x, self.y, self.yaw = self.table.pose(self.lane, self.s)

    def _refresh_paths(self) -> None:
        """Recompute what depends only on the planned lane chains (after spawns, despawns, lane changes)."""
        p, table = self.params, self.table
        n = len(self.ids)
        valid = self.path >= 0
        lane = np.maximum(self.path, 0)
        self._cum_end = np.cumsum(np.where(valid, table.length[lane], 0.0), axis=1)  # from current lane start
        self._starts = np.column_stack([np.zeros(n), self._cum_end[:, :-1]])
        self._path_valid = valid
        last = valid.sum(axis=1) - 1
        dead = ~valid.all(axis=1)
        self._dead_end = np.where(dead, self._cum_end[np.arange(n), last], np.inf)
        limit = np.where(table.speed_limit[lane[:, :3]] > 0.0, table.speed_limit[lane[:, :3]], p.default_speed)
        target = np.minimum(limit * self.speed_factor[:, None], table.curve_speed[lane[:, :3]])
        self._target_sq = np.where(valid[:, :3], target * target, np.inf)
        light = np.where(valid, self._lane_light[lane], -1)
        self._light_rows, light_slots = np.nonzero(light >= 0)  # lane chain slots that end at a light
        self._light_index = light[self._light_rows, light_slots]
        self._light_end = self._cum_end[self._light_rows, light_slots]
        self._rows = np.arange(n)[:, None]
        in_junction = valid & table.junction[lane]
        first = np.where(in_junction[:, 0], 0, np.argmax(in_junction[:, 1:], axis=1) + 1)
        self._entry = np.where(in_junction.any(axis=1), first, -1)  # first junction slot of the chain
        self._junction_run = [self._run(row, int(slot)) for row, slot in zip(self.path, self._entry)]
        self._entry_start = np.where(self._entry > 0, self._starts[np.arange(n), np.maximum(self._entry, 0)], 0.0)
        self._held = set().union(*(run for run, slot in zip(self._junction_run, self._entry) if slot == 0))
        self._upper = np.triu(np.ones((n, n), dtype=bool), 1)
        self._flat_cum_end = (self._cum_end + self._rows * _ROW_STRIDE).ravel()
        self._paths_dirty = False

    def _run(self, path: np.ndarray, slot: int) -> tuple[int, ...]:
        """The consecutive junction lanes of a lane chain from ``slot`` (empty when ``slot`` is -1)."""
        run: list[int] = []
        while 0 <= slot < len(path) and path[slot] >= 0 and self.table.junction[path[slot]]:
            run.append(int(path[slot]))
            slot += 1
        return tuple(run)

    # --- simulation ----------------------------------------------------------------------------------------
    def step(self, dt: float, obstacles: Sequence[Obstacle] = ()) -> None:
        """Advance the traffic lights (if any) and all vehicles by ``dt``.

        ``obstacles`` (the ego vehicles, :class:`Obstacle` or 6-tuples of the same fields) are never driven into.
        """
        if self.lights is not None:
            self.lights.step(dt)
        if not len(self.ids):
            return
        if self._paths_dirty:
            self._refresh_paths()
        front = self.s + self.size[:, 0] * 0.5
        gap, leader_speed = self._leaders(front, obstacles)
        stop_gap = self._stop_gap(front)
        stop_gap = np.minimum(stop_gap, self._yield_gap(front, stop_gap))
        stopped = stop_gap < gap
        gap = np.where(stopped, stop_gap, gap)
        leader_speed = np.where(stopped, 0.0, leader_speed)
        accel = self._idm(self._desired_speed(front), gap, leader_speed)
        v = self.speed
        v_new = v + accel * dt
        halted = v_new <= 0.0
        # ballistic update: a vehicle that would stop within the step stops where v reaches 0
        self.s = self.s + np.where(halted, v * v / np.maximum(-2.0 * accel, 1e-9), 0.5 * (v + v_new) * dt)
        self.speed = np.where(halted | (gap <= 0.0), 0.0, v_new)
        self._advance_lanes()
        self._update_poses()

    def _desired_speed(self, front: np.ndarray) -> np.ndarray:
        """IDM v0: lane speed x vehicle factor, lowered ahead of slower lanes/curves so that ``b`` suffices."""
        distance = np.maximum(self._starts[:, :3] - front[:, None], 0.0)
        envelope = self._target_sq + (2.0 * self.params.comfort_decel) * distance
        return np.maximum(np.sqrt(envelope.min(axis=1)), 0.1)

    def _idm(self, v0: np.ndarray, gap: np.ndarray, leader_speed: np.ndarray) -> np.ndarray:
        p = self.params
        v = self.speed
        s_star = p.min_gap + np.maximum(
            0.0, v * p.time_headway + v * (v - leader_speed) / (2.0 * math.sqrt(p.max_accel * p.comfort_decel))
        )
        interaction = (s_star / np.maximum(gap, 1e-3)) ** 2  # 0 where gap is inf
        accel = p.max_accel * (1.0 - (v / v0) ** p.accel_exponent - interaction)
        return np.minimum(np.maximum(accel, -p.max_decel), p.max_accel)

    def _path_samples(self, front: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """x, y (N, P) every ``lookahead_step`` along each vehicle's lane chain from its front bumper.

        Samples beyond the planned chain (after a dead end) are placed far away, so that nothing is near them.
        """
        k = self.path.shape[1]
        r = self._rows
        u = front[:, None] + self._offsets[None, :]  # path coordinate from the current lane's start
        # slot of each sample in its lane chain: one searchsorted over all rows, kept apart by an offset
        flat_slot = np.searchsorted(self._flat_cum_end, u + r * _ROW_STRIDE, side="right")
        beyond = flat_slot - r * k >= k  # past the planned chain
        flat_slot = np.minimum(flat_slot, r * k + (k - 1))
        invalid = beyond | ~self._path_valid.take(flat_slot)
        x, y = self.table.grid_xy(np.maximum(self.path.take(flat_slot), 0), u - self._starts.take(flat_slot))
        x[invalid] = _FAR
        return x, y

    def _leaders(self, front: np.ndarray, obstacles: Sequence[Obstacle]) -> tuple[np.ndarray, np.ndarray]:
        """Bumper gap to the nearest obstacle in each vehicle's path corridor (inf if none) and its speed.

        Each obstacle is covered by three circles (each over a third of its length). For every (vehicle,
        obstacle) pair that passes a coarse distance test, the gap is the path distance of the sample
        nearest a circle minus the circle's radius, for circles within the vehicle's corridor.
        """
        n = len(self.ids)
        own = np.column_stack([self.x, self.y, self.yaw, self.size[:, 0], self.size[:, 1], self.speed])
        obs = np.concatenate([own, np.array([tuple(o) for o in obstacles], dtype=float).reshape(-1, 6)])
        ox, oy, oyaw, olen, owid, ospeed = obs.T
        cos, sin = np.cos(oyaw), np.sin(oyaw)
        # coarse prefilter on centre distance: obstacles not behind the vehicle that its path could reach
        extent = olen * 0.5 + owid
        reach = (self.size[:, 0, None] * 0.5 + self._offsets[-1]) + extent[None, :]
        dx, dy = ox[None, :] - self.x[:, None], oy[None, :] - self.y[:, None]
        near = (dx * dx + dy * dy < reach * reach) & (dx * cos[:n, None] + dy * sin[:n, None] > -extent[None, :])
        near.flat[:: len(obs) + 1] = False  # a vehicle is not its own obstacle
        pi, pj = np.nonzero(near)
        gap = np.full((n, len(obs)), np.inf)
        if len(pi):
            shift = olen[:, None] * _CIRCLE_OFFSETS  # (M, 3) circle centres along each obstacle
            circle_x, circle_y = ox[:, None] + shift * cos[:, None], oy[:, None] + shift * sin[:, None]
            radius = np.hypot(olen / 6.0, owid / 2.0)
            sx, sy = self._path_samples(front)
            ddx = sx[pi, None, :] - circle_x[pj, :, None]  # (pair, circle, sample): fastest reductions last
            ddy = sy[pi, None, :] - circle_y[pj, :, None]
            d2 = (ddx * ddx + ddy * ddy).reshape(-1, sx.shape[1])
            k_near = d2.argmin(axis=1)  # nearest sample per circle
            d2_near = d2[np.arange(len(d2)), k_near].reshape(-1, 3)
            threshold = self.size[pi, 1] * 0.5 + self.params.corridor_margin + radius[pj]
            along = np.where(d2_near < (threshold * threshold)[:, None], self._offsets[k_near].reshape(-1, 3), np.inf)
            first = np.minimum(np.minimum(along[:, 0], along[:, 1]), along[:, 2])
            gap[pi, pj] = np.maximum(first - radius[pj], 0.0)
        self._break_mutual(gap[:, :n])
        j = gap.argmin(axis=1)
        best = gap[np.arange(n), j]
        along_speed = np.maximum(ospeed[j] * (cos[j] * cos[:n] + sin[j] * sin[:n]), 0.0)
        return best, np.where(best < np.inf, along_speed, 0.0)

    def _break_mutual(self, gap: np.ndarray) -> None:
        """In place: of two vehicles in each other's path, the one nearer the conflict (smaller gap) drives on."""
        mutual = (gap < np.inf) & (np.inf > gap.T)
        if not mutual.any():
            return
        goes = mutual & ((gap < gap.T) | ((gap == gap.T) & self._upper))
        gap[goes] = np.inf

    def _stop_gap(self, front: np.ndarray) -> np.ndarray:
        """Distance to the nearest place to stop: a red (or stoppable yellow) light, or a dead end."""
        stop = self._dead_end - front
        if self.lights is not None and len(self._light_rows):
            p = self.params
            rows = self._light_rows
            state = self.lights.state[self._light_index]
            gap_line = self._light_end - front[rows] - p.stop_line_margin
            can_stop = gap_line > self.speed[rows] ** 2 / (2.0 * p.yellow_decel)
            must = ((state == RED) & (gap_line > -p.stop_line_margin)) | ((state == YELLOW) & can_stop)
            np.minimum.at(stop, rows[must], gap_line[must])
        return np.maximum(stop, 0.0)

    def _yield_gap(self, front: np.ndarray, stop_gap: np.ndarray) -> np.ndarray:
        """Stop distance for vehicles that must wait before a junction because a conflicting lane is taken.

        Vehicles inside a junction hold their junction lanes. Vehicles approaching one (within the horizon,
        not held by a red light) then reserve theirs in order of priority: first those that could no longer
        stop comfortably, then by distance to the junction. A vehicle whose lanes conflict with lanes already
        held waits at the junction entry.
        """
        p = self.params
        n = len(self.ids)
        wait = np.full(n, np.inf)
        entry = self._entry
        if not (entry >= 0).any():
            return wait
        d_entry = self._entry_start - front
        braking = self.speed * self.speed / (2.0 * p.commit_decel)
        approaching = (entry > 0) & (d_entry < p.junction_horizon + braking) & (stop_gap > d_entry)
        if not approaching.any():
            return wait
        held = set(self._held)
        candidates = np.flatnonzero(approaching)
        committed = d_entry[candidates] < braking[candidates]
        for i in candidates[np.lexsort((d_entry[candidates], ~committed))]:
            run = self._junction_run[i]
            if any(not self.table.conflicts[lane].isdisjoint(held) for lane in run):
                wait[i] = max(d_entry[i] - p.stop_line_margin, 0.0)
            else:
                held.update(run)
        return wait

    def _advance_lanes(self) -> None:
        """Move vehicles past their lane's end onto the next planned lane and extend their plans."""
        over = np.flatnonzero(self.s >= self.table.length[self.lane])
        for i in over:
            while self.s[i] >= self.table.length[self.lane[i]]:
                nxt = int(self.path[i, 1])
                if nxt < 0:  # dead end: wait at the end of the lane
                    self.s[i], self.speed[i] = self.table.length[self.lane[i]], 0.0
                    break
                self.s[i] -= self.table.length[self.lane[i]]
                self.path[i, :-1] = self.path[i, 1:]
                self.path[i, -1] = self._choose_successor(int(self.path[i, -2]))
                self.lane[i] = nxt
                self._paths_dirty = True
