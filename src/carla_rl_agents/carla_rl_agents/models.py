"""The model of a run config: the algorithm class, its keyword arguments and the policy network.

The policy is Stable-Baselines3's ``MultiInputPolicy`` (the env's observations are a ``spaces.Dict``), whose
``CombinedExtractor`` is the network's encoder: every image observation (a camera, the BEV raster; uint8
``(H, W, C)``) goes through its own CNN (SB3's ``NatureCNN``, ``policy.cnn_features`` outputs), every vector
(``measurements``, ``goal``) is flattened, and the concatenation feeds two MLPs of ``policy.net_arch`` hidden
units, one for the actor and one for the critic.

``algo_kwargs`` are keyword arguments of the algorithm's class and are checked against its ``__init__``
signature, so a typo fails before training with the list of names the class accepts. What the other config
sections set (the policy network, the seed, the device) is not accepted there.
"""

from __future__ import annotations

import inspect
from typing import Any

from gymnasium import spaces
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from stable_baselines3.common.type_aliases import GymEnv
from torch import nn

from carla_rl_agents.algos import ACKTR, OnPolicyHER
from carla_rl_agents.settings import REMOVED_ALGOS
from carla_rl_common.config import ConfigError
from carla_rl_env.observations.measurements import MeasurementLayout

#: Algorithm classes by the run config's ``algo``. ``her`` (on-policy HER on PPO) is the hindsight algorithm
#: for the carla-rl env; SB3's off-policy ``HerReplayBuffer`` is not offered (``settings.REMOVED_ALGOS``).
ALGORITHM_CLASSES: dict[str, type[BaseAlgorithm]] = {
    "a2c": A2C,
    "acktr": ACKTR,
    "ppo": PPO,
    "her": OnPolicyHER,
}
ACTIVATION_FNS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}
#: Constructor arguments that build_model sets itself, and where they come from instead.
RESERVED_KWARGS: dict[str, str] = {
    "policy": "always MultiInputPolicy",
    "env": "the training env",
    "policy_kwargs": "set them in the policy section",
    "seed": "set train.seed",
    "device": "set train.device",
    "tensorboard_log": "the trainer logs to the run directory",
    "verbose": "not a model setting",
    "_init_setup_model": "not a model setting",
}
#: Smallest image side that SB3's NatureCNN (8x8 stride 4, 4x4 stride 2, 3x3 stride 1) accepts.
NATURE_CNN_MIN_SIZE = 36
#: Error source for configs handed over as dicts (files are named by load_run_config).
RUN_CONFIG_SOURCE = "<run config>"


def algo_kwarg_names(algo: str) -> list[str]:
    """The keyword arguments of ``algo``'s class that ``algo_kwargs`` may set, sorted."""
    parameters = inspect.signature(ALGORITHM_CLASSES[algo].__init__).parameters.values()
    return sorted(
        p.name
        for p in parameters
        if p.name != "self" and p.name not in RESERVED_KWARGS and p.kind is not inspect.Parameter.VAR_KEYWORD
    )


def check_algo_kwargs(algo: str, kwargs: dict[str, Any], source: str = RUN_CONFIG_SOURCE) -> None:
    """Raise ConfigError (``algo_kwargs.<name>``) for a name the algorithm class does not accept.

    Callers that know the config files (the command line) pass them as ``source``.
    """
    if algo in REMOVED_ALGOS:
        raise ConfigError(source, "algo", REMOVED_ALGOS[algo])
    if algo not in ALGORITHM_CLASSES:
        raise ConfigError(source, "algo", f"unknown algorithm {algo!r} (known: {', '.join(ALGORITHM_CLASSES)})")
    known = algo_kwarg_names(algo)
    for name in kwargs:
        if name in RESERVED_KWARGS:
            raise ConfigError(source, f"algo_kwargs.{name}", f"not an algo_kwargs setting: {RESERVED_KWARGS[name]}")
        if name not in known:
            raise ConfigError(
                source,
                f"algo_kwargs.{name}",
                f"unknown argument of {ALGORITHM_CLASSES[algo].__name__} (known: {', '.join(known)})",
            )


def make_policy_kwargs(policy: dict[str, Any], action_space: spaces.Space) -> dict[str, Any]:
    """``policy_kwargs`` of the ``policy`` config section (``log_std_init`` only for continuous actions)."""
    kwargs: dict[str, Any] = {
        "net_arch": list(policy["net_arch"]),
        "activation_fn": ACTIVATION_FNS[policy["activation"]],
        "features_extractor_kwargs": {"cnn_output_dim": int(policy["cnn_features"])},
    }
    if isinstance(action_space, spaces.Box):
        kwargs["log_std_init"] = float(policy["log_std_init"])
    return kwargs


def _check_observation_space(space: spaces.Space, source: str) -> None:
    if not isinstance(space, spaces.Dict):
        raise ConfigError(source, "env.observation", f"the policy needs Dict observations, the env has {space}")
    for key, subspace in space.spaces.items():
        if is_image_space(subspace):
            height, width = subspace.shape[1:] if is_image_space_channels_first(subspace) else subspace.shape[:2]
            if min(height, width) < NATURE_CNN_MIN_SIZE:
                raise ConfigError(
                    source,
                    f"env.observation ({key})",
                    f"image {height}x{width} is smaller than the {NATURE_CNN_MIN_SIZE}x"
                    f"{NATURE_CNN_MIN_SIZE} the CNN encoder (NatureCNN) needs",
                )


def her_measurement_layout(observation: dict[str, Any]) -> dict[str, Any]:
    """OnPolicyHER's keyword arguments for the env's measurement vector (``env.observation`` config), read off
    its :class:`~carla_rl_env.observations.measurements.MeasurementLayout`: which entries of a frame describe
    the route to the goal (zeroed when relabelling), where the goal distance is and its scale, and the frame
    size, so the layout follows the observation config (lookahead, nearby vehicles, frame stack)."""
    layout = MeasurementLayout(observation)
    return {
        "route_indices": list(layout.route_indices),
        "goal_distance_index": layout.index("goal_distance"),
        "goal_distance_scale": layout.scale("goal_distance"),
        "frame_size": layout.size,
    }


def _her_kwargs(config: dict[str, Any], space: spaces.Dict, kwargs: dict[str, Any], source: str) -> None:
    """OnPolicyHER relabels goals in the env's goal units, so its goal_scale must be the env's; the layout of
    the measurement vector comes from the env config (``her_measurement_layout``) unless algo_kwargs set it."""
    observation = config["env"]["observation"]
    env_scale = float(observation["goal_scale"])
    if "goal_scale" in kwargs and float(kwargs["goal_scale"]) != env_scale:
        raise ConfigError(
            source,
            "algo_kwargs.goal_scale",
            f"{kwargs['goal_scale']} differs from env.observation.goal_scale ({env_scale}), "
            "the scale of the goal vector that HER relabels",
        )
    kwargs.setdefault("goal_scale", env_scale)
    layout = her_measurement_layout(observation)
    vector = space.spaces.get(kwargs.get("command_key", "measurements"))
    # only an env with the config's measurement vector has this layout (a test env may have its own)
    if vector is not None and vector.shape == (layout["frame_size"] * int(observation["frame_stack"]),):
        for key, value in layout.items():
            kwargs.setdefault(key, value)


def build_model(
    config: dict[str, Any],
    env: GymEnv,
    device: str | None = None,
    tensorboard_log: str | None = None,
    verbose: int = 0,
) -> BaseAlgorithm:
    """A new, untrained model of ``config`` (a run config, see ``settings.RUN_SCHEMA``) on ``env``.

    :param config: the run config: ``algo``, ``algo_kwargs``, ``policy``, ``train.seed``, ``train.device``
    :param env: the training env (a VecEnv, or a gymnasium env that SB3 wraps) with Dict observations
    :param device: overrides ``train.device`` (``"auto"``: CUDA when present, else CPU)
    :param tensorboard_log: SB3's own TensorBoard directory (the Trainer sets its logger instead)
    :param verbose: SB3 verbosity
    :raises ConfigError: an unknown algorithm or ``algo_kwargs`` name, or an env the config cannot drive
    """
    algo = config["algo"]
    kwargs = dict(config["algo_kwargs"])
    check_algo_kwargs(algo, kwargs)
    _check_observation_space(env.observation_space, RUN_CONFIG_SOURCE)
    if algo == "her":
        _her_kwargs(config, env.observation_space, kwargs, RUN_CONFIG_SOURCE)
    return ALGORITHM_CLASSES[algo](
        "MultiInputPolicy",
        env,
        policy_kwargs=make_policy_kwargs(config["policy"], env.action_space),
        seed=int(config["train"]["seed"]),
        device=device or config["train"]["device"],
        tensorboard_log=tensorboard_log,
        verbose=verbose,
        **kwargs,
    )
