"""Run configs and models: every config file validates, build_model accepts each algorithm's config, the
policy network follows the policy section, algo_kwargs are checked against the algorithm's signature."""

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.torch_layers import NatureCNN
from stable_baselines3.common.vec_env import DummyVecEnv
from torch import nn

from carla_rl_agents.algos import ACKTR, OnPolicyHER
from carla_rl_agents.models import (
    ALGORITHM_CLASSES,
    algo_kwarg_names,
    build_model,
    check_algo_kwargs,
    her_measurement_layout,
)
from carla_rl_agents.settings import load_run_config
from carla_rl_common.config import ConfigError
from carla_rl_env.actions import ActionMapper
from carla_rl_env.observations.measurements import ROUTE_MEASUREMENTS, MeasurementLayout
from carla_rl_env.rewards import Reward
from carla_rl_env.settings import ENV_SCHEMA

th.set_num_threads(1)

CONFIG = Path(__file__).resolve().parents[2] / "config"
ALGO_FILES = ("a2c", "acktr", "ppo", "her")
# the measurement vector of config/base.yaml's observation
BASE_MEASUREMENTS = MeasurementLayout(load_run_config([CONFIG / "base.yaml"])["env"]["observation"]).names
VECTORS = {
    "measurements": spaces.Box(-np.inf, np.inf, (len(BASE_MEASUREMENTS),), np.float32),
    "goal": spaces.Box(-np.inf, np.inf, (2,), np.float32),
}
CAMERA = spaces.Box(0, 255, (36, 36, 3), np.uint8)
STEER_THROTTLE = spaces.Box(-1.0, 1.0, (2,), np.float32)


class SpacesEnv(gym.Env):
    """An env of the given spaces that returns samples: enough to build models on."""

    def __init__(self, observation_space: spaces.Dict, action_space: spaces.Space):
        self.observation_space, self.action_space = observation_space, action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


def make_env(observation: dict[str, spaces.Space] | None = None, action: spaces.Space = STEER_THROTTLE) -> DummyVecEnv:
    space = spaces.Dict(observation if observation is not None else {**VECTORS, "camera": CAMERA})
    return DummyVecEnv([lambda: SpacesEnv(space, action)])


def run_config(*names: str, **overrides) -> dict:
    return load_run_config([CONFIG / "base.yaml", *(CONFIG / f"{n}.yaml" for n in names)], overrides or None)


def test_base_yaml_documents_the_defaults_and_valid_env_sections():
    config = run_config()
    assert config["env"]["observation"]["cameras"] == []
    assert config["env"]["observation"]["measurements"] and config["env"]["observation"]["goal"]
    Reward(config["env"]["reward"]["terms"], "base.yaml")  # known term names
    ActionMapper(config["env"]["action"], "base.yaml")


@pytest.mark.parametrize("algo", ALGO_FILES)
def test_every_algorithm_file_validates(algo):
    config = run_config(algo)
    assert config["algo"] == algo
    check_algo_kwargs(algo, config["algo_kwargs"], f"config/{algo}.yaml")
    assert config["algo_kwargs"]["n_steps"] > 0


def test_algorithm_files_hold_the_documented_settings():
    ppo = run_config("ppo")["algo_kwargs"]
    assert ppo == {
        "n_steps": 256,
        "batch_size": 64,
        "n_epochs": 10,
        "learning_rate": 3e-4,
        "gamma": 0.99,
        "gae_lambda": 0.95,
        "clip_range": 0.2,
        "ent_coef": 0.0,
        "vf_coef": 0.5,
        "max_grad_norm": 0.5,
    }
    a2c = run_config("a2c")["algo_kwargs"]
    assert 5 <= a2c["n_steps"] <= 20 and a2c["learning_rate"] == 7e-4 and a2c["use_rms_prop"]
    acktr = run_config("acktr")["algo_kwargs"]
    assert acktr["learning_rate"] == 0.25 and acktr["n_steps"] == 20
    her = run_config("her")
    kwargs = her["algo_kwargs"]
    assert (kwargs["num_virtual_goals"], kwargs["beta"], kwargs["her_reward_goal"], kwargs["her_speed_scale"]) == (
        5,
        1.0,
        500.0,
        pytest.approx(25.0 / 3.6, abs=1e-3),
    )  # the seed's speed/25 in km/h, in m/s
    assert kwargs["goal_scale"] == her["env"]["observation"]["goal_scale"]


def test_her_layout_follows_the_observation_config():
    observation = load_run_config([CONFIG / "base.yaml"])["env"]["observation"]
    layout = her_measurement_layout(observation)
    names = MeasurementLayout(observation).names
    zeroed = {names[i] for i in layout["route_indices"]}
    assert {n for n in names if n.startswith("command_")} <= zeroed
    assert {"lateral_offset", "heading_error", "target_speed", "route_x_5m", "route_y_30m"} <= zeroed
    assert not zeroed & {"speed", "acceleration", "steer", "goal_distance", "speed_limit", "lead_distance"}
    assert names[layout["goal_distance_index"]] == "goal_distance" and layout["frame_size"] == len(names)
    old = her_measurement_layout(ENV_SCHEMA["observation"])  # no lookahead: the 16 fixed measurements
    assert old["frame_size"] == 16 and {MeasurementLayout({}).names[i] for i in old["route_indices"]} == set(
        ROUTE_MEASUREMENTS
    ) - {"target_speed"}


@pytest.mark.parametrize("algo", ALGO_FILES)
def test_build_model_accepts_each_algorithm_config(algo):
    config = run_config(algo, train={"device": "cpu"})
    model = build_model(config, make_env())
    assert type(model) is {"a2c": A2C, "acktr": ACKTR, "ppo": PPO, "her": OnPolicyHER}[algo]
    assert model.n_steps == config["algo_kwargs"]["n_steps"]
    assert model.seed == config["train"]["seed"] and model.device == th.device("cpu")
    if algo == "her":
        assert model.her_reward_goal == 500.0 and model.goal_scale == 50.0
        assert model.route_indices == her_measurement_layout(config["env"]["observation"])["route_indices"]
        assert BASE_MEASUREMENTS[model.goal_distance_index] == "goal_distance"


def test_policy_network_follows_the_policy_section():
    config = run_config(
        "ppo",
        policy={"net_arch": [32, 16], "cnn_features": 24, "activation": "relu", "log_std_init": -0.7},
        train={"device": "cpu"},
    )
    policy = build_model(config, make_env()).policy
    extractors = policy.features_extractor.extractors
    assert isinstance(extractors["camera"], NatureCNN) and extractors["camera"].features_dim == 24
    assert isinstance(extractors["measurements"], nn.Flatten) and isinstance(extractors["goal"], nn.Flatten)
    assert policy.features_dim == 24 + len(BASE_MEASUREMENTS) + 2
    policy_layers = [m for m in policy.mlp_extractor.policy_net if isinstance(m, nn.Linear)]
    assert [layer.out_features for layer in policy_layers] == [32, 16]
    assert any(isinstance(m, nn.ReLU) for m in policy.mlp_extractor.value_net)
    assert th.allclose(policy.log_std, th.full((2,), -0.7))


def test_discrete_actions_get_no_log_std():
    config = run_config("a2c", train={"device": "cpu"})
    model = build_model(config, make_env(action=spaces.Discrete(13)))
    assert not hasattr(model.policy, "log_std")
    assert model.policy.action_net.out_features == 13


def test_unknown_algo_kwargs_name_fails_naming_the_key_and_the_known_names():
    config = run_config("ppo", algo_kwargs={"n_step": 128})
    with pytest.raises(ConfigError) as err:
        build_model(config, make_env())
    assert err.value.key == "algo_kwargs.n_step"
    assert "unknown argument of PPO" in err.value.problem and "n_steps" in err.value.problem
    assert "batch_size" in err.value.problem


def test_algo_kwargs_that_other_sections_set_are_refused():
    for name, hint in (("seed", "train.seed"), ("policy_kwargs", "policy section"), ("device", "train.device")):
        with pytest.raises(ConfigError, match=hint) as err:
            check_algo_kwargs("ppo", {name: 1})
        assert err.value.key == f"algo_kwargs.{name}"
    assert "seed" not in algo_kwarg_names("acktr") and "kl_clip" in algo_kwarg_names("acktr")
    assert set(ALGORITHM_CLASSES) == {"a2c", "acktr", "ppo", "her"}


def test_her_goal_scale_must_be_the_envs():
    config = run_config("her", algo_kwargs={"goal_scale": 40.0})
    with pytest.raises(ConfigError, match="env.observation.goal_scale") as err:
        build_model(config, make_env())
    assert err.value.key == "algo_kwargs.goal_scale"


def test_images_smaller_than_the_cnn_accepts_fail_clearly():
    env = make_env({**VECTORS, "front": spaces.Box(0, 255, (16, 16, 3), np.uint8)})
    with pytest.raises(ConfigError, match="16x16 is smaller than the 36x36") as err:
        build_model(run_config("ppo"), env)
    assert "front" in err.value.key
