"""Recording and replaying over real DDS: SIGTERM keeps every received message, replay timing and /clock."""

from __future__ import annotations

import itertools
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from carla_msgs.msg import CarlaStatus, CarlaWorldInfo
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import serialize_message
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image

from carla_rl_bags import BagError
from carla_rl_bags.player import clock_cdr, play
from carla_rl_bags.reader import open_bag
from carla_rl_bags.recorder import SplitWriter, offered_qos, record
from carla_rl_common import bridge
from carla_rl_common.bridge import BridgeTopics

T0 = 1_700_000_000_000_000_000
PERIOD_NS = 50_000_000  # 20 Hz
WORLD, STATUS_TOPIC, CLOCK = (f"/{t}" for t in (BridgeTopics().world_info, BridgeTopics().status, BridgeTopics().clock))


def test_sigterm_keeps_every_received_message(tmp_path, graph, wait_for):
    """The recorder as its own process: N messages acknowledged by it, then SIGTERM: all N in a readable bag."""
    out = tmp_path / "rec"
    status_pub = graph.node.create_publisher(CarlaStatus, STATUS_TOPIC, bridge.qos_default(1000))
    world_pub = graph.node.create_publisher(CarlaWorldInfo, WORLD, bridge.qos_latched())
    world_pub.publish(CarlaWorldInfo(map_name="m", opendrive="<OpenDRIVE/>"))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "carla_rl_bags.recorder",
            "--output",
            str(out),
            "--topics",
            BridgeTopics().status,
            WORLD,
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
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
        recorded = [bytes(d) for c, _, d in reader.messages() if c.topic == STATUS_TOPIC]
        topics = {c.topic: c for c in reader.connections}
        assert reader.topics[WORLD].msgcount == 1
    assert recorded == payloads
    assert topics[STATUS_TOPIC].msgtype == "carla_msgs/msg/CarlaStatus"
    assert topics[WORLD].ext.offered_qos_profiles[0].durability.name == "TRANSIENT_LOCAL"


def test_ready_waits_for_a_publisher_of_the_wait_for_topics(tmp_path, graph, wait_for):
    """``--wait-for``: "recorder ready" (what a stack's main node waits for) only once DDS matched a publisher."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "carla_rl_bags.recorder",
            "--output",
            str(tmp_path / "rec"),
            "--topics",
            BridgeTopics().status,
            "--wait-for",
            BridgeTopics().status,
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        wait_for(lambda: any("recording to" in line for line in lines), 30, "the recorder to start")
        time.sleep(1.5)
        assert not any("recorder ready" in line for line in lines)  # nobody publishes the status yet
        status_pub = graph.node.create_publisher(CarlaStatus, STATUS_TOPIC, bridge.qos_default())
        wait_for(lambda: any("recorder ready" in line for line in lines), 30, "recorder ready")
        assert status_pub.get_subscription_count() == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_frames_missing_from_the_status_stream_are_reported(tmp_path, graph, wait_for):
    """/carla/status numbers every frame: a gap (a recorder that fell behind the publishers' history of 10
    loses whole frames) is logged while recording and counted when the bag closes."""
    out = tmp_path / "rec"
    status_pub = graph.node.create_publisher(CarlaStatus, STATUS_TOPIC, bridge.qos_default(1000))
    proc = subprocess.Popen(
        [sys.executable, "-m", "carla_rl_bags.recorder", "--output", str(out), "--topics", BridgeTopics().status],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: status_pub.get_subscription_count() > 0, 30, "the recorder to subscribe")
        for frame in [*range(1, 40), *range(45, 60)]:
            status_pub.publish(CarlaStatus(frame=frame, fixed_delta_seconds=0.05))
        assert status_pub.wait_for_all_acked(rclpy.duration.Duration(seconds=10))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        log = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "frames 40..44 are missing" in log and "5 frame(s) missing" in log, log


def replay_bag(path: Path, n: int = 41, period_ns: int = PERIOD_NS) -> list[bytes]:
    """n statuses ``period_ns`` apart (20 Hz) and a latched world_info at the start; returns the payloads."""
    payloads = [serialize_message(CarlaStatus(frame=i, fixed_delta_seconds=0.05)) for i in range(n)]
    writer = SplitWriter(path)
    world = writer.add_topic(WORLD, "carla_msgs/msg/CarlaWorldInfo", [offered_qos(bridge.qos_latched())])
    status = writer.add_topic(STATUS_TOPIC, "carla_msgs/msg/CarlaStatus", [offered_qos(bridge.qos_default())])
    writer.write(world, T0, serialize_message(CarlaWorldInfo(map_name="m", opendrive="<OpenDRIVE/>")))
    for i, data in enumerate(payloads):
        writer.write(status, T0 + i * period_ns, data)
    writer.close()
    return payloads


def test_replay_keeps_the_recorded_timing_and_publishes_the_clock(tmp_path, graph, wait_for):
    payloads = replay_bag(tmp_path / "bag")
    graph.listen(CarlaStatus, STATUS_TOPIC, bridge.qos_default(100), raw=True)
    graph.listen(CarlaWorldInfo, WORLD, bridge.qos_latched())
    graph.listen(Clock, CLOCK, bridge.qos_default(1000))
    assert play(tmp_path / "bag", rate=1.0, delay=0.5) == 0
    wait_for(lambda: len(graph.got[STATUS_TOPIC]) == len(payloads), 5, "all statuses")
    arrivals = [t for t, _ in graph.got[STATUS_TOPIC]]
    assert [m for _, m in graph.got[STATUS_TOPIC]] == payloads
    assert arrivals[-1] - arrivals[0] == pytest.approx(2.0, rel=0.05)
    assert statistics.median(b - a for a, b in itertools.pairwise(arrivals)) == pytest.approx(0.05, rel=0.05)
    assert graph.got[WORLD][0][1].map_name == "m"
    clocks = [bridge.stamp_to_ns(m.clock) for _, m in graph.got[CLOCK]]
    assert clocks == sorted(clocks) and clocks[0] >= T0 and clocks[-1] == T0 + 40 * PERIOD_NS
    assert len(clocks) >= 150  # 100 Hz over 2 s, plus one before each message
    assert {T0 + i * PERIOD_NS for i in range(41)} <= set(clocks)  # the clock reaches each message's time first


def test_replay_as_fast_as_possible_from_an_offset_filtered_and_remapped(tmp_path, graph, wait_for):
    # a status a second: at the recorded pace the 20 s after the offset would take 20 s, as fast as possible
    # well under that however loaded the machine (a bound in seconds of a 1 s recording was load-sensitive)
    payloads = replay_bag(tmp_path / "bag", period_ns=10**9)
    graph.listen(CarlaStatus, "/replayed/status", bridge.qos_default(100), raw=True)
    graph.listen(CarlaWorldInfo, WORLD, bridge.qos_latched())
    graph.listen(Clock, CLOCK, bridge.qos_default(100))
    start = time.monotonic()
    play(tmp_path / "bag", rate=0, start_offset=20.0, remap={STATUS_TOPIC: "/replayed/status"}, clock=False, delay=0.3)
    assert time.monotonic() - start < 10.0
    wait_for(lambda: len(graph.got["/replayed/status"]) == 21, 5, "the statuses after 1 s")
    assert [m for _, m in graph.got["/replayed/status"]] == payloads[20:]
    assert len(graph.got[WORLD]) == 1  # latched, recorded before the offset: published first
    assert graph.got[CLOCK] == []
    graph.got["/replayed/status"].clear()
    replay_bag(tmp_path / "bag_20hz")
    play(tmp_path / "bag_20hz", rate=0, exclude=[STATUS_TOPIC], delay=0.3)
    wait_for(lambda: graph.got[CLOCK], 5, "the replay's clock")
    time.sleep(0.3)
    assert graph.got["/replayed/status"] == [] and len(graph.got[CLOCK]) == 1


def test_clock_bytes_are_a_serialized_clock():
    assert clock_cdr(T0 + 123) == serialize_message(Clock(clock=bridge.ns_to_stamp(T0 + 123)))


def test_loop_replays_until_stopped(tmp_path, graph, wait_for):
    replay_bag(tmp_path / "bag")
    graph.listen(CarlaStatus, STATUS_TOPIC, bridge.qos_default(1000), raw=True)
    stop = threading.Event()
    thread = threading.Thread(
        target=play, args=(tmp_path / "bag",), kwargs={"rate": 0, "loop": True, "stop": stop, "delay": 0.3}
    )
    thread.start()
    try:
        wait_for(lambda: len(graph.got[STATUS_TOPIC]) > 3 * 41, 10, "three passes over the bag")
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_replay_refuses_a_type_it_cannot_publish_by_name(tmp_path):
    with Writer(tmp_path / "odd", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/odd", "nope_msgs/msg/Odd", msgdef="int32 value\n", rihs01="RIHS01_" + "0" * 64)
        writer.write(conn, T0, b"\x00\x01\x00\x00\x2a\x00\x00\x00")
    with pytest.raises(BagError, match="/odd.*nope_msgs/msg/Odd.*exclude"):
        play(tmp_path / "odd", delay=0)
    assert play(tmp_path / "odd", exclude=["/odd"], delay=0) == 0


def test_a_killed_recorder_leaves_a_bag_rosbags_opens_and_repair_completes(tmp_path, graph, wait_for):
    """SIGKILL: before, no metadata.yaml and an MCAP without footer (rosbags refused the bag). Now metadata.yaml
    lists what is on disk and the file ends in a footer after every chunk: rosbags reads every flushed message
    bit for bit; `bag info` says the summary is missing (exit 1); `bag repair` adds it and info is clean."""
    out, topic = tmp_path / "rec", "/" + BridgeTopics().image("rgb_front")
    pub = graph.node.create_publisher(Image, topic, bridge.qos_default(1000))
    proc = subprocess.Popen(
        [sys.executable, "-m", "carla_rl_bags.recorder", "--output", str(out), "--topics", topic],
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: pub.get_subscription_count() > 0, 30, "the recorder to subscribe")
        payloads = []
        for i in range(40):  # 4 MB: rosbags has written 3 chunks of ~1 MiB by the end
            image = bridge.numpy_to_image(np.full((100, 250, 4), i, np.uint8), "bgra8")
            payloads.append(serialize_message(image))
            pub.publish(payloads[-1])
        assert pub.wait_for_all_acked(rclpy.duration.Duration(seconds=10))
        time.sleep(0.5)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    with Reader(out) as reader:  # rosbags, as it is
        got = [bytes(d) for _, _, d in reader.messages()]
        assert reader.message_count == len(got)
    assert 10 <= len(got) < 40 and got == payloads[: len(got)]
    with open_bag(out) as bag:
        assert any("no summary" in p for p in bag.problems), bag.problems
        assert [m.data for m in bag.messages()] == got
    cli = [sys.executable, "-m", "carla_rl_bringup.cli", "bag"]
    info = subprocess.run([*cli, "info", str(out)], capture_output=True, text=True, timeout=60)
    assert info.returncode == 1 and "no summary" in info.stdout, info.stdout + info.stderr
    repair = subprocess.run([*cli, "repair", str(out)], capture_output=True, text=True, timeout=60)
    assert repair.returncode == 0, repair.stderr
    assert sorted(p.name for p in out.iterdir()) == ["metadata.yaml", "rec_0.mcap"]
    with Reader(out) as reader:
        assert [bytes(d) for _, _, d in reader.messages()] == got
        assert reader.connections[0].msgcount == len(got)
    info = subprocess.run([*cli, "info", str(out)], capture_output=True, text=True, timeout=60)
    assert info.returncode == 0 and "Problem" not in info.stdout, info.stdout


def test_contract_subscriptions_adapt_to_the_offered_qos(tmp_path, graph, wait_for):
    """world_info published volatile and status best effort (not the contract's QoS) are still recorded."""
    volatile = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
    best_effort = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
    world_pub = graph.node.create_publisher(CarlaWorldInfo, WORLD, volatile)
    status_pub = graph.node.create_publisher(CarlaStatus, STATUS_TOPIC, best_effort)
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(target=record, args=(tmp_path / "rec",), kwargs={"stop": stop, "ready": ready})
    thread.start()
    try:
        ready.wait(30)
        wait_for(
            lambda: world_pub.get_subscription_count() > 0 and status_pub.get_subscription_count() > 0,
            10,
            "the recorder to re-subscribe with compatible QoS",
        )
        time.sleep(0.3)
        world_pub.publish(CarlaWorldInfo(map_name="m"))
        status_pub.publish(CarlaStatus(frame=7))
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(timeout=30)
    with Reader(tmp_path / "rec") as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        qos = {c.topic: c.ext.offered_qos_profiles[0] for c in reader.connections}
    assert counts[WORLD] == 1 and counts[STATUS_TOPIC] == 1
    assert qos[WORLD].durability.name == "VOLATILE" and qos[STATUS_TOPIC].reliability.name == "BEST_EFFORT"
