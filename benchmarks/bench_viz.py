"""What a watched live view costs the lockstep loop: steps/s and step time with and without a viewer attached.

Each trial starts a simulator + env node pair (the processes ``carla-rl drive`` starts; 84x84 camera in the
objects file as config/objects.json has, traffic vehicles, measurements-only observation) and steps it from
here through a gymnasium RosVecEnv, as ``carla_rl_bringup.bench_loop`` does, with

- ``none``: no viewer;
- ``web``: ``carla-rl viz web`` and a client process that follows the page's stream and fetches each new
  camera JPEG (what the browser page does, without a browser's own rendering);
- ``foxglove``: ``carla-rl viz foxglove`` and a client process subscribed to every channel (as the Foxglove app).

A watched viewer also makes the simulator draw markers and render the camera for it, at most ``preview_hz``
times a second (its preview topics; ``--preview-hz 0``: none, so the viewer takes the bridge topics and the
simulator draws and renders on every tick): that is part of the cost measured. Timing starts once the client
receives (DDS discovery between new processes can take seconds) and 100 steps later. Trials are interleaved
(none, web, foxglove, none, ...) so load drifts hit all alike; the table gives medians over repeats, the
overhead in mean step time against ``none``, the updates per second the client got, and the CPU time per step
of each process (less sensitive than wall time to other work on a busy machine).

    .venv/bin/python benchmarks/bench_viz.py [--steps 1500] [--repeats 3] [--traffic 5] [--preview-hz HZ] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

from carla_rl_bringup.bench_loop import LONG, machine, objects_file
from carla_rl_bringup.launcher import NodeSpec, ProcessGroup
from carla_rl_common.dds import ros_environment
from carla_rl_env.settings import load_env_config
from carla_rl_viz.probe import start_viewer, stop_viewer

VIEWERS = ("none", "web", "foxglove")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat), 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def trial(
    viewer: str,
    steps: int,
    traffic: int,
    tmp: Path,
    actions: np.ndarray,
    camera: str = "rgb_front",
    preview_hz: float | None = None,
) -> dict:
    """One run of ``steps`` lockstep steps with ``viewer`` attached; rates, step times, CPU per step."""
    from carla_rl_agents.vec_env import RosVecEnv

    config = tmp / "env.yaml"
    config.write_text(yaml.safe_dump(load_env_config([], LONG)))
    env_vars = ros_environment(domain_id=int(os.environ.get("BENCH_DOMAIN_ID", 91)))
    os.environ.update(env_vars)
    proc = probe = None
    received: dict = {}
    with ProcessGroup(env_vars, log=open(os.devnull, "w")) as group:
        pids = {"agent": os.getpid()}
        previews = {} if preview_hz is None else {"preview_hz": float(preview_hz)}
        pids["sim"] = group.start(
            NodeSpec(
                "sim",
                "carla_rl_sim.node",
                "",
                {
                    "objects_file": str(objects_file(tmp, 84)),
                    "seed": 0,
                    "traffic": traffic,
                    "synchronous_mode_wait_for_vehicle_control_command": True,
                    **previews,
                },
            )
        ).pid
        pids["env"] = group.start(
            NodeSpec("env", "carla_rl_env.node", "", {"config": [str(config)], "seed": 0, "use_sim_time": True})
        ).pid
        env = RosVecEnv([""], timeout=60)
        try:
            if viewer != "none":  # the viewer and its client: processes of their own, as a browser would be
                proc, url = start_viewer(viewer, ["--port", "0", "--camera", camera], env=env_vars)
                probe = subprocess.Popen(
                    [sys.executable, "-m", "carla_rl_viz.probe", viewer, url, *(["--images"] if camera else [])],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                probe.stdout.readline()  # "ready"
                receiving = threading.Event()
                threading.Thread(target=lambda: probe.stdout.readline() and receiving.set(), daemon=True).start()
                pids.update(viewer=proc.pid, client=probe.pid)
            env.seed(0)
            env.reset()
            # warm-up: until the client receives (DDS discovery of the viewer may take seconds), then some more
            deadline, i = time.monotonic() + 60.0, 0
            while i < 100 or (probe is not None and not receiving.is_set() and time.monotonic() < deadline):
                env.step(actions[i % len(actions)][None])
                i += 1
            if probe is not None and not receiving.is_set():
                raise RuntimeError(f"the {viewer} client received nothing within 60 s")
            for a in actions[:100]:
                env.step(a[None])
            if probe is not None:
                probe.send_signal(signal.SIGUSR1)  # the client counts from here
            latency = np.empty(steps)
            cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            start = time.perf_counter()
            for i in range(steps):
                t = time.perf_counter()
                env.step(actions[i % len(actions)][None])
                latency[i] = time.perf_counter() - t
            elapsed = time.perf_counter() - start
            cpu = {name: (cpu_seconds(pid) - cpu_before[name]) / steps * 1e3 for name, pid in pids.items()}
            if probe is not None:
                probe.send_signal(signal.SIGINT)
                received = json.loads(probe.stdout.readline() or "{}")
        finally:
            if probe is not None and probe.poll() is None:
                probe.kill()
            if proc is not None:
                stop_viewer(proc)
            env.close()
    result = {
        "viewer": viewer,
        "steps_per_s": steps / elapsed,
        "step_mean_ms": float(latency.mean() * 1e3),
        "step_p50_ms": float(np.percentile(latency, 50) * 1e3),
        "step_p99_ms": float(np.percentile(latency, 99) * 1e3),
    }
    result.update({f"cpu_ms_{name}": value for name, value in cpu.items()})
    if received:
        result.update(updates_per_s=received["updates_per_s"], images_per_s=received["images_per_s"])
    return result


def summarize(trials: list[dict]) -> list[dict]:
    """Medians per viewer, and the mean step time's overhead against no viewer."""
    rows = []
    base = statistics.median(t["step_mean_ms"] for t in trials if t["viewer"] == "none")
    for viewer in VIEWERS:
        mine = [t for t in trials if t["viewer"] == viewer]
        if not mine:
            continue
        row = {"viewer": viewer, "repeats": len(mine)}
        for key in mine[0]:
            if key != "viewer":
                row[key] = statistics.median(t[key] for t in mine)
        row["overhead_pct"] = 100.0 * (row["step_mean_ms"] / base - 1.0)
        rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--traffic", type=int, default=5)
    parser.add_argument("--viewers", default=",".join(VIEWERS), help="comma-separated: none and any of web, foxglove")
    parser.add_argument(
        "--camera",
        default="rgb_front",
        help="camera the viewers show ('': none, so the simulator renders no image for them)",
    )
    parser.add_argument(
        "--preview-hz",
        type=float,
        default=None,
        help="the simulator's preview_hz (default: its own, 20; 0: viewers take the bridge topics)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    viewers = [v for v in args.viewers.split(",") if v]
    if "none" not in viewers or any(v not in VIEWERS for v in viewers):
        parser.error(f"--viewers: give none and any of web, foxglove (got {args.viewers!r})")
    rng = np.random.default_rng(0)
    actions = np.stack([rng.uniform(-0.3, 0.3, 1000), rng.uniform(0.0, 0.6, 1000)], axis=1).astype(np.float32)
    trials = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for viewer in viewers:
                trials.append(trial(viewer, args.steps, args.traffic, Path(tmp), actions, args.camera, args.preview_hz))
                print(json.dumps(trials[-1]), file=sys.stderr, flush=True)
    rows = summarize(trials)
    if args.json:
        print(
            json.dumps(
                {
                    "machine": machine(),
                    "steps": args.steps,
                    "traffic": args.traffic,
                    "preview_hz": args.preview_hz,
                    "load_average": os.getloadavg()[0],
                    "rows": rows,
                    "trials": trials,
                }
            )
        )
        return 0
    print(
        f"{args.steps} steps x {args.repeats} repeats, traffic {args.traffic}, viewer camera "
        f"{args.camera or 'none'} (84x84), preview_hz {'default' if args.preview_hz is None else args.preview_hz}; "
        f"medians; "
        f"{machine()['cpus']} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'viewer':<10}{'steps/s':>9}{'step ms':>9}{'p50 ms':>8}{'p99 ms':>8}{'overhead':>10}"
        f"{'updates/s':>11}{'images/s':>10}   CPU ms/step: sim env agent viewer client"
    )
    nan = float("nan")
    for r in rows:
        cpu = " ".join(f"{r.get('cpu_ms_' + k, nan):.2f}" for k in ("sim", "env", "agent", "viewer", "client"))
        print(
            f"{r['viewer']:<10}{r['steps_per_s']:>9.1f}{r['step_mean_ms']:>9.2f}{r['step_p50_ms']:>8.2f}"
            f"{r['step_p99_ms']:>8.2f}{r['overhead_pct']:>9.1f}%{r.get('updates_per_s', nan):>11.1f}"
            f"{r.get('images_per_s', nan):>10.1f}   {cpu}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
