"""What the viz node costs the lockstep loop: steps/s of simulator + env node driven over ROS 2 (as
``bench_loop.py``), without the viz node, with it, and with it plus a viewer (rviz's subscriptions: step
markers, the BEV image, TF) in another process. Cases run interleaved, ``--repeats`` times; medians.

    .venv/bin/python benchmarks/bench_viz_markers.py --steps 1000 --repeats 3 --traffic 10
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from carla_rl_bringup.bench_loop import LONG, _step_vec, machine
from carla_rl_bringup.launcher import NodeSpec, ProcessGroup
from carla_rl_common.dds import ros_environment

CASES = ("without", "viz_node", "viz_node+viewer")


def viewer(seconds: float) -> None:
    """A stand-in for rviz: subscribes to what config/carla_rl.rviz shows of the viz node, counts messages."""
    import rclpy
    from sensor_msgs.msg import Image
    from tf2_msgs.msg import TFMessage
    from visualization_msgs.msg import MarkerArray

    from carla_rl_common import bridge
    from carla_rl_viz import markers
    from carla_rl_viz.markers_node import tf_qos

    rclpy.init()
    node = rclpy.create_node("bench_viewer")
    counts = {"markers": 0, "bev": 0, "tf": 0}
    for key, kind, topic, qos in (
        ("markers", MarkerArray, markers.STEP_MARKERS_TOPIC, bridge.qos_default()),
        ("bev", Image, markers.BEV_IMAGE_TOPIC, bridge.qos_default()),
        ("tf", TFMessage, markers.TF_TOPIC, tf_qos()),
    ):
        node.create_subscription(kind, "/" + topic, lambda m, k=key: counts.__setitem__(k, counts[k] + 1), qos)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
    finally:  # SIGTERM ends it (see main)
        print(json.dumps(counts), flush=True)


def run(case: str, steps: int, traffic: int, tmp: Path, actions: np.ndarray) -> tuple[float, dict]:
    from carla_rl_agents.vec_env import RosVecEnv

    config = tmp / "env.yaml"
    config.write_text(yaml.safe_dump(LONG))
    env_vars = ros_environment(domain_id=int(os.environ.get("BENCH_DOMAIN_ID", 91)))
    os.environ.update(env_vars)
    seen: dict = {}
    with ProcessGroup(env_vars, log=open(os.devnull, "w")) as group:
        group.start(
            NodeSpec(
                "sim",
                "carla_rl_sim.node",
                "",
                {"traffic": traffic, "seed": 0, "synchronous_mode_wait_for_vehicle_control_command": True},
            )
        )
        group.start(NodeSpec("env", "carla_rl_env.node", "", {"config": [str(config)], "use_sim_time": True}))
        view = None
        if case != "without":
            group.start(NodeSpec("viz", "carla_rl_viz.markers_node", "", {"use_sim_time": True}))
        if case == "viz_node+viewer":
            view = subprocess.Popen(
                [sys.executable, __file__, "--viewer", "600"], env=env_vars, stdout=subprocess.PIPE, text=True
            )
        env = RosVecEnv([""], timeout=60)
        if case != "without":  # the node is up and drew the map (its start-up is not the loop's cost)
            deadline = time.monotonic() + 30
            while env.node.count_subscribers("/carla_rl/step") < 2 and time.monotonic() < deadline:
                env.executor.spin_once(timeout_sec=0.1)  # this process's subscription and the viz node's
            time.sleep(3.0)
        _, elapsed = _step_vec(env, steps, actions)
        env.close()
        if view is not None:
            view.terminate()
            out, _ = view.communicate(timeout=10)
            lines = [line for line in out.splitlines() if line.startswith("{")]  # DDS may log on stdout too
            seen = json.loads(lines[-1]) if lines else {}
    return steps / elapsed, seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--traffic", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--viewer", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.viewer:
        import signal

        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        try:
            viewer(args.viewer)
        except KeyboardInterrupt:
            pass
        return 0
    rng = np.random.default_rng(0)
    actions = np.stack([rng.uniform(-0.3, 0.3, 1000), rng.uniform(0.0, 0.6, 1000)], axis=1).astype(np.float32)
    rates: dict[str, list[float]] = {c: [] for c in CASES}
    viewer_counts = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for case in CASES:
                rate, seen = run(case, args.steps, args.traffic, Path(tmp), actions)
                rates[case].append(rate)
                if seen:
                    viewer_counts.append(seen)
    result = {
        "machine": machine(),
        "steps": args.steps,
        "repeats": args.repeats,
        "traffic": args.traffic,
        **{f"{c}_steps_per_s": statistics.median(r) for c, r in rates.items()},
        "runs": rates,
        "viewer_received": viewer_counts,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for c in CASES:
            print(
                f"{c:<20}{statistics.median(rates[c]):>10.1f} steps/s  (runs: "
                f"{', '.join(f'{r:.1f}' for r in rates[c])})"
            )
        print(f"viewer received: {viewer_counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
