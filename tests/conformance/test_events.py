"""Collision and lane-invasion events as the real bridge publishes them."""

from __future__ import annotations

import math

import pytest
from carla_msgs.msg import CarlaCollisionEvent, CarlaLaneInvasionEvent
from conformance_support import objects, spawn_point, vehicle, yaw_of

from carla_rl_common import bridge

pytestmark = pytest.mark.slow

# carla.LaneMarkingType (CARLA's LibCarla/source/carla/road/element/LaneMarking.h), from the OpenDRIVE roadMark
# types as CARLA reads them (LaneMarking.cpp)
CARLA_MARKING_TYPES = {
    "other": 0,
    "broken": 1,
    "solid": 2,
    "solid solid": 3,
    "solid broken": 4,
    "broken solid": 5,
    "broken broken": 6,
    "botts dots": 7,
    "grass": 8,
    "curb": 9,
    "none": 10,
}
# the sensors under ids of our own: the topics and frames follow them
SENSORS = [{"type": "sensor.other.collision", "id": "crash"}, {"type": "sensor.other.lane_invasion", "id": "lines"}]


def test_lane_markings_are_carla_lane_marking_types(start_sim, probe, network):
    """ros-bridge lane_invasion_sensor.py copies each crossed marking's ``carla.LaneMarkingType`` (0..10, CARLA's
    LaneMarking.h), not only carla_msgs' OTHER/BROKEN/SOLID: crossing to the left lane reports its marking."""
    x, y, yaw, key = spawn_point(network)
    start_sim(objects(vehicle(sensors=SENSORS, spawn=(x, y, yaw))))
    probe.wait_for_sim()
    events = probe.subscribe(CarlaLaneInvasionEvent, "/carla/ego_vehicle/lines")
    for _ in range(100):  # CARLA's steer < 0 turns left
        probe.step(throttle=0.5, steer=-0.15)
        if events:
            break
    probe.spin(0.1)
    assert events, "no lane invasion while changing to the left lane"
    expected = CARLA_MARKING_TYPES.get(network.lanes[key].left_mark.type.lower(), 0)
    assert list(events[0].crossed_lane_markings) == [expected]
    assert all(0 <= code <= 10 for e in events for code in e.crossed_lane_markings)


def test_event_frame_ids_are_role_slash_sensor_id(start_sim, probe, network):
    """ros-bridge collision_sensor.py and lane_invasion_sensor.py stamp their events with the sensor's own frame
    (pseudo_actor.py get_prefix: ``<role>/<sensor id>``) and publish on ``/carla/<role>/<sensor id>``."""
    x, y, yaw, _ = spawn_point(network)
    start_sim(objects(vehicle(sensors=SENSORS, spawn=(x, y, yaw))))
    probe.wait_for_sim()
    crashes = probe.subscribe(CarlaCollisionEvent, "/carla/ego_vehicle/crash")
    lines = probe.subscribe(CarlaLaneInvasionEvent, "/carla/ego_vehicle/lines")
    for _ in range(200):  # hard right, off the road: markings, then the kerb
        probe.step(throttle=0.6, steer=1.0)
        if crashes and lines:
            break
    probe.spin(0.1)
    assert crashes and lines, "no collision or lane invasion driving off the road"
    assert {e.header.frame_id for e in crashes} == {"ego_vehicle/crash"}
    assert {e.header.frame_id for e in lines} == {"ego_vehicle/lines"}
    assert "/carla/ego_vehicle/collision" not in probe.publishers_of_sim()  # named by the objects file only


def test_collision_normal_impulse_is_carlas_vector(start_sim, probe, network):
    """ros-bridge collision_sensor.py copies CARLA's ``normal_impulse`` x, y, z as they are: CARLA's left-handed
    world frame, where the map's y is -y (carla_common/transforms.py converts other vectors, not this one).
    Driving along the map's y into the kerb, the impulse opposes the motion in CARLA's frame."""
    x, y, yaw, _ = spawn_point(network)
    start_sim(objects(vehicle(sensors=SENSORS, spawn=(x, y, yaw))))
    probe.wait_for_sim()
    crashes = probe.subscribe(CarlaCollisionEvent, "/carla/ego_vehicle/crash")
    status = None
    for _ in range(200):
        status = probe.step(throttle=0.6, steer=0.3)
        if crashes:
            break
    probe.spin(0.1)
    assert crashes, "no collision driving off the road"
    crash = next(c for c in crashes if c.header.stamp == status.header.stamp)
    heading = yaw_of(status)
    assert abs(math.sin(heading)) > 0.3, "heading along the map's x: this crash cannot tell the frames apart"
    impulse = crash.normal_impulse
    carla_heading = (math.cos(heading), -math.sin(heading))  # the heading in CARLA's frame (y flipped)
    along = impulse.x * carla_heading[0] + impulse.y * carla_heading[1]
    assert along < 0 and abs(along) > 0.5 * math.hypot(impulse.x, impulse.y)
    assert bridge.stamp_to_ns(crash.header.stamp) == bridge.stamp_to_ns(status.header.stamp)
