"""Sensors rendered from the road network: a semantic bird's-eye view and a pinhole RGB camera.

Both start from one static raster of the map (:class:`MapRaster`), drawn once at start-up: a north-up
``uint8`` image in which every pixel is a bit field of what lies there (road, sidewalk, markings, ...).
Per frame, only a window of it is resampled with a single OpenCV call (``warpAffine`` for the bird's-eye
view as in CARLA-Roach, ``warpPerspective`` for the camera: the ground is a plane, so its image is exactly a
homography of the map) and the few dynamic objects are drawn on top.

Vehicles are passed as rows ``(x, y, yaw, length, width, height)`` in the map frame (an optional 7th value is
an integer key that fixes a vehicle's colour in the camera image); poses are ``(x, y, yaw)``.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence, Union

import cv2
import numpy as np

from carla_rl_common.geometry import box_corners
from carla_rl_common.opendrive.types import Lane, LaneKey, RoadMark

# bits of the static raster
ROAD, SIDEWALK, PAVED, SOLID, BROKEN, DASH, YELLOW = 1, 2, 4, 8, 16, 32, 64
SKY = 255  # value given to camera pixels above the horizon (no map bit field reaches it)
_SHIFT = 2  # sub-pixel bits of the coordinates passed to OpenCV drawing functions
_SCALE = float(1 << _SHIFT)
DASH_LENGTH, DASH_GAP = 3.0, 6.0  # m, painted pattern of broken lines
_PAVED_TYPES = ("shoulder", "border", "parking", "biking", "restricted", "median", "curb", "entry", "exit",
                "onRamp", "offRamp", "connectingRamp", "bidirectional", "stop")

Vehicles = Union[np.ndarray, Sequence[Sequence[float]]]  # rows (x, y, yaw, length, width, height[, key])


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
        return np.round(np.column_stack([cols, rows]) * _SCALE).astype(np.int32)

    def _fill_lanes(self, lanes: Mapping[LaneKey, Lane]) -> None:
        layers = {ROAD: [], SIDEWALK: [], PAVED: []}
        for lane in lanes.values():
            bit = ROAD if lane.is_driving else SIDEWALK if lane.type == "sidewalk" else \
                PAVED if lane.type in _PAVED_TYPES else 0
            if bit and len(lane.left_boundary) >= 2:
                layers[bit].append(self._pixels(np.concatenate([lane.left_boundary, lane.right_boundary[::-1]])))
        mask = np.zeros_like(self.bits)
        for bit in (PAVED, SIDEWALK, ROAD):
            if layers[bit]:
                mask[:] = 0
                for polygon in layers[bit]:  # one call per polygon: fillPoly leaves overlaps of several empty
                    cv2.fillPoly(mask, [polygon], 1, cv2.LINE_8, _SHIFT)
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
            cv2.polylines(mask, lines, False, 1, thickness, cv2.LINE_8, _SHIFT)
            self.bits |= mask * np.uint8(value)

    def _add_mark(self, groups: dict[tuple[int, int], list[np.ndarray]], mark: RoadMark, boundary: np.ndarray,
                  reverse: bool) -> None:
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


def _as_boxes(vehicles: Vehicles) -> np.ndarray:
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

    def __init__(self, lanes: Mapping[LaneKey, Lane], size: int = 192, pixels_per_meter: float = 5.0,
                 ego_offset: int = 40, history: Sequence[int] = (), route_width: float = 3.2,
                 raster: MapRaster | None = None):
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
        self.channels = ("road", "marking_solid", "marking_broken", "route", "ego", "vehicles",
                         *(f"vehicles_t-{k}" for k in self.history))
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
        return np.array([[ppm * s, -ppm * c, col0 - ppm * (ex * s - ey * c)],
                         [-ppm * c, -ppm * s, row0 + ppm * (ex * c + ey * s)]])

    def render(self, ego_pose: tuple[float, float, float], ego_size: tuple[float, float],
               vehicles: Vehicles = (), route: np.ndarray | None = None) -> np.ndarray:
        """(C, H, W) uint8 masks (0/255) for the ego at ``(x, y, yaw)`` with bounding box ``(length, width)``.

        ``vehicles`` are the other vehicles (rows as in the module doc), ``route`` a (K, 2) map-frame polyline.
        Each call also records ``vehicles`` for the history channels.
        """
        n = self.size
        out = np.zeros((len(self.channels), n, n), np.uint8)
        view = self._world_to_view(ego_pose)
        raster_to_view = view @ np.linalg.inv(self.raster.world_to_pixel)
        bits = cv2.warpAffine(self.raster.bits, raster_to_view, (n, n), flags=cv2.INTER_NEAREST,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        for channel, lut in enumerate(self._luts):
            cv2.LUT(bits, lut, dst=out[channel])
        if route is not None and len(route) >= 2:
            cv2.polylines(out[3], [self._to_view(view, np.asarray(route, float)[:, :2])], False, 255,
                          max(1, int(round(self.route_width * self.pixels_per_meter))), cv2.LINE_8, _SHIFT)
        ego_box = np.array([[*ego_pose, *ego_size]], dtype=float)
        cv2.fillConvexPoly(out[4], self._to_view(view, box_corners(ego_box))[0], 255, cv2.LINE_8, _SHIFT)
        boxes = _as_boxes(vehicles)
        self._draw_vehicles(out[5], view, ego_pose, boxes)
        if not self.history:
            return out
        self._past.append(boxes.copy())
        del self._past[:-max(self.history) - 1]
        for channel, k in enumerate(self.history, start=6):
            self._draw_vehicles(out[channel], view, ego_pose, self._past[max(len(self._past) - 1 - k, 0)])
        return out

    def _to_view(self, view: np.ndarray, xy: np.ndarray) -> np.ndarray:
        """Map-frame points (..., 2) as fixed-point output pixel coordinates."""
        pix = xy @ view[:, :2].T + view[:, 2]
        return np.round(pix * _SCALE).astype(np.int32)

    def _draw_vehicles(self, mask: np.ndarray, view: np.ndarray, ego_pose: tuple[float, float, float],
                       boxes: np.ndarray) -> None:
        if not len(boxes):
            return
        near = np.hypot(boxes[:, 0] - ego_pose[0], boxes[:, 1] - ego_pose[1]) < self._view_radius + boxes[:, 3]
        for polygon in self._to_view(view, box_corners(boxes[near])):  # fillPoly would leave overlaps empty
            cv2.fillConvexPoly(mask, polygon, 255, cv2.LINE_8, _SHIFT)

    def to_rgb(self, bev: np.ndarray) -> np.ndarray:
        """(H, W, 3) RGB picture of a rendered view, for humans (later channels paint over earlier ones)."""
        colours = {"road": (85, 87, 83), "marking_broken": (186, 189, 182), "marking_solid": (238, 238, 236),
                   "route": (58, 96, 160), "vehicles": (0, 0, 255), "ego": (255, 255, 255)}
        image = np.zeros((*bev.shape[1:], 3), np.uint8)
        order = ["road", "marking_broken", "marking_solid", "route",
                 *(f"vehicles_t-{k}" for k in sorted(self.history, reverse=True)), "vehicles", "ego"]
        for name in order:
            colour = colours.get(name)
            if colour is None:  # history: fading blue
                k = int(name.rsplit("-", 1)[1])
                colour = (0, 0, int(255 * (1.0 - 0.8 * k / (max(self.history) + 1))))
            image[bev[self.channels.index(name)] > 0] = colour
        return image


def camera_info(width: int, height: int, fov_deg: float) -> dict[str, object]:
    """CameraInfo fields as the CARLA ROS bridge fills them: cx = w/2, cy = h/2, fx = fy = w / (2 tan(fov/2))."""
    fx = width / (2.0 * math.tan(math.radians(fov_deg) / 2.0))
    cx, cy = width / 2.0, height / 2.0
    return {
        "width": int(width), "height": int(height), "distortion_model": "plumb_bob",
        "d": [0.0, 0.0, 0.0, 0.0, 0.0],
        "k": [fx, 0.0, cx, 0.0, fx, cy, 0.0, 0.0, 1.0],
        "r": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        "p": [fx, 0.0, cx, 0.0, 0.0, fx, cy, 0.0, 0.0, 0.0, 1.0, 0.0],
    }


def rotation_rpy(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """ROS fixed-axis roll-pitch-yaw rotation matrix ``Rz(yaw) Ry(pitch) Rx(roll)``."""
    cr, sr, cp, sp, cy, sy = math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch), \
        math.cos(yaw), math.sin(yaw)
    return np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                     [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                     [-sp, cp * sr, cp * cr]])


# camera colours, BGRA
_GRASS = (60, 110, 70, 255)
_SKY_COLOUR = (235, 206, 135, 255)
_ROAD_COLOUR = (90, 90, 90, 255)
_SIDEWALK_COLOUR = (170, 170, 165, 255)
_PAVED_COLOUR = (120, 125, 125, 255)
_WHITE = (235, 235, 235, 255)
_YELLOW_PAINT = (40, 200, 230, 255)
_CAR_COLOURS = ((40, 40, 200), (200, 80, 40), (60, 160, 60), (180, 180, 180), (40, 40, 40), (30, 140, 220),
                (150, 60, 130), (230, 230, 230))
_FACE_SHADE = (1.0, 0.85, 0.7, 0.75, 0.75, 0.4)  # top, front, rear, right, left, bottom


def _outward_faces() -> np.ndarray:
    """Corner indices of the 6 faces of a box, each ordered so that its normal (e1 x e2) points outwards.

    Corners 0-3 are the bottom (front-left, front-right, rear-right, rear-left, as :func:`_box_corners`),
    4-7 the same on top. Rigid motions keep the orientation, so a face looks at the camera exactly when
    its normal points towards it.
    """
    faces = np.array([[4, 5, 6, 7], [0, 1, 5, 4], [2, 3, 7, 6], [1, 2, 6, 5], [3, 0, 4, 7], [0, 3, 2, 1]])
    unit = np.array([[1, 1, 0], [1, -1, 0], [-1, -1, 0], [-1, 1, 0], [1, 1, 1], [1, -1, 1], [-1, -1, 1],
                     [-1, 1, 1]], dtype=float)
    for face in faces:
        p = unit[face]
        if np.dot(np.cross(p[1] - p[0], p[2] - p[1]), p.mean(axis=0) - unit.mean(axis=0)) < 0:
            face[:] = face[::-1]
    return faces


_FACES = _outward_faces()
# BGRA colour of each face of each palette car
_FACE_COLOURS = [[(b * k, g * k, r * k, 255.0) for k in _FACE_SHADE] for b, g, r in _CAR_COLOURS]


class CameraRenderer:
    """A pinhole RGB camera mounted on the ego vehicle, looking at the flat road network.

    ``mount`` is the camera pose in the vehicle frame, ROS convention (x forward, y left, z up from the
    vehicle origin on the ground; roll, pitch, yaw in radians, positive pitch looks down). The image
    follows the camera_info of :func:`camera_info`, so a map point projects exactly where ``K`` says.
    ``render`` returns a ``bgra8`` (H, W, 4) image: sky, grass, grey road, white/yellow markings (solid,
    3 m dashes), light sidewalks and vehicles as shaded 3D boxes.
    """

    near = 0.1  # m, near clipping plane for vehicles
    max_distance = 150.0  # m, vehicles further away are not drawn

    def __init__(self, lanes: Mapping[LaneKey, Lane], width: int, height: int, fov_deg: float,
                 mount: Sequence[float] = (2.0, 0.0, 2.0, 0.0, 0.0, 0.0), raster: MapRaster | None = None,
                 pixels_per_meter: float = 10.0):
        if raster is None:
            raster = MapRaster(lanes, pixels_per_meter)
        self.raster = raster
        self.width, self.height = int(width), int(height)
        self.info = camera_info(self.width, self.height, fov_deg)
        fx, cx, cy = self.info["k"][0], self.info["k"][2], self.info["k"][5]
        self.fx, self.cx, self.cy = fx, cx, cy
        mx, my, mz, roll, pitch, yaw = (float(v) for v in mount)
        if mz <= 0.0:
            raise ValueError(f"camera mount height must be above the ground, got z={mz}")
        self.position = np.array([mx, my, mz])
        self.rotation = rotation_rpy(roll, pitch, yaw)  # camera axes -> vehicle axes
        pixel_to_ray = np.array([[0.0, 0.0, 1.0], [-1.0 / fx, 0.0, cx / fx], [0.0, -1.0 / fx, cy / fx]])
        ray_to_ground = np.array([[-mz, 0.0, mx], [0.0, -mz, my], [0.0, 0.0, 1.0]])
        self._pixel_to_ground = ray_to_ground @ self.rotation @ pixel_to_ray  # homography to vehicle-frame xy
        self._lut = self._colour_lut()
        self._sky_rows, self._sky_band = self._sky(self.rotation @ pixel_to_ray)

    def _colour_lut(self) -> np.ndarray:
        """(1, 256, 4) BGRA colour of every bit-field value (markings over road over sidewalk over grass)."""
        lut = np.empty((1, 256, 4), np.uint8)
        for value in range(256):
            if value == SKY:
                colour = _SKY_COLOUR
            elif value & DASH:
                colour = _YELLOW_PAINT if value & YELLOW else _WHITE
            elif value & ROAD:
                colour = _ROAD_COLOUR
            elif value & SIDEWALK:
                colour = _SIDEWALK_COLOUR
            elif value & PAVED:
                colour = _PAVED_COLOUR
            else:
                colour = _GRASS
            lut[0, value] = colour
        return lut

    def _sky(self, pixel_to_vehicle_ray: np.ndarray) -> tuple[int, tuple[int, np.ndarray]]:
        """Rows entirely above the horizon, and the band of rows (start, mask) where it crosses the image."""
        v, u = np.mgrid[0:self.height, 0:self.width].astype(float)
        ray_z = pixel_to_vehicle_ray[2, 0] * u + pixel_to_vehicle_ray[2, 1] * v + pixel_to_vehicle_ray[2, 2]
        sky = ray_z >= -1e-9
        full = sky.all(axis=1)
        any_sky = sky.any(axis=1)
        full_rows = int(np.argmin(full)) if not full.all() else self.height
        band_end = int(np.flatnonzero(any_sky)[-1]) + 1 if any_sky.any() else 0
        band_end = max(band_end, full_rows)
        return full_rows, (full_rows, np.ascontiguousarray(sky[full_rows:band_end]))

    def render(self, ego_pose: tuple[float, float, float], vehicles: Vehicles = ()) -> np.ndarray:
        """The camera image for the ego vehicle at ``(x, y, yaw)``, as bgra8 ``(H, W, 4)``."""
        ex, ey, eyaw = ego_pose
        c, s = math.cos(eyaw), math.sin(eyaw)
        vehicle_to_world = np.array([[c, -s, ex], [s, c, ey], [0.0, 0.0, 1.0]])
        pixel_to_raster = self.raster.world_to_pixel @ vehicle_to_world @ self._pixel_to_ground
        bits = cv2.warpPerspective(self.raster.bits, pixel_to_raster, (self.width, self.height),
                                   flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        bits[:self._sky_rows] = SKY
        start, band = self._sky_band
        if len(band):
            np.copyto(bits[start:start + len(band)], SKY, where=band)
        image = cv2.LUT(cv2.cvtColor(bits, cv2.COLOR_GRAY2BGRA), self._lut)
        boxes = _as_boxes(vehicles)
        if len(boxes):
            self._draw_vehicles(image, ego_pose, boxes)
        return image

    def _to_camera(self, ego_pose: tuple[float, float, float], points: np.ndarray) -> np.ndarray:
        """Map-frame 3D points (..., 3) in the camera frame (x forward, y left, z up)."""
        ex, ey, eyaw = ego_pose
        c, s = math.cos(eyaw), math.sin(eyaw)
        world_to_vehicle = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
        local = (points - np.array([ex, ey, 0.0])) @ world_to_vehicle.T - self.position
        return local @ self.rotation  # row-vector form of rotation.T @ p

    def _draw_vehicles(self, image: np.ndarray, ego_pose: tuple[float, float, float], boxes: np.ndarray) -> None:
        """Shaded faces of every vehicle in view, far vehicles first (painter's algorithm)."""
        distance = np.hypot(boxes[:, 0] - ego_pose[0], boxes[:, 1] - ego_pose[1])
        keep = np.flatnonzero(distance < self.max_distance)
        if not len(keep):
            return
        m = len(keep)
        ground = box_corners(boxes[keep])  # (M, 4, 2)
        z = np.concatenate([np.zeros((m, 4)), np.repeat(boxes[keep, 5, None], 4, axis=1)], axis=1)
        corners = np.concatenate([np.concatenate([ground, ground], axis=1), z[:, :, None]], axis=2)  # (M, 8, 3)
        cam = self._to_camera(ego_pose, corners)
        depth = np.maximum(cam[:, :, 0], self.near)
        u = self.cx - self.fx * cam[:, :, 1] / depth
        v = self.cy - self.fx * cam[:, :, 2] / depth
        in_front = cam[:, :, 0] >= self.near
        in_view = in_front.any(axis=1) & ~(in_front.all(axis=1) & (
            (u.max(axis=1) < 0) | (u.min(axis=1) > self.width) | (v.max(axis=1) < 0) | (v.min(axis=1) > self.height)))
        faces = cam[:, _FACES]  # (M, 6, 4, 3)
        normals = np.cross(faces[:, :, 1] - faces[:, :, 0], faces[:, :, 2] - faces[:, :, 1])
        facing = np.einsum("mfi,mfi->mf", normals, -faces[:, :, 0]) > 0.0
        pixels = np.round(np.stack([u, v], axis=2) * _SCALE).astype(np.int32)  # (M, 8, 2)
        keys = boxes[keep, 6].astype(np.int64) if boxes.shape[1] > 6 else keep
        for i in np.flatnonzero(in_view)[np.argsort(-distance[keep[in_view]])]:
            colours = _FACE_COLOURS[int(keys[i]) % len(_FACE_COLOURS)]
            for f in np.flatnonzero(facing[i]):  # facing faces of a convex box never overlap
                if in_front[i, _FACES[f]].all():
                    pts = pixels[i, _FACES[f]]
                else:
                    polygon = _clip_near(faces[i, f], self.near)
                    if len(polygon) < 3:
                        continue
                    pts = np.round(np.column_stack([self.cx - self.fx * polygon[:, 1] / polygon[:, 0],
                                                    self.cy - self.fx * polygon[:, 2] / polygon[:, 0]])
                                   * _SCALE).astype(np.int32)
                cv2.fillConvexPoly(image, pts, colours[f], cv2.LINE_8, _SHIFT)


def _clip_near(polygon: np.ndarray, near: float) -> np.ndarray:
    """Clip a convex polygon (camera frame points, (N, 3)) to x >= near (Sutherland-Hodgman, one plane)."""
    inside = polygon[:, 0] >= near
    if inside.all():
        return polygon
    out = []
    for i in range(len(polygon)):
        a, b = polygon[i], polygon[(i + 1) % len(polygon)]
        a_in, b_in = a[0] >= near, b[0] >= near
        if a_in:
            out.append(a)
        if a_in != b_in:
            t = (near - a[0]) / (b[0] - a[0])
            out.append(a + t * (b - a))
    return np.array(out).reshape(-1, 3)
