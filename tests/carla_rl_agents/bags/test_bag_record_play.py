"""Recording and replaying over real DDS: SIGTERM keeps every received message, replay timing and /clock."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rclpy
from carla_msgs.msg import CarlaStatus, CarlaWorldInfo
from rclpy.serialization import serialize_message
from rosbags.rosbag2 import Reader
from rosgraph_msgs.msg import Clock

from carla_rl_agents.bags.player import clock_cdr, play
from carla_rl_agents.bags.recorder import SplitWriter, offered_qos
from carla_rl_common import bridge

T0 = 1_700_000_000_000_000_000
PERIOD_NS = 50_000_000  # 20 Hz


def test_sigterm_keeps_every_received_message(tmp_path, graph, wait_for):
    """The recorder as its own process: N messages acknowledged by it, then SIGTERM: all N in a readable bag."""
    out = tmp_path / "rec"
    status_pub = graph.node.create_publisher(CarlaStatus, "/carla/status", bridge.qos_default(1000))
    world_pub = graph.node.create_publisher(CarlaWorldInfo, "/carla/world_info", bridge.qos_latched())
    world_pub.publish(CarlaWorldInfo(map_name="m", opendrive="<OpenDRIVE/>"))
    proc = subprocess.Popen([sys.executable, "-m", "carla_rl_agents.bags.recorder", "--output", str(out),
                             "--topics", "carla/status", "/carla/world_info"], stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: status_pub.get_subscription_count() > 0, 30, "the recorder to subscribe")
        payloads = [serialize_message(CarlaStatus(frame=i, fixed_delta_seconds=0.05)) for i in range(300)]
        for data in payloads:
            status_pub.publish(data)  # bytes: published as they are, so the bag must hold exactly these
        assert status_pub.wait_for_all_acked(rclpy.duration.Duration(seconds=10))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    with Reader(out) as reader:
        recorded = [bytes(d) for c, _, d in reader.messages() if c.topic == "/carla/status"]
        topics = {c.topic: c for c in reader.connections}
        assert reader.topics["/carla/world_info"].msgcount == 1
    assert recorded == payloads
    assert topics["/carla/status"].msgtype == "carla_msgs/msg/CarlaStatus"
    assert topics["/carla/world_info"].ext.offered_qos_profiles[0].durability.name == "TRANSIENT_LOCAL"


def replay_bag(path: Path, n: int = 41) -> list[bytes]:
    """n statuses at 20 Hz and a latched world_info at the start; returns the status payloads."""
    payloads = [serialize_message(CarlaStatus(frame=i, fixed_delta_seconds=0.05)) for i in range(n)]
    writer = SplitWriter(path)
    world = writer.add_topic("/carla/world_info", "carla_msgs/msg/CarlaWorldInfo",
                             [offered_qos(bridge.qos_latched())])
    status = writer.add_topic("/carla/status", "carla_msgs/msg/CarlaStatus", [offered_qos(bridge.qos_default())])
    writer.write(world, T0, serialize_message(CarlaWorldInfo(map_name="m", opendrive="<OpenDRIVE/>")))
    for i, data in enumerate(payloads):
        writer.write(status, T0 + i * PERIOD_NS, data)
    writer.close()
    return payloads


def test_replay_keeps_the_recorded_timing_and_publishes_the_clock(tmp_path, graph, wait_for):
    payloads = replay_bag(tmp_path / "bag")
    graph.listen(CarlaStatus, "/carla/status", bridge.qos_default(100), raw=True)
    graph.listen(CarlaWorldInfo, "/carla/world_info", bridge.qos_latched())
    graph.listen(Clock, "/clock", bridge.qos_default(1000))
    assert play(tmp_path / "bag", rate=1.0, delay=0.5) == 0
    wait_for(lambda: len(graph.got["/carla/status"]) == len(payloads), 5, "all statuses")
    arrivals = [t for t, _ in graph.got["/carla/status"]]
    assert [m for _, m in graph.got["/carla/status"]] == payloads
    assert arrivals[-1] - arrivals[0] == pytest.approx(2.0, rel=0.05)
    assert all(abs((b - a) - 0.05) < 0.025 for a, b in zip(arrivals, arrivals[1:]))
    assert graph.got["/carla/world_info"][0][1].map_name == "m"
    clocks = [bridge.stamp_to_ns(m.clock) for _, m in graph.got["/clock"]]
    assert clocks == sorted(clocks) and clocks[0] >= T0 and clocks[-1] == T0 + 40 * PERIOD_NS
    assert len(clocks) >= 150  # 100 Hz over 2 s, plus one before each message
    assert {T0 + i * PERIOD_NS for i in range(41)} <= set(clocks)  # the clock reaches each message's time first


def test_replay_as_fast_as_possible_from_an_offset_filtered_and_remapped(tmp_path, graph, wait_for):
    payloads = replay_bag(tmp_path / "bag")
    graph.listen(CarlaStatus, "/replayed/status", bridge.qos_default(100), raw=True)
    graph.listen(CarlaWorldInfo, "/carla/world_info", bridge.qos_latched())
    graph.listen(Clock, "/clock", bridge.qos_default(100))
    start = time.monotonic()
    play(tmp_path / "bag", rate=0, start_offset=1.0, remap={"/carla/status": "/replayed/status"}, clock=False,
         delay=0.3)
    assert time.monotonic() - start < 1.5
    wait_for(lambda: len(graph.got["/replayed/status"]) == 21, 5, "the statuses after 1 s")
    assert [m for _, m in graph.got["/replayed/status"]] == payloads[20:]
    assert len(graph.got["/carla/world_info"]) == 1  # latched, recorded before the offset: published first
    assert graph.got["/clock"] == []
    graph.got["/replayed/status"].clear()
    play(tmp_path / "bag", rate=0, exclude=["/carla/status"], delay=0.3)
    time.sleep(0.3)
    assert graph.got["/replayed/status"] == [] and len(graph.got["/clock"]) == 1


def test_clock_bytes_are_a_serialized_clock():
    assert clock_cdr(T0 + 123) == serialize_message(Clock(clock=bridge.ns_to_stamp(T0 + 123)))
