"""The run configuration: ``config/base.yaml`` plus one algorithm file, validated against this schema.

A run's config fully describes the model, environment, observation, reward and scenario set, so the
run is reproducible from the copy saved next to its checkpoints. Command-line options only cover what is
independent of the model (paths, logging intervals, seeds, number of envs). RUN_BOUNDS holds the range of
every numeric key (with the env's ENV_BOUNDS and SIM_BOUNDS).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from carla_rl_common.config import ConfigError, Range, load_config
from carla_rl_env.settings import DEFAULT_REWARD_TERMS, ENV_BOUNDS, ENV_SCHEMA, SIM_BOUNDS, SIM_SCHEMA, check_cameras

ALGOS = ("a2c", "acktr", "ppo", "her")
#: Names a run config once accepted, with the reason they are gone (the error an old config gets).
REMOVED_ALGOS = {
    "her_sac": "her_sac was removed: SB3's HerReplayBuffer relabels the goals of a goal-conditioned env "
    "(achieved_goal / desired_goal observations and compute_reward), which our route-following env is not; "
    "use algo: her (on-policy HER on PPO)",
}

RUN_SCHEMA: dict[str, Any] = {
    "algo": "ppo",
    "env": ENV_SCHEMA,
    "sim": SIM_SCHEMA,
    "policy": {
        "net_arch": [256, 256],  # MLP after the combined features, for both actor and critic
        "cnn_features": 256,  # output size of the CNN encoder of each image observation
        "activation": "tanh",  # tanh | relu
        "log_std_init": 0.0,
    },
    "algo_kwargs": {},  # keyword arguments of the algorithm class (checked against its signature)
    "train": {
        "total_timesteps": 20000,
        "num_envs": 1,
        "num_workers": 0,  # in-process: worker processes of a ShmVecEnv (0: one process per env, as before)
        "envs_per_worker": 1,  # in-process, num_workers > 0: envs each worker steps (workers x this = num_envs)
        "checkpoint_every": 10,  # policy updates between checkpoints
        "keep_checkpoints": 3,
        "device": "auto",  # auto uses CUDA when present
        "seed": 0,
        "normalize_reward": False,
    },
}
ACTIVATIONS = ("tanh", "relu")
RUN_BOUNDS: dict[str, Any] = {
    "env": ENV_BOUNDS,
    "sim": SIM_BOUNDS,
    "policy": {
        "net_arch": Range(1, 65536, max_items=32),
        "cnn_features": Range(1, 65536),
        "log_std_init": Range(-20.0, 20.0),
    },
    "train": {
        "total_timesteps": Range(0, 10**12),
        "num_envs": Range(1, 256),
        "num_workers": Range(0, 256),  # 0: SubprocVecEnv (one process per env), as before
        "envs_per_worker": Range(1, 256),
        "checkpoint_every": Range(1, 10**9),
        "keep_checkpoints": Range(1, 10**6),
        "seed": Range(0, 2**31 - 1),  # numpy and torch take seeds below 2**32; env i's is seed + i
    },
}


def load_run_config(
    paths: Iterable[str | Path], overrides: dict[str, Any] | None = None, overrides_source: str = "<command line>"
) -> dict[str, Any]:
    """Defaults, then each file in order (base.yaml, then e.g. ppo.yaml), then ``overrides`` (command-line
    options, or a whole saved config such as a checkpoint's, named ``overrides_source`` in errors)."""
    paths = list(paths)
    source = ", ".join(map(str, paths)) or overrides_source
    config = load_config(RUN_SCHEMA, paths, overrides, RUN_BOUNDS, overrides_source)
    check_cameras(config["env"], source)
    if config["algo"] in REMOVED_ALGOS:
        raise ConfigError(source, "algo", REMOVED_ALGOS[config["algo"]])
    if config["algo"] not in ALGOS:
        raise ConfigError(source, "algo", f"unknown algorithm {config['algo']!r} (known: {', '.join(ALGOS)})")
    if config["policy"]["activation"] not in ACTIVATIONS:
        raise ConfigError(source, "policy.activation", f"expected one of {', '.join(ACTIVATIONS)}")
    if not config["env"]["reward"]["terms"]:
        config["env"]["reward"]["terms"] = dict(DEFAULT_REWARD_TERMS)
    return config
