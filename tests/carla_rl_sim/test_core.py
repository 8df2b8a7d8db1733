"""The simulator core (no ROS): sensors' events, control sanitising, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from carla_rl_common.bridge import (
    LANE_MARKING_BROKEN,
    LANE_MARKING_CURB,
    LANE_MARKING_NONE,
    LANE_MARKING_OTHER,
    LANE_MARKING_SOLID,
    LANE_MARKING_SOLID_SOLID,
    LANE_MARKING_TYPES,
    Control,
)
from carla_rl_common.objects import parse_objects
from carla_rl_common.opendrive import RoadNetwork
from carla_rl_common.towns import town_path
from carla_rl_sim.core import Simulator, SimulatorError, marking_code

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


def run(sim: Simulator, control: Control, ticks: int) -> None:
    for _ in range(ticks):
        sim.apply_control("ego_vehicle", control)
        sim.tick()


# CARLA: DefaultMovementComponent.cpp (ProcessControl) and CarlaWheeledVehicle.cpp (FlushVehicleControl);
# ros-bridge carla_ros_bridge/src/carla_ros_bridge/ego_vehicle.py copies actor.get_control() into
# vehicle_status.control: the gearbox's gear, reverse = gear < 0, the other fields as applied.
def test_applied_control_reports_the_gearbox_gear(network):
    sim = make(network)
    ego = sim.egos["ego_vehicle"]
    sim.tick()
    assert (ego.applied_control.gear, ego.applied_control.reverse) == (0, False)  # at rest, no throttle
    command = Control(throttle=0.6, steer=0.05, brake=0.0, hand_brake=False, gear=0)
    run(sim, command, 60)
    applied = ego.applied_control
    assert applied.gear >= 2 and not applied.reverse and applied.gear != command.gear
    assert (applied.throttle, applied.steer, applied.brake, applied.hand_brake) == (0.6, 0.05, 0.0, False)
    run(sim, Control(brake=1.0, gear=3), 100)  # a gear without manual_gear_shift is not obeyed
    assert ego.applied_control.gear == 0 and ego.speed == 0.0
    run(sim, Control(throttle=0.4, reverse=True), 20)
    assert (ego.applied_control.gear, ego.applied_control.reverse) == (-1, True)


# ros-bridge carla_ros_bridge/src/carla_ros_bridge/speedometer_sensor.py: the velocity projected on the
# heading (negative backing up); ego_vehicle.py: vehicle_status.velocity is the absolute speed.
def test_forward_speed_is_signed_and_speed_is_not(network):
    sim = make(network)
    ego = sim.egos["ego_vehicle"]
    run(sim, Control(throttle=0.4, reverse=True), 40)
    assert ego.forward_speed < -1.0 and ego.speed == pytest.approx(-ego.forward_speed, rel=0.01)
    run(sim, Control(throttle=0.4), 200)
    assert ego.forward_speed > 1.0


# ros-bridge carla_common/src/carla_common/transforms.py (carla_acceleration_to_ros_accel): the world
# acceleration, converted to the map frame, as vehicle_status.acceleration.linear carries it.
def test_acceleration_map_is_the_change_of_the_map_velocity(network):
    sim = make(network)
    ego = sim.egos["ego_vehicle"]
    run(sim, Control(throttle=0.5, steer=0.4), 80)
    before = ego.state.velocity_map
    run(sim, Control(throttle=0.5, steer=0.4), 1)
    after = ego.state.velocity_map
    ax, ay, az = ego.acceleration_map
    assert (ax, ay) == pytest.approx(((after[0] - before[0]) / sim.dt, (after[1] - before[1]) / sim.dt))
    assert az == 0.0 and math.hypot(ax, ay) > 1.0


ROAD_MARKS = """<?xml version="1.0" encoding="UTF-8"?>
<OpenDRIVE><header revMajor="1" revMinor="4" name="marks"/>
<road id="1" length="300.0" junction="-1"><link/>
<planView><geometry s="0" x="0" y="0" hdg="0" length="300.0"><line/></geometry></planView>
<lanes><laneSection s="0">
<left><lane id="1" type="driving"><link/><width sOffset="0" a="3.5" b="0" c="0" d="0"/>
<roadMark sOffset="0" type="grass" color="white"/></lane></left>
<center><lane id="0" type="none"><roadMark sOffset="0" type="solid solid" color="yellow"/></lane></center>
<right><lane id="-1" type="driving"><link/><width sOffset="0" a="3.5" b="0" c="0" d="0"/>
<roadMark sOffset="0" type="curb" color="white"/></lane>
<lane id="-2" type="sidewalk"><link/><width sOffset="0" a="2.0" b="0" c="0" d="0"/>
<roadMark sOffset="0" type="none" color="white"/></lane></right>
</laneSection></lanes></road></OpenDRIVE>
"""


# ros-bridge carla_ros_bridge/src/carla_ros_bridge/lane_invasion_sensor.py forwards carla.LaneMarkingType
# values; CARLA reads them from the .xodr roadMark types (LibCarla/source/carla/road/element/LaneMarking.cpp).
def test_lane_invasions_carry_carla_marking_types_from_the_road_marks():
    network = RoadNetwork.from_string(ROAD_MARKS, "marks")
    for turn, code in ((math.radians(8), LANE_MARKING_SOLID_SOLID), (math.radians(-8), LANE_MARKING_CURB)):
        sim = make(network)
        sim.set_transform("ego_vehicle", 20.0, -1.75, turn)  # the middle of lane -1, driving +x
        events = []
        for _ in range(200):
            sim.apply_control("ego_vehicle", Control(throttle=0.3))
            sim.tick()
            events += sim.egos["ego_vehicle"].lane_invasions
            if events:
                break
        assert events == [[code]]


def test_marking_codes_follow_carla_lane_marking_type():
    assert [marking_code(t) for t in ("solid solid", "Botts Dots", "grass", "curb", "none", "broken broken")] == [
        3,
        7,
        8,
        9,
        LANE_MARKING_NONE,
        6,
    ]
    assert marking_code("custom") == marking_code("edge") == LANE_MARKING_OTHER
    assert sorted(LANE_MARKING_TYPES.values()) == list(range(11))


# CARLA's actor.set_transform keeps the physics velocity and honours z (ros-bridge actor_control.py on_pose);
# set_target_velocity sets the velocity (actor_control.py on_twist).
def test_set_transform_keeps_the_velocity_and_honours_z_and_set_target_velocity_stops(network):
    sim = make(network)
    ego = sim.egos["ego_vehicle"]
    lane = lane_with_left_mark(network, "broken")
    x, y = lane.centerline[int(np.searchsorted(lane.s, 10.0))]
    yaw = float(lane.headings[int(np.searchsorted(lane.s, 10.0))])
    sim.set_transform("ego_vehicle", float(x), float(y), yaw, z=2.5)
    run(sim, Control(throttle=0.6), 60)
    speed = ego.speed
    assert speed > 5.0
    sim.set_transform("ego_vehicle", float(x), float(y), yaw)  # z None keeps the height
    run(sim, Control(), 1)
    assert ego.speed == pytest.approx(speed, rel=0.05) and ego.pose[2] == 2.5
    sim.set_transform("ego_vehicle", float(x), float(y), yaw, z=0.5)
    sim.set_target_velocity("ego_vehicle", 0.0, 0.0, yaw_rate=0.0)
    run(sim, Control(brake=1.0), 1)
    assert ego.speed == 0.0 and ego.pose[2] == 0.5
    assert math.hypot(ego.state.x - x, ego.state.y - y) < 1e-9
    c, s = math.cos(yaw), math.sin(yaw)
    sim.set_target_velocity("ego_vehicle", 3.0 * c, 3.0 * s)
    run(sim, Control(), 1)
    assert 2.5 < ego.forward_speed <= 3.0


# ros-bridge carla_ros_bridge/src/carla_ros_bridge/collision_sensor.py copies CARLA's normal_impulse as is:
# CARLA's left-handed frame, so its y is the map frame's -y.
def test_collision_impulse_is_in_carla_frame(network):
    sim = make(network)
    lane = lane_with_left_mark(network, "solid")
    i = int(np.searchsorted(lane.s, 10.0))
    x, y = lane.centerline[i]
    yaw = float(lane.headings[i]) - math.radians(60)
    sim.set_transform("ego_vehicle", float(x), float(y), yaw)
    collisions = []
    for _ in range(100):
        sim.apply_control("ego_vehicle", Control(throttle=0.5))
        sim.tick()
        collisions += sim.egos["ego_vehicle"].collisions
        if collisions:
            break
    (_, (ix, iy, _)), heading = collisions[0], sim.egos["ego_vehicle"].state.yaw
    # against the heading in the map frame: (-cos, -sin) * |impulse|, with y flipped for CARLA
    assert (ix, -iy) == pytest.approx(
        (-math.hypot(ix, iy) * math.cos(heading), -math.hypot(ix, iy) * math.sin(heading))
    )


# ros-bridge: the bridge spawns CARLA blueprints only (carla_ros_bridge/src/carla_ros_bridge/bridge.py
# spawn_object -> blueprint library find); there is no vehicle.carla_rl.*.
def test_traffic_uses_real_carla_blueprints(network):
    sim = make(network, traffic=5, seed=3)
    assert all(b.startswith(("vehicle.", "sensor.")) and "carla_rl" not in b for b in sim.blueprints())
    assert sim.blueprints() == sorted(sim.blueprints())
    assert {v.type_id for v in sim.traffic.vehicles()} <= set(sim.blueprints())
    actor = sim.spawn("vehicle.audi.a2", "npc", None, {})
    assert next(a.type for a in sim.actors() if a.id == actor) == "vehicle.audi.a2"
    with pytest.raises(SimulatorError, match="blueprint 'vehicle.carla_rl.traffic' not found"):
        sim.spawn("vehicle.carla_rl.traffic", "npc", None, {})
