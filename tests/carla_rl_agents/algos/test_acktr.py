"""ACKTR: learns CartPole, runs with Mlp/Cnn/MultiInput policies and Box/Discrete actions, exact save/load."""

import copy
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure

from carla_rl_agents.algos import ACKTR, KFACOptimizer

th.set_num_threads(1)


class BrightSideEnv(gym.Env):
    """36x36 grey image with one bright column; reward 1 for naming its side (0 left, 1 right)."""

    observation_space = spaces.Box(0, 255, (36, 36, 1), np.uint8)
    action_space = spaces.Discrete(2)

    def _observe(self) -> np.ndarray:
        self.side = int(self.np_random.integers(2))
        image = np.full((36, 36, 1), 40, np.uint8)
        column = int(self.np_random.integers(18)) + 18 * self.side
        image[:, column] = 255
        return image

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return self._observe(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward = float(int(action) == self.side)
        self.t += 1
        return self._observe(), reward, False, self.t >= 20, {}


class DictTargetEnv(gym.Env):
    """Dict observation (position, target); continuous action moves the position; reward -distance."""

    observation_space = spaces.Dict(
        {"position": spaces.Box(-5, 5, (2,), np.float32), "target": spaces.Box(-1, 1, (2,), np.float32)}
    )
    action_space = spaces.Box(-1, 1, (2,), np.float32)

    def _obs(self) -> dict[str, np.ndarray]:
        return {"position": self.position.astype(np.float32), "target": self.target.astype(np.float32)}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        self.position = np.zeros(2)
        self.target = self.np_random.uniform(-1, 1, 2)
        self.t = 0
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        self.position = np.clip(self.position + 0.2 * np.asarray(action), -5, 5)
        self.t += 1
        return self._obs(), -float(np.linalg.norm(self.position - self.target)), False, self.t >= 25, {}


def _parameters(model: ACKTR) -> list[th.Tensor]:
    return [p.detach().clone() for p in model.policy.parameters()]


def _assert_trained(model: ACKTR, before: list[th.Tensor]) -> None:
    logged = model.logger.name_to_value
    for key in ("train/policy_loss", "train/value_loss", "train/entropy_loss", "train/kl_clip_nu"):
        assert np.isfinite(logged[key]), key
    assert 0 < logged["train/kl_clip_nu"] <= 1
    assert all(th.isfinite(p).all() for p in model.policy.parameters())
    assert any(not th.equal(b, p) for b, p in zip(before, model.policy.parameters(), strict=True))


def test_replaces_policy_optimizer_with_kfac() -> None:
    model = ACKTR("MlpPolicy", "CartPole-v1", seed=0, device="cpu")
    assert isinstance(model.policy.optimizer, KFACOptimizer)
    assert model.policy.optimizer.param_groups[0]["lr"] == 0.25
    assert len(model.policy.optimizer.layers) == 6  # 2 + 2 hidden layers, action and value heads


def test_learns_cartpole() -> None:
    env = make_vec_env("CartPole-v1", n_envs=4, seed=0)
    model = ACKTR("MlpPolicy", env, seed=0, device="cpu")
    model.learn(total_timesteps=20_000)
    mean_return, _ = evaluate_policy(model, make_vec_env("CartPole-v1", n_envs=1, seed=100), n_eval_episodes=5)
    assert mean_return > 200  # a random policy gets ~22


def test_box_actions_mlp() -> None:
    model = ACKTR("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=2, seed=0), seed=0, device="cpu")
    before = _parameters(model)
    model.learn(total_timesteps=400)
    _assert_trained(model, before)
    assert "train/std" in model.logger.name_to_value


def test_cnn_policy_preconditions_conv_layers() -> None:
    model = ACKTR("CnnPolicy", make_vec_env(BrightSideEnv, n_envs=2, seed=0), n_steps=8, seed=0, device="cpu")
    before = _parameters(model)
    model.learn(total_timesteps=64)
    _assert_trained(model, before)
    kfac = model.policy.optimizer
    convs = [m for m in kfac.layers if isinstance(m, th.nn.Conv2d)]
    assert len(convs) == 3 and all("Q_a" in kfac.state[m.weight] for m in convs)


def test_multi_input_policy_box_actions() -> None:
    model = ACKTR("MultiInputPolicy", make_vec_env(DictTargetEnv, n_envs=2, seed=0), seed=0, device="cpu")
    before = _parameters(model)
    model.learn(total_timesteps=400)
    _assert_trained(model, before)


def test_save_load_resumes_kfac_exactly(tmp_path: Path) -> None:
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = ACKTR("MlpPolicy", env, seed=0, device="cpu", Ts=3)
    model.learn(total_timesteps=200)  # 5 updates: the eigenbases in use are older than the factors
    model.save(tmp_path / "acktr")
    loaded = ACKTR.load(tmp_path / "acktr", env=env, device="cpu")

    kfac, loaded_kfac = model.policy.optimizer, loaded.policy.optimizer
    assert isinstance(loaded_kfac, KFACOptimizer) and loaded_kfac.steps == kfac.steps == 5
    for p, q in zip(model.policy.parameters(), loaded.policy.parameters(), strict=True):
        assert set(kfac.state[p]) == set(loaded_kfac.state[q])
        for key, value in kfac.state[p].items():
            assert th.equal(value, loaded_kfac.state[q][key]), key

    # One more update from the same rollout and the same noise gives identical parameters.
    loaded.rollout_buffer = copy.deepcopy(model.rollout_buffer)
    for algo in (model, loaded):
        algo.set_logger(configure(folder=None, format_strings=[]))
        th.manual_seed(123)
        np.random.seed(123)  # the buffer shuffles the batch
        algo.train()
    for p, q in zip(model.policy.parameters(), loaded.policy.parameters(), strict=True):
        assert th.equal(p, q)


def test_rejects_zero_value_coefficient() -> None:
    with pytest.raises(ValueError, match="vf_coef"):
        ACKTR("MlpPolicy", "CartPole-v1", vf_coef=0.0)
