"""The simulator's pinhole RGB camera, rendered from the road network.

It starts from the static map raster of :mod:`carla_rl_common.bev` (shared with the bird's-eye view): the
ground is a plane, so its image is exactly a homography of the map, resampled per frame with a single
``cv2.warpPerspective``; the few vehicles are drawn on top as shaded 3D boxes. Vehicle rows and poses are as
in :mod:`carla_rl_common.bev`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from carla_rl_common.bev import (
    DASH,
    PAVED,
    ROAD,
    SIDEWALK,
    SUBPIXEL_BITS,
    SUBPIXEL_SCALE,
    YELLOW,
    MapRaster,
    Vehicles,
    vehicle_boxes,
)
from carla_rl_common.geometry import box_corners
from carla_rl_common.opendrive.types import Lane, LaneKey

SKY = 255  # value given to camera pixels above the horizon (no map bit field reaches it)


def camera_info(width: int, height: int, fov_deg: float) -> dict[str, object]:
    """CameraInfo fields as the CARLA ROS bridge fills them: cx = w/2, cy = h/2, fx = fy = w / (2 tan(fov/2))."""
    fx = width / (2.0 * math.tan(math.radians(fov_deg) / 2.0))
    cx, cy = width / 2.0, height / 2.0
    return {
        "width": int(width),
        "height": int(height),
        "distortion_model": "plumb_bob",
        "d": [0.0, 0.0, 0.0, 0.0, 0.0],
        "k": [fx, 0.0, cx, 0.0, fx, cy, 0.0, 0.0, 1.0],
        "r": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        "p": [fx, 0.0, cx, 0.0, 0.0, fx, cy, 0.0, 0.0, 0.0, 1.0, 0.0],
    }


def rotation_rpy(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """ROS fixed-axis roll-pitch-yaw rotation matrix ``Rz(yaw) Ry(pitch) Rx(roll)``."""
    cr, sr, cp, sp, cy, sy = (
        math.cos(roll),
        math.sin(roll),
        math.cos(pitch),
        math.sin(pitch),
        math.cos(yaw),
        math.sin(yaw),
    )
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


# camera colours, BGRA
_GRASS = (60, 110, 70, 255)
_SKY_COLOUR = (235, 206, 135, 255)
_ROAD_COLOUR = (90, 90, 90, 255)
_SIDEWALK_COLOUR = (170, 170, 165, 255)
_PAVED_COLOUR = (120, 125, 125, 255)
_WHITE = (235, 235, 235, 255)
_YELLOW_PAINT = (40, 200, 230, 255)
_CAR_COLOURS = (
    (40, 40, 200),
    (200, 80, 40),
    (60, 160, 60),
    (180, 180, 180),
    (40, 40, 40),
    (30, 140, 220),
    (150, 60, 130),
    (230, 230, 230),
)
_FACE_SHADE = (1.0, 0.85, 0.7, 0.75, 0.75, 0.4)  # top, front, rear, right, left, bottom


def _outward_faces() -> np.ndarray:
    """Corner indices of the 6 faces of a box, each ordered so that its normal (e1 x e2) points outwards.

    Corners 0-3 are the bottom (front-left, front-right, rear-right, rear-left, as :func:`box_corners`),
    4-7 the same on top. Rigid motions keep the orientation, so a face looks at the camera exactly when
    its normal points towards it.
    """
    faces = np.array([[4, 5, 6, 7], [0, 1, 5, 4], [2, 3, 7, 6], [1, 2, 6, 5], [3, 0, 4, 7], [0, 3, 2, 1]])
    unit = np.array(
        [[1, 1, 0], [1, -1, 0], [-1, -1, 0], [-1, 1, 0], [1, 1, 1], [1, -1, 1], [-1, -1, 1], [-1, 1, 1]], dtype=float
    )
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

    def __init__(
        self,
        lanes: Mapping[LaneKey, Lane],
        width: int,
        height: int,
        fov_deg: float,
        mount: Sequence[float] = (2.0, 0.0, 2.0, 0.0, 0.0, 0.0),
        raster: MapRaster | None = None,
        pixels_per_meter: float = 10.0,
    ):
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
        v, u = np.mgrid[0 : self.height, 0 : self.width].astype(float)
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
        bits = cv2.warpPerspective(
            self.raster.bits,
            pixel_to_raster,
            (self.width, self.height),
            flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        bits[: self._sky_rows] = SKY
        start, band = self._sky_band
        if len(band):
            np.copyto(bits[start : start + len(band)], SKY, where=band)
        image = cv2.LUT(cv2.cvtColor(bits, cv2.COLOR_GRAY2BGRA), self._lut)
        boxes = vehicle_boxes(vehicles)
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
        in_view = in_front.any(axis=1) & ~(
            in_front.all(axis=1)
            & ((u.max(axis=1) < 0) | (u.min(axis=1) > self.width) | (v.max(axis=1) < 0) | (v.min(axis=1) > self.height))
        )
        faces = cam[:, _FACES]  # (M, 6, 4, 3)
        normals = np.cross(faces[:, :, 1] - faces[:, :, 0], faces[:, :, 2] - faces[:, :, 1])
        facing = np.einsum("mfi,mfi->mf", normals, -faces[:, :, 0]) > 0.0
        pixels = np.round(np.stack([u, v], axis=2) * SUBPIXEL_SCALE).astype(np.int32)  # (M, 8, 2)
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
                    pts = np.round(
                        np.column_stack(
                            [
                                self.cx - self.fx * polygon[:, 1] / polygon[:, 0],
                                self.cy - self.fx * polygon[:, 2] / polygon[:, 0],
                            ]
                        )
                        * SUBPIXEL_SCALE
                    ).astype(np.int32)
                cv2.fillConvexPoly(image, pts, colours[f], cv2.LINE_8, SUBPIXEL_BITS)


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
