"""The run configuration: ``config/base.yaml`` plus one algorithm file, validated against this schema.

A run's config fully describes the model, environment, observation, reward and scenario set, so the
run is reproducible from the copy saved next to its checkpoints. Command-line options only cover what is
independent of the model (paths, logging intervals, seeds, number of envs).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from carla_rl_common.config import ConfigError, load_config
from carla_rl_env.settings import DEFAULT_REWARD_TERMS, ENV_SCHEMA, SIM_SCHEMA

ALGOS = ("a2c", "acktr", "ppo", "her", "her_sac")

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
        "checkpoint_every": 10,  # policy updates between checkpoints
        "keep_checkpoints": 3,
        "device": "auto",  # auto uses CUDA when present
        "seed": 0,
        "normalize_reward": False,
    },
}
ACTIVATIONS = ("tanh", "relu")


def load_run_config(paths: Iterable[str | Path], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults, then each file in order (base.yaml, then e.g. ppo.yaml), then command-line overrides."""
    paths = list(paths)
    config = load_config(RUN_SCHEMA, paths, overrides)
    source = ", ".join(map(str, paths)) or "<defaults>"
    if config["algo"] not in ALGOS:
        raise ConfigError(source, "algo", f"unknown algorithm {config['algo']!r} (known: {', '.join(ALGOS)})")
    if config["policy"]["activation"] not in ACTIVATIONS:
        raise ConfigError(source, "policy.activation", f"expected one of {', '.join(ACTIVATIONS)}")
    if not config["env"]["reward"]["terms"]:
        config["env"]["reward"]["terms"] = dict(DEFAULT_REWARD_TERMS)
    return config
