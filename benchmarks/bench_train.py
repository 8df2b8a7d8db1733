"""Training steps/s of each algorithm, through the ROS loop and in-process.

    python benchmarks/bench_train.py [--algos ppo a2c acktr her] [--steps 2048] [--repeat 1] [--device cuda] [--json]

Each measurement is one ``carla-rl train`` run with ``train.total_timesteps = --steps`` on one env: over ROS
that is the train stack (simulator node + env node + trainer, separate processes talking over DDS), and with
``--inprocess`` the same simulator and task stepped in the trainer's process. The figure is the trainer's
own count: env steps divided by the wall time of ``learn()`` (the progress line ``N steps/s`` that
``carla-rl train`` prints when training ends), so process start-up and the first reset are not in it, and
policy updates are. Each run trains from scratch in a temporary run directory. With ``--repeat N`` the
median of N runs is reported.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ALGOS = ("ppo", "a2c", "acktr", "her")
RATE = re.compile(r"(\d+)/(\d+) steps\s+(\d+) steps/s")


def train_rate(algo: str, steps: int, inprocess: bool, timeout: float, device: str = "cpu") -> dict:
    """One short ``carla-rl train`` run; its steps/s from the final progress line."""
    with tempfile.TemporaryDirectory(prefix=f"bench-train-{algo}-") as tmp:
        extra = Path(tmp) / "bench.yaml"
        extra.write_text(
            yaml.safe_dump(
                {"train": {"total_timesteps": steps, "num_envs": 1, "checkpoint_every": 10_000, "device": device}}
            )
        )
        cmd = [
            sys.executable,
            "-m",
            "carla_rl_bringup.cli",
            "train",
            "--algo",
            algo,
            "--config",
            str(extra),
            "--run-dir",
            str(Path(tmp) / "run"),
        ] + (["--inprocess"] if inprocess else [])
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        wall = time.perf_counter() - start
        matches = RATE.findall(proc.stdout + proc.stderr)
        if proc.returncode != 0 or not matches:
            tail = (proc.stdout + proc.stderr)[-2000:]
            raise RuntimeError(f"{' '.join(cmd)} failed (rc {proc.returncode}):\n{tail}")
        done, _, rate = (int(v) for v in matches[-1])
        return {"steps": done, "steps_per_s": float(rate), "wall_s": round(wall, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algos", nargs="+", default=list(ALGOS), choices=ALGOS)
    parser.add_argument("--steps", type=int, default=2048, help="total_timesteps of each run")
    parser.add_argument("--repeat", type=int, default=1, help="runs per figure (median reported)")
    parser.add_argument("--modes", nargs="+", default=["ros", "inprocess"], choices=["ros", "inprocess"])
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per run")
    parser.add_argument("--device", default="cpu", help="torch device of the policy (cuda on the GPU machine)")
    parser.add_argument("--json", action="store_true", help="print one JSON object with every figure")
    args = parser.parse_args(argv)

    results: dict[str, dict[str, dict]] = {}
    for algo in args.algos:
        for mode in args.modes:
            runs = [
                train_rate(algo, args.steps, mode == "inprocess", args.timeout, args.device) for _ in range(args.repeat)
            ]
            rates = [r["steps_per_s"] for r in runs]
            results.setdefault(algo, {})[mode] = {
                "steps_per_s": statistics.median(rates),
                "runs": rates,
                "steps": runs[-1]["steps"],
            }
            print(
                f"bench_train: {algo} {mode}: {statistics.median(rates):.0f} steps/s (runs {rates})",
                file=sys.stderr,
                flush=True,
            )
    print("| algo | ROS loop (steps/s) | in-process (steps/s) | ROS / in-process |")
    print("| --- | ---: | ---: | ---: |")
    for algo, modes in results.items():
        ros, inp = modes.get("ros", {}).get("steps_per_s"), modes.get("inprocess", {}).get("steps_per_s")
        ratio = f"{ros / inp:.2f}" if ros and inp else "n/a"
        print(f"| {algo} | {ros if ros is not None else 'n/a'} | {inp if inp is not None else 'n/a'} | {ratio} |")
    if args.json:
        print(json.dumps({"steps": args.steps, "repeat": args.repeat, "device": args.device, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
