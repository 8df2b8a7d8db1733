"""Learning curves and the learning table: train an algorithm for a wall-clock budget, evaluate its
checkpoints on a suite, and compare with a random policy.

    # one algorithm: train for 10 minutes in-process, evaluate snapshots on the first 10 `straight` episodes
    python benchmarks/learning.py curve --algo a2c --minutes 10 --suite straight --out benchmarks/results/a2c_straight
    # the four algorithms on `straight`, in parallel, each pinned to its share of the cores
    python benchmarks/learning.py straight --minutes 5 --cores-per-run 4
    # PPO for the navigation targets, then the table of the issue (training town and the other town)
    python benchmarks/learning.py navigation --minutes 6.5 --num-envs 16
    # the table of any checkpoint
    python benchmarks/learning.py table --checkpoint models/ppo_rltown01.ckpt --num-envs 2

``curve`` writes ``<out>/curve.json`` (per snapshot: env steps, wall seconds, the suite summary of the
deterministic policy, and the random policy's summary as the baseline) and ``<out>/curve.png`` (mean return
and success rate against env steps, the random policy as a dashed line). ``--ros`` trains through the ROS
loop instead (``carla-rl train``: sim node + env node + trainer as processes; the snapshots are then the
run's periodic checkpoints). Evaluation always runs in-process (identical observations and rewards), after
training, so it takes nothing from the training budget. Snapshots are taken at rollout ends every
``--snapshot-s`` seconds of training; the snapshot file is the run's checkpoint format.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
CONFIGS = REPO / "benchmarks" / "configs"
ALGOS = ("ppo", "a2c", "acktr", "her")
SUITES = ("straight", "one_turn", "navigation", "navigation_dynamic")
TOWNS = ("RLTown01", "RLTown02")
CARLA_MAPS = REPO.parent / "shared" / "data" / "maps" / "carla"  # CARLA's own towns (MIT), never copied here
CARLA_TOWNS = ("Town01", "Town02")
#: Success rates of the CoRL 2017 benchmark (straight, one_turn, navigation, navigation_dynamic), Town01 / Town02:
#: the CARLA paper's A3C (Dosovitskiy et al. 2017, table 1) and the best published RL, CIRL (Liang et al. 2018).
PUBLISHED = {
    "CARLA paper's A3C": {"Town01": (0.89, 0.34, 0.14, 0.07), "Town02": (0.74, 0.12, 0.03, 0.02)},
    "CIRL (best published RL)": {"Town01": (0.98, 0.97, 0.93, 0.82), "Town02": (0.98, 0.80, 0.68, 0.62)},
}


def town_arg(name: str) -> str:
    """A town for ``sim.town``: a shipped name as is, a CARLA town (Town01) as its .xodr beside the checkout."""
    path = CARLA_MAPS / f"{name}.xodr"
    return str(path) if name not in TOWNS and path.is_file() else name


# --- configs and envs ------------------------------------------------------------------------------------
def run_config(algo: str, configs: list[str], num_envs: int | None, seed: int, device: str | None) -> dict[str, Any]:
    """config/base.yaml + config/<algo>.yaml + ``configs``, as ``carla-rl train`` loads them."""
    from carla_rl_agents.settings import load_run_config

    overrides: dict[str, Any] = {"train": {"seed": seed}}
    if num_envs:
        overrides["train"]["num_envs"] = num_envs
    if device:
        overrides["train"]["device"] = device
    paths = [REPO / "config" / "base.yaml", REPO / "config" / f"{algo}.yaml", *map(Path, configs)]
    return load_run_config(paths, overrides)


def make_env(
    config: dict[str, Any],
    num_envs: int,
    seed: int,
    suite: str | None = None,
    town: str | None = None,
    split: bool = False,
    towns: list[str] | None = None,
):
    """N in-process envs of ``carla_rl_bringup.inprocess`` (its seed rule: env i's simulator gets seed + sim.seed
    + i; SubprocVecEnv when N > 1; for training the config's ``train.num_workers`` picks the shared-memory
    vector env, as ``carla-rl train --inprocess`` does). With ``split``, env i takes the suite episodes that
    make ``evaluation.evaluate`` asks of it: offset i, stride N. With ``towns``, env i drives ``towns[i % len]``
    (a mix of maps for training; the run config keeps ``sim.town``, the first)."""
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    from carla_rl_agents.shm_vec_env import make_vec_env
    from carla_rl_bringup.inprocess import inprocess_env_fns

    config = json.loads(json.dumps(config))  # a copy the envs may keep
    if town:
        config["sim"]["town"] = town
    if suite is not None:
        config["env"]["scenario"]["suite"] = suite
    makers = inprocess_env_fns(config, num_envs, seed, towns=towns, split=split)
    if not split and config["train"].get("num_workers", 0) > 0:
        return make_vec_env(makers, config["train"])
    return SubprocVecEnv(makers) if num_envs > 1 else DummyVecEnv(makers)


def suite_file(suite: str, town: str, episodes: int | None, directory: Path) -> Path:
    """The town's suite, cut to its first ``episodes`` episodes (a file in ``directory``) when given."""
    from carla_rl_env.scenarios import resolve_suite

    path = resolve_suite(suite, town)
    data = yaml.safe_load(path.read_text())
    if episodes is None or episodes >= len(data["episodes"]):
        return path
    data["episodes"] = data["episodes"][:episodes]
    directory.mkdir(parents=True, exist_ok=True)
    cut = directory / f"{Path(town).stem}-{suite}-{episodes}.yaml"
    cut.write_text(yaml.safe_dump(data, sort_keys=False))
    return cut


# --- evaluation ------------------------------------------------------------------------------------------
class RandomPolicy:
    """Uniform random actions: the baseline of every curve."""

    def __init__(self, action_space, seed: int = 0):
        self.space = action_space
        self.space.seed(seed)

    def predict(self, observation, state=None, episode_start=None, deterministic=False):
        n = len(next(iter(observation.values())))
        return np.stack([self.space.sample() for _ in range(n)]), state


def evaluate_policy_on(
    checkpoint: str | None,
    config: dict[str, Any],
    suite: Path,
    town: str | None,
    num_envs: int,
    seed: int,
    threads: int = 1,
) -> dict[str, Any]:
    """The suite summary of a checkpoint's deterministic policy (``checkpoint`` None: a random policy)."""
    import torch as th

    from carla_rl_agents.checkpoints import load_policy, read_meta
    from carla_rl_agents.evaluation import evaluate
    from carla_rl_env.scenarios import load_suite

    th.set_num_threads(threads)
    if checkpoint is not None:
        config = read_meta(checkpoint)["config"]
    episodes = len(load_suite(suite)[1])
    env = make_env(config, min(num_envs, episodes), seed, suite=str(suite), town=town, split=True)
    try:
        model = RandomPolicy(env.action_space, seed) if checkpoint is None else load_policy(checkpoint, env, "cpu")
        return evaluate(model, env, episodes)["summary"]
    finally:
        env.close()


def _evaluate_job(job: tuple) -> dict[str, Any]:
    return evaluate_policy_on(*job)


def evaluate_many(jobs: list[tuple], workers: int) -> list[dict[str, Any]]:
    """``evaluate_policy_on`` of each job, ``workers`` processes at a time (spawned: no forked torch state)."""
    if workers <= 1:
        return [_evaluate_job(job) for job in jobs]
    import multiprocessing

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_evaluate_job, jobs))


# --- training --------------------------------------------------------------------------------------------
def warm_start(model: Any, checkpoint: str) -> None:
    """Initialise ``model``'s policy from another run's checkpoint (a curriculum stage: another scenario set,
    more traffic, or more measurements). Tensors of equal shape are copied; a first layer that gained inputs
    (measurements appended at the end) keeps the old columns and zero weights for the new ones, so the warm
    policy starts out acting as the old one. The optimizer starts fresh."""
    import torch as th

    from carla_rl_agents.checkpoints import _read_state

    old = _read_state(Path(checkpoint))["params"]["policy"]
    new = model.policy.state_dict()
    copied = grown = 0
    with th.no_grad():
        for name, tensor in new.items():
            src = old.get(name)
            if src is None:
                continue
            if src.shape == tensor.shape:
                tensor.copy_(src)
                copied += 1
            elif src.dim() == 2 and src.shape[0] == tensor.shape[0] and src.shape[1] < tensor.shape[1]:
                tensor.zero_()
                tensor[:, : src.shape[1]] = src
                grown += 1
    model.policy.load_state_dict(new)
    print(
        f"warm start from {checkpoint}: {copied} tensors copied, {grown} grown, {len(new) - copied - grown} new",
        flush=True,
    )


def train_inprocess(
    config: dict[str, Any],
    run_dir: Path,
    seconds: float,
    snapshot_s: float,
    init_from: str = "",
    towns: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Train for ``seconds`` of wall clock; a snapshot checkpoint at the start and every ``snapshot_s`` s."""
    from stable_baselines3.common.callbacks import BaseCallback

    from carla_rl_agents.checkpoints import save_checkpoint
    from carla_rl_agents.training import Trainer

    snapshots: list[dict[str, Any]] = []
    (run_dir / "snapshots").mkdir(parents=True, exist_ok=True)

    class Budget(BaseCallback):
        """Stops training when the budget is spent; snapshots at rollout ends (after an update at most
        one rollout old: the state a checkpoint restores)."""

        def __init__(self) -> None:
            super().__init__()
            self.start = self.last = 0.0

        def _snapshot(self) -> None:
            path = run_dir / "snapshots" / f"step_{self.num_timesteps:010d}.ckpt"
            save_checkpoint(self.model, path, config)
            snapshots.append(
                {
                    "path": str(path),
                    "steps": int(self.num_timesteps),
                    "wall_s": round(time.perf_counter() - self.start, 1),
                }
            )

        def _on_training_start(self) -> None:
            self.start = self.last = time.perf_counter()
            self._snapshot()

        def _on_rollout_start(self) -> None:
            now = time.perf_counter()
            if now - self.last >= snapshot_s:
                self.last = now
                self._snapshot()

        def _on_step(self) -> bool:
            return time.perf_counter() - self.start < seconds

    with Trainer(
        config,
        lambda cfg: make_env(cfg, cfg["train"]["num_envs"], cfg["train"]["seed"], towns=towns),
        run_dir,
        progress=False,
    ) as trainer:
        if init_from:
            warm_start(trainer.model, init_from)
        budget = Budget()
        trainer.train([budget])
        budget._snapshot()  # the final policy
    return snapshots


def train_over_ros(config: dict[str, Any], run_dir: Path, seconds: float) -> list[dict[str, Any]]:
    """``carla-rl train`` (sim nodes + env nodes + trainer as processes) for ``seconds``, then SIGINT; the
    snapshots are the run's periodic checkpoints (keep them all)."""
    from carla_rl_agents.checkpoints import list_checkpoints

    config = json.loads(json.dumps(config))
    config["train"]["keep_checkpoints"] = 1000
    run_dir.mkdir(parents=True, exist_ok=True)
    extra = run_dir / "learning_config.yaml"
    extra.write_text(yaml.safe_dump({k: config[k] for k in ("env", "sim", "policy", "algo_kwargs", "train")}))
    cmd = [
        sys.executable,
        "-m",
        "carla_rl_bringup.cli",
        "train",
        "--algo",
        config["algo"],
        "--config",
        str(extra),
        "--run-dir",
        str(run_dir),
    ]
    start = time.perf_counter()
    with open(run_dir / "train.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    wall = time.perf_counter() - start
    checkpoints = list_checkpoints(run_dir)
    return [{"path": str(p), "steps": int(p.stem.split("_")[1]), "wall_s": None} for p in checkpoints] or [
        {"path": "", "steps": 0, "wall_s": wall}
    ]


def curve(args: argparse.Namespace) -> dict[str, Any]:
    """Train one algorithm, evaluate its snapshots and the random policy; write curve.json and curve.png."""
    import torch as th

    th.set_num_threads(args.torch_threads)
    out = Path(args.out or RESULTS / f"{args.algo}_{args.suite}")
    config = run_config(args.algo, args.config, args.num_envs, args.seed, args.device)
    if args.train_suite:
        config["env"]["scenario"]["suite"] = args.train_suite
    run_dir = Path(args.run_dir or out / "run")
    if run_dir.exists() and not args.keep_run:
        shutil.rmtree(run_dir)
    start = time.perf_counter()
    if args.ros:
        snapshots = train_over_ros(config, run_dir, args.minutes * 60)
    else:
        towns = [town_arg(t) for t in args.towns] if args.towns else None
        if towns:
            config["sim"]["town"] = towns[0]
        snapshots = train_inprocess(config, run_dir, args.minutes * 60, args.snapshot_s, args.init_from, towns)
    train_s = time.perf_counter() - start
    snapshots = [s for s in snapshots if s["path"]]
    if args.max_points and len(snapshots) > args.max_points:  # evenly spaced, first and last kept
        keep = np.unique(np.linspace(len(snapshots) - 1, 0, args.max_points).round().astype(int))  # 1: the last
        snapshots = [snapshots[i] for i in keep]
    suite = suite_file(args.suite, config["sim"]["town"], args.eval_episodes, out)
    jobs = [(None, config, suite, None, args.eval_envs, args.eval_seed)]
    jobs += [(s["path"], config, suite, None, args.eval_envs, args.eval_seed) for s in snapshots]
    results = evaluate_many(jobs, args.eval_workers)
    steps = snapshots[-1]["steps"] if snapshots else 0
    data = {
        "algo": args.algo,
        "suite": args.suite,
        "town": config["sim"]["town"],
        "mode": "ros" if args.ros else "inprocess",
        "train_towns": args.towns or [config["sim"]["town"]],
        "train_wall_s": round(train_s, 1),
        "train_steps": steps,
        "steps_per_s": round(steps / train_s, 1),
        "num_envs": config["train"]["num_envs"],
        "eval_episodes": results[0]["episodes"],
        "random": results[0],
        "points": [{**s, **r} for s, r in zip(snapshots, results[1:])],
        "command": " ".join(sys.argv),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "curve.json").write_text(json.dumps(data, indent=1) + "\n")
    plot([data], out / "curve.png", f"{args.algo} on {args.suite}")
    print(
        json.dumps(
            {k: data[k] for k in ("algo", "suite", "train_steps", "steps_per_s")}
            | {
                "final": data["points"][-1] if data["points"] else None,
                "random": {k: data["random"][k] for k in ("success_rate", "mean_return")},
            }
        )
    )
    return data


def plot(curves: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Mean return and success rate of the evaluated snapshots against env steps, random policy dashed."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 6), layout="constrained")
    ax_return, ax_success = figure.subplots(2, 1, sharex=True)
    for i, data in enumerate(curves):
        color = f"C{i}"
        steps = [p["steps"] for p in data["points"]]
        ax_return.plot(steps, [p["mean_return"] for p in data["points"]], "o-", color=color, label=data["algo"])
        ax_success.plot(steps, [p["success_rate"] for p in data["points"]], "o-", color=color, label=data["algo"])
        ax_return.axhline(
            data["random"]["mean_return"],
            color=color,
            ls="--",
            lw=1,
            label=f"random policy ({data['algo']} run)" if len(curves) > 1 else "random policy",
        )
        ax_success.axhline(data["random"]["success_rate"], color=color, ls="--", lw=1)
    ax_return.set_ylabel("mean return (evaluation)")
    ax_success.set_ylabel("success rate (evaluation)")
    ax_success.set_ylim(-0.05, 1.05)
    ax_success.set_xlabel("env steps")
    ax_return.legend(loc="best", fontsize="small")
    ax_return.set_title(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


# --- modes -----------------------------------------------------------------------------------------------
def _child_args(args: argparse.Namespace) -> list[str]:
    common = [
        "--minutes",
        str(args.minutes),
        "--snapshot-s",
        str(args.snapshot_s),
        "--seed",
        str(args.seed),
        "--eval-envs",
        str(args.eval_envs),
        "--eval-workers",
        str(args.eval_workers),
        "--torch-threads",
        str(args.torch_threads),
        "--max-points",
        str(args.max_points),
    ]
    for flag, value in (
        ("--num-envs", args.num_envs),
        ("--device", args.device),
        ("--eval-episodes", args.eval_episodes),
    ):
        if value:
            common += [flag, str(value)]
    return common + (["--ros"] if args.ros else [])


def straight(args: argparse.Namespace) -> None:
    """The four algorithms on ``straight`` (trained on the suite's scenarios), in parallel processes, each
    pinned with taskset to ``--cores-per-run`` cores when given; then one plot and a table."""
    out = Path(args.out or RESULTS / "straight")
    procs = []
    cpus = os.cpu_count() or 1
    for i, algo in enumerate(args.algos):
        cmd = [
            sys.executable,
            __file__,
            "curve",
            "--algo",
            algo,
            "--suite",
            "straight",
            "--train-suite",
            "straight",
            "--out",
            str(out / algo),
            *_child_args(args),
            *(arg for c in args.config for arg in ("--config", c)),
        ]
        if args.cores_per_run and shutil.which("taskset"):
            first = (i * args.cores_per_run) % cpus
            cmd = ["taskset", "-c", f"{first}-{min(first + args.cores_per_run, cpus) - 1}", *cmd]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.torch_threads)}
        out.mkdir(parents=True, exist_ok=True)
        log = open(out / f"{algo}.log", "w")
        procs.append((algo, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log))
        if not args.parallel:
            procs[-1][1].wait()
    curves = []
    for algo, proc, log in procs:
        proc.wait()
        log.close()
        path = out / algo / "curve.json"
        if proc.returncode != 0 or not path.is_file():
            print(
                f"learning.py: the {algo} run failed (rc {proc.returncode}); see {out / f'{algo}.log'}", file=sys.stderr
            )
            continue
        curves.append(json.loads(path.read_text()))
    plot(curves, out / "straight.png", "straight, RLTown01: evaluated snapshots (dashed: random policy)")
    (out / "straight.json").write_text(json.dumps(curves, indent=1) + "\n")
    print(
        "| algo | env steps | steps/s | success (final) | mean return (final) | success (random) "
        "| mean return (random) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for c in curves:
        final = c["points"][-1] if c["points"] else {"success_rate": None, "mean_return": None}
        print(
            f"| {c['algo']} | {c['train_steps']} | {c['steps_per_s']:.0f} | {_pct(final['success_rate'])} | "
            f"{_num(final['mean_return'])} | {_pct(c['random']['success_rate'])} | {_num(c['random']['mean_return'])} |"
        )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f} %"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def table(
    checkpoint: str,
    num_envs: int,
    seed: int,
    episodes: int | None,
    workers: int,
    out: Path | None,
    towns: list[str] | None = None,
    trained_on: list[str] | None = None,
) -> dict:
    """Success rate (route completion, collisions per km) of ``checkpoint`` on every suite of ``towns`` (default:
    ours, then CARLA's Town01 and Town02 when ``../shared`` has them), with the published rows for CARLA's."""
    from carla_rl_agents.checkpoints import read_meta

    if towns is None:
        towns = [*TOWNS, *(t for t in CARLA_TOWNS if (CARLA_MAPS / f"{t}.xodr").is_file())]
    trained = set(trained_on or [Path(read_meta(checkpoint)["config"]["sim"]["town"]).stem])
    tmp = Path(tempfile.mkdtemp(prefix="learning-suites-"))
    jobs = [
        (checkpoint, {}, suite_file(s, town_arg(t), episodes, tmp), town_arg(t), num_envs, seed)
        for t in towns
        for s in SUITES
    ]
    results = evaluate_many(jobs, workers)
    rows = {t: {s: results[i * len(SUITES) + j] for j, s in enumerate(SUITES)} for i, t in enumerate(towns)}
    print(f"| town | {' | '.join(SUITES)} | collisions per km |")
    print("| --- |" + " ---: |" * (len(SUITES) + 1))
    for town in towns:
        label = f"{town} ({'trained on' if town in trained else 'never seen'})"
        cells = [
            f"{_pct(rows[town][s]['success_rate'])} ({_pct(rows[town][s]['route_completion'])} route)" for s in SUITES
        ]
        per_km = " / ".join(_num(rows[town][s]["collisions_per_km"]) for s in SUITES)
        print(f"| {label} | {' | '.join(cells)} | {per_km} |")
    for name, published in PUBLISHED.items():
        cells = [" / ".join(_pct(published[t][k]) for t in CARLA_TOWNS) for k in range(len(SUITES))]
        print(f"| {name}, {' / '.join(CARLA_TOWNS)} | {' | '.join(cells)} | |")
    data = {"checkpoint": checkpoint, "seed": seed, "command": " ".join(sys.argv), "results": rows}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "table.json").write_text(json.dumps(data, indent=1) + "\n")
    return data


def navigation(args: argparse.Namespace) -> None:
    """PPO with benchmarks/configs/ppo_navigation.yaml for the budget (curve on ``navigation``), then the table."""
    args.algo = "ppo"
    args.suite = "navigation"
    args.train_suite = ""
    args.run_dir, args.keep_run = "", False
    args.config = [str(CONFIGS / "ppo_navigation.yaml"), *args.config]
    args.out = str(Path(args.out or RESULTS / "ppo_navigation"))
    data = curve(args)
    final = data["points"][-1]["path"]
    shutil.copy(final, Path(args.out) / "ppo_navigation.ckpt")
    table(
        str(Path(args.out) / "ppo_navigation.ckpt"),
        args.eval_envs,
        args.eval_seed,
        None,
        args.eval_workers,
        Path(args.out),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    for name in ("curve", "straight", "navigation"):
        p = sub.add_parser(name)
        p.add_argument("--minutes", type=float, default=5.0, help="training wall-clock budget per run")
        p.add_argument("--config", action="append", default=[], help="more run config YAML (after base + algo)")
        p.add_argument("--num-envs", type=int, default=None, help="training envs (default: train.num_envs)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--device", default=None, help="cpu | cuda | auto (default: train.device)")
        p.add_argument("--snapshot-s", type=float, default=30.0, help="seconds of training between snapshots")
        p.add_argument("--max-points", type=int, default=10, help="snapshots evaluated at most (evenly spaced)")
        p.add_argument("--eval-episodes", type=int, default=None, help="first N episodes of the suite (all: 25)")
        p.add_argument("--eval-envs", type=int, default=1, help="envs per evaluation")
        p.add_argument("--eval-workers", type=int, default=1, help="evaluations run in parallel")
        p.add_argument("--eval-seed", type=int, default=0)
        p.add_argument("--torch-threads", type=int, default=1)
        p.add_argument("--ros", action="store_true", help="train through the ROS loop (carla-rl train)")
        p.add_argument(
            "--init-from",
            default="",
            help="warm start: the policy weights of this checkpoint (in-process training only)",
        )
        p.add_argument("--out", default="", help="results directory (default under benchmarks/results/)")
        p.add_argument(
            "--towns",
            nargs="+",
            default=[],
            help="train on these towns, env i on towns[i %% N] (shipped names, or CARLA's Town01 from ../shared)",
        )
        if name == "curve":
            p.add_argument("--algo", choices=ALGOS, required=True)
            p.add_argument("--suite", default="straight", help="the evaluation suite")
            p.add_argument("--train-suite", default="", help="train on this suite's scenarios (default: the config's)")
            p.add_argument("--run-dir", default="")
            p.add_argument("--keep-run", action="store_true", help="do not delete an existing run directory")
        if name == "straight":
            p.add_argument("--algos", nargs="+", default=list(ALGOS), choices=ALGOS)
            p.add_argument("--cores-per-run", type=int, default=0, help="taskset each run to this many cores")
            p.add_argument("--parallel", action=argparse.BooleanOptionalAction, default=True)
    t = sub.add_parser("table")
    t.add_argument("--checkpoint", required=True)
    t.add_argument("--num-envs", type=int, default=1)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--episodes", type=int, default=None, help="first N episodes of each suite (all: 25)")
    t.add_argument("--workers", type=int, default=1)
    t.add_argument("--out", default="")
    t.add_argument("--towns", nargs="+", default=None, help="towns to evaluate on (default: ours and CARLA's)")
    t.add_argument("--trained-on", nargs="+", default=None, help="towns to label 'trained on' (default: sim.town)")
    args = parser.parse_args(argv)
    if args.mode == "curve":
        curve(args)
    elif args.mode == "straight":
        straight(args)
    elif args.mode == "navigation":
        navigation(args)
    else:
        table(
            args.checkpoint,
            args.num_envs,
            args.seed,
            args.episodes,
            args.workers,
            Path(args.out) if args.out else None,
            args.towns,
            args.trained_on,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
