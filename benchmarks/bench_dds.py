"""The messaging floor under the lockstep loop: rclpy + Fast DDS between two Python processes on this machine.

    python benchmarks/bench_dds.py [--count 1500] [--json]

1. The cost of one ``publish()`` of each per-tick message of the loop to a subscriber in another process
   (status, clock, markers, odometry, vehicle status from the simulator; the Step from the env node).
2. A ``Float32`` ping-pong round trip to an echo process, the echo and the sender waiting through rclpy's
   executor (``spin_once``) or through :class:`carla_rl_common.direct.DirectSubscriptions`.
3. What one wait on a wait set costs when nothing arrives, and what a ``take_message`` costs when nothing is there.

The peer process is this script with ``--peer``. Transport settings come from the environment
(e.g. ``FASTDDS_BUILTIN_TRANSPORTS=SHM``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import rclpy
from carla_msgs.msg import CarlaEgoVehicleStatus, CarlaStatus
from carla_rl_msgs.msg import Step
from nav_msgs.msg import Odometry
from rclpy.executors import SingleThreadedExecutor
from rosgraph_msgs.msg import Clock
from std_msgs.msg import Float32
from visualization_msgs.msg import Marker, MarkerArray

from carla_rl_common import bridge
from carla_rl_common.dds import apply_to_this_process
from carla_rl_common.direct import DirectSubscriptions


def step_msg() -> Step:
    msg = Step(
        env_id="env_0",
        episode=1,
        step=3,
        frame=5,
        measurement_names=[f"m{i}" for i in range(27)],
        measurements=[0.5] * 27,
        goal=[1.0, 2.0],
        reward_term_names=[f"t{i}" for i in range(8)],
        reward_terms=[0.1] * 8,
    )
    return msg


MESSAGES = {
    "status": (CarlaStatus, CarlaStatus),
    "clock": (Clock, Clock),
    "markers": (MarkerArray, lambda: MarkerArray(markers=[Marker(id=1, type=Marker.CUBE)])),
    "odometry": (Odometry, Odometry),
    "vehicle_status": (CarlaEgoVehicleStatus, CarlaEgoVehicleStatus),
    "step": (Step, step_msg),
}


def peer(seconds: float) -> None:
    """Subscribe to every message of MESSAGES (taken, dropped) and echo ``ping`` on ``pong``."""
    node = rclpy.create_node("bench_dds_peer")
    qos = bridge.qos_default()
    direct = DirectSubscriptions(node.context)
    for name, (msg_type, _) in MESSAGES.items():
        direct.create_subscription(node, msg_type, f"/bench_dds/{name}", lambda m: None, qos)
    pong = node.create_publisher(Float32, "/bench_dds/pong", qos)
    direct.create_subscription(node, Float32, "/bench_dds/ping", pong.publish, qos)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and rclpy.ok():
        direct.spin_once(0.1)


def percentiles(samples_s: list[float]) -> dict:
    us = np.asarray(samples_s[len(samples_s) // 10 :]) * 1e6  # the first tenth is warm-up
    return {
        "p50_us": float(np.percentile(us, 50)),
        "p90_us": float(np.percentile(us, 90)),
        "p99_us": float(np.percentile(us, 99)),
    }


def measure(count: int) -> dict:
    node = rclpy.create_node("bench_dds")
    qos = bridge.qos_default()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    pubs = {
        name: node.create_publisher(msg_type, f"/bench_dds/{name}", qos) for name, (msg_type, _) in MESSAGES.items()
    }
    ping = node.create_publisher(Float32, "/bench_dds/ping", qos)
    got: list[float] = []
    direct = DirectSubscriptions(node.context)
    direct.create_subscription(node, Float32, "/bench_dds/pong", lambda m: got.append(time.perf_counter()), qos)
    deadline = time.monotonic() + 30
    while any(p.get_subscription_count() < 1 for p in [*pubs.values(), ping]) and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.1)
    time.sleep(1.0)
    result: dict = {"publish": {}, "round_trip": {}}
    for name, (_, make) in MESSAGES.items():
        msg, samples = make(), []
        for _ in range(count):
            start = time.perf_counter()
            pubs[name].publish(msg)
            samples.append(time.perf_counter() - start)
            time.sleep(0.0005)  # the peer takes each one, as in the loop
        result["publish"][name] = percentiles(samples)
    for how in ("executor", "direct"):
        samples = []
        for i in range(count):
            before, start = len(got), time.perf_counter()
            ping.publish(Float32(data=float(i)))
            while len(got) == before:
                if how == "executor":
                    executor.spin_once(timeout_sec=1.0)
                else:
                    direct.spin_once(1.0)
            samples.append(got[-1] - start)
        result["round_trip"][how] = percentiles(samples)
    silent = DirectSubscriptions(node.context)
    sub = silent.create_subscription(node, Float32, "/bench_dds/silent", lambda m: None, qos)
    waits, takes = [], []
    for _ in range(count):
        start = time.perf_counter()
        silent.spin_once(0.0)
        waits.append(time.perf_counter() - start)
        start = time.perf_counter()
        sub.handle.take_message(sub.msg_type, False)
        takes.append(time.perf_counter() - start)
    result["empty_wait"] = percentiles(waits)
    result["empty_take"] = percentiles(takes)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1500)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--peer", type=float, default=0.0, help=argparse.SUPPRESS)  # run as the peer for N s
    args = parser.parse_args()
    apply_to_this_process()
    rclpy.init()
    try:
        if args.peer:
            peer(args.peer)
            return 0
        other = subprocess.Popen([sys.executable, __file__, "--peer", str(60 + args.count * 0.02)])
        try:
            result = measure(args.count)
        finally:
            other.terminate()
            other.wait(timeout=10)
    finally:
        rclpy.try_shutdown()
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{'what':<34}{'p50 us':>10}{'p90 us':>10}{'p99 us':>10}")
    rows = [(f"publish {k}", v) for k, v in result["publish"].items()]
    rows += [(f"round trip via {k}", v) for k, v in result["round_trip"].items()]
    rows += [
        ("wait on a wait set, nothing there", result["empty_wait"]),
        ("take_message, nothing there", result["empty_take"]),
    ]
    for what, v in rows:
        print(f"{what:<34}{v['p50_us']:>10.1f}{v['p90_us']:>10.1f}{v['p99_us']:>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
