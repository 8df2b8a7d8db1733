"""How fast the bag recorder takes a frame's messages, and what it loses when the loop outruns it.

    python benchmarks/bench_recorder.py [--frames 1500] [--rates 100 200 400 0] [--json]

A recorder process (``python -m carla_rl_bags.recorder``) records the per-frame bridge messages this
process publishes as the CARLA bridge does (status, odometry, vehicle status, an 84x84 image; reliable, depth 10):
``--frames`` frames at each rate of ``--rates`` frames/s (0: as fast as publish() goes). A recorder slower than
the publisher falls more than the publishers' 10 messages behind and DDS drops what it has not yet taken:
the frames lost are counted from the bag (statuses number the frames), and the recorder's CPU time per frame
comes from /proc.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rclpy
from carla_msgs.msg import CarlaEgoVehicleStatus, CarlaStatus
from nav_msgs.msg import Odometry
from rclpy.duration import Duration
from sensor_msgs.msg import Image

from carla_rl_bags.reader import open_bag
from carla_rl_common import bridge
from carla_rl_common.bridge import BridgeTopics
from carla_rl_common.dds import apply_to_this_process

T = BridgeTopics()
TOPICS = [T.status, T.odometry, T.vehicle_status, T.image("rgb_front")]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, clock ticks of 1/100 s


def run_rate(node, pubs, frames: int, rate: float, out: Path) -> dict:
    proc = subprocess.Popen(
        [sys.executable, "-m", "carla_rl_bags.recorder", "--output", str(out), "--topics", *TOPICS],
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while any(p.get_subscription_count() == 0 for p in pubs.values()):
            if time.monotonic() > deadline:
                raise RuntimeError("the recorder did not subscribe within 30 s")
            time.sleep(0.05)
        time.sleep(0.5)
        image = bridge.numpy_to_image(np.zeros((84, 84, 4), np.uint8), "bgra8")
        cpu0, start = cpu_seconds(proc.pid), time.perf_counter()
        for frame in range(1, frames + 1):
            stamp = bridge.ns_to_stamp(frame * 50_000_000)
            pubs["status"].publish(CarlaStatus(frame=frame, fixed_delta_seconds=0.05, synchronous_mode=True))
            odometry, vehicle_status = Odometry(), CarlaEgoVehicleStatus()
            odometry.header.stamp = vehicle_status.header.stamp = stamp
            pubs["odometry"].publish(odometry)
            pubs["vehicle_status"].publish(vehicle_status)
            image.header.stamp = stamp
            pubs["image"].publish(image)
            if rate:
                time.sleep(max(0.0, start + frame / rate - time.perf_counter()))
        published_s = time.perf_counter() - start
        for pub in pubs.values():
            pub.wait_for_all_acked(Duration(seconds=10))
        time.sleep(0.5)
        cpu = cpu_seconds(proc.pid) - cpu0
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with open_bag(out) as bag:
        recorded = sum(1 for m in bag.messages() if m.topic == "/" + T.status)
    return {
        "rate": rate or round(frames / published_s),
        "frames": frames,
        "lost_frames": frames - recorded,
        "recorder_cpu_ms_per_frame": round(1000 * cpu / frames, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=1500)
    parser.add_argument("--rates", type=float, nargs="+", default=[100, 200, 400, 0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    apply_to_this_process()
    rclpy.init()
    node = rclpy.create_node("bench_recorder")
    qos = bridge.qos_default()  # the bridge's: reliable, depth 10
    pubs = {
        "status": node.create_publisher(CarlaStatus, T.status, qos),
        "odometry": node.create_publisher(Odometry, T.odometry, qos),
        "vehicle_status": node.create_publisher(CarlaEgoVehicleStatus, T.vehicle_status, qos),
        "image": node.create_publisher(Image, T.image("rgb_front"), qos),
    }
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-recorder-") as tmp:
        for i, rate in enumerate(args.rates):
            results.append(run_rate(node, pubs, args.frames, rate, Path(tmp) / f"bag{i}"))
            if not args.json:
                r = results[-1]
                print(
                    f"{r['rate']:>6.0f} frames/s: {r['lost_frames']:>5} of {r['frames']} frames lost, recorder "
                    f"{r['recorder_cpu_ms_per_frame']} ms CPU a frame (4 messages)"
                )
    node.destroy_node()
    rclpy.shutdown()
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
