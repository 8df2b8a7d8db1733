"""Soak test: train over ROS 2 for a long time and watch memory and speed.

    .venv/bin/python benchmarks/soak.py                      # 1 hour, PPO, 2 envs, recording a bag
    .venv/bin/python benchmarks/soak.py --minutes 10 --warmup-minutes 3 --no-record

It starts ``carla-rl train --num-envs 2 [--record BAG]`` (the whole stack as processes: 2 simulators, 2 env
nodes, the trainer, the recorder) with a budget it cannot finish, and every ``--interval`` seconds (default 60)
prints one row: the steps trained so far (from the run's ``tb/progress.csv``), steps/s over the interval, and
the resident memory (RSS, from ``/proc``) of every process of the stack. At the end it stops the stack with
SIGINT (as Ctrl-C would), prints a summary and writes it as JSON (``--json``):

* memory growth after warm-up, per process and in total: the mean RSS of the last 3 samples over the mean of
  the first 3 samples after ``--warmup-minutes`` (means of 3 smooth out the allocator's breathing);
  the target is under 5 %;
* steps/s after warm-up: median, min, max and spread = (max - min) / median; the target is within 10 %
  of the median (spread <= 20 %, every interval within +-10 %).

Figures measured on a shared machine are noisy: other work on the same cores shows up as steps/s dips.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PAGE_KB = 1024


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc/*/stat's ppid)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _label(pid: int) -> str | None:
    """``module@namespace`` of a stack process (``carla_rl_sim.node@env_0``), or None for other processes."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    if "-m" not in args:
        return None
    module = args[args.index("-m") + 1]
    if module.endswith("train_node"):
        return module  # one trainer for all envs (it lives in env_0's namespace)
    namespace = next((a.split(":=/", 1)[1] for a in args if a.startswith("__ns:=/")), "")
    return f"{module}@{namespace}" if namespace else module


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def memory(root: int) -> dict[str, float]:
    """RSS in MB of the root process and each stack process below it, by label."""
    out: dict[str, float] = {}
    for pid in [root, *_children(root)]:
        label = "carla-rl train" if pid == root else _label(pid)
        rss = _rss_mb(pid)
        if label is not None and rss is not None:
            out[label] = out.get(label, 0.0) + rss
    return out


def trained_steps(run_dir: Path) -> tuple[int, float]:
    """The newest ``time/total_timesteps`` of the run's progress CSV and its ``time/time_elapsed`` (s since
    training started): steps/s from two dumps is exact, where steps counted at our sampling times would be
    quantised to whole rollouts ((0, 0.0) before the first dump)."""
    best = (0, 0.0)
    for path in (run_dir / "tb").glob("progress*.csv"):
        try:
            with open(path, newline="") as f:
                for row in csv.DictReader(f):
                    steps, elapsed = row.get("time/total_timesteps") or "", row.get("time/time_elapsed") or ""
                    if steps and elapsed:
                        best = max(best, (int(float(steps)), float(elapsed)))
        except (OSError, ValueError):
            continue
    return best


def _dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6 if path.exists() else 0.0


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def summarise(rows: list[dict], warmup_s: float) -> dict:
    """Memory growth and steps/s spread over the rows after warm-up (see the module docstring)."""
    after = [r for r in rows if r["t_s"] > warmup_s and r["rss_mb"]]
    rates = [r["steps_per_s"] for r in after if r["steps_per_s"] is not None]
    if len(after) < 2 or not rates:
        return {
            "error": f"{len(after)} samples, {len(rates)} with steps/s after the warm-up: run longer, shorten "
            "--warmup-minutes, or use shorter rollouts (--n-steps)"
        }
    head, tail = after[:3], after[-3:]
    growth = {}
    for label in sorted(set(head[0]["rss_mb"]) & set(tail[-1]["rss_mb"])):
        first = _mean([r["rss_mb"].get(label, 0.0) for r in head])
        last = _mean([r["rss_mb"].get(label, 0.0) for r in tail])
        growth[label] = {
            "first_mb": round(first, 1),
            "last_mb": round(last, 1),
            "growth_pct": round(100.0 * (last - first) / first, 2),
        }
    total_first = _mean([sum(r["rss_mb"].values()) for r in head])
    total_last = _mean([sum(r["rss_mb"].values()) for r in tail])
    median = statistics.median(rates)
    return {
        "samples_after_warmup": len(after),
        "steps_per_s_samples": len(rates),
        "rss_total_first_mb": round(total_first, 1),
        "rss_total_last_mb": round(total_last, 1),
        "rss_total_growth_pct": round(100.0 * (total_last - total_first) / total_first, 2),
        "rss_max_growth_pct": max(g["growth_pct"] for g in growth.values()),
        "rss_growth_by_process": growth,
        "steps_per_s_median": round(median, 1),
        "steps_per_s_min": round(min(rates), 1),
        "steps_per_s_max": round(max(rates), 1),
        "steps_per_s_spread_pct": round(100.0 * (max(rates) - min(rates)) / median, 1),
        "steps_per_s_max_deviation_pct": round(100.0 * max(abs(r - median) for r in rates) / median, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="how long to train (default 60)")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between samples (default 60)")
    parser.add_argument(
        "--warmup-minutes",
        type=float,
        default=None,
        help="samples before this are not judged (default: 10, or a third of a shorter run)",
    )
    parser.add_argument("--num-envs", type=int, default=2)
    parser.add_argument("--algo", default="ppo", choices=["a2c", "acktr", "ppo", "her"])
    parser.add_argument(
        "--n-steps",
        type=int,
        default=None,
        help="steps per env per rollout (default: the algorithm's config); steps/s is read at "
        "rollout ends, so a slow machine needs rollouts shorter than --interval",
    )
    parser.add_argument("--no-record", dest="record", action="store_false", help="do not record a bag")
    parser.add_argument("--run-dir", default="", help="default: a temporary directory, deleted at the end")
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "soak.json"))
    args = parser.parse_args()
    warmup_min = args.warmup_minutes if args.warmup_minutes is not None else min(10.0, args.minutes / 3)

    tmp = tempfile.TemporaryDirectory(prefix="carla-rl-soak-")
    run_dir = Path(args.run_dir or Path(tmp.name) / "run").resolve()
    bag = Path(tmp.name) / "bag"
    config = Path(tmp.name) / "soak.yaml"
    overrides: dict = {"train": {"total_timesteps": 10**9, "keep_checkpoints": 2}}
    if args.n_steps:
        overrides["algo_kwargs"] = {"n_steps": args.n_steps}
    config.write_text(yaml.safe_dump(overrides))
    command = [
        sys.executable,
        "-m",
        "carla_rl_bringup.cli",
        "train",
        "--algo",
        args.algo,
        "--num-envs",
        str(args.num_envs),
        "--run-dir",
        str(run_dir),
        "--config",
        str(config),
    ]
    if args.record:
        command += ["--record", str(bag)]
    log_path = Path(tmp.name) / "stack.log"
    print(
        f"soak: {' '.join(command[1:])}\nsoak: {args.minutes:g} min, a sample every {args.interval:g} s, "
        f"warm-up {warmup_min:g} min; stack log {log_path}",
        flush=True,
    )
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    start = time.monotonic()
    rows: list[dict] = []
    last_steps, last_elapsed = 0, 0.0
    try:
        while time.monotonic() - start < args.minutes * 60 and proc.poll() is None:
            time.sleep(max(0.0, args.interval * (len(rows) + 1) - (time.monotonic() - start)))
            t = time.monotonic() - start
            (steps, elapsed), rss = trained_steps(run_dir), memory(proc.pid)
            # over the rollouts that ended in this interval (the first dump also holds the start-up)
            rate = (steps - last_steps) / (elapsed - last_elapsed) if last_steps and elapsed > last_elapsed else None
            rows.append(
                {
                    "t_s": round(t, 1),
                    "steps": steps,
                    "steps_per_s": rate,
                    "rss_mb": rss,
                    "bag_mb": round(_dir_mb(bag), 1),
                }
            )
            if len(rows) == 1:
                print(f"{'min':>5} {'steps':>8} {'steps/s':>8} {'bag MB':>7} {'RSS MB':>7}  per process (MB)")
            per = "  ".join(f"{k}={v:.0f}" for k, v in sorted(rss.items()))
            print(
                f"{t / 60:5.1f} {steps:8d} {rate if rate is not None else float('nan'):8.1f} "
                f"{rows[-1]['bag_mb']:7.1f} {sum(rss.values()):7.0f}  {per}",
                flush=True,
            )
            last_steps, last_elapsed = steps, elapsed
    finally:
        if proc.poll() is None:
            stack = _children(proc.pid)
            proc.send_signal(signal.SIGINT)  # as Ctrl-C: the stack stops its nodes and closes the bag
            try:
                proc.wait(timeout=180)
            except subprocess.TimeoutExpired:  # the nodes run in their own sessions: kill them one by one
                for pid in [proc.pid, *stack]:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                proc.wait()
    code = proc.returncode
    summary = summarise(rows, warmup_min * 60)
    result = {
        "command": command[1:],
        "minutes": args.minutes,
        "interval_s": args.interval,
        "warmup_minutes": warmup_min,
        "num_envs": args.num_envs,
        "record": args.record,
        "exit_code": code,
        "rows": rows,
        "summary": summary,
    }
    print(json.dumps(summary, indent=1))
    if code not in (0, 130, -signal.SIGINT) or len(rows) == 0:
        print(
            f"soak: the stack exited with {code}; last lines of its log:\n"
            + "".join(log_path.read_text().splitlines(True)[-30:]),
            file=sys.stderr,
        )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1))
    kept_log = Path(args.json).with_suffix(".log")
    kept_log.write_text(log_path.read_text())  # the stack's own log, for what went wrong in a long run
    print(f"soak: wrote {args.json} and {kept_log}")
    tmp.cleanup()
    return 0 if "error" not in summary else 1


if __name__ == "__main__":
    sys.exit(main())
