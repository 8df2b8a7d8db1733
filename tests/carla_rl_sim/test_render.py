"""Pinhole camera rendering on a hand-built straight road (x east, y north), and render speed with the BEV."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from synthetic_lanes import crossroads, straight_road

from carla_rl_common.bev import BevRenderer, MapRaster
from carla_rl_sim.render import CameraRenderer, camera_info

EGO = (50.0, -1.75, 0.0)  # on the eastbound lane of the straight road, facing east
EGO_SIZE = (4.7, 1.9)


@pytest.fixture(scope="module")
def lanes():
    return straight_road(200.0)


@pytest.fixture(scope="module")
def raster(lanes):
    return MapRaster(lanes, 10.0)


def test_camera_info_matches_the_bridge():
    info = camera_info(800, 600, 90.0)
    assert info["k"] == pytest.approx([400.0, 0, 400.0, 0, 400.0, 300.0, 0, 0, 1])
    assert info["p"] == pytest.approx([400.0, 0, 400.0, 0, 0, 400.0, 300.0, 0, 0, 0, 1, 0])
    assert (info["width"], info["height"], info["distortion_model"]) == (800, 600, "plumb_bob")


def project(point_cam: tuple[float, float, float], width: int, height: int, fov: float) -> tuple[float, float]:
    """Pinhole projection of a point in the camera frame (x forward, y left, z up): (u, v)."""
    k = camera_info(width, height, fov)["k"]
    x, y, z = point_cam
    return k[2] - k[0] * y / x, k[5] - k[4] * z / x


def test_camera_ground_matches_the_pinhole_projection(lanes, raster):
    w, h, fov = 320, 240, 90.0
    cam = CameraRenderer(lanes, w, h, fov, mount=(1.0, 0.0, 2.0, 0.0, 0.0, 0.0), raster=raster)
    image = cam.render(EGO)
    assert image.shape == (h, w, 4) and image.dtype == np.uint8 and np.all(image[:, :, 3] == 255)
    colour = lambda u, v: tuple(int(c) for c in image[int(round(v)), int(round(u)), :3])  # noqa: E731
    sky = colour(w / 2, 10)
    road = colour(*project((8.0, 0.0, -2.0), w, h, fov))  # lane centre, 8 m ahead of the camera
    grass = colour(*project((16.0, -8.0, -2.0), w, h, fov))  # beyond the sidewalk
    sidewalk = colour(*project((8.0, -3.0, -2.0), w, h, fov))  # the sidewalk at y = -4.75
    assert len({sky, road, grass, sidewalk}) == 4
    assert road[0] == road[1] == road[2]  # grey
    # the solid right edge line (y = -3.5 -> 1.75 m right of the camera) at several distances
    for ahead in (5.0, 10.0, 20.0):
        u, v = project((ahead, -1.75, -2.0), w, h, fov)
        row = image[int(round(v)), :, :3].astype(int)
        white = np.flatnonzero(row.min(axis=1) > 200)
        assert white.size and np.abs(white - u).min() <= 1.0, (ahead, u, white)
        assert colour(u - 0.2 * (u - w / 2), v) == road  # just inside the line: road
    # everything above the horizon (row cy for a level camera) is sky
    assert np.all(image[: h // 2, :, :3] == sky)
    assert not np.any(np.all(image[h // 2 + 2 :, :, :3] == sky, axis=2))


def test_camera_pitch_moves_the_horizon(lanes, raster):
    w, h, fov, pitch = 200, 200, 90.0, math.radians(10.0)
    image = CameraRenderer(lanes, w, h, fov, mount=(1.0, 0.0, 2.0, 0.0, pitch, 0.0), raster=raster).render(EGO)
    horizon = h / 2 - (w / 2) * math.tan(pitch)  # positive pitch looks down: the horizon rises
    sky = image[0, 0]
    is_sky = np.all(image[:, w // 2] == sky, axis=1)
    assert abs(np.argmin(is_sky) - horizon) <= 1.0


def test_camera_shows_a_vehicle_in_front(lanes, raster):
    w, h, fov = 320, 240, 90.0
    cam = CameraRenderer(lanes, w, h, fov, mount=(1.0, 0.0, 2.0, 0.0, 0.0, 0.0), raster=raster)
    empty = cam.render(EGO)
    car = (EGO[0] + 15.0, EGO[1], 0.0, 4.7, 1.9, 1.5)
    image = cam.render(EGO, [car])
    changed = np.any(image != empty, axis=2)
    rows, cols = np.nonzero(changed)
    # the rear face spans the projection of its corners (13.65 m from the camera, 1.9 wide, 1.5 high)
    rear = 15.0 - 1.0 - 2.35
    u_left, v_top = project((rear, 0.95, 1.5 - 2.0), w, h, fov)
    u_right, v_bottom = project((rear, -0.95, -2.0), w, h, fov)
    assert abs(cols.min() - u_left) <= 1.5 and abs(cols.max() - u_right) <= 1.5
    assert abs(rows.max() - v_bottom) <= 1.5 and rows.min() <= v_top + 1.5  # the roof shows above the rear
    # a vehicle behind the camera, or partly beside it, does not break rendering
    behind, beside = (EGO[0] - 10.0, EGO[1], 0.0, 4.7, 1.9, 1.5), (EGO[0] + 1.0, EGO[1] + 2.5, 0.3, 4.7, 1.9, 1.5)
    image = cam.render(EGO, [behind, beside])
    assert image.shape == (h, w, 4)


def test_render_speed(capsys):
    lanes = crossroads(arm=150.0)
    boxes = np.array([[x, -1.75, 0.0, 4.7, 1.9, 1.5] for x in np.arange(-60.0, 60.0, 8.0)])
    ego = (-70.0, -1.75, 0.0)
    raster = MapRaster(lanes, 10.0)
    results = []
    for name, renderer, args, n in (
        ("bev 192x192", BevRenderer(lanes), (ego, EGO_SIZE, boxes), 400),
        ("camera 84x84", CameraRenderer(lanes, 84, 84, 90.0, raster=raster), (ego, boxes), 400),
        ("camera 800x600", CameraRenderer(lanes, 800, 600, 90.0, raster=raster), (ego, boxes), 40),
    ):
        start = time.perf_counter()
        for _ in range(n):
            renderer.render(*args)
        results.append(f"{name}: {n / (time.perf_counter() - start):.0f}/s")
    with capsys.disabled():
        print(f"\n[render] {', '.join(results)} ({len(boxes)} vehicles)")
