"""The road network: lanes, junctions and signals of one OpenDRIVE map, with queries on them."""

from __future__ import annotations

import math
from functools import cached_property
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy.spatial import cKDTree

from ..geometry import wrap_angle
from .builder import build_lanes
from .errors import NoRouteError, OpenDriveError
from .geodesy import geo_origin, to_geodetic
from .geojson import lanes_to_geojson
from .index import LaneIndex
from .parser import parse_opendrive
from .routing import RoutePlanner, lane_point, lane_points
from .types import PAVED_LANE_TYPES, Junction, Lane, LaneKey, LaneLocation, RouteWaypoint, Signal

SAMPLE_SPACING = 0.5  # metres between centreline samples (plus every geometry endpoint)
START_HEADING_WEIGHT = 2.0  # metres of lane-fit a route start trades for an opposite heading
MAX_LOCATE_DISTANCE = 50.0  # beyond this no lane is "nearby"


class RoadNetwork:
    """Lanes (all types), junctions and signals of an OpenDRIVE map, in the map frame."""

    def __init__(
        self,
        name: str,
        opendrive: str,
        geo_reference: str,
        lanes: dict[LaneKey, Lane],
        junctions: dict[int, Junction],
        signals: list[Signal],
    ) -> None:
        self.name = name
        self.opendrive = opendrive
        self.geo_reference = geo_reference
        self.lanes = lanes
        self.junctions = junctions
        self.signals = signals
        self._driving = [lane for lane in lanes.values() if lane.is_driving]
        self._index = LaneIndex(self._driving)
        self._ends_cache: dict[tuple[float, ...], tuple[int, float]] = {}  # pose -> (lane, s), see _route_ends
        self._origin = geo_origin(geo_reference)

    @classmethod
    def from_file(cls, path: str | Path) -> RoadNetwork:
        """Load an ``.xodr`` file; the map is named after the header, else the file stem."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise OpenDriveError(f"{path.name}:1: <OpenDRIVE>: not UTF-8 text ({error.reason})") from None
        return cls.from_string(text, source=path.name)

    @classmethod
    def from_string(cls, xml_text: str, source: str = "<string>") -> RoadNetwork:
        """Build from OpenDRIVE text; ``source`` names it in error messages."""
        document = parse_opendrive(xml_text, source)
        lanes = build_lanes(document, SAMPLE_SPACING)
        signals = [signal for road in document.roads.values() for signal in road.signals]
        name = document.name or Path(source).stem
        return cls(name, xml_text, document.geo_reference, lanes, document.junctions, signals)

    # -- lanes -----------------------------------------------------------------------------------

    def driving_lanes(self) -> list[Lane]:
        """Driving lanes in a fixed order; ``locate_many``'s ``key_index`` indexes this list."""
        return list(self._driving)

    @cached_property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` over all lane boundaries."""
        points = np.concatenate(
            [np.concatenate([lane.left_boundary, lane.right_boundary]) for lane in self.lanes.values()]
        )
        (xmin, ymin), (xmax, ymax) = points.min(axis=0), points.max(axis=0)
        return float(xmin), float(ymin), float(xmax), float(ymax)

    @cached_property
    def junction_surfaces(self) -> dict[int, np.ndarray]:
        """The paved surface of each junction: ``{junction id: (N, 2) polygon}``, the convex hull of its driving
        and paved lanes.

        CARLA paves a junction whole, up to the kerbs of the sidewalks around it; the OpenDRIVE file only lists
        the connector lanes, which leave asphalt between them uncovered (inside a T junction's turns, at the
        corners of tight right turns). The hull covers that asphalt; a drivable-area raster draws the sidewalks
        inside it over it as kerbs, so the hull need not follow the kerb line itself.
        """
        surfaces: dict[int, np.ndarray] = {}
        for junction in self.junctions:
            points = [
                boundary
                for lane in self.lanes.values()
                if lane.junction == junction and (lane.is_driving or lane.type in PAVED_LANE_TYPES)
                for boundary in (lane.left_boundary, lane.right_boundary)
                if len(boundary)
            ]
            if points:
                hull = cv2.convexHull(np.concatenate(points).astype(np.float32))
                surfaces[junction] = hull[:, 0, :].astype(float)
        return surfaces

    def lane_point(self, key: LaneKey, s: float) -> tuple[float, float, float]:
        """``x, y, yaw`` on a lane's centreline at arc length ``s`` (clamped to the lane)."""
        return lane_point(self.lanes[key], s)

    def elevation(self, x: float, y: float, yaw: float = 0.0) -> float:
        """z (m) of the road at ``(x, y)``: the centreline elevation of the lane :meth:`locate` finds there (the
        OpenDRIVE ``<elevationProfile>``; 0 without one, or off every lane)."""
        location = self.locate(x, y, yaw)
        lane = self.lanes[location.key] if location.key is not None else None
        if lane is None or not len(lane.elevation):
            return 0.0
        return float(np.interp(location.s, lane.s, lane.elevation))

    # -- locating --------------------------------------------------------------------------------

    def locate(self, x: float, y: float, yaw: float = 0.0) -> LaneLocation:
        """The driving lane containing ``(x, y)`` (nearest one when off-road; ``key`` is None when
        none is within 50 m). Among overlapping lanes (junctions) the one agreeing with ``yaw``."""
        result = self.locate_many(np.array([[x, y]]), np.array([yaw]))
        index = int(result["key_index"][0])
        return LaneLocation(
            key=self._driving[index].key if index >= 0 else None,
            s=float(result["s"][0]),
            t=float(result["t"][0]),
            heading_error=float(result["heading_error"][0]),
            on_road=bool(result["on_road"][0]),
            distance=float(result["distance"][0]),
        )

    def locate_many(
        self, xy: np.ndarray, yaw: np.ndarray | None = None, max_distance: float = MAX_LOCATE_DISTANCE
    ) -> dict[str, np.ndarray]:
        """Vectorised :meth:`locate` for ``(N, 2)`` points.

        Returns arrays ``key_index`` (into :meth:`driving_lanes`, -1 beyond ``max_distance``),
        ``s``, ``t``, ``heading_error`` (NaN when ``yaw`` is None), ``on_road`` and ``distance``.
        """
        projection = self._index.query(xy, yaw, max_distance=max_distance)
        if yaw is None:
            heading_error = np.full(len(projection.lane), np.nan)
        else:
            heading_error = wrap_angle(
                np.broadcast_to(np.asarray(yaw, float), projection.heading.shape) - projection.heading
            )
        return {
            "key_index": projection.lane,
            "s": projection.s,
            "t": projection.t,
            "heading_error": heading_error,
            "on_road": projection.on_road,
            "distance": projection.distance,
        }

    def on_road_mask(self, xy: np.ndarray) -> np.ndarray:
        """Whether each ``(N, 2)`` point lies inside any driving lane."""
        return self._index.contains(xy)

    # -- routing ---------------------------------------------------------------------------------

    @cached_property
    def _planner(self) -> RoutePlanner:
        return RoutePlanner(self._driving)

    def route(
        self, start: tuple[float, float, float], goal: tuple[float, float], spacing: float = 2.0
    ) -> list[RouteWaypoint]:
        """Shortest route from the pose ``start = (x, y, yaw)`` to the point ``goal = (x, y)``.

        The start lane is the one whose direction agrees with ``yaw``; the goal lane is the one
        containing (or nearest to) ``goal``. Raises :class:`NoRouteError` if they are not connected.
        """
        return self._planner.plan(*self._route_ends(start, goal), spacing)

    def route_distance(self, start: tuple[float, float, float], goal: tuple[float, float]) -> float:
        """Length along the lanes of :meth:`route`'s route, without building its waypoints (raises as it)."""
        return self._planner.distance(*self._route_ends(start, goal))

    def _route_ends(
        self, start: tuple[float, float, float], goal: tuple[float, float]
    ) -> tuple[int, float, int, float]:
        """``(start lane, s, goal lane, s)``; lane look-ups are remembered (scenarios reuse spawn points)."""
        cache = self._ends_cache
        if len(cache) > 4096:
            cache.clear()
        sx, sy, syaw = (float(v) for v in start)
        gx, gy = (float(v) for v in goal)
        if (sx, sy, syaw) not in cache:
            q = self._index.query(np.array([[sx, sy]]), np.array([syaw]), START_HEADING_WEIGHT)
            cache[sx, sy, syaw] = (int(q.lane[0]), float(q.s[0]))
        if (gx, gy) not in cache:
            q = self._index.query(np.array([[gx, gy]], dtype=float))
            cache[gx, gy] = (int(q.lane[0]), float(q.s[0]))
        (begin, s_begin), (end, s_end) = cache[sx, sy, syaw], cache[gx, gy]
        if begin < 0 or end < 0:
            raise NoRouteError(f"start {start[:2]} or goal {tuple(goal)} is not near any driving lane")
        return begin, s_begin, end, s_end

    @staticmethod
    def route_length(waypoints: list[RouteWaypoint]) -> float:
        """Length of the polyline through the waypoints."""
        if len(waypoints) < 2:
            return 0.0
        xy = np.array([(w.x, w.y) for w in waypoints])
        return float(np.hypot(*np.diff(xy, axis=0).T).sum())

    # -- derived data ----------------------------------------------------------------------------

    def spawn_points(
        self, spacing: float = 20.0, min_dist_to_junction: float = 5.0
    ) -> list[tuple[float, float, float, LaneKey]]:
        """Poses ``(x, y, yaw, key)`` every ``spacing`` metres on driving lanes outside junctions,
        at least ``min_dist_to_junction`` from any junction lane's centreline."""
        candidates: list[tuple[float, float, float, LaneKey]] = []
        for lane in self._driving:
            if lane.junction >= 0:
                continue
            stations = np.arange(min(spacing, lane.length) / 2, lane.length, spacing)
            xs, ys, yaws = lane_points(lane, stations)
            candidates += [(float(x), float(y), float(yaw), lane.key) for x, y, yaw in zip(xs, ys, yaws, strict=True)]
        junction_points = [lane.centerline for lane in self._driving if lane.junction >= 0]
        if not candidates or not junction_points:
            return candidates
        clearance, _ = cKDTree(np.concatenate(junction_points)).query(np.array([c[:2] for c in candidates]))
        return [c for c, d in zip(candidates, clearance, strict=True) if d >= min_dist_to_junction]

    def continuity_report(self, tol_m: float = 0.10, tol_deg: float = 3.0) -> tuple[int, int, list[str]]:
        """``(continuous, links, failures)`` over every driving lane's successor links: a link is
        continuous when the lane's end is within ``tol_m`` and ``tol_deg`` of the successor's start."""
        continuous, links, failures = 0, 0, []
        for lane in self._driving:
            for key in lane.successors:
                following = self.lanes[key]
                gap = float(np.hypot(*(lane.centerline[-1] - following.centerline[0])))
                turn = math.degrees(abs(float(wrap_angle(following.headings[0] - lane.headings[-1]))))
                links += 1
                if gap <= tol_m and turn <= tol_deg:
                    continuous += 1
                else:
                    failures.append(f"{lane.key} -> {key}: gap {gap:.3f} m, heading {turn:.2f} deg")
        return continuous, links, failures

    def to_geodetic(self, x: float, y: float, z: float = 0.0) -> tuple[float, float, float]:
        """``(latitude, longitude, altitude)`` of a map point, as CARLA's GNSS computes it."""
        return to_geodetic(self._origin, x, y, z)

    def to_geojson(self) -> dict[str, Any]:
        """FeatureCollection of the driving lanes (see :mod:`.geojson`)."""
        return lanes_to_geojson(self._driving)
