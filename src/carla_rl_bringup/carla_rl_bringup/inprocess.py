"""In-process envs: the env node's RL problem on a simulator stepped in this process (no ROS), built in one place.

``carla-rl train --inprocess``, ``carla-rl evaluate --inprocess``, ``gymnasium.make("carla_rl/Driving-v0")``
and the benchmarks build their envs here, with the seed rule of the ROS stacks (config/stacks.yaml, the
``seed`` and ``sim_seed`` launch arguments): for a run seeded ``seed``, env i's simulator gets
``seed + sim.seed + i`` and the env itself (its scenario source) ``seed + i``. A config and a seed so give the
same simulators and routes in-process as over ROS. It lives in bringup because it composes the simulator and
the env, which never import each other.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from carla_rl_env.inprocess import InProcessEnv
from carla_rl_sim.core import load_simulator

if TYPE_CHECKING:
    from stable_baselines3.common.vec_env import VecEnv


def inprocess_env(
    config: dict[str, Any],
    seed: int,
    index: int = 0,
    *,
    town: str | None = None,
    offset: int = 0,
    stride: int = 1,
) -> InProcessEnv:
    """Env ``index`` of a run seeded ``seed`` on a run or env ``config`` (its ``env`` and ``sim`` sections).

    ``town``: the simulator's map instead of ``sim.town`` (the env keeps ``config``); ``offset`` and ``stride``:
    the suite episodes it takes, ``offset``, ``offset + stride``, ... (env i of N: i and N, so that N envs run a
    suite once)."""
    sim = config["sim"]
    simulator = load_simulator(
        town or sim["town"],
        config["env"]["objects_file"],
        sim["fixed_delta_seconds"],
        sim["traffic"],
        seed + sim["seed"] + index,  # the stacks' sim_seed_i
    )
    return InProcessEnv(config, simulator, seed=seed + index, offset=offset, stride=stride)


def inprocess_env_fns(
    config: dict[str, Any],
    num_envs: int,
    seed: int,
    *,
    towns: Sequence[str] | None = None,
    split: bool = False,
) -> list[Callable[[], InProcessEnv]]:
    """The makers of envs 0 .. ``num_envs`` - 1 for a VecEnv (each builds its env where it is called: in a
    worker process for ``SubprocVecEnv`` and ``ShmVecEnv``; picklable). ``towns``: env i drives
    ``towns[i % len(towns)]``; ``split``: env i takes the suite episodes i, i + N, ... (what
    ``carla_rl_agents.evaluation.evaluate`` expects of N envs), else every env runs the whole suite."""
    return [
        functools.partial(
            inprocess_env,
            config,
            seed,
            i,
            town=towns[i % len(towns)] if towns else None,
            offset=i if split else 0,
            stride=num_envs if split else 1,
        )
        for i in range(num_envs)
    ]


def training_vec_env(config: dict[str, Any]) -> VecEnv:
    """The envs of ``carla-rl train --inprocess`` for a run config: ``train.num_envs`` envs of the run seed
    ``train.seed``, each running the whole suite (if any), through
    :func:`carla_rl_agents.shm_vec_env.make_vec_env` (each env wrapped for exact resume; ``train.num_workers``
    > 0: the shared-memory vector env). A ``Trainer``'s env factory."""
    from carla_rl_agents.shm_vec_env import make_vec_env  # torch and SB3: only where training needs them

    train = config["train"]
    return make_vec_env(inprocess_env_fns(config, train["num_envs"], train["seed"]), train)
