"""Frame assembly by stamp: completion, duplicates, out-of-order, late events, timeouts; the other vehicles
from the bridge's markers and their velocities."""

from __future__ import annotations

import numpy as np
from visualization_msgs.msg import Marker, MarkerArray

from carla_rl_common import bridge, codec
from carla_rl_env.frames import FrameAssembler, VehicleTracker


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
    a.add("odom", 100, "o")  # status_msg of frame 100 never arrives
    a.add_status(2)
    a.add("odom", 200, "o")
    done = a.add("status_msg", 200, "s")
    assert [(s, f) for s, f, _, _ in done] == [(200, 2)]
    assert a.anomalies["incomplete_dropped"] == 1


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
