"""The simulator core (no ROS): sensors' events, control sanitising, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from carla_rl_common.bridge import LANE_MARKING_BROKEN, LANE_MARKING_SOLID, Control
from carla_rl_common.objects import parse_objects
from carla_rl_common.opendrive import RoadNetwork
from carla_rl_common.towns import town_path
from carla_rl_sim.core import Simulator, SimulatorError

EGO = {"objects": [{"type": "vehicle.tesla.model3", "id": "ego_vehicle", "sensors": []}]}


@pytest.fixture(scope="module")
def network():
    return RoadNetwork.from_file(town_path("RLTown01"))


def make(network, traffic=0, seed=0) -> Simulator:
    return Simulator(network, parse_objects(EGO), 0.05, traffic, seed)


def lane_with_left_mark(network, mark: str):
    return next(
        lane
        for lane in network.driving_lanes()
        if lane.junction < 0 and lane.left_mark.type == mark and lane.left_neighbor is not None and lane.length > 60
    )


def drift_left(sim: Simulator, network, lane, max_ticks=200):
    """Start 10 m into ``lane`` heading 8 degrees to its left; collect lane invasion events."""
    i = int(np.searchsorted(lane.s, 10.0))
    x, y = lane.centerline[i]
    sim.set_transform("ego_vehicle", float(x), float(y), float(lane.headings[i]) + math.radians(8))
    events = []
    for _ in range(max_ticks):
        sim.apply_control("ego_vehicle", Control(throttle=0.3))
        sim.tick()
        events += sim.egos["ego_vehicle"].lane_invasions
        if events:
            break
    return events


def test_crossing_a_broken_then_a_solid_marking(network):
    sim = make(network)
    assert drift_left(sim, network, lane_with_left_mark(network, "broken")) == [[LANE_MARKING_BROKEN]]
    assert drift_left(sim, network, lane_with_left_mark(network, "solid")) == [[LANE_MARKING_SOLID]]


def test_driving_off_the_road_is_a_contact_with_a_static_object(network):
    sim = make(network)
    lane = lane_with_left_mark(network, "solid")
    i = int(np.searchsorted(lane.s, 10.0))
    x, y = lane.centerline[i]
    sim.set_transform("ego_vehicle", float(x), float(y), float(lane.headings[i]) - math.radians(60))  # to the kerb
    collisions = []
    for _ in range(100):
        sim.apply_control("ego_vehicle", Control(throttle=0.5))
        sim.tick()
        collisions += sim.egos["ego_vehicle"].collisions
        if collisions:
            break
    assert [other for other, _ in collisions] == [0]
    assert sim.egos["ego_vehicle"].speed == 0.0  # the contact stopped the car
    _, impulse = collisions[0]
    assert math.hypot(*impulse) > 0


def test_rear_ending_a_traffic_vehicle(network):
    sim = make(network)
    lane = lane_with_left_mark(network, "broken")
    other = sim.traffic.add(lane.key, 40.0)  # starts at rest 35 m ahead; the ego at full throttle catches it
    i = int(np.searchsorted(lane.s, 5.0))
    x, y = lane.centerline[i]
    sim.set_transform("ego_vehicle", float(x), float(y), float(lane.headings[i]))
    hits = []
    for _ in range(400):
        sim.apply_control("ego_vehicle", Control(throttle=1.0))
        sim.tick()
        hits += [o for o, _ in sim.egos["ego_vehicle"].collisions]
        if hits:
            break
    assert hits == [other]


def test_nan_and_out_of_range_controls_are_clamped_and_reported(network):
    sim = make(network)
    problems = sim.apply_control("ego_vehicle", Control(throttle=float("nan"), steer=3.0, brake=-1.0))
    assert len(problems) == 3 and any("steer" in p for p in problems)
    for _ in range(20):
        sim.tick()
    s = sim.egos["ego_vehicle"].state
    assert all(math.isfinite(v) for v in (s.x, s.y, s.yaw, s.vx, s.vy, s.yaw_rate))
    applied = sim.egos["ego_vehicle"].applied_control
    assert (applied.throttle, applied.steer, applied.brake) == (0.0, 1.0, 0.0)


def test_same_seed_same_world(network):
    runs = []
    for _ in range(2):
        sim = make(network, traffic=10, seed=7)
        for k in range(100):
            sim.apply_control("ego_vehicle", Control(throttle=0.4, steer=0.1 * math.sin(k / 10)))
            sim.tick()
        s = sim.egos["ego_vehicle"].state
        runs.append((s.x, s.y, s.yaw, sim.traffic.boxes().tobytes()))
    assert runs[0] == runs[1]


def test_unknown_ego_and_bad_spawn_are_clear_errors(network):
    sim = make(network)
    with pytest.raises(SimulatorError, match="no ego vehicle 'hero'"):
        sim.apply_control("hero", Control())
    with pytest.raises(SimulatorError, match="cannot spawn 'walker.pedestrian.0001'"):
        sim.spawn("walker.pedestrian.0001", "w", None, {})
