"""Frame assembly by stamp: completion, duplicates, out-of-order, late events, timeouts, frame numbers from
/carla/status around pause and step-once; the longitudinal acceleration; the other vehicles from the bridge's
markers and their velocities."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from visualization_msgs.msg import Marker, MarkerArray

from carla_rl_common import bridge, codec
from carla_rl_env.frames import ODOM, VSTATUS, FrameAssembler, VehicleTracker, frame_from_messages


def make():
    return FrameAssembler(required=["status_msg", "odom"], events=["collision"])


def test_frame_completes_with_required_parts_and_status():
    a = make()
    assert a.add("odom", 100, "o1") == []
    assert a.add("status_msg", 100, "s1") == []  # no /carla/status yet
    a.add_status(7)
    done = a.pop_complete()
    assert [(s, f, p) for s, f, p, _ in done] == [(100, 7, {"odom": "o1", "status_msg": "s1"})]


def test_events_attach_to_their_frame_and_late_ones_to_the_next():
    a = make()
    a.add_status(1)
    a.add("collision", 100, "c1")
    a.add("odom", 100, "o")
    ((_, _, _, events),) = a.add("status_msg", 100, "s")
    assert events == {"collision": ["c1"]}
    assert a.add("collision", 100, "late") == []  # its frame is closed
    assert a.anomalies["late"] == 1
    a.add_status(2)
    a.add("odom", 200, "o")
    ((_, _, _, events),) = a.add("status_msg", 200, "s")
    assert events == {"collision": ["late"]}


def test_a_frame_whose_status_never_comes_is_closed_after_the_grace_as_the_next_number():
    a = make()
    a.add_status(4)
    a.add("odom", 100, "o")
    assert a.add("status_msg", 100, "s")  # frame 4 closes normally
    a.add("odom", 150, "o", now=10.0)
    a.add("status_msg", 150, "s", now=10.0)  # its /carla/status is lost
    assert a.close_without_status(now=10.1, grace=0.2) == []  # still within the grace
    assert a.close_without_status(now=10.0, grace=0.2) == []
    a.add("odom", 200, "o", now=10.05)  # the next frame, also without status so far
    a.add("status_msg", 200, "s", now=10.05)
    done = a.close_without_status(now=10.3, grace=0.2)
    assert [(s, f) for s, f, _, _ in done] == [(150, 5), (200, 6)]
    assert a.anomalies["missing_status"] == 2
    # the lost statuses come after all: ignored, and the next frame keeps its own number
    a.add_status(5)
    a.add_status(6)
    a.add_status(7)
    a.add("odom", 250, "o")
    assert [(s, f) for s, f, _, _ in a.add("status_msg", 250, "s")] == [(250, 7)]
    assert a.anomalies["late_status"] == 2 and a.anomalies["simulator_restart"] == 0


def test_an_incomplete_frame_without_status_is_not_closed():
    a = make()
    a.add("odom", 100, "o", now=0.0)
    assert a.close_without_status(now=5.0, grace=0.2) == []
    assert a.missing(5.0, 2.0) == (100, ["status_msg"])


def test_duplicates_and_out_of_order_are_counted_not_used():
    a = make()
    a.add_status(1)
    a.add("odom", 100, "o")
    a.add("odom", 100, "o-again")
    assert a.anomalies["duplicate"] == 1
    a.add("status_msg", 100, "s")
    a.add("odom", 50, "old")
    assert a.anomalies["out_of_order"] == 1
    assert a.pending == {}


def test_incomplete_older_frame_is_dropped_when_a_newer_completes():
    a = make()
    a.add_status(1)
    a.add("odom", 100, "o")
    a.add("status_msg", 100, "s")
    a.add_status(2)
    a.add("odom", 200, "o")  # status_msg of frame 200 never arrives
    a.add_status(3)
    a.add("odom", 300, "o")
    done = a.add("status_msg", 300, "s")
    assert [(s, f) for s, f, _, _ in done] == [(300, 3)]
    assert a.anomalies["incomplete_dropped"] == 1


def test_a_partial_frame_before_the_first_complete_one_is_no_fault():
    """A node that starts while the simulator ticks joins a frame whose first messages went out before its
    subscriptions matched (every start of a stack against a running simulator): dropped, not counted."""
    a = make()
    a.add_status(1)
    a.add("odom", 100, "o")  # status_msg of frame 100 went out before the subscription matched
    a.add_status(2)
    a.add("odom", 200, "o")
    done = a.add("status_msg", 200, "s")
    assert [(s, f) for s, f, _, _ in done] == [(200, 2)]
    assert a.anomalies["incomplete_dropped"] == 0


def test_missing_reports_what_did_not_arrive():
    a = make()
    a.add("odom", 100, "o", now=10.0)
    assert a.missing(now=10.5, timeout=1.0) is None
    assert a.missing(now=11.5, timeout=1.0) == (100, ["status_msg"])


def boxes(*xy):
    return np.array([(x, y, 0.0, 4.5, 1.9, 1.5) for x, y in xy])


def test_vehicle_velocities_by_actor_id():
    t = VehicleTracker()
    dt_ns = 50_000_000  # 0.05 s
    v = t.update(1 * dt_ns, [7, 9], boxes((0.0, 0.0), (10.0, 5.0)))
    np.testing.assert_array_equal(v, np.zeros((2, 2)))  # first sight: no velocity yet
    # the rows come in another order, one vehicle is gone and a new one (id 3) appeared
    v = t.update(2 * dt_ns, [3, 9], boxes((50.0, 50.0), (10.0, 5.5)))
    np.testing.assert_allclose(v, [[0.0, 0.0], [0.0, 10.0]])
    v = t.update(3 * dt_ns, [9, 3], boxes((10.5, 6.0), (50.0, 49.0)))
    np.testing.assert_allclose(v, [[10.0, 10.0], [0.0, -20.0]])
    # the same stamp again (a repeated message): the velocities against the update before it
    v = t.update(3 * dt_ns, [9, 3], boxes((10.5, 6.0), (50.0, 49.0)))
    np.testing.assert_allclose(v, [[10.0, 10.0], [0.0, -20.0]])
    # two frames later (a lost message): the displacement over the longer interval
    v = t.update(5 * dt_ns, [9], boxes((11.5, 6.0)))
    np.testing.assert_allclose(v, [[10.0, 0.0]])
    # a jump faster than MAX_SPEED is a teleport, not a velocity
    v = t.update(6 * dt_ns, [9], boxes((111.5, 6.0)))
    np.testing.assert_array_equal(v, [[0.0, 0.0]])
    # time going back (a new simulator) starts over
    v = t.update(1 * dt_ns, [9], boxes((111.0, 6.0)))
    np.testing.assert_array_equal(v, [[0.0, 0.0]])
    assert t.update(2 * dt_ns, [], np.zeros((0, 6))).shape == (0, 2)


def test_marker_boxes_reads_the_bridge_markers():
    msg = MarkerArray()
    for actor_id, kind, action, (x, y, yaw) in [
        (1, Marker.CUBE, Marker.ADD, (1.0, 2.0, 0.0)),
        (5, Marker.CUBE, Marker.ADD, (10.0, -3.0, 1.2)),
        (6, Marker.ARROW, Marker.ADD, (0.0, 0.0, 0.0)),
        (7, Marker.CUBE, Marker.DELETE, (3.0, 3.0, 0.0)),
        (8, Marker.CUBE, Marker.ADD, (-4.0, 7.5, -2.0)),
    ]:
        m = Marker(id=actor_id, type=kind, action=action)
        m.header.stamp = bridge.sim_time_msg(12.35)
        m.pose = bridge.pose_msg(x, y, yaw, z=0.75)
        m.scale.x, m.scale.y, m.scale.z = 4.5, 1.9, 1.5
        msg.markers.append(m)
    read = codec.marker_boxes(msg, ego_id=1)  # the ego apart; the arrow and the deleted box skipped
    assert read.stamp_ns == 12_350_000_000 and read.ids.tolist() == [5, 8]
    np.testing.assert_allclose(read.boxes, [[10.0, -3.0, 1.2, 4.5, 1.9, 1.5], [-4.0, 7.5, -2.0, 4.5, 1.9, 1.5]])
    np.testing.assert_allclose(read.ego, [1.0, 2.0, 0.0, 4.5, 1.9, 1.5])
    read = codec.marker_boxes(MarkerArray(), ego_id=1)
    assert read.stamp_ns == -1 and read.ids.shape == (0,) and read.boxes.shape == (0, 6) and read.ego is None


# --- /carla/status around start-up, PAUSE, STEP_ONCE and PLAY ------------------------------------------------
# ros-bridge carla_ros_bridge/src/carla_ros_bridge/carla_status_publisher.py publishes frame 0 at start-up and a
# status (with the unchanged last frame number) whenever synchronous_mode_running changes; bridge.py
# process_run_state: PAUSE -> (f, False), STEP_ONCE -> (f, True), tick -> (f+1, True), (f+1, False); PLAY -> (f, True).
DT = 0.05
TICK_NS = 50_000_000


def tick(a: FrameAssembler, number: int, sync: bool = True) -> list:
    """The bridge's tick ``number``: its status, then its messages (stamped number * dt)."""
    a.add_status(number, DT if sync else 0.0)
    a.add("odom", number * TICK_NS, "o")
    return a.add("status_msg", number * TICK_NS, "s")


def numbers(done: list) -> list[int]:
    return [f for _, f, _, _ in done]


@pytest.mark.parametrize("sync", [True, False])
def test_repeated_status_numbers_of_pause_and_step_once_do_not_shift_the_frames(sync: bool):
    a = make()
    fixed = DT if sync else 0.0
    assert not a.add_status(0, fixed)  # the start-up status: no frame of its own
    closed = []
    for n in range(1, 4):
        closed += tick(a, n, sync)
    a.add_status(3, fixed)  # PAUSE: (3, running False)
    for _ in range(3):  # STEP_ONCE, three times: (f, True), tick f+1, (f+1, True) ... (f+1, False)
        f = numbers(closed)[-1]
        a.add_status(f, fixed)
        closed += tick(a, f + 1, sync)
        a.add_status(f + 1, fixed)
    a.add_status(numbers(closed)[-1], fixed)  # PLAY: (6, True)
    for n in range(7, 300):
        closed += tick(a, n, sync)
    assert numbers(closed) == list(range(1, 300))
    assert [s for s, _, _, _ in closed] == [n * TICK_NS for n in range(1, 300)]
    assert not a.anomalies  # nothing of this is an anomaly


def test_the_start_up_status_does_not_number_the_first_frame():
    a = make()
    a.add_status(0, DT)
    a.add("odom", 12345 * TICK_NS, "o")
    assert a.add("status_msg", 12345 * TICK_NS, "s") == []  # frame 0 is no tick: wait for this frame's status
    assert not a.add_status(12345, DT)
    assert numbers(a.pop_complete()) == [12345]


def test_synchronous_numbers_follow_the_stamps_when_a_reset_drops_a_frame_whose_status_came():
    a = make()
    assert numbers(tick(a, 1)) == [1]
    a.add_status(2, DT)
    a.add("odom", 2 * TICK_NS, "o")
    a.reset()  # the env node teleports: frame 2's partial messages are dropped, its status stays
    assert numbers(tick(a, 3)) == [3]  # not 2
    assert numbers(tick(a, 4)) == [4]


def test_synchronous_numbers_survive_a_lost_status_without_stalling_later_frames():
    a = make()
    assert numbers(tick(a, 1)) == [1]
    a.add("odom", 2 * TICK_NS, "o", now=5.0)  # frame 2's status is lost
    a.add("status_msg", 2 * TICK_NS, "s", now=5.0)
    assert numbers(a.close_without_status(now=5.3, grace=0.2)) == [2]
    a.add_status(2, DT)  # it comes after all: ignored
    assert numbers(tick(a, 3)) == [3]  # closes on its own status, no grace to wait
    assert a.anomalies["late_status"] == 1 and a.anomalies["missing_status"] == 1


def test_a_status_frame_going_back_is_a_new_simulator():
    a = make()
    tick(a, 1)
    tick(a, 2)
    assert a.add_status(0, DT)  # a restarted bridge's start-up status
    assert a.anomalies["simulator_restart"] == 1
    assert numbers(tick(a, 1)) == [1]


def test_longitudinal_acceleration_is_the_map_frame_acceleration_on_the_heading():
    # vehicle_status.acceleration.linear is CARLA's world acceleration converted to the map frame (ros-bridge
    # carla_ros_bridge/src/carla_ros_bridge/ego_vehicle.py, carla_common/transforms.py), not a body-frame one.
    yaw = math.radians(120.0)
    vstatus = SimpleNamespace(
        velocity=3.0,
        acceleration=SimpleNamespace(linear=SimpleNamespace(x=2.0 * math.cos(yaw), y=2.0 * math.sin(yaw), z=0.0)),
        control=SimpleNamespace(
            throttle=0.5, steer=0.0, brake=0.0, hand_brake=False, reverse=False, gear=2, manual_gear_shift=False
        ),
    )
    odom = SimpleNamespace(pose=SimpleNamespace(pose=bridge.pose_msg(10.0, 5.0, yaw)))
    frame = frame_from_messages(7, 1, {VSTATUS: vstatus, ODOM: odom}, {}, [], np.zeros((0, 6)))
    assert frame.acceleration == pytest.approx(2.0)
    assert frame.acceleration == codec.longitudinal_acceleration(2.0 * math.cos(yaw), 2.0 * math.sin(yaw), frame.yaw)
    assert codec.longitudinal_acceleration(0.0, 1.5, 0.0) == 0.0  # sideways: nothing along the heading
    assert codec.longitudinal_acceleration(-1.0, 0.0, 0.0) == -1.0  # braking


def test_with_vehicles_a_frame_waits_for_its_own_ticks_markers():
    """DDS orders no topic against another: the state of tick 200 may come before the markers of tick 200,
    after those of tick 100. The frame must close on its own tick's vehicles, not on the previous ones."""
    from carla_rl_env.frames import VEHICLES, frame_assembler

    a = frame_assembler([], vehicles=True)
    a.add_status(1)
    a.add(VEHICLES, 100, "cars of 100")
    a.add(ODOM, 100, "o1")
    assert [p[VEHICLES] for _, _, p, _ in a.add(VSTATUS, 100, "s1")] == ["cars of 100"]
    a.add_status(2)
    a.add(ODOM, 200, "o2")
    assert a.add(VSTATUS, 200, "s2") == []  # tick 200's markers are not in yet
    assert [p[VEHICLES] for _, _, p, _ in a.add(VEHICLES, 200, "cars of 200")] == ["cars of 200"]
    assert VEHICLES not in frame_assembler([]).required
