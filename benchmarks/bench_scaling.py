"""In-process env scaling and training throughput: N simulator + task envs stepped together, and training on them.

    python3 benchmarks/bench_scaling.py --envs 1 4 8 16 --envs-per-worker 1 2 --seconds 8 --json

Prints one JSON object (``--json``) or a table:

- ``scaling``: transitions/s of N envs under random actions (resets included, as in training) for each way of
  stepping them (``subproc``: SB3's SubprocVecEnv, one process per env, what ``train.num_workers: 0`` trains
  on; ``shm``: the ShmVecEnv, ``shm_k<k>`` with k envs per worker; ``gymnasium``: gymnasium's AsyncVectorEnv
  with shared memory, with ``--vec ... gymnasium``), and ``scaling_efficiency`` = N-env transitions/s / (N x
  one env stepped in this process, ``one_env_per_s``);
- ``single_env``: one env's mean step and reset cost and episode length (a lockstep batch waits for resets);
- ``train_steps_per_s``: steps/s of ``carla-rl train --inprocess`` (the Trainer, its callbacks and checkpoints)
  per algorithm on ``--train-envs`` envs, through SubprocVecEnv (``subproc``) and ShmVecEnv (``shm``), with the
  policy on each of ``--devices`` (default: cpu, and cuda when torch sees a GPU), plus the seconds spent in
  rollouts and in the rest (policy updates). PPO runs with ``--ppo-config`` (the GPU run's batch settings).

This is the CPU side of training on a many-core machine (the GPU machine of the `device` tool has 16 cores;
only ``PYTHONPATH=src/carla_rl_common:src/carla_rl_sim:src/carla_rl_env:src/carla_rl_agents:src/carla_rl_bringup``
is needed, no ROS); the ROS loop's own scaling is in `carla-rl bench`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from carla_rl_bringup.bench_loop import VEC_KINDS, _inprocess_env, inprocess_scaling, train_rate

ALGOS = ("ppo", "a2c", "acktr", "her")
PPO_CONFIG = Path(__file__).resolve().parent / "configs" / "ppo_pretrain.yaml"


def step_and_reset_cost(seconds: float) -> dict:
    """One env in this process under the same random actions: mean ms of a step and of a reset, mean
    episode length. A VecEnv steps in lockstep, so every reset in any env holds all the others up."""
    env = _inprocess_env(0)
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


def train_figures(args: argparse.Namespace) -> dict:
    """``train_steps_per_s[algo][device][subproc|shm]``: one short training run each."""
    n = args.train_envs
    figures: dict = {}
    for algo in args.algos:
        configs = [str(args.ppo_config)] if algo == "ppo" and args.ppo_config else []
        for device in args.devices:
            for kind, workers in (("subproc", 0), ("shm", n // args.train_envs_per_worker)):
                result = train_rate(
                    algo, n, args.train_steps, device, workers, args.train_envs_per_worker, configs=configs
                )
                figures.setdefault(algo, {}).setdefault(device, {})[kind] = result
                print(f"bench_scaling: train {algo} {device} {kind}: {result}", file=sys.stderr, flush=True)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", type=int, nargs="+", default=[1, 2], help="numbers of envs to step together")
    parser.add_argument("--vec", nargs="+", default=["subproc", "shm"], choices=[k for k in VEC_KINDS if k != "dummy"])
    parser.add_argument("--envs-per-worker", type=int, nargs="+", default=[1], help="ShmVecEnv envs per worker")
    parser.add_argument("--seconds", type=float, default=10.0, help="stepping time per figure")
    parser.add_argument("--algos", nargs="*", default=list(ALGOS), choices=ALGOS, help="algorithms to train")
    parser.add_argument("--train-envs", type=int, default=None, help="envs to train on (default: the largest N)")
    parser.add_argument("--train-envs-per-worker", type=int, default=1)
    parser.add_argument("--train-steps", type=int, default=16384, help="total_timesteps of each training run")
    parser.add_argument("--ppo-config", type=Path, default=PPO_CONFIG, help="run config file added for PPO")
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    args.train_envs = args.train_envs or max(args.envs)
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.cuda.is_available(),
            "load_average": os.getloadavg(),
        },
        "scaling": inprocess_scaling(args.envs, args.seconds, args.vec, args.envs_per_worker),
        "single_env": step_and_reset_cost(args.seconds),
        "train_envs": args.train_envs,
        "train_steps_per_s": train_figures(args),
    }
    result["machine"]["load_average_after"] = os.getloadavg()
    if args.json:
        print(json.dumps(result))
        return 0
    scaling = result["scaling"]
    print(f"{result['machine']['cpus']} CPUs; one env in this process: {scaling['one_env_per_s']:.0f} transitions/s")
    print(f"{'vec env':<12}{'envs':>5}{'transitions/s':>16}{'efficiency':>12}")
    for name, by_n in scaling["transitions_per_s"].items():
        for n, rate in by_n.items():
            print(f"{name:<12}{n:>5}{rate:>16.0f}{scaling['scaling_efficiency'][name][n]:>12.2f}")
    print(f"one env: {result['single_env']}")
    print(f"training on {args.train_envs} envs, steps/s (rollout s / update s):")
    for algo, devices in result["train_steps_per_s"].items():
        for device, kinds in devices.items():
            for kind, r in kinds.items():
                phases = f"({r['rollout_s']:.1f} / {r['update_s']:.1f})"
                print(f"  {algo:<6}{device:<6}{kind:<9}{r['steps_per_s']:>8.0f} {phases}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
