"""Lockstep loop speed: simulator, env and agent as three processes over ROS 2, against the same simulator
and task code stepped in-process (``carla-rl bench`` runs it; ``benchmarks/bench_loop.py`` too).

The agent side runs here (a gymnasium RosEnv with a fixed random action sequence); the simulator and env
nodes are separate processes started with the same launcher ``carla-rl drive`` uses. Episodes are made
long (no terminations) so resets do not dominate. Prints a table (or one JSON object with ``--json``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from carla_rl_agents.launcher import NodeSpec, ProcessGroup
from carla_rl_common.dds import ros_environment
from carla_rl_env.settings import load_env_config

LONG = {"env": {"episode": {"max_episode_steps": 100000, "terminate_on_collision": False,
                            "terminate_on_off_road": False, "max_route_deviation": 1.0e6,
                            "wrong_way_angle_deg": 181.0, "stuck_seconds": 1.0e6, "min_average_speed": 0.001}}}


def objects_file(tmp: Path, camera: int) -> Path:
    sensors = []
    if camera:
        sensors.append({"type": "sensor.camera.rgb", "id": "rgb_front",
                        "spawn_point": {"x": 2.0, "y": 0.0, "z": 2.0, "roll": 0.0, "pitch": 0.0, "yaw": 0.0},
                        "image_size_x": camera, "image_size_y": camera if camera <= 84 else camera * 3 // 4,
                        "fov": 90.0})
    path = tmp / "objects.json"
    path.write_text(json.dumps({"objects": [{"type": "vehicle.tesla.model3", "id": "ego_vehicle",
                                             "sensors": sensors}]}))
    return path


def env_config(camera: int) -> dict:
    overrides = dict(LONG)
    if camera:
        h = camera if camera <= 84 else camera * 3 // 4
        overrides = {"env": {**LONG["env"], "observation": {"cameras": [
            {"id": "rgb_front", "width": min(camera, 84), "height": min(h, 84)}]}}}
    return load_env_config([], overrides)


def run_ros(steps: int, camera: int, tmp: Path, actions: np.ndarray) -> tuple[float, np.ndarray]:
    from carla_rl_env.gym_env import RosEnv

    config_path = tmp / "env.yaml"
    config_path.write_text(yaml.safe_dump(env_config(camera)))
    env_vars = ros_environment(domain_id=int(os.environ.get("BENCH_DOMAIN_ID", 90)))
    os.environ.update(env_vars)
    with ProcessGroup(env_vars, log=open(os.devnull, "w")) as group:
        group.start(NodeSpec("sim", "carla_rl_sim.node", "", {
            "objects_file": str(objects_file(tmp, camera)),
            "synchronous_mode_wait_for_vehicle_control_command": True}))
        group.start(NodeSpec("env", "carla_rl_env.node", "", {"config": [str(config_path)], "use_sim_time": True}))
        env = RosEnv(timeout=60)
        env.reset(seed=0)
        for a in actions[:20]:  # warm-up
            env.step(a)
        latency = np.empty(steps)
        resets = 0.0
        start = time.perf_counter()
        for i in range(steps):
            t = time.perf_counter()
            _, _, terminated, truncated, _ = env.step(actions[i % len(actions)])
            latency[i] = time.perf_counter() - t
            if terminated or truncated:  # the goal was reached: resets are not part of the figure
                t = time.perf_counter()
                env.reset()
                resets += time.perf_counter() - t
        elapsed = time.perf_counter() - start - resets
        env.close()
    return steps / elapsed, latency


def run_inprocess(steps: int, camera: int, tmp: Path, actions: np.ndarray) -> float:
    from carla_rl_env.inprocess import InProcessEnv
    from carla_rl_sim.core import load_simulator

    sim = load_simulator("RLTown01", str(objects_file(tmp, camera)), 0.05, 0, 0)
    env = InProcessEnv(env_config(camera), sim)
    env.reset(seed=0)
    for a in actions[:20]:
        env.step(a)
    resets = 0.0
    start = time.perf_counter()
    for i in range(steps):
        _, _, terminated, truncated, _ = env.step(actions[i % len(actions)])
        if terminated or truncated:
            t = time.perf_counter()
            env.reset()
            resets += time.perf_counter() - t
    return steps / (time.perf_counter() - start - resets)


def measure(steps: int = 2000, camera: int = 0, repeats: int = 3) -> dict:
    """Median steps/s through ROS and in-process, their ratio, and per-step latency percentiles."""
    rng = np.random.default_rng(0)
    # gentle actions so the car keeps driving instead of jittering in place
    actions = np.stack([rng.uniform(-0.3, 0.3, 1000), rng.uniform(0.0, 0.6, 1000)], axis=1).astype(np.float32)
    ros, inproc, lat = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            rate, latency = run_ros(steps, camera, Path(tmp), actions)
            ros.append(rate)
            lat.append(latency)
            inproc.append(run_inprocess(steps, camera, Path(tmp), actions))
    latency_ms = np.concatenate(lat) * 1000
    return {
        "steps": steps, "camera": camera, "repeats": repeats,
        "ros_steps_per_s": statistics.median(ros), "inprocess_steps_per_s": statistics.median(inproc),
        "ratio": statistics.median(ros) / statistics.median(inproc),
        "latency_p50_ms": float(np.percentile(latency_ms, 50)), "latency_p99_ms": float(np.percentile(latency_ms, 99)),
    }


def machine() -> dict:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--camera", type=int, default=0, help="camera width (0: measurements only)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = {"machine": machine(), **measure(args.steps, args.camera, args.repeats)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{'figure':<28}{'value':>12}")
        for key in ("ros_steps_per_s", "inprocess_steps_per_s", "ratio", "latency_p50_ms", "latency_p99_ms"):
            print(f"{key:<28}{result[key]:>12.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
