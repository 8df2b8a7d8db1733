"""Traffic: spawning, IDM car following, lane successors, junction conflicts, traffic lights, determinism."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from synthetic_lanes import any_overlap, crossroads, ring_road, straight_road

from carla_rl_common.opendrive.types import LaneKey
from carla_rl_sim.traffic import GREEN, RED, YELLOW, Obstacle, TrafficLightController, TrafficManager

DT = 0.05
EAST = LaneKey("r", 0, -1)


def bumper_gap(rear: tuple, front: tuple) -> float:
    """Gap between the rear bumper of ``rear`` (x, ..., length) and the front one of ``front`` on a +x road."""
    return (rear[0] - rear[3] / 2) - (front[0] + front[3] / 2)


def test_spawn_places_vehicles_without_overlap_and_away_from_avoid_discs():
    tm = TrafficManager(ring_road(radius=100.0), np.random.default_rng(0))
    ids = tm.spawn(30, avoid=[(100.0, 0.0, 15.0)])
    assert len(ids) == 30 == len(set(ids)) == len(tm)
    boxes = tm.boxes()
    assert boxes.shape == (30, 6)
    assert not any_overlap(boxes)
    assert np.all(np.hypot(boxes[:, 0] - 100.0, boxes[:, 1]) > 15.0 + boxes[:, 3] / 2)
    assert np.all(np.hypot(boxes[:, 0], boxes[:, 1]) == pytest.approx(100.0, abs=0.2))  # on the lane


def test_spawn_stops_when_the_road_is_full():
    tm = TrafficManager(ring_road(radius=30.0), np.random.default_rng(1))
    ids = tm.spawn(200)
    assert 5 < len(ids) < 200
    assert not any_overlap(tm.boxes())


def test_follower_stops_behind_stopped_ego_and_leader_without_collision():
    tm = TrafficManager(straight_road(300.0), np.random.default_rng(0))
    leader = tm.add(EAST, 60.0, speed=8.0)
    follower = tm.add(EAST, 30.0, speed=8.0)
    ego = Obstacle(x=150.0, y=-1.75, yaw=0.0, length=4.7, width=1.9, speed=0.0)
    for _ in range(600):
        tm.step(DT, [ego])
        assert not any_overlap(np.vstack([tm.boxes()[:, :5], [tuple(ego)[:5]]]))
    boxes = {v.id: (v.x, v.y, v.yaw, v.length) for v in tm.vehicles()}
    assert np.all(tm.speed == 0.0)
    assert 0.5 < bumper_gap(tuple(ego)[:3] + (ego.length,), boxes[leader]) < 5.0
    assert 0.5 < bumper_gap(boxes[leader], boxes[follower]) < 5.0


def test_vehicles_stop_before_a_dead_end_and_queue():
    tm = TrafficManager(straight_road(120.0), np.random.default_rng(0))
    tm.add(EAST, 80.0, speed=8.0)
    tm.add(EAST, 50.0, speed=8.0)
    for _ in range(600):
        tm.step(DT)
    x = np.sort(tm.boxes()[:, 0])
    assert np.all(tm.speed == 0.0)
    assert 113.0 < x[1] + 2.4 < 120.0  # the first waits just before the lane end
    assert 4.7 + 0.5 < x[1] - x[0] < 4.7 + 5.0


def test_vehicles_continue_into_successor_lanes_smoothly():
    lanes = ring_road(radius=50.0, pieces=4)
    tm = TrafficManager(lanes, np.random.default_rng(0))
    tm.add(LaneKey("ring0", 0, -1), 5.0, speed=5.0)
    visited, previous = set(), tm.boxes()[0, :2]
    for _ in range(1400):
        tm.step(DT)
        vehicle = tm.vehicles()[0]
        visited.add(tm.table.keys[tm.lane[0]].road)
        step_length = math.hypot(vehicle.x - previous[0], vehicle.y - previous[1])
        assert step_length <= vehicle.speed * DT + 0.1  # no jumps at lane changes
        previous = (vehicle.x, vehicle.y)
    assert visited == {"ring0", "ring1", "ring2", "ring3"}
    assert tm.speed[0] > 5.0


def test_crossing_vehicles_take_turns_in_the_junction():
    tm = TrafficManager(crossroads(), np.random.default_rng(0))
    west = tm.add(LaneKey("in_w", 0, -1), 60.0, speed=8.0)  # both 30 m before the junction
    south = tm.add(LaneKey("in_s", 0, -1), 60.0, speed=8.0)
    for _ in range(500):
        tm.step(DT)
        assert not any_overlap(tm.boxes())
    roads = {v.id: tm.table.keys[lane].road for v, lane in zip(tm.vehicles(), tm.lane)}
    assert roads == {west: "out_w", south: "out_s"}  # both got through


@pytest.mark.parametrize("with_lights", [False, True])
def test_busy_crossroads_never_overlap(with_lights):
    lanes = crossroads(arm=80.0)
    lights = TrafficLightController(lanes, np.random.default_rng(5), green=6.0, yellow=2.0) if with_lights else None
    tm = TrafficManager(lanes, np.random.default_rng(5), lights=lights)
    tm.spawn(16)
    passed = set()
    for _ in range(800):
        tm.step(DT)  # also advances the lights
        assert not any_overlap(tm.boxes())
        passed.update(int(i) for i, lane in zip(tm.ids, tm.lane) if tm.table.keys[lane].road.startswith("out"))
    assert len(passed) >= 8


def test_traffic_lights_cycle_one_approach_at_a_time():
    lights = TrafficLightController(crossroads(), np.random.default_rng(0), green=10.0, yellow=3.0)
    assert len(lights) == 4
    seen = set()
    for _ in range(1100):
        lights.step(DT)
        states = lights.states()
        assert [i for i, _, _ in states] == lights.ids
        codes = [s for _, s, _ in states]
        assert sum(c != RED for c in codes) == 1
        seen.update(codes)
        assert all(len(pose) == 3 for _, _, pose in states)
    assert seen == {RED, YELLOW, GREEN}


def test_vehicle_waits_at_red_and_goes_at_green():
    lanes = crossroads()
    lights = TrafficLightController(lanes, np.random.default_rng(0), green=10.0, yellow=3.0)
    tm = TrafficManager(lanes, np.random.default_rng(0), lights=lights)
    approach = LaneKey("in_w", 0, -1)
    light = lights.lane_light[approach]
    while lights.state[light] != GREEN:  # start right after the approach's green ends
        lights.step(DT)
    while lights.state[light] != RED:
        lights.step(DT)
    tm.add(approach, 40.0, speed=8.0)
    stopped_at = None
    for _ in range(1200):
        was_on_approach = tm.lane[0] == tm.table.index[approach]
        tm.step(DT)
        if tm.speed[0] == 0.0 and stopped_at is None:
            stopped_at = tm.boxes()[0, 0]
        if was_on_approach and tm.lane[0] != tm.table.index[approach]:
            assert lights.state[light] != RED  # entered the junction on green (or yellow; lights step first)
            break
    else:
        pytest.fail("the vehicle never entered the junction")
    assert stopped_at is not None and -10.0 - 2.4 - 6.0 < stopped_at < -10.0 - 2.4


def test_same_seed_gives_the_same_traffic():
    def run() -> np.ndarray:
        lanes = crossroads()
        lights = TrafficLightController(lanes, np.random.default_rng(7))
        tm = TrafficManager(lanes, np.random.default_rng(7), lights=lights)
        tm.spawn(12)
        for _ in range(200):
            tm.step(DT, [Obstacle(-1.75, 30.0, -math.pi / 2, 4.7, 1.9, 0.0)])
        return np.column_stack([tm.ids, tm.boxes(), tm.speed])

    np.testing.assert_array_equal(run(), run())


def test_despawn_and_clear():
    tm = TrafficManager(ring_road(), np.random.default_rng(0))
    ids = tm.spawn(5)
    assert tm.despawn(ids[2]) and not tm.despawn(ids[2])
    assert [v.id for v in tm.vehicles()] == ids[:2] + ids[3:]
    tm.step(DT)
    assert len(tm.spawn(1)) == 1 and tm.ids[-1] > max(ids)  # ids are never reused
    tm.clear()
    assert len(tm) == 0 and tm.boxes().shape == (0, 6)
    tm.step(DT)


def test_traffic_step_speed(capsys):
    tm = TrafficManager(ring_road(radius=150.0, pieces=8), np.random.default_rng(1))
    tm.spawn(20)
    ego = [Obstacle(150.0, 0.0, math.pi / 2, 4.7, 1.9, 5.0)]
    for _ in range(50):
        tm.step(DT, ego)
    n = 1000
    start = time.perf_counter()
    for _ in range(n):
        tm.step(DT, ego)
    with capsys.disabled():
        print(f"\n[traffic] {(time.perf_counter() - start) / n * 1e6:.0f} us per step, {len(tm)} vehicles")


# ros-bridge carla_ros_bridge/src/carla_ros_bridge/bridge.py spawns from CARLA's blueprint library: traffic
# vehicles carry real CARLA vehicle ids, and a requested blueprint is the one spawned.
def test_spawn_uses_real_carla_blueprints_and_honours_a_requested_one():
    tm = TrafficManager(ring_road(radius=100.0), np.random.default_rng(0))
    tm.spawn(10)
    assert all(t.startswith("vehicle.") and "carla_rl" not in t for t in tm.type_ids)
    assert set(tm.type_ids) <= set(tm.blueprint_ids())
    (one,) = tm.spawn(1, blueprint="vehicle.audi.a2")
    assert next(v.type_id for v in tm.vehicles() if v.id == one) == "vehicle.audi.a2"
    with pytest.raises(KeyError, match="vehicle.carla_rl.traffic"):
        tm.spawn(1, blueprint="vehicle.carla_rl.traffic")
