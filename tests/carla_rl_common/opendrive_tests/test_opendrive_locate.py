"""Locating points on lanes: known offsets, on/off road, batching, wide next to narrow lanes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from carla_rl_common.opendrive import LaneKey, RoadNetwork


@pytest.fixture
def two_way(xodr) -> RoadNetwork:
    """100 m along +x; lane -1 (eastbound) at y = -1.75, lane 1 (westbound) at y = +1.75."""
    return RoadNetwork.from_string(xodr.document(xodr.straight(length=100.0)))


def test_point_in_forward_lane(two_way: RoadNetwork) -> None:
    location = two_way.locate(30.0, -2.25, 0.1)
    assert location.key == LaneKey("1", 0, -1)
    assert (location.s, location.t, location.heading_error, location.distance) == pytest.approx((30.0, -0.5, 0.1, 0.5))
    assert location.on_road


def test_point_in_backward_lane(two_way: RoadNetwork) -> None:
    location = two_way.locate(30.0, 2.25, math.pi)
    assert location.key == LaneKey("1", 0, 1)
    # Driving west, +y is on the right: t < 0; s runs from x = 100.
    assert (location.s, location.t, location.heading_error) == pytest.approx((70.0, -0.5, 0.0), abs=1e-9)


def test_wrong_way_heading_error(two_way: RoadNetwork) -> None:
    assert abs(two_way.locate(30.0, -1.75, math.pi).heading_error) == pytest.approx(math.pi)


def test_off_road_reports_nearest_lane(two_way: RoadNetwork) -> None:
    location = two_way.locate(30.0, 10.0)
    assert location.key == LaneKey("1", 0, 1) and not location.on_road
    assert location.distance == pytest.approx(8.25)
    beyond_end = two_way.locate(101.0, -1.75)
    assert beyond_end.key == LaneKey("1", 0, -1) and not beyond_end.on_road
    assert two_way.locate(5000.0, 0.0).key is None


def test_on_road_mask(two_way: RoadNetwork) -> None:
    points = np.array([[50.0, 3.4], [50.0, 3.6], [50.0, -3.4], [50.0, -3.6], [-0.5, 0.5], [0.5, 0.5], [99.5, -1.0]])
    assert two_way.on_road_mask(points).tolist() == [True, False, True, False, False, True, True]


def test_locate_many_matches_locate(two_way: RoadNetwork) -> None:
    rng = np.random.default_rng(3)
    xy = np.column_stack([rng.uniform(-10, 110, 200), rng.uniform(-8, 8, 200)])
    yaw = rng.uniform(-math.pi, math.pi, 200)
    batch = two_way.locate_many(xy, yaw)
    keys = [lane.key for lane in two_way.driving_lanes()]
    for i in range(len(xy)):
        single = two_way.locate(*xy[i], yaw[i])
        assert keys[batch["key_index"][i]] == single.key
        assert (batch["s"][i], batch["t"][i], batch["heading_error"][i]) == pytest.approx(single[1:4])
        assert batch["on_road"][i] == single.on_road
    assert (batch["on_road"] == two_way.on_road_mask(xy)).all()
    assert np.isnan(two_way.locate_many(xy)["heading_error"]).all()


def test_wide_lane_beats_nearer_narrow_centreline(xodr) -> None:
    """A point 0.8 m inside a 6 m lane is nearer the centre of the 1 m lane beside it."""
    lanes = xodr.section(xodr.lane(-1, width=1.0), xodr.lane(-2, width=6.0))
    net = RoadNetwork.from_string(xodr.document(xodr.straight(length=50.0, lanes=lanes)))
    location = net.locate(25.0, -1.8)
    assert location.key == LaneKey("1", 0, -2) and location.on_road


def test_known_offsets_on_town01(town) -> None:
    net = town("Town01")
    lanes = [lane for lane in net.driving_lanes() if lane.junction < 0 and lane.length > 4]
    rng = np.random.default_rng(7)
    for lane in rng.choice(np.array(lanes, dtype=object), 40):
        s = rng.uniform(1.0, lane.length - 1.0)
        x, y, yaw = net.lane_point(lane.key, s)
        t = rng.uniform(-1.0, 1.0)
        location = net.locate(x - t * math.sin(yaw), y + t * math.cos(yaw), yaw)
        assert location.key == lane.key and location.on_road
        assert (location.s, location.t, location.heading_error) == pytest.approx((s, t, 0.0), abs=0.02)
