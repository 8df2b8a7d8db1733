"""Lanes built from snippets: widths, offsets, sections, direction, marks, speeds, links, signals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from carla_rl_common.opendrive import LaneKey, RoadNetwork

WIDTH_RECORDS = (
    '<width sOffset="0" a="3.0" b="0.02" c="0" d="0"/><width sOffset="20" a="3.4" b="0" c="0.001" d="-0.00002"/>'
)


def width_at(s: np.ndarray) -> np.ndarray:
    """Closed form of WIDTH_RECORDS."""
    x = s - 20.0
    return np.where(s < 20.0, 3.0 + 0.02 * s, 3.4 + 0.001 * x**2 - 0.00002 * x**3)


def test_polynomial_width_records(xodr) -> None:
    lanes = xodr.section(
        '<lane id="-1" type="driving"><link/>' + WIDTH_RECORDS + "</lane>",
        xodr.lane(-2, width=2.0),
    )
    net = RoadNetwork.from_string(xodr.document(xodr.straight(length=50.0, lanes=lanes)))
    inner = net.lanes[LaneKey("1", 0, -1)]
    x = inner.centerline[:, 0]
    assert inner.widths == pytest.approx(width_at(x), abs=1e-9)
    assert inner.left_boundary[:, 1] == pytest.approx(0.0, abs=1e-12)
    assert inner.right_boundary[:, 1] == pytest.approx(-width_at(x), abs=1e-9)
    assert inner.centerline[:, 1] == pytest.approx(-width_at(x) / 2, abs=1e-9)
    outer = net.lanes[LaneKey("1", 0, -2)]
    assert outer.centerline[:, 1] == pytest.approx(-width_at(outer.centerline[:, 0]) - 1.0, abs=1e-9)
    assert 20.0 in x  # width record boundaries are sampled exactly


def test_lane_offset_shifts_every_lane(xodr) -> None:
    offset = '<laneOffset s="0" a="0.5" b="0.01" c="0" d="0"/>'
    lanes = offset + xodr.section(xodr.lane(1), xodr.lane(-1))
    net = RoadNetwork.from_string(xodr.document(xodr.straight(length=40.0, lanes=lanes)))
    right = net.lanes[LaneKey("1", 0, -1)]
    t0 = 0.5 + 0.01 * right.centerline[:, 0]
    assert right.centerline[:, 1] == pytest.approx(t0 - 1.75, abs=1e-9)
    # The lane's heading follows its offset curve, not the reference line: atan(dt/ds).
    assert right.headings == pytest.approx(math.atan(0.01), abs=1e-9)
    left = net.lanes[LaneKey("1", 0, 1)]
    assert left.centerline[:, 1] == pytest.approx(0.5 + 0.01 * left.centerline[:, 0] + 1.75, abs=1e-9)


def test_driving_direction_boundaries_and_marks(xodr) -> None:
    lanes = xodr.section(
        xodr.lane(1, mark="solid"), xodr.lane(-1, mark="broken"), xodr.lane(-2, mark="solid"), center_mark="solid solid"
    )
    net = RoadNetwork.from_string(xodr.document(xodr.straight(length=30.0, lanes=lanes)))
    forward, backward = net.lanes[LaneKey("1", 0, -1)], net.lanes[LaneKey("1", 0, 1)]
    assert forward.centerline[0] == pytest.approx([0.0, -1.75]) and forward.headings[0] == pytest.approx(0.0)
    assert backward.centerline[0] == pytest.approx([30.0, 1.75]) and abs(backward.headings[0]) == pytest.approx(math.pi)
    assert backward.s[-1] == pytest.approx(30.0)
    # Right-hand traffic: the centre line is on the left of both directions.
    assert forward.left_boundary[:, 1] == pytest.approx(0.0) and forward.right_boundary[:, 1] == pytest.approx(-3.5)
    assert backward.left_boundary[:, 1] == pytest.approx(0.0) and backward.right_boundary[:, 1] == pytest.approx(3.5)
    assert forward.left_mark.type == "solid solid" and forward.left_mark.color == "yellow"
    assert forward.right_mark.type == "broken"  # lane -1's own mark, on its outer border
    assert backward.left_mark.type == "solid solid" and backward.right_mark.type == "solid"
    assert net.lanes[LaneKey("1", 0, -2)].left_mark.type == "broken"
    assert forward.left_neighbor == LaneKey("1", 0, 1) and forward.right_neighbor == LaneKey("1", 0, -2)
    assert backward.left_neighbor == LaneKey("1", 0, -1) and backward.right_neighbor is None


def test_left_hand_traffic_reverses_directions(xodr) -> None:
    road = xodr.straight(length=30.0, attributes='rule="LHT"')
    net = RoadNetwork.from_string(xodr.document(road))
    assert net.lanes[LaneKey("1", 0, 1)].headings[0] == pytest.approx(0.0)
    assert abs(net.lanes[LaneKey("1", 0, -1)].headings[0]) == pytest.approx(math.pi)


def test_sections_are_linked_in_driving_direction(xodr) -> None:
    """Lane links name lanes in reference-line order, whatever the lane's driving direction."""
    lanes = xodr.section(
        xodr.lane(1, link='<successor id="1"/>'), xodr.lane(-1, link='<successor id="-1"/>'), s=0.0
    ) + xodr.section(xodr.lane(1, link='<predecessor id="1"/>'), xodr.lane(-1, link='<predecessor id="-1"/>'), s=12.5)
    net = RoadNetwork.from_string(xodr.document(xodr.straight(length=30.0, lanes=lanes)))
    first, second = LaneKey("1", 0, -1), LaneKey("1", 1, -1)
    assert net.lanes[first].successors == [second] and net.lanes[second].predecessors == [first]
    assert net.lanes[first].centerline[-1] == pytest.approx(net.lanes[second].centerline[0])
    # Lane 1 runs against the reference line, so its successor is the section before.
    assert net.lanes[LaneKey("1", 1, 1)].successors == [LaneKey("1", 0, 1)]
    assert net.continuity_report() == (2, 2, [])


def test_road_links_with_contact_point_end(xodr) -> None:
    """Road 2 points back at road 1 (its reference line runs towards road 1's end)."""
    road1 = xodr.straight(
        "1",
        20.0,
        link='<successor elementType="road" elementId="2" contactPoint="end"/>',
        lanes=xodr.section(xodr.lane(1, link='<successor id="-1"/>'), xodr.lane(-1, link='<successor id="1"/>')),
    )
    road2 = xodr.road(
        "2",
        xodr.geometry("<line/>", 50.0, 0.0, math.pi, 30.0),
        30.0,
        link='<successor elementType="road" elementId="1" contactPoint="end"/>',
        lanes=xodr.section(xodr.lane(1, link='<successor id="-1"/>'), xodr.lane(-1, link='<successor id="1"/>')),
    )
    net = RoadNetwork.from_string(xodr.document(road1, road2))
    assert net.lanes[LaneKey("1", 0, -1)].successors == [LaneKey("2", 0, 1)]
    assert net.lanes[LaneKey("2", 0, -1)].successors == [LaneKey("1", 0, 1)]
    continuous, links, failures = net.continuity_report()
    assert (continuous, links, failures) == (2, 2, [])


def test_speed_limits(xodr) -> None:
    road_type = '<type s="0" type="town"><speed max="30" unit="mph"/></type>'
    lanes = xodr.section(xodr.lane(1, extra='<speed sOffset="0" max="36" unit="km/h"/>'), xodr.lane(-1))
    net = RoadNetwork.from_string(xodr.document(xodr.straight(length=10.0, lanes=lanes, extra=road_type)))
    assert net.lanes[LaneKey("1", 0, -1)].speed_limit == pytest.approx(30 * 0.44704)
    assert net.lanes[LaneKey("1", 0, 1)].speed_limit == pytest.approx(10.0)


def test_lane_types_and_driving_lanes(xodr) -> None:
    lanes = xodr.section(
        xodr.lane(2, kind="sidewalk"), xodr.lane(1), xodr.lane(-1), xodr.lane(-2, kind="shoulder", width=0.5)
    )
    net = RoadNetwork.from_string(xodr.document(xodr.straight(length=10.0, lanes=lanes)))
    assert len(net.lanes) == 4
    assert [lane.key.lane for lane in net.driving_lanes()] == [1, -1]
    sidewalk = net.lanes[LaneKey("1", 0, 2)]
    assert sidewalk.type == "sidewalk"
    # Non-driving lanes keep the reference line's order, whatever side they are on.
    assert sidewalk.headings[0] == pytest.approx(0.0) and sidewalk.centerline[0] == pytest.approx([0.0, 5.25])
    assert net.lanes[LaneKey("1", 0, -2)].headings[0] == pytest.approx(0.0)
    assert net.bounds == pytest.approx((0.0, -4.0, 10.0, 7.0))


def test_signal_position_and_heading(xodr) -> None:
    signal = '<signal id="5" s="10" t="-4" name="Stop" type="206" subtype="-1" orientation="+" hOffset="0"/>'
    signals = f"<signals>{signal}</signals>"
    road = xodr.road("3", xodr.geometry("<line/>", 1.0, 2.0, math.pi / 2, 20.0), 20.0, extra=signals)
    net = RoadNetwork.from_string(xodr.document(road))
    (signal,) = net.signals
    assert (signal.id, signal.road, signal.type, signal.name) == ("5", "3", "206", "Stop")
    assert (signal.x, signal.y, signal.yaw) == pytest.approx((5.0, 12.0, math.pi / 2))


def test_header_name_geo_reference_and_geodetic(xodr) -> None:
    net = RoadNetwork.from_string(xodr.document(xodr.straight()))
    assert net.name == "snippet" and "+lat_0=49" in net.geo_reference
    assert net.opendrive.startswith("<?xml")
    assert net.to_geodetic(0.0, 0.0, 2.0) == pytest.approx((49.0, 8.0, 2.0))
    lat, lon, _ = net.to_geodetic(1000.0, 0.0)
    assert lat == pytest.approx(49.0, abs=1e-9)
    assert lon == pytest.approx(8.0 + math.degrees(1000.0 / (6378137.0 * math.cos(math.radians(49.0)))))
    lat, _, _ = net.to_geodetic(0.0, 1000.0)  # map y is north
    assert lat > 49.0 and (lat - 49.0) * 111_000 == pytest.approx(1000.0, rel=0.02)


def test_unnamed_map_takes_the_file_stem(xodr, tmp_path) -> None:
    path = tmp_path / "Custom.xodr"
    path.write_text(xodr.document(xodr.straight()).replace('name="snippet"', 'name=""'))
    assert RoadNetwork.from_file(path).name == "Custom"
