"""The gymnasium entry point of ``carla_rl/Driving-v0``: the env node's RL problem on an in-process simulator.

Registered by ``import carla_rl_env`` (with ``carla_rl/RosDriving-v0``, the ROS adapter against a running
stack); it lives here because it composes the simulator and the env, which never import each other::

    import gymnasium, carla_rl_env
    env = gymnasium.make("carla_rl/Driving-v0", town="RLTown02", suite="one_turn", seed=1)
    obs, info = env.reset(seed=1)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from carla_rl_bringup.inprocess import inprocess_env
from carla_rl_env.inprocess import InProcessEnv
from carla_rl_env.scenarios import resolve_suite
from carla_rl_env.settings import load_env_config


def make_driving(
    town: str | None = None,
    config: str | Path | Sequence[str | Path] = (),
    suite: str = "",
    seed: int = 0,
    traffic: int | None = None,
) -> InProcessEnv:
    """An in-process env: ``config`` env/sim YAML files (after the defaults, as ``--config``), ``town`` a shipped
    town or an .xodr path (default: the config's ``sim.town``), ``suite`` a suite name or file (default: random
    routes), ``traffic`` the simulator's own vehicles (default: ``sim.traffic``), ``seed`` the run seed: the env
    is env 0 of :func:`carla_rl_bringup.inprocess.inprocess_env` (simulator ``seed + sim.seed``, scenarios
    ``seed``), as env 0 of a stack with that seed."""
    paths = [config] if isinstance(config, (str, Path)) else list(config)
    overrides: dict = {"sim": {}}
    if town is not None:
        overrides["sim"]["town"] = town
    if traffic is not None:
        overrides["sim"]["traffic"] = traffic
    cfg = load_env_config(paths, overrides)
    if suite:
        cfg["env"]["scenario"]["suite"] = str(resolve_suite(suite, cfg["sim"]["town"]))
    return inprocess_env(cfg, seed)
