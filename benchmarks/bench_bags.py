"""Speed of the bag tools: writing, reading back, recording over DDS, replaying.

    .venv/bin/python benchmarks/bench_bags.py [--quick]

Cases (targets from the issue in the last column):

* write: the recorder's writer path alone (SplitWriter.write of serialized messages, MCAP, plain and zstd):
  84x84 camera step messages (a ``carla_rl_msgs/Step`` with an 84x84 bgr8 observation) and 800x600 bgra8
  ``sensor_msgs/Image`` messages.
* record over DDS: the recorder node (in this process) receiving from a publisher process; the publisher
  sends bursts of 100 reliable messages and waits for them to be acknowledged, so nothing is dropped and
  the figure is the sustained end-to-end rate.
* read: every message of the written bags back through ``open_bag`` (rosbags underneath).
* replay: ``play(rate=0)`` of a 20 Hz camera + state bag (clock, status, vehicle status, odometry, 84x84
  bgra8 camera image and camera info, step, command: 8 topics), as real-time factor.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

SMALL, LARGE = "84x84 step", "800x600 bgra8 image"


def payloads() -> dict[str, bytes]:
    """One serialized message of each benchmark kind."""
    from carla_rl_msgs.msg import Step
    from rclpy.serialization import serialize_message

    from carla_rl_common import bridge

    rng = np.random.default_rng(0)
    step = Step(
        env_id="env_0",
        episode=1,
        step=1,
        frame=1,
        measurement_names=["m"] * 19,
        measurements=[0.5] * 19,
        goal=[1.0, 2.0],
        image_names=["rgb_front"],
        reward=0.1,
    )
    step.images.append(bridge.numpy_to_image(rng.integers(0, 255, (84, 84, 3), np.uint8), "bgr8"))
    image = bridge.numpy_to_image(rng.integers(0, 255, (600, 800, 4), np.uint8), "bgra8")
    return {SMALL: serialize_message(step), LARGE: serialize_message(image)}


TYPES = {SMALL: "carla_rl_msgs/msg/Step", LARGE: "sensor_msgs/msg/Image"}


def bench_write(tmp: Path, kind: str, data: bytes, n: int, compression: str) -> tuple[float, Path]:
    from carla_rl_bags.recorder import SplitWriter

    path = tmp / f"write_{kind.split()[0]}_{compression or 'plain'}"
    writer = SplitWriter(path, compression=compression)
    handle = writer.add_topic("/bench", TYPES[kind], [])
    start = time.perf_counter()
    for i in range(n):
        writer.write(handle, 1_700_000_000_000_000_000 + i * 1000, data)
    writer.close()
    return n / (time.perf_counter() - start), path


def bench_read(path: Path) -> float:
    from carla_rl_bags.reader import open_bag

    start = time.perf_counter()
    with open_bag(path) as bag:
        count = sum(1 for _ in bag.messages())
    return count / (time.perf_counter() - start)


def publisher(kind: str, n: int) -> int:
    """Child process: publish n messages of ``kind`` in acknowledged bursts once the recorder listens."""
    import rclpy
    from rclpy.duration import Duration

    from carla_rl_bags.typestore import message_class
    from carla_rl_common.bridge import qos_default

    rclpy.init()
    node = rclpy.create_node("bench_publisher")
    pub = node.create_publisher(message_class(TYPES[kind]), "/bench", qos_default(1000))
    data = payloads()[kind]
    while pub.get_subscription_count() == 0:
        time.sleep(0.01)
    time.sleep(0.5)
    for i in range(n):
        pub.publish(data)
        if i % 100 == 99:
            pub.wait_for_all_acked(Duration(seconds=30))
    pub.wait_for_all_acked(Duration(seconds=30))
    time.sleep(0.5)
    rclpy.shutdown()
    return 0


def bench_record(tmp: Path, kind: str, n: int) -> tuple[float, int]:
    """Messages/s the recorder wrote, receive to receive; and how many of n it got."""
    from carla_rl_bags.reader import open_bag
    from carla_rl_bags.recorder import record

    path = tmp / f"record_{kind.split()[0]}"
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(target=record, args=(path, ["/bench"]), kwargs={"stop": stop, "ready": ready})
    thread.start()
    ready.wait()
    subprocess.run([sys.executable, __file__, "--publish", kind, str(n)], check=True, timeout=600)
    stop.set()
    thread.join()
    with open_bag(path) as bag:
        stamps = [m.timestamp for m in bag.messages()]
    return (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1e9), len(stamps)


def replay_bag(path: Path, seconds: float) -> float:
    """A 20 Hz bag of the topics a camera drive records; returns its duration."""
    from carla_msgs.msg import CarlaEgoVehicleControl, CarlaEgoVehicleStatus, CarlaStatus
    from nav_msgs.msg import Odometry
    from rclpy.serialization import serialize_message
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CameraInfo

    from carla_rl_bags.recorder import SplitWriter, offered_qos
    from carla_rl_common import bridge
    from carla_rl_common.bridge import BridgeTopics

    image = bridge.numpy_to_image(np.zeros((84, 84, 4), np.uint8), "bgra8")
    t = BridgeTopics()
    frame = {
        t.clock: (Clock(), "rosgraph_msgs/msg/Clock"),
        t.status: (CarlaStatus(), "carla_msgs/msg/CarlaStatus"),
        t.vehicle_status: (CarlaEgoVehicleStatus(), "carla_msgs/msg/CarlaEgoVehicleStatus"),
        t.odometry: (Odometry(), "nav_msgs/msg/Odometry"),
        t.image("rgb_front"): (image, "sensor_msgs/msg/Image"),
        t.camera_info("rgb_front"): (CameraInfo(), "sensor_msgs/msg/CameraInfo"),
        t.vehicle_control_cmd: (CarlaEgoVehicleControl(), "carla_msgs/msg/CarlaEgoVehicleControl"),
        t.step: (None, TYPES[SMALL]),
    }
    data = {
        f"/{topic}": serialize_message(msg) if msg is not None else payloads()[SMALL]
        for topic, (msg, _) in frame.items()
    }
    types = {f"/{topic}": msgtype for topic, (_, msgtype) in frame.items()}
    writer = SplitWriter(path)
    qos = [offered_qos(bridge.qos_default())]
    handles = {topic: writer.add_topic(topic, types[topic], qos) for topic in data}
    t0, frames = 1_700_000_000_000_000_000, int(seconds * 20)
    for i in range(frames):
        for j, (topic, payload) in enumerate(data.items()):
            writer.write(handles[topic], t0 + i * 50_000_000 + j * 100_000, payload)
    writer.close()
    return (frames - 1) * 0.05 + 0.0007


def bench_replay(tmp: Path, seconds: float) -> float:
    """Real-time factor of play(rate=0) (the recorded /clock is replaced by the generated one)."""
    from carla_rl_bags.player import play

    path = tmp / "replay"
    duration = replay_bag(path, seconds)
    start = time.perf_counter()
    play(path, rate=0, delay=0.0)
    return duration / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages (a smoke run)")
    parser.add_argument("--publish", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish:
        return publisher(args.publish[0], int(args.publish[1]))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    scale = 0.2 if args.quick else 1.0
    counts = {SMALL: int(10000 * scale), LARGE: int(500 * scale)}
    targets = {SMALL: 2000, LARGE: 100}
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-bags-"))
    try:
        data = payloads()
        for kind in (SMALL, LARGE):
            size = len(data[kind])
            for compression in ("", "zstd"):
                rate, path = bench_write(tmp, kind, data[kind], counts[kind], compression)
                label = f"{kind}, mcap{' zstd' if compression else ''}"
                rows.append((f"write {label}", rate, rate * size / 1e6, f">= {targets[kind]:,}"))
                read = bench_read(path)
                rows.append((f"read {label}", read, read * size / 1e6, f">= {5 * targets[kind]:,}"))
            rate, got = bench_record(tmp, kind, counts[kind] // 2)
            rows.append(
                (
                    f"record over DDS {kind} ({got}/{counts[kind] // 2} kept)",
                    rate,
                    rate * size / 1e6,
                    f">= {targets[kind]:,}",
                )
            )
        factor = bench_replay(tmp, 60.0 * scale)
        rows.append(
            (f"replay rate 0, {60 * scale:.0f} s of a 20 Hz 8-topic camera bag: x real time", factor, None, ">= 20")
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'case':<66}{'msgs/s':>12}{'MB/s':>10}  target (msgs/s)")
    for name, rate, mbps, target in rows:
        print(f"{name:<66}{rate:>12,.0f}{'-' if mbps is None else f'{mbps:.1f}':>10}  {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
