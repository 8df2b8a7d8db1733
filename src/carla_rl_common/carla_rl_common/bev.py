"""The semantic bird's-eye view (BEV) of the road network, and the static map raster it is cut from.

:class:`MapRaster` draws the map once, at start-up: a north-up ``uint8`` image in which every pixel is a
bit field of what lies there (road, sidewalk, markings, ...). :class:`BevRenderer` resamples, per frame, only
the window around the ego with a single ``cv2.warpAffine`` (as CARLA-Roach does) and draws the few dynamic
objects on top. Here, below the simulator and the env, because both render it: the simulator for its
``sensor.pseudo.bev``, the env (against real CARLA too) from the map and the vehicles it receives. The
simulator's camera (:mod:`carla_rl_sim.render`) samples the same raster.

Vehicles are passed as rows ``(x, y, yaw, length, width, height)`` in the map frame (an optional 7th value is
an integer key that fixes a vehicle's colour in the camera image); poses are ``(x, y, yaw)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from carla_rl_common.geometry import box_corners
from carla_rl_common.opendrive.types import Lane, LaneKey, RoadMark

# bits of the static raster
ROAD, SIDEWALK, PAVED, SOLID, BROKEN, DASH, YELLOW = 1, 2, 4, 8, 16, 32, 64
SUBPIXEL_BITS = 2  # sub-pixel bits of the coordinates passed to OpenCV drawing functions
SUBPIXEL_SCALE = float(1 << SUBPIXEL_BITS)
DASH_LENGTH, DASH_GAP = 3.0, 6.0  # m, painted pattern of broken lines
_PAVED_TYPES = (
    "shoulder",
    "border",
    "parking",
    "biking",
    "restricted",
    "median",
    "curb",
    "entry",
    "exit",
    "onRamp",
    "offRamp",
    "connectingRamp",
    "bidirectional",
    "stop",
)

Vehicles = np.ndarray | Sequence[Sequence[float]]  # rows (x, y, yaw, length, width, height[, key])


class MapRaster:
    """The static map as a north-up bit-field raster (see the bit constants), built once.

    Driving lanes are filled as ROAD, sidewalks as SIDEWALK, other paved lane types as PAVED; lane
    markings of driving lanes are drawn as SOLID or BROKEN lines (broken lines continuous, for the
    bird's-eye view) and, for the camera, as DASH (the painted 3 m dashes of broken lines, every solid
    line), with YELLOW set for yellow markings. Memory: one byte per pixel, e.g. 36 MB for 600 m x 600 m
    at 10 px/m.
    """

    def __init__(self, lanes: Mapping[LaneKey, Lane], pixels_per_meter: float = 10.0, margin: float = 30.0):
        points = [b for lane in lanes.values() for b in (lane.left_boundary, lane.right_boundary) if len(b)]
        if not points:
            raise ValueError("cannot rasterise a road network without lanes")
        allpts = np.concatenate(points)
        self.pixels_per_meter = float(pixels_per_meter)
        self.x0 = float(allpts[:, 0].min()) - margin
        self.y1 = float(allpts[:, 1].max()) + margin
        width = int(math.ceil((allpts[:, 0].max() + margin - self.x0) * pixels_per_meter)) + 1
        height = int(math.ceil((self.y1 - allpts[:, 1].min() + margin) * pixels_per_meter)) + 1
        self.bits = np.zeros((height, width), np.uint8)
        self._fill_lanes(lanes)
        self._draw_markings(lanes)

    @property
    def world_to_pixel(self) -> np.ndarray:
        """3x3 homogeneous matrix mapping map-frame (x, y, 1) to raster (column, row, 1)."""
        ppm = self.pixels_per_meter
        return np.array([[ppm, 0.0, -self.x0 * ppm], [0.0, -ppm, self.y1 * ppm], [0.0, 0.0, 1.0]])

    def _pixels(self, xy: np.ndarray) -> np.ndarray:
        """Map-frame points (N, 2) as fixed-point raster coordinates for OpenCV drawing."""
        ppm = self.pixels_per_meter
        cols = (xy[:, 0] - self.x0) * ppm
        rows = (self.y1 - xy[:, 1]) * ppm
        return np.round(np.column_stack([cols, rows]) * SUBPIXEL_SCALE).astype(np.int32)

    def _fill_lanes(self, lanes: Mapping[LaneKey, Lane]) -> None:
        layers = {ROAD: [], SIDEWALK: [], PAVED: []}
        for lane in lanes.values():
            bit = (
                ROAD
                if lane.is_driving
                else SIDEWALK
                if lane.type == "sidewalk"
                else PAVED
                if lane.type in _PAVED_TYPES
                else 0
            )
            if bit and len(lane.left_boundary) >= 2:
                layers[bit].append(self._pixels(lane.polygon))
        mask = np.zeros_like(self.bits)
        for bit in (PAVED, SIDEWALK, ROAD):
            if layers[bit]:
                mask[:] = 0
                for polygon in layers[bit]:  # one call per polygon: fillPoly leaves overlaps of several empty
                    cv2.fillPoly(mask, [polygon], 1, cv2.LINE_8, SUBPIXEL_BITS)
                self.bits |= mask * np.uint8(bit)

    def _draw_markings(self, lanes: Mapping[LaneKey, Lane]) -> None:
        groups: dict[tuple[int, int], list[np.ndarray]] = {}  # (bits, thickness) -> polylines
        for lane in lanes.values():
            if not lane.is_driving:
                continue
            # dash phase from the road's reference line, so that two lanes sharing a line agree on it
            reverse = lane.key.lane > 0
            for mark, boundary in ((lane.left_mark, lane.left_boundary), (lane.right_mark, lane.right_boundary)):
                if len(boundary) >= 2:
                    self._add_mark(groups, mark, boundary, reverse)
        mask = np.zeros_like(self.bits)
        for (value, thickness), lines in groups.items():  # polylines overwrite: draw on a mask, then OR
            mask[:] = 0
            cv2.polylines(mask, lines, False, 1, thickness, cv2.LINE_8, SUBPIXEL_BITS)
            self.bits |= mask * np.uint8(value)

    def _add_mark(
        self, groups: dict[tuple[int, int], list[np.ndarray]], mark: RoadMark, boundary: np.ndarray, reverse: bool
    ) -> None:
        kind = mark.type.lower()
        if "solid" in kind:
            bit = SOLID
        elif "broken" in kind or "botts" in kind:
            bit = BROKEN
        else:  # none, grass, curb, custom: nothing painted
            return
        colour = YELLOW if mark.color.lower() in ("yellow", "orange") else 0
        thickness = max(1, int(round(mark.width * self.pixels_per_meter)))
        line = self._pixels(boundary)
        groups.setdefault((bit | colour, thickness), []).append(line)
        dashes = [line] if bit == SOLID else [self._pixels(d) for d in _dashes(boundary, reverse)]
        groups.setdefault((DASH | colour, thickness), []).extend(dashes)


def _dashes(boundary: np.ndarray, reverse: bool) -> list[np.ndarray]:
    """Map-frame polylines of the painted dashes along a broken line (phase counted from the end if
    ``reverse``)."""
    s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(boundary, axis=0).T))])
    if s[-1] <= 0.0:
        return []
    fine = np.arange(0.0, s[-1] + 0.25, 0.25)
    phase = (s[-1] - fine) if reverse else fine
    on = (phase % (DASH_LENGTH + DASH_GAP)) < DASH_LENGTH
    pts = np.column_stack([np.interp(fine, s, boundary[:, 0]), np.interp(fine, s, boundary[:, 1])])
    edges = np.flatnonzero(np.diff(np.concatenate([[0], on.astype(np.int8), [0]])))
    return [pts[a:b] for a, b in zip(edges[::2], edges[1::2]) if b - a >= 2]


def vehicle_boxes(vehicles: Vehicles) -> np.ndarray:
    """``vehicles`` (rows as in the module doc, possibly none) as a 2-D float array, one row per vehicle."""
    boxes = np.asarray(vehicles, dtype=float)
    return boxes.reshape(-1, boxes.shape[-1] if boxes.size else 6)


class BevRenderer:
    """Semantic bird's-eye view around one ego vehicle, rotated so that the ego faces up (CARLA-Roach style).

    ``render`` returns ``(C, H, W)`` uint8 masks (0 or 255), channels named by :attr:`channels`:
    ``road``, ``marking_solid``, ``marking_broken`` (broken lines drawn continuous), ``route``, ``ego``,
    ``vehicles`` and one ``vehicles_t-<k>`` per entry of ``history`` (vehicles ``k`` renders ago, drawn
    relative to the current ego pose). The ego sits ``ego_offset`` pixels above the bottom edge, centred
    horizontally, so with the defaults the view reaches 30 m ahead and 8 m behind. ``raster`` lets several
    renderers share one :class:`MapRaster` (any resolution works; at the BEV's own, thin lines are never
    skipped).
    """

    def __init__(
        self,
        lanes: Mapping[LaneKey, Lane],
        size: int = 192,
        pixels_per_meter: float = 5.0,
        ego_offset: int = 40,
        history: Sequence[int] = (),
        route_width: float = 3.2,
        raster: MapRaster | None = None,
    ):
        if raster is None:
            raster = MapRaster(lanes, pixels_per_meter)
        self.raster = raster
        self.size = int(size)
        self.pixels_per_meter = float(pixels_per_meter)
        self.ego_offset = int(ego_offset)
        self.history = tuple(int(k) for k in history)
        if any(k <= 0 for k in self.history):
            raise ValueError(f"history entries are frames ago and must be positive, got {self.history}")
        self.route_width = route_width
        self.channels = (
            "road",
            "marking_solid",
            "marking_broken",
            "route",
            "ego",
            "vehicles",
            *(f"vehicles_t-{k}" for k in self.history),
        )
        self._luts = [self._bit_lut(ROAD), self._bit_lut(SOLID), self._bit_lut(BROKEN)]
        self._past: list[np.ndarray] = []  # vehicles of previous renders, newest last
        self._view_radius = math.hypot(self.size, self.size) / self.pixels_per_meter

    @staticmethod
    def _bit_lut(bit: int) -> np.ndarray:
        return np.where(np.arange(256) & bit, 255, 0).astype(np.uint8)

    def reset(self) -> None:
        """Forget the vehicle history (call at episode start)."""
        self._past.clear()

    def _world_to_view(self, pose: tuple[float, float, float]) -> np.ndarray:
        """2x3 affine matrix from map-frame metres to output pixels (ego facing up)."""
        ex, ey, eyaw = pose
        ppm, c, s = self.pixels_per_meter, math.cos(eyaw), math.sin(eyaw)
        col0, row0 = self.size / 2.0, self.size - self.ego_offset
        return np.array(
            [[ppm * s, -ppm * c, col0 - ppm * (ex * s - ey * c)], [-ppm * c, -ppm * s, row0 + ppm * (ex * c + ey * s)]]
        )

    def render(
        self,
        ego_pose: tuple[float, float, float],
        ego_size: tuple[float, float],
        vehicles: Vehicles = (),
        route: np.ndarray | None = None,
    ) -> np.ndarray:
        """(C, H, W) uint8 masks (0/255) for the ego at ``(x, y, yaw)`` with bounding box ``(length, width)``.

        ``vehicles`` are the other vehicles (rows as in the module doc), ``route`` a (K, 2) map-frame polyline.
        Each call also records ``vehicles`` for the history channels.
        """
        n = self.size
        out = np.zeros((len(self.channels), n, n), np.uint8)
        view = self._world_to_view(ego_pose)
        raster_to_view = view @ np.linalg.inv(self.raster.world_to_pixel)
        bits = cv2.warpAffine(
            self.raster.bits,
            raster_to_view,
            (n, n),
            flags=cv2.INTER_NEAREST,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        for channel, lut in enumerate(self._luts):
            cv2.LUT(bits, lut, dst=out[channel])
        if route is not None and len(route) >= 2:
            cv2.polylines(
                out[3],
                [self._to_view(view, np.asarray(route, float)[:, :2])],
                False,
                255,
                max(1, int(round(self.route_width * self.pixels_per_meter))),
                cv2.LINE_8,
                SUBPIXEL_BITS,
            )
        ego_box = np.array([[*ego_pose, *ego_size]], dtype=float)
        cv2.fillConvexPoly(out[4], self._to_view(view, box_corners(ego_box))[0], 255, cv2.LINE_8, SUBPIXEL_BITS)
        boxes = vehicle_boxes(vehicles)
        self._draw_vehicles(out[5], view, ego_pose, boxes)
        if not self.history:
            return out
        self._past.append(boxes.copy())
        del self._past[: -max(self.history) - 1]
        for channel, k in enumerate(self.history, start=6):
            self._draw_vehicles(out[channel], view, ego_pose, self._past[max(len(self._past) - 1 - k, 0)])
        return out

    def _to_view(self, view: np.ndarray, xy: np.ndarray) -> np.ndarray:
        """Map-frame points (..., 2) as fixed-point output pixel coordinates."""
        pix = xy @ view[:, :2].T + view[:, 2]
        return np.round(pix * SUBPIXEL_SCALE).astype(np.int32)

    def _draw_vehicles(
        self, mask: np.ndarray, view: np.ndarray, ego_pose: tuple[float, float, float], boxes: np.ndarray
    ) -> None:
        if not len(boxes):
            return
        near = np.hypot(boxes[:, 0] - ego_pose[0], boxes[:, 1] - ego_pose[1]) < self._view_radius + boxes[:, 3]
        for polygon in self._to_view(view, box_corners(boxes[near])):  # fillPoly would leave overlaps empty
            cv2.fillConvexPoly(mask, polygon, 255, cv2.LINE_8, SUBPIXEL_BITS)

    def to_rgb(self, bev: np.ndarray) -> np.ndarray:
        """(H, W, 3) RGB picture of a rendered view, for humans (later channels paint over earlier ones)."""
        colours = {
            "road": (85, 87, 83),
            "marking_broken": (186, 189, 182),
            "marking_solid": (238, 238, 236),
            "route": (58, 96, 160),
            "vehicles": (0, 0, 255),
            "ego": (255, 255, 255),
        }
        image = np.zeros((*bev.shape[1:], 3), np.uint8)
        order = [
            "road",
            "marking_broken",
            "marking_solid",
            "route",
            *(f"vehicles_t-{k}" for k in sorted(self.history, reverse=True)),
            "vehicles",
            "ego",
        ]
        for name in order:
            colour = colours.get(name)
            if colour is None:  # history: fading blue
                k = int(name.rsplit("-", 1)[1])
                colour = (0, 0, int(255 * (1.0 - 0.8 * k / (max(self.history) + 1))))
            image[bev[self.channels.index(name)] > 0] = colour
        return image
