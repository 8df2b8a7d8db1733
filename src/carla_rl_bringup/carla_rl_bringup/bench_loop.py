"""Lockstep loop speed: simulator, env and agent as three processes over ROS 2, against the same simulator
and task code stepped in-process (``carla-rl bench`` runs it; ``benchmarks/bench_loop.py`` too).

The agent side runs here (a gymnasium RosEnv with a fixed random action sequence); the simulator and env
nodes are separate processes started with the same launcher ``carla-rl drive`` uses. Episodes are made
long (no terminations) so resets do not dominate. Prints a table (or one JSON object with ``--json``).

Also the in-process side of scale-out (``carla-rl bench`` and ``benchmarks/bench_scaling.py``):
:func:`inprocess_scaling` (N envs stepped together by each kind of VecEnv, with ``scaling_efficiency``) and
:func:`train_rate` (training steps/s of an algorithm on N envs, SubprocVecEnv or ShmVecEnv, CPU or CUDA).
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

from carla_rl_bringup.launcher import NodeSpec, ProcessGroup
from carla_rl_common.bridge import env_namespace
from carla_rl_common.dds import ros_environment
from carla_rl_common.paths import default_objects_file
from carla_rl_env.settings import load_env_config

LONG = {
    "env": {
        "episode": {
            "max_episode_steps": 100000,
            "terminate_on_collision": False,
            "terminate_on_off_road": False,
            "max_route_deviation": 1.0e4,  # the largest values the schema allows: never reached here
            "wrong_way_angle_deg": 180.0,
            "stuck_seconds": 86400.0,
            "min_average_speed": 0.001,
        }
    }
}


def objects_file(tmp: Path, camera: int) -> Path:
    """config/objects.json (every sensor and pseudo sensor the env node reads: as on the bridge, a topic exists
    only when its sensor is spawned) with its camera resized to ``camera`` pixels, or removed for 0."""
    data = json.loads(default_objects_file().read_text())
    for vehicle in data["objects"]:
        sensors = [s for s in vehicle.get("sensors", []) if s["type"] != "sensor.camera.rgb"]
        if camera and vehicle["type"].startswith("vehicle."):
            sensors.append(
                {
                    "type": "sensor.camera.rgb",
                    "id": "rgb_front",
                    "spawn_point": {"x": 2.0, "y": 0.0, "z": 2.0, "roll": 0.0, "pitch": 0.0, "yaw": 0.0},
                    "image_size_x": camera,
                    "image_size_y": camera if camera <= 84 else camera * 3 // 4,
                    "fov": 90.0,
                }
            )
        if "sensors" in vehicle:
            vehicle["sensors"] = sensors
    path = tmp / "objects.json"
    path.write_text(json.dumps(data))
    return path


def env_config(camera: int) -> dict:
    overrides = dict(LONG)
    if camera:
        h = camera if camera <= 84 else camera * 3 // 4
        overrides = {
            "env": {
                **LONG["env"],
                "observation": {"cameras": [{"id": "rgb_front", "width": min(camera, 84), "height": min(h, 84)}]},
            }
        }
    return load_env_config([], overrides)


def run_ros(
    steps: int, camera: int, tmp: Path, actions: np.ndarray, num_envs: int = 1, composed: bool = False
) -> tuple[float, np.ndarray]:
    """Transitions/s of N simulator + env node pairs stepped together by a RosVecEnv, and step latencies.

    ``composed``: each pair runs as one process (carla_rl_bringup.composed) instead of two.
    """
    from carla_rl_agents.vec_env import RosVecEnv

    config_path = tmp / "env.yaml"
    config_path.write_text(yaml.safe_dump(env_config(camera)))
    env_vars = ros_environment(domain_id=int(os.environ.get("BENCH_DOMAIN_ID", 90)))
    os.environ.update(env_vars)
    namespaces = [""] if num_envs == 1 else [env_namespace(i) for i in range(num_envs)]
    with ProcessGroup(env_vars, log=open(os.environ.get("BENCH_LOG", os.devnull), "a")) as group:
        for i, ns in enumerate(namespaces):
            sim = {
                "objects_file": str(objects_file(tmp, camera)),
                "seed": i,
                "synchronous_mode_wait_for_vehicle_control_command": True,
            }
            env = {"config": [str(config_path)], "seed": i, "use_sim_time": True}
            if composed:
                group.start(NodeSpec(f"simenv{i}", "carla_rl_bringup.composed", ns, {**sim, **env}))
            else:
                group.start(NodeSpec(f"sim{i}", "carla_rl_sim.node", ns, sim))
                group.start(NodeSpec(f"env{i}", "carla_rl_env.node", ns, env))
        env = RosVecEnv(namespaces, timeout=60)
        latency, elapsed = _step_vec(env, steps, actions)
        env.close()
    return steps * num_envs / elapsed, latency


def run_inprocess(steps: int, camera: int, tmp: Path, actions: np.ndarray, num_envs: int = 1) -> float:
    """Transitions/s of N in-process envs stepped one after the other in this process."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    from carla_rl_env.inprocess import InProcessEnv
    from carla_rl_sim.core import load_simulator

    def make(i: int):
        return lambda: InProcessEnv(
            env_config(camera), load_simulator("RLTown01", str(objects_file(tmp, camera)), 0.05, 0, i), seed=i
        )

    env = DummyVecEnv([make(i) for i in range(num_envs)])
    _, elapsed = _step_vec(env, steps, actions)
    return steps * num_envs / elapsed


def _step_vec(env, steps: int, actions: np.ndarray) -> tuple[np.ndarray, float]:
    """Step a VecEnv ``steps`` times (after a warm-up); resets inside count, as they do in training."""
    env.seed(0)
    env.reset()
    n = env.num_envs
    for a in actions[:20]:
        env.step(np.repeat(a[None], n, axis=0))
    latency = np.empty(steps)
    start = time.perf_counter()
    for i in range(steps):
        t = time.perf_counter()
        env.step(np.repeat(actions[i % len(actions)][None], n, axis=0))
        latency[i] = time.perf_counter() - t
    return latency, time.perf_counter() - start


def measure(steps: int = 2000, camera: int = 0, repeats: int = 3, num_envs: int = 1, composed: bool = True) -> dict:
    """Median transitions/s through ROS and in-process, their ratio, and per-step latency percentiles.

    The three variants run back to back within each repeat (ROS with sim and env node as separate processes,
    ROS with them composed, in-process), so load from other work on the machine hits them alike.
    """
    rng = np.random.default_rng(0)
    # gentle actions so the car keeps driving instead of jittering in place
    actions = np.stack([rng.uniform(-0.3, 0.3, 1000), rng.uniform(0.0, 0.6, 1000)], axis=1).astype(np.float32)
    ros, comp, inproc, lat, comp_lat = [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            rate, latency = run_ros(steps, camera, Path(tmp), actions, num_envs)
            ros.append(rate)
            lat.append(latency)
            if composed:
                rate, latency = run_ros(steps, camera, Path(tmp), actions, num_envs, composed=True)
                comp.append(rate)
                comp_lat.append(latency)
            inproc.append(run_inprocess(steps, camera, Path(tmp), actions, num_envs))
    latency_ms = np.concatenate(lat) * 1000
    result = {
        "steps": steps,
        "camera": camera,
        "repeats": repeats,
        "num_envs": num_envs,
        "ros_steps_per_s": statistics.median(ros),
        "inprocess_steps_per_s": statistics.median(inproc),
        "ratio": statistics.median(ros) / statistics.median(inproc),
        "latency_p50_ms": float(np.percentile(latency_ms, 50)),
        "latency_p99_ms": float(np.percentile(latency_ms, 99)),
        "ros_runs": ros,
        "inprocess_runs": inproc,
    }
    if composed:
        comp_ms = np.concatenate(comp_lat) * 1000
        result.update(
            {
                "composed_steps_per_s": statistics.median(comp),
                "composed_ratio": statistics.median(comp) / statistics.median(inproc),
                "composed_latency_p50_ms": float(np.percentile(comp_ms, 50)),
                "composed_latency_p99_ms": float(np.percentile(comp_ms, 99)),
                "composed_runs": comp,
            }
        )
    return result


#: How the in-process scaling figures step N envs: one process (``dummy``), one process per env (SB3's
#: ``subproc``, what ``train.num_workers: 0`` trains on), ShmVecEnv workers (``shm``), and gymnasium's
#: AsyncVectorEnv with shared memory behind an SB3 adapter (``gymnasium``, for comparison).
VEC_KINDS = ("dummy", "subproc", "shm", "gymnasium")


def _inprocess_env(i: int):
    """Env ``i`` of the scaling figures: RLTown01, the default task (episodes end, so resets count)."""
    from carla_rl_env.inprocess import InProcessEnv
    from carla_rl_sim.core import load_simulator

    return InProcessEnv(load_env_config(), load_simulator("RLTown01", "", 0.05, 0, i), seed=i)


class _GymnasiumVecEnv:
    """gymnasium's AsyncVectorEnv (shared-memory observations, same-step autoreset) with SB3's step
    semantics (list of info dicts, ``terminal_observation``), only as far as stepping needs."""

    def __init__(self, env_fns: list):
        from gymnasium.vector import AsyncVectorEnv, AutoresetMode

        self.env = AsyncVectorEnv(env_fns, shared_memory=True, autoreset_mode=AutoresetMode.SAME_STEP)
        self.num_envs = len(env_fns)

    def seed(self, seed: int) -> None:
        self._seed = seed

    def reset(self):
        return self.env.reset(seed=self._seed)[0]

    def step(self, actions: np.ndarray):
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        dones = terminated | truncated
        infos = [{} for _ in range(self.num_envs)]
        for key, values in info.items():
            if key.startswith("_") or key == "final_info":
                continue
            mask = info[f"_{key}"]
            for i in np.flatnonzero(mask):
                infos[i][key] = values[i] if not isinstance(values, dict) else {k: v[i] for k, v in values.items()}
        for i in np.flatnonzero(dones):
            infos[i]["terminal_observation"] = {k: v[i] for k, v in info["final_obs"][i].items()}
        return obs, rewards, dones, infos

    def close(self) -> None:
        self.env.close()


def inprocess_vec_env(kind: str, num_envs: int, envs_per_worker: int = 1):
    """``num_envs`` in-process envs stepped the ``kind`` way (see :data:`VEC_KINDS`)."""
    from functools import partial

    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    from carla_rl_agents.shm_vec_env import ShmVecEnv

    fns = [partial(_inprocess_env, i) for i in range(num_envs)]
    if kind == "dummy":
        return DummyVecEnv(fns)
    if kind == "subproc":
        return SubprocVecEnv(fns)
    if kind == "shm":
        return ShmVecEnv(fns, envs_per_worker=envs_per_worker)
    if kind == "gymnasium":
        return _GymnasiumVecEnv(fns)
    raise ValueError(f"unknown vec env kind {kind!r} (known: {', '.join(VEC_KINDS)})")


def vec_rate(kind: str, num_envs: int, seconds: float, envs_per_worker: int = 1) -> float:
    """Transitions/s of ``num_envs`` envs under random gentle actions for ``seconds`` (after 20 warm-up
    steps), resets included as in training."""
    env = inprocess_vec_env(kind, num_envs, envs_per_worker)
    try:
        env.seed(0)
        env.reset()
        rng = np.random.default_rng(0)
        actions = np.stack([rng.uniform(-0.3, 0.3, (256, num_envs)), rng.uniform(0.0, 0.6, (256, num_envs))], axis=2)
        actions = actions.astype(np.float32)
        for a in actions[:20]:
            env.step(a)
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            env.step(actions[steps % len(actions)])
            steps += 1
        return steps * num_envs / (time.perf_counter() - start)
    finally:
        env.close()


def inprocess_scaling(
    envs: list[int],
    seconds: float,
    kinds: list[str] = ("subproc", "shm"),
    envs_per_worker: list[int] = (1,),
) -> dict:
    """Transitions/s of N in-process envs for each N and each way to step them, and ``scaling_efficiency``:
    N-env transitions/s / (N x one env in this process, ``DummyVecEnv``: training's single-env path).

    ``shm`` is measured for each ``envs_per_worker`` that divides N (keyed ``shm`` for 1, ``shm_k<k>`` else).
    """
    one = vec_rate("dummy", 1, seconds)
    rates: dict[str, dict[int, float]] = {}
    for kind in kinds:
        for k in envs_per_worker if kind == "shm" else (1,):
            name = kind if k == 1 else f"{kind}_k{k}"
            rates[name] = {n: vec_rate(kind, n, seconds, k) for n in envs if n % k == 0}
    return {
        "seconds": seconds,
        "one_env_per_s": one,
        "transitions_per_s": rates,
        "scaling_efficiency": {name: {n: r / (n * one) for n, r in by_n.items()} for name, by_n in rates.items()},
    }


def train_rate(
    algo: str,
    num_envs: int,
    steps: int,
    device: str = "cpu",
    num_workers: int = 0,
    envs_per_worker: int = 1,
    configs: list[str] = (),
) -> dict:
    """Steps/s of in-process training (``Trainer``: the run's callbacks, checkpoints and logs included) on
    ``num_envs`` envs of the default task, ``num_workers`` > 0 through a ShmVecEnv; also the seconds spent
    collecting rollouts and the rest (policy updates on ``device``, logging, the final checkpoint).

    The run config is base.yaml, the algorithm's file, then ``configs`` (e.g. a PPO batch size), then the
    figures above."""
    from functools import partial

    from stable_baselines3.common.callbacks import BaseCallback

    from carla_rl_agents.settings import load_run_config
    from carla_rl_agents.shm_vec_env import make_vec_env
    from carla_rl_agents.training import Trainer
    from carla_rl_common.paths import CONFIG_DIR

    class RolloutTime(BaseCallback):
        """Wall time spent collecting rollouts (the rest of learn() is policy updates and logging)."""

        def __init__(self):
            super().__init__()
            self.seconds = self._start = 0.0

        def _on_rollout_start(self) -> None:
            self._start = time.perf_counter()

        def _on_rollout_end(self) -> None:
            self.seconds += time.perf_counter() - self._start

        def _on_step(self) -> bool:
            return True

    train = {
        "total_timesteps": steps,
        "num_envs": num_envs,
        "num_workers": num_workers,
        "envs_per_worker": envs_per_worker,
        "checkpoint_every": 10**6,
        "device": device,
    }
    paths = [CONFIG_DIR / "base.yaml", CONFIG_DIR / f"{algo}.yaml", *configs]
    config = load_run_config(paths, {"train": train})
    kwargs = config["algo_kwargs"]
    if "batch_size" in kwargs:  # a minibatch no larger than the rollout (SB3 warns of a truncated one)
        kwargs["batch_size"] = min(kwargs["batch_size"], kwargs.get("n_steps", 2048) * num_envs)

    def factory(cfg: dict):
        return make_vec_env([partial(_inprocess_env, i) for i in range(cfg["train"]["num_envs"])], cfg["train"])

    with tempfile.TemporaryDirectory(prefix=f"bench-train-{algo}-") as tmp:
        rollouts = RolloutTime()
        with Trainer(config, factory, tmp, progress=False) as trainer:
            start = time.perf_counter()
            model = trainer.train([rollouts])
            wall = time.perf_counter() - start
    return {
        "steps_per_s": model.num_timesteps / wall,
        "steps": model.num_timesteps,
        "rollout_s": rollouts.seconds,
        "update_s": wall - rollouts.seconds,
    }


def machine() -> dict:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--camera", type=int, default=0, help="camera width (0: measurements only)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-envs", type=int, default=1)
    parser.add_argument("--no-composed", action="store_true", help="skip the composed sim+env variant")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = {
        "machine": machine(),
        **measure(args.steps, args.camera, args.repeats, args.num_envs, composed=not args.no_composed),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{'figure':<28}{'value':>12}")
        for key in (
            "ros_steps_per_s",
            "inprocess_steps_per_s",
            "ratio",
            "latency_p50_ms",
            "latency_p99_ms",
            "composed_steps_per_s",
            "composed_ratio",
            "composed_latency_p50_ms",
            "composed_latency_p99_ms",
        ):
            if key in result:
                print(f"{key:<28}{result[key]:>12.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
