"""Frame assembly by stamp: completion, duplicates, out-of-order, late events, timeouts."""
from __future__ import annotations

from carla_rl_env.frames import FrameAssembler


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
    (stamp, _, _, events), = a.add("status_msg", 100, "s")
    assert events == {"collision": ["c1"]}
    assert a.add("collision", 100, "late") == []  # its frame is closed
    assert a.anomalies["late"] == 1
    a.add_status(2)
    a.add("odom", 200, "o")
    (_, _, _, events), = a.add("status_msg", 200, "s")
    assert events == {"collision": ["late"]}


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
