"""The map raster and the bird's-eye view on a hand-built straight road (x east, y north)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from synthetic_lanes import straight_road

from carla_rl_common.bev import BROKEN, DASH, ROAD, SIDEWALK, SOLID, BevRenderer, MapRaster

EGO = (50.0, -1.75, 0.0)  # on the eastbound lane of the straight road, facing east
EGO_SIZE = (4.7, 1.9)
PPM, SIZE, OFFSET = 5.0, 192, 40


@pytest.fixture(scope="module")
def lanes():
    return straight_road(200.0)


@pytest.fixture(scope="module")
def raster(lanes):
    return MapRaster(lanes, 10.0)


def view_pixel(forward: float, left: float) -> tuple[int, int]:
    """(row, column) of a point given in the ego frame, for the default BEV geometry."""
    return int(round(SIZE - OFFSET - forward * PPM)), int(round(SIZE / 2 - left * PPM))


def test_raster_bits_match_the_lanes(raster):
    def bits(x, y):
        col, row = (raster.world_to_pixel @ [x, y, 1.0])[:2]
        return int(raster.bits[int(round(row)), int(round(col))])

    assert bits(100.0, -1.75) & ROAD and bits(100.0, 1.75) & ROAD
    assert bits(100.0, -3.5) & SOLID and bits(100.0, -3.5) & ROAD  # markings keep the road beneath
    assert bits(104.5, 0.0) & BROKEN and bits(104.5, 0.0) & ROAD and not bits(104.5, 0.0) & DASH  # a gap
    assert bits(100.5, 0.0) & DASH  # within a painted dash (3 m on, 6 m off from x = 0)
    assert bits(100.0, -4.5) == SIDEWALK
    assert bits(100.0, -10.0) == 0


def test_bev_channels_and_static_layers(lanes):
    bev = BevRenderer(lanes)
    out = bev.render(EGO, EGO_SIZE)
    assert out.shape == (6, SIZE, SIZE) and out.dtype == np.uint8
    assert bev.channels == ("road", "marking_solid", "marking_broken", "route", "ego", "vehicles")
    assert set(np.unique(out)) <= {0, 255}
    road, solid, broken = out[0], out[1], out[2]
    assert road[view_pixel(10.0, 0.0)] == 255 and road[view_pixel(10.0, 3.5)] == 255  # both lanes
    assert road[view_pixel(10.0, -6.0)] == 0  # beyond the sidewalk
    right_edge = view_pixel(10.0, -1.75)  # solid line at y = -3.5
    assert solid[right_edge[0], right_edge[1] - 1 : right_edge[1] + 2].max() == 255
    centre = view_pixel(10.0, 1.75)  # broken centre line at y = 0
    assert broken[centre[0], centre[1] - 1 : centre[1] + 2].max() == 255
    assert solid[centre[0], centre[1] - 1 : centre[1] + 2].max() == 0


def test_bev_ego_box_is_centred_above_the_bottom(lanes):
    ego = BevRenderer(lanes).render(EGO, EGO_SIZE)[4]
    rows, cols = np.nonzero(ego)
    assert abs(cols.mean() - SIZE / 2) < 1.0
    assert abs(rows.mean() - (SIZE - OFFSET)) < 1.0
    assert rows.max() - rows.min() + 1 == pytest.approx(4.7 * PPM, abs=2)  # length along the view's vertical
    assert cols.max() - cols.min() + 1 == pytest.approx(1.9 * PPM, abs=2)


def test_bev_rotates_with_the_ego_heading(lanes):
    bev = BevRenderer(lanes)
    heading = math.pi / 2  # facing north: a car 10 m north appears straight ahead, one 6 m east on the right
    ego = (50.0, 0.0, heading)
    out = bev.render(ego, EGO_SIZE, [(50.0, 10.0, heading, 4.7, 1.9, 1.5), (56.0, 0.0, 0.0, 4.7, 1.9, 1.5)])
    assert out[5][view_pixel(10.0, 0.0)] == 255
    assert out[5][view_pixel(0.0, -6.0)] == 255
    assert out[5][view_pixel(-5.0, 0.0)] == 0


def test_bev_route_and_vehicle_history(lanes):
    bev = BevRenderer(lanes, history=(2,))
    route = np.array([[x, -1.75] for x in np.arange(40.0, 120.0, 2.0)])
    for i in range(3):
        out = bev.render(EGO, EGO_SIZE, [(60.0 + 5.0 * i, -1.75, 0.0, 4.7, 1.9, 1.5)], route)
    assert bev.channels[-1] == "vehicles_t-2"
    assert out[3][view_pixel(20.0, 0.0)] == 255 and out[3][view_pixel(20.0, 4.0)] == 0
    assert out[5][view_pixel(20.0, 0.0)] == 255 and out[5][view_pixel(10.0, 0.0)] == 0  # now at x = 70
    assert out[6][view_pixel(10.0, 0.0)] == 255 and out[6][view_pixel(20.0, 0.0)] == 0  # two renders ago: 60
    rgb = bev.to_rgb(out)
    assert rgb.shape == (SIZE, SIZE, 3) and rgb.dtype == np.uint8
    bev.reset()
    assert bev.render(EGO, EGO_SIZE)[6].max() == 0
