"""ShmVecEnv: the same transitions as a DummyVecEnv of the same envs, SB3's VecEnv interface, training and
exact resume through it, errors and crashes of a worker reported (not a hang), and make_vec_env's config."""

from __future__ import annotations

import os
import sys
from functools import partial
from multiprocessing.shared_memory import SharedMemory

import cloudpickle
import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecMonitor, VecNormalize

from carla_rl_agents.settings import load_run_config
from carla_rl_agents.shm_vec_env import ShmVecEnv, WorkerError, make_vec_env
from carla_rl_agents.training import Trainer
from carla_rl_common.config import ConfigError
from carla_rl_env.inprocess import InProcessEnv
from carla_rl_env.settings import load_env_config
from carla_rl_sim.core import load_simulator

# the workers import nothing of this test module (pytest's importlib mode): its envs travel by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])
th.set_num_threads(1)


class Walk(gym.Env):
    """A point walking to x = 3 (actions in [-1, 1] move it by 0.5 a step) from a random start, episodes of at
    most 8 steps; ``fixed_episodes``: from x = 0 whatever the seed, always 8 steps (what exact resume needs).
    With ``fail_at`` its step raises there, with ``exit_at`` its process dies there."""

    def __init__(self, fail_at: int = -1, exit_at: int = -1, fixed_episodes: bool = False):
        self.observation_space = spaces.Dict(
            {"pos": spaces.Box(-10.0, 10.0, (1,), np.float32), "image": spaces.Box(0, 255, (36, 36, 1), np.uint8)}
        )
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.fail_at, self.exit_at, self.fixed, self.steps = fail_at, exit_at, fixed_episodes, 0
        self.label = "walk"

    def _obs(self) -> dict[str, np.ndarray]:
        image = np.zeros((36, 36, 1), np.uint8)
        image[18, int(np.clip(18 + 3 * self.x, 0, 35))] = 255
        return {"pos": np.array([self.x], np.float32), "image": image}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.t = 0.0 if self.fixed else float(self.np_random.uniform(-1.0, 1.0)), 0
        return self._obs(), {"start": self.x}

    def step(self, action):
        self.steps += 1
        if self.steps == self.fail_at:
            raise RuntimeError("boom in step")
        if self.steps == self.exit_at:
            os._exit(3)
        before = abs(3.0 - self.x)
        self.x += 0.5 * float(np.clip(action[0], -1.0, 1.0))
        self.t += 1
        reached = abs(3.0 - self.x) < 0.3 and not self.fixed
        terms = {"progress": before - abs(3.0 - self.x), "goal_bonus": float(reached)}
        info = {"reward_terms": terms, "termination_reason": "goal_reached" if reached else ""}
        return self._obs(), sum(terms.values()), reached, self.t >= 8 and not reached, info

    def double(self, value: int) -> int:
        return 2 * value


def assert_same_step(a, b) -> None:
    (obs_a, rew_a, done_a, infos_a), (obs_b, rew_b, done_b, infos_b) = a, b
    for key in obs_a:
        np.testing.assert_array_equal(obs_a[key], obs_b[key], err_msg=key)
    np.testing.assert_array_equal(rew_a, rew_b)
    np.testing.assert_array_equal(done_a, done_b)
    assert len(infos_a) == len(infos_b)
    for info_a, info_b in zip(infos_a, infos_b):
        assert set(info_a) == set(info_b)
        for key, value in info_a.items():
            if key == "terminal_observation":
                for k in value:
                    np.testing.assert_array_equal(value[k], info_b[key][k])
            else:
                np.testing.assert_equal(value, info_b[key])


def inprocess_env(i: int) -> InProcessEnv:
    return InProcessEnv(load_env_config(), load_simulator("RLTown01", "", 0.05, 0, i), seed=i)


def test_same_transitions_as_a_dummy_vec_env_with_resets_and_reseeding():
    """Four simulator envs, two per worker, under random actions long enough for episodes to end (the
    worker's auto-reset with its pre-drawn scenario), then reseeded (the drawn scenario is dropped)."""
    fns = [partial(inprocess_env, i) for i in range(4)]
    reference, env = DummyVecEnv(fns), ShmVecEnv(fns, envs_per_worker=2)
    try:
        rng = np.random.default_rng(0)
        dones = 0
        for seed, steps in ((7, 420), (11, 60)):
            reference.seed(seed)
            env.seed(seed)
            first_a, first_b = reference.reset(), env.reset()
            for key in first_a:
                np.testing.assert_array_equal(first_a[key], first_b[key])
            assert env.reset_infos[3].keys() == reference.reset_infos[3].keys()
            for _ in range(steps):
                actions = np.stack([rng.uniform(-0.3, 0.3, 4), rng.uniform(0.0, 0.6, 4)], axis=1).astype(np.float32)
                step_a, step_b = reference.step(actions), env.step(actions)
                assert_same_step(step_a, step_b)
                dones += int(step_a[2].sum())
        assert dones >= 4  # resets inside the workers were compared, not just the first episodes
    finally:
        env.close()
        reference.close()


def test_vec_env_interface_and_wrappers():
    env = ShmVecEnv([Walk] * 4, envs_per_worker=2)
    try:
        assert env.num_envs == 4 and env.observation_space == Walk().observation_space
        assert env.get_attr("label") == ["walk"] * 4
        env.set_attr("label", "other", indices=[1, 2])
        assert env.get_attr("label") == ["walk", "other", "other", "walk"]
        assert env.env_method("double", 21, indices=3) == [42]
        assert env.env_is_wrapped(Monitor) == [False] * 4
        wrapped = VecNormalize(VecMonitor(env), norm_obs=False)
        wrapped.seed(5)
        obs = wrapped.reset()
        assert obs["image"].shape == (4, 36, 36, 1) and obs["image"].dtype == np.uint8
        seen_done = False
        for _ in range(12):
            obs, rewards, dones, infos = wrapped.step(np.ones((4, 1), np.float32))
            assert rewards.dtype == np.float32 and dones.dtype == np.bool_
            for done, info in zip(dones, infos):
                if done:
                    seen_done = True
                    assert "episode" in info and "terminal_observation" in info and "TimeLimit.truncated" in info
        assert seen_done
        # the returned batch is a copy: the next step does not change it
        before = obs["pos"].copy()
        wrapped.step(-np.ones((4, 1), np.float32))
        np.testing.assert_array_equal(obs["pos"], before)
    finally:
        env.close()
    with pytest.raises(FileNotFoundError):
        SharedMemory(name=env._shm_name)  # the block is freed at close
    with pytest.raises(ValueError, match="3 envs do not split into workers of 2 envs"):
        ShmVecEnv([Walk] * 3, envs_per_worker=2)


@pytest.mark.parametrize(
    "env_fns, message",
    [
        ([Walk, partial(Walk, fail_at=3)], r"env 1 raised in its worker:(.|\n)*RuntimeError: boom in step"),
        ([Walk, Walk, partial(Walk, exit_at=2), Walk], r"the worker of envs 2-3 died \(exit code 3\)"),
    ],
)
def test_an_env_error_or_a_dead_worker_is_reported_not_waited_for(env_fns, message):
    env = ShmVecEnv(env_fns, envs_per_worker=len(env_fns) // 2)
    env.reset()
    with pytest.raises(WorkerError, match=message):
        for _ in range(5):
            env.step(np.zeros((env.num_envs, 1), np.float32))
    assert env.closed and not any(p.is_alive() for p in env.processes)
    env.close()  # a no-op after the error


def test_an_error_of_an_env_stepped_in_this_process_is_raised_as_it_is():
    env = ShmVecEnv([partial(Walk, fail_at=2), Walk])  # env 0 steps in this process (main_worker)
    env.reset()
    env.step(np.zeros((2, 1), np.float32))
    with pytest.raises(RuntimeError, match="boom in step"):
        env.step(np.zeros((2, 1), np.float32))
    env.close()  # collects the worker's pending reply, then closes it
    assert env.closed and not any(p.is_alive() for p in env.processes)


def test_an_env_that_fails_to_build_is_reported():
    with pytest.raises(WorkerError, match=r"env 2 raised in its worker:(.|\n)*ZeroDivisionError"):
        ShmVecEnv([Walk, Walk, lambda: 1 / 0, Walk], envs_per_worker=2)


def walk_config(total: int = 384, num_workers: int = 2) -> dict:
    return load_run_config(
        [],
        {
            "algo": "ppo",
            "algo_kwargs": {"n_steps": 32, "batch_size": 16, "n_epochs": 2},
            "policy": {"net_arch": [16], "cnn_features": 16},
            "train": {
                "total_timesteps": total,
                "num_envs": 4,
                "num_workers": num_workers,
                "envs_per_worker": 4 // num_workers if num_workers else 1,
                "checkpoint_every": 1,
                "device": "cpu",
                "seed": 3,
            },
        },
    )


FixedWalk = partial(Walk, fixed_episodes=True)


def walk_factory(config: dict):
    return make_vec_env([FixedWalk] * config["train"]["num_envs"], config["train"])


class StopAt(BaseCallback):
    def __init__(self, steps: int):
        super().__init__()
        self.steps = steps

    def _on_step(self) -> bool:
        return self.num_timesteps < self.steps


def test_ppo_on_it_trains_as_on_a_dummy_vec_env_and_resumes_exactly(tmp_path):
    """The same PPO run on a DummyVecEnv and on a ShmVecEnv ends with the same weights; stopped mid-way and
    resumed it ends there too (8-step episodes that do not depend on the seed: every rollout boundary of 32
    steps is an episode boundary, where exact resume holds)."""
    dummy = Trainer(walk_config(), lambda c: DummyVecEnv([FixedWalk] * 4), tmp_path / "dummy", progress=False)
    dummy.train()
    dummy.close()
    straight = Trainer(walk_config(), walk_factory, tmp_path / "straight", progress=False)
    before = {k: v.clone() for k, v in straight.model.policy.state_dict().items()}
    assert isinstance(straight.model.get_env().unwrapped, ShmVecEnv)
    straight.train()
    straight.close()
    interrupted = Trainer(walk_config(), walk_factory, tmp_path / "resumed", progress=False)
    interrupted.train([StopAt(200)])
    interrupted.close()
    resumed = Trainer.resume(tmp_path / "resumed", walk_factory, progress=False)
    assert resumed.model.num_timesteps == 128
    resumed.train()
    resumed.close()
    weights = [t.model.policy.state_dict() for t in (dummy, straight, resumed)]
    assert any(not th.equal(before[k], weights[1][k]) for k in before)  # it learned something
    for name, value in weights[0].items():
        assert th.allclose(value, weights[1][name], rtol=0.0, atol=1e-6), name
        assert th.allclose(value, weights[2][name], rtol=0.0, atol=1e-6), name


def test_make_vec_env_follows_the_config():
    one = make_vec_env([Walk], walk_config(num_workers=0)["train"] | {"num_envs": 1})
    assert isinstance(one, DummyVecEnv)
    one.close()
    several = make_vec_env([Walk] * 2, {"num_workers": 0})
    assert isinstance(several, SubprocVecEnv)
    several.close()
    with pytest.raises(ConfigError, match=r"train\.envs_per_worker.*3 workers x 1 envs per worker"):
        make_vec_env([Walk] * 4, {"num_workers": 3, "envs_per_worker": 1})
    config = walk_config(num_workers=2)
    assert (config["train"]["num_workers"], config["train"]["envs_per_worker"]) == (2, 2)
    assert load_run_config([])["train"]["num_workers"] == 0  # absent: as before
