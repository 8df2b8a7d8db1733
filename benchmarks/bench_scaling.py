"""In-process env scaling: transitions/s of N simulator + task envs, one process each (SubprocVecEnv).

    python benchmarks/bench_scaling.py --envs 1 4 8 16 --seconds 10 [--json]

This is the CPU side of training on a many-core machine (the GPU machine of the `device` tool has 16 cores);
the ROS loop's own scaling is in `carla-rl bench`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
from stable_baselines3.common.vec_env import SubprocVecEnv

from carla_rl_env.inprocess import InProcessEnv
from carla_rl_env.settings import load_env_config
from carla_rl_sim.core import load_simulator


def make(i: int):
    def build():
        config = load_env_config()
        return InProcessEnv(config, load_simulator("RLTown01", "", 0.05, 0, i), seed=i)

    return build


def rate(n: int, seconds: float) -> float:
    env = SubprocVecEnv([make(i) for i in range(n)])
    env.reset()
    rng = np.random.default_rng(0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.step(np.stack([rng.uniform(-0.3, 0.3, n), rng.uniform(0.0, 0.6, n)], axis=1).astype(np.float32))
        steps += n
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def step_and_reset_cost(seconds: float) -> dict:
    """One env in this process under the same random actions: mean ms of a step and of a reset, mean
    episode length. A VecEnv steps in lockstep, so every reset in any env holds all the others up."""
    env = make(0)()
    rng = np.random.default_rng(0)
    step_s, reset_s, lengths, length = [], [], [], 0
    env.reset(seed=0)
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(np.array([rng.uniform(-0.3, 0.3), rng.uniform(0.0, 0.6)], np.float32))
        step_s.append(time.perf_counter() - t)
        length += 1
        if terminated or truncated:
            t = time.perf_counter()
            env.reset()
            reset_s.append(time.perf_counter() - t)
            lengths.append(length)
            length = 0
    return {
        "step_ms": 1000 * float(np.mean(step_s)),
        "reset_ms": 1000 * float(np.mean(reset_s)) if reset_s else None,
        "episode_length": float(np.mean(lengths)) if lengths else None,
        "episodes": len(lengths),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = {"cpus": os.cpu_count(), "transitions_per_s": {n: rate(n, args.seconds) for n in args.envs}}
    base = result["transitions_per_s"][args.envs[0]]
    result["speedup"] = {n: r / base for n, r in result["transitions_per_s"].items()}
    result["single_env"] = step_and_reset_cost(args.seconds)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{'envs':>5}{'transitions/s':>16}{'speed-up':>10}   ({result['cpus']} CPUs)")
        for n in args.envs:
            print(f"{n:>5}{result['transitions_per_s'][n]:>16.0f}{result['speedup'][n]:>10.2f}")
        print(f"one env: {result['single_env']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
