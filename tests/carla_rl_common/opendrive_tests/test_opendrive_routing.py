"""Routing: connectivity on Town01, turn labels in a hand-made T junction, lane changes, errors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from carla_rl_common.opendrive import LaneKey, NoRouteError, RoadNetwork, RoadOption

RADIUS = 10.0
TURN = RADIUS * math.pi / 2


def connecting_road(
    xodr,
    road_id: str,
    shape: str,
    x: float,
    y: float,
    hdg: float,
    length: float,
    source: tuple[str, str, int],
    target: tuple[str, str, int],
) -> str:
    """A one-lane (id -1) junction road from ``source`` to ``target`` = (road, contact, lane)."""
    link = (
        f'<predecessor elementType="road" elementId="{source[0]}" contactPoint="{source[1]}"/>'
        f'<successor elementType="road" elementId="{target[0]}" contactPoint="{target[1]}"/>'
    )
    lane = xodr.lane(-1, link=f'<predecessor id="{source[2]}"/><successor id="{target[2]}"/>')
    return xodr.road(road_id, xodr.geometry(shape, x, y, hdg, length), length, xodr.section(lane), link, junction=100)


def arm(xodr, road_id: str, x: float, y: float, hdg: float, junction_end: str) -> str:
    """A straight 50 m two-way road whose ``junction_end`` (predecessor/successor) is junction 100."""
    link = f'<{junction_end} elementType="junction" elementId="100"/>'
    return xodr.road(road_id, xodr.geometry("<line/>", x, y, hdg, 50.0), 50.0, link=link)


@pytest.fixture(scope="module")
def t_junction(xodr) -> RoadNetwork:
    """West arm A (x < 0), east arm B (x > 20), south arm D (y < -10), junction 100 between.

    Two-way arms with lane -1 along and lane 1 against their reference lines, which all start
    or end at the junction; six one-lane connecting roads cover every turn but U-turns.
    """
    x = xodr
    arms = [
        arm(x, "A", -50.0, 0.0, 0.0, "successor"),
        arm(x, "B", 20.0, 0.0, 0.0, "predecessor"),
        arm(x, "D", 10.0, -10.0, -math.pi / 2, "predecessor"),
        x.road("E", x.geometry("<line/>", 200.0, 200.0, 0.0, 30.0), 30.0),  # unconnected
    ]
    right, left = f'<arc curvature="{-1 / RADIUS}"/>', f'<arc curvature="{1 / RADIUS}"/>'
    connectors = [
        connecting_road(x, "AB", "<line/>", 0.0, 0.0, 0.0, 20.0, ("A", "end", -1), ("B", "start", -1)),
        connecting_road(x, "AD", right, 0.0, 0.0, 0.0, TURN, ("A", "end", -1), ("D", "start", -1)),
        connecting_road(x, "BA", "<line/>", 20.0, 0.0, math.pi, 20.0, ("B", "start", 1), ("A", "end", 1)),
        connecting_road(x, "BD", left, 20.0, 0.0, math.pi, TURN, ("B", "start", 1), ("D", "start", -1)),
        connecting_road(x, "DA", left, 10.0, -10.0, math.pi / 2, TURN, ("D", "start", 1), ("A", "end", 1)),
        connecting_road(x, "DB", right, 10.0, -10.0, math.pi / 2, TURN, ("D", "start", 1), ("B", "start", -1)),
    ]
    connections = "".join(
        f'<connection id="{i}" incomingRoad="{road[0]}" connectingRoad="{road}" contactPoint="start">'
        f'<laneLink from="{-1 if road[0] == "A" else 1}" to="-1"/></connection>'
        for i, road in enumerate(["AB", "AD", "BA", "BD", "DA", "DB"])
    )
    junctions = f'<junction id="100" name="T">{connections}</junction>'
    return RoadNetwork.from_string(x.document(*arms, *connectors, junctions=junctions), "t_junction.xodr")


def junction_options(waypoints) -> set[RoadOption]:
    return {w.road_option for w in waypoints if w.key.road in ("AB", "AD", "BA", "BD", "DA", "DB")}


@pytest.mark.parametrize(
    "start, goal, expected, via",
    [
        ((-30.0, -1.75, 0.0), (50.0, -1.75), RoadOption.STRAIGHT, "AB"),
        ((-30.0, -1.75, 0.0), (8.25, -40.0), RoadOption.RIGHT, "AD"),  # east -> south: clockwise
        ((50.0, 1.75, math.pi), (8.25, -40.0), RoadOption.LEFT, "BD"),  # west -> south: anticlockwise
        ((11.75, -40.0, math.pi / 2), (-30.0, 1.75), RoadOption.LEFT, "DA"),  # north -> west
        ((11.75, -40.0, math.pi / 2), (50.0, -1.75), RoadOption.RIGHT, "DB"),  # north -> east
        ((50.0, 1.75, math.pi), (-30.0, 1.75), RoadOption.STRAIGHT, "BA"),
    ],
)
def test_turns_in_t_junction(t_junction: RoadNetwork, start, goal, expected: RoadOption, via: str) -> None:
    waypoints = t_junction.route(start, goal, spacing=2.0)
    assert junction_options(waypoints) == {expected}
    assert via in {w.key.road for w in waypoints}
    assert {w.road_option for w in waypoints if w.key.road in ("A", "B", "D")} == {RoadOption.LANEFOLLOW}
    assert (waypoints[0].x, waypoints[0].y) == pytest.approx(start[:2], abs=1e-6)
    assert (waypoints[-1].x, waypoints[-1].y) == pytest.approx(goal, abs=1e-6)
    steps = np.hypot(np.diff([w.x for w in waypoints]), np.diff([w.y for w in waypoints]))
    assert steps.max() <= 2.0 + 1e-6
    assert t_junction.route_length(waypoints) == pytest.approx(steps.sum())


def test_route_distance_is_the_length_of_the_route_without_its_waypoints(t_junction: RoadNetwork, shared_maps) -> None:
    pairs = [
        (t_junction, (11.75, -40.0, math.pi / 2), (-30.0, 1.75)),
        (t_junction, (50.0, 1.75, math.pi), (-30.0, 1.75)),
    ]
    town = RoadNetwork.from_file(shared_maps / "Town01.xodr")
    spawns = town.spawn_points()
    spawns = spawns[:: max(1, len(spawns) // 12)][:12]
    pairs += [(town, a[:3], b[:2]) for a in spawns[:6] for b in spawns[6:]]
    compared = 0
    for network, start, goal in pairs:
        try:
            length = network.route_length(network.route(start, goal))
        except NoRouteError:
            with pytest.raises(NoRouteError):
                network.route_distance(start, goal)
            continue
        # arc length along the lanes vs the polyline through 2 m stations: equal but for chords and lane changes
        assert network.route_distance(start, goal) == pytest.approx(length, rel=0.02, abs=1.0)
        compared += 1
    assert compared >= 10
    with pytest.raises(NoRouteError):
        t_junction.route_distance((-30.0, -1.75, 0.0), (215.0, 198.25))


def test_heading_picks_the_start_lane(t_junction: RoadNetwork) -> None:
    """On the centre line of arm B, the yaw decides: westbound lane 1 goes through the junction."""
    waypoints = t_junction.route((50.0, 0.0, math.pi), (8.25, -40.0))
    assert waypoints[0].key == LaneKey("B", 0, 1)


def test_no_route_raises(t_junction: RoadNetwork) -> None:
    with pytest.raises(NoRouteError, match="no route"):
        t_junction.route((-30.0, -1.75, 0.0), (215.0, 198.25))  # road E is not connected
    with pytest.raises(ValueError):  # dead ends and no U-turns: eastbound A cannot come back west
        t_junction.route((-30.0, -1.75, 0.0), (-40.0, 1.75))


def test_goal_behind_start_on_the_same_lane_needs_a_loop(t_junction: RoadNetwork) -> None:
    with pytest.raises(NoRouteError):
        t_junction.route((-20.0, -1.75, 0.0), (-40.0, -1.75))
    assert len(t_junction.route((-40.0, -1.75, 0.0), (-20.0, -1.75), spacing=5.0)) == 5


def test_lane_changes(xodr) -> None:
    lanes = xodr.section(xodr.lane(-1), xodr.lane(-2), xodr.lane(-3))
    net = RoadNetwork.from_string(xodr.document(xodr.straight(length=100.0, lanes=lanes)))
    right = net.route((5.0, -1.75, 0.0), (90.0, -8.75))
    options = [w.road_option for w in right]
    assert options.count(RoadOption.CHANGELANERIGHT) >= 2 and RoadOption.CHANGELANELEFT not in options
    assert [k for i, k in enumerate(w.key.lane for w in right) if i == 0 or right[i - 1].key.lane != k] == [-1, -2, -3]
    left = net.route((5.0, -8.75, 0.0), (90.0, -5.25))
    assert RoadOption.CHANGELANELEFT in [w.road_option for w in left]
    assert left[-1].key == LaneKey("1", 0, -2)


def test_random_routes_on_town01(town) -> None:
    """Town01 is strongly connected: every pair of driving lanes has a route."""
    net = town("Town01")
    lanes = net.driving_lanes()
    rng = np.random.default_rng(2024)
    for _ in range(30):
        start, goal = (lanes[i] for i in rng.choice(len(lanes), 2, replace=False))
        sx, sy, syaw = net.lane_point(start.key, start.length / 2)
        gx, gy, _ = net.lane_point(goal.key, goal.length / 2)
        waypoints = net.route((sx, sy, syaw), (gx, gy))
        assert waypoints[0].key == start.key and waypoints[-1].key == goal.key
        for before, after in itertools.pairwise(waypoints):
            lane = net.lanes[before.key]
            reachable = {before.key, *lane.successors, lane.left_neighbor, lane.right_neighbor}
            reachable |= {k for s in lane.successors for k in net.lanes[s].successors}
            assert after.key in reachable
        assert net.route_length(waypoints) >= math.hypot(gx - sx, gy - sy) - 1e-6
