"""The embedded simulator on its own: ``carla-rl sim`` (the bridge's node), ``map`` (its OpenDRIVE maps) and
``bench`` (its speed, and the lockstep loop's)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import yaml

from carla_rl_common import bridge
from carla_rl_common.dds import ros_environment


def sim(args: argparse.Namespace) -> int:
    from carla_rl_common import nodes
    from carla_rl_common.config import check_range
    from carla_rl_common.towns import DEFAULT_TOWN
    from carla_rl_env.settings import SIM_BOUNDS
    from carla_rl_sim import node as sim_node

    for option, value, bound in (
        ("--fixed-delta-seconds", args.fixed_delta_seconds, SIM_BOUNDS["fixed_delta_seconds"]),
        ("--traffic", args.traffic or 0, SIM_BOUNDS["traffic"]),
        ("--seed", args.seed, SIM_BOUNDS["seed"]),
    ):
        check_range("<command line>", option, value, bound)
    os.environ.update(ros_environment(args.network, args.domain_id, join=args.join))
    params = {
        "town": args.town or DEFAULT_TOWN,
        "objects_file": args.objects,
        "traffic": args.traffic or 0,
        "seed": args.seed,
        "synchronous_mode": args.synchronous_mode,
        "synchronous_mode_wait_for_vehicle_control_command": args.synchronous_mode_wait_for_vehicle_control_command,
        "fixed_delta_seconds": args.fixed_delta_seconds,
        "ego_vehicle_role_name": args.ego_vehicle_role_name,
        "traffic_lights": args.traffic_lights,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump({"/**": {"ros__parameters": params}}, f)
    ros_args = ["carla-rl-sim", "--ros-args", "--params-file", f.name]
    if args.namespace:
        ros_args += ["-r", f"__ns:=/{args.namespace.strip('/')}", *bridge.namespace_remaps(args.namespace)[1:]]
    try:
        code = sim_node.main(ros_args)
    finally:
        os.unlink(f.name)
    if nodes.stop_signal is not None:
        print(f"carla-rl sim: stopped by {nodes.stop_signal.name}", file=sys.stderr)
    return code


def map_export(args: argparse.Namespace) -> int:
    from carla_rl_common.opendrive import RoadNetwork
    from carla_rl_common.towns import town_path

    network = RoadNetwork.from_file(town_path(args.xodr))
    text = json.dumps(network.to_geojson())
    if args.output == "-":
        sys.stdout.write(text + "\n")
    else:
        Path(args.output).write_text(text + "\n")
    return 0


def bench(args: argparse.Namespace) -> int:
    from carla_rl_bringup import bench_loop, bench_sim

    os.environ.update(ros_environment(isolate=True))  # the benchmark's own stacks, beside any other run
    os.environ.setdefault("BENCH_DOMAIN_ID", os.environ["ROS_DOMAIN_ID"])
    steps, repeats, seconds = (300, 1, 0.6) if args.quick else (2000, 3, 3.0)
    result = {
        "machine": bench_loop.machine(),
        "quick": args.quick,
        "simulator": bench_sim.measure(seconds=seconds),
        "loop": bench_loop.measure(steps, camera=0, repeats=repeats),
        "loop_84x84": bench_loop.measure(steps, camera=84, repeats=repeats),
    }
    if not args.quick:  # scaling with the number of envs (each a simulator + env node pair)
        result["scaling"] = {
            n: bench_loop.measure(steps // 2, camera=0, repeats=1, num_envs=n)["ros_steps_per_s"] for n in (1, 2, 4)
        }
    # in-process envs stepped together: ShmVecEnv workers (and SubprocVecEnv, what num_workers 0 trains on)
    envs, kinds = ((1, 2), ("shm",)) if args.quick else ((1, 2, 4), ("subproc", "shm"))
    result["inprocess_scaling"] = bench_loop.inprocess_scaling(list(envs), seconds, list(kinds))
    # N-env transitions/s / (N x one env): over ROS (scaling) when measured, and of the ShmVecEnv in-process
    efficiency = {"inprocess": result["inprocess_scaling"]["scaling_efficiency"]["shm"]}
    if "scaling" in result:
        efficiency["ros"] = {n: rate / (n * result["scaling"][1]) for n, rate in result["scaling"].items()}
    result["scaling_efficiency"] = efficiency
    # in-process training on one env, as benchmarks/bench_train.py --modes inprocess
    result["train_steps_per_s"] = {
        algo: bench_loop.train_rate(algo, 1, 256 if args.quick else 2048)["steps_per_s"]
        for algo in ("ppo", "a2c", "acktr", "her")
    }
    # the loop figures users' scripts read, at the top level
    for key in ("ros_steps_per_s", "inprocess_steps_per_s", "ratio"):
        result[key] = result["loop_84x84"][key]
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"machine: {result['machine']['cpus']} CPUs, Python {result['machine']['python']}")
    print(f"{'figure':<44}{'value':>12}")
    for name, value in result["simulator"].items():
        if isinstance(value, float):
            print(f"{'simulator: ' + name:<44}{value:>12.1f}")
    for section in ("loop", "loop_84x84"):
        for name in ("ros_steps_per_s", "inprocess_steps_per_s", "ratio", "latency_p50_ms", "latency_p99_ms"):
            print(f"{section + ': ' + name:<44}{result[section][name]:>12.3f}")
    for n, rate in result.get("scaling", {}).items():
        print(f"{f'scaling: {n} env(s), transitions/s':<44}{rate:>12.1f}")
    for where, by_n in result["scaling_efficiency"].items():
        for n, value in by_n.items():
            print(f"{f'scaling_efficiency: {where}, {n} env(s)':<44}{value:>12.3f}")
    for algo, rate in result["train_steps_per_s"].items():
        print(f"{f'train_steps_per_s: {algo} (in-process, 1 env)':<44}{rate:>12.1f}")
    return 0
