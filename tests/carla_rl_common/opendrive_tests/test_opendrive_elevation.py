"""The lanes' z from the roads' ``<elevationProfile>`` (a reset places the car at its lane's height)."""

from __future__ import annotations

import numpy as np
import pytest

from carla_rl_common.opendrive import RoadNetwork

from .conftest import Xodr

ELEVATION = '<elevationProfile><elevation s="0" a="1.0" b="0.1" c="0" d="0"/></elevationProfile>'


def test_lanes_carry_the_reference_line_elevation_in_their_driving_direction():
    line = Xodr.geometry("<line/>", 0.0, 0.0, 0.0, 100.0)
    network = RoadNetwork.from_string(Xodr.document(Xodr.road("1", line, 100.0, extra=ELEVATION)))
    right = next(lane for lane in network.driving_lanes() if lane.key.lane == -1)  # along the reference line
    left = next(lane for lane in network.driving_lanes() if lane.key.lane == 1)  # against it
    assert right.elevation[0] == pytest.approx(1.0) and right.elevation[-1] == pytest.approx(11.0)
    assert left.elevation[0] == pytest.approx(11.0) and left.elevation[-1] == pytest.approx(1.0)
    assert network.elevation(50.0, -1.75, 0.0) == pytest.approx(6.0)
    assert network.elevation(25.0, 1.75, np.pi) == pytest.approx(3.5)


def test_a_road_without_elevation_is_at_zero():
    line = Xodr.geometry("<line/>", 0.0, 0.0, 0.0, 50.0)
    network = RoadNetwork.from_string(Xodr.document(Xodr.road("1", line, 50.0)))
    assert network.elevation(10.0, -1.75) == 0.0
    assert all(not lane.elevation.any() for lane in network.driving_lanes())


def test_carla_towns_have_elevation(town):
    lanes = town("Town04").driving_lanes()
    assert max(float(lane.elevation.max()) for lane in lanes) > 5.0
