"""Trainer: short real runs of every algorithm (finite losses, parameters move, logs, checkpoints, curve),
exact resume (N steps, stop, resume, M steps == N + M straight), the pause hook and run-directory guards."""

import copy
import csv
import json
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
import yaml
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv

import carla_rl_agents.checkpoints as checkpoints
from carla_rl_agents.checkpoints import latest_checkpoint, list_checkpoints, read_meta
from carla_rl_agents.resume import ResumableEnv
from carla_rl_agents.settings import load_run_config
from carla_rl_agents.training import Trainer, read_episodes
from carla_rl_common.config import ConfigError

th.set_num_threads(1)

GOAL = np.array([6.0, 2.0])
GOAL_SCALE = 10.0


class PointDriveEnv(gym.Env):
    """A point car driving to a fixed goal, with the carla-rl env's interface.

    Observations: ``measurements`` = [speed, cos yaw, sin yaw], ``goal`` = ego-frame goal / GOAL_SCALE and,
    with ``image``, a 36x36 top-down ``camera`` raster with the goal as a bright square. Action: [accelerate,
    steer]. Reward: the sum of ``info["reward_terms"]`` (progress towards the goal, goal bonus). Episodes end
    at the goal (``termination_reason`` ``goal_reached``, unless ``terminate=False``) or after ``horizon``
    steps. Resets are deterministic (same start, same goal), whatever the seed.
    """

    def __init__(self, image: bool = True, terminate: bool = True, horizon: int = 16):
        parts = {
            "measurements": spaces.Box(-np.inf, np.inf, (3,), np.float32),
            "goal": spaces.Box(-5.0, 5.0, (2,), np.float32),
        }
        if image:
            parts["camera"] = spaces.Box(0, 255, (36, 36, 3), np.uint8)
        self.observation_space = spaces.Dict(parts)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.image, self.terminate, self.horizon = image, terminate, horizon

    def _obs(self) -> dict[str, np.ndarray]:
        x, y, yaw = self.pose
        dx, dy = GOAL - (x, y)
        goal = np.array([math.cos(yaw) * dx + math.sin(yaw) * dy, -math.sin(yaw) * dx + math.cos(yaw) * dy])
        goal = np.clip(goal / GOAL_SCALE, -5.0, 5.0).astype(np.float32)
        obs = {"measurements": np.array([self.speed, math.cos(yaw), math.sin(yaw)], np.float32), "goal": goal}
        if self.image:
            raster = np.zeros((36, 36, 3), np.uint8)
            row, col = np.clip(18 + np.round(6 * goal), 1, 34).astype(int)
            raster[row - 1 : row + 2, col - 1 : col + 2] = 255
            obs["camera"] = raster
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        self.pose, self.speed, self.t = np.zeros(3), 0.0, 0
        return self._obs(), {"ego_pose": self.pose.copy(), "speed": self.speed}

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        self.speed = float(np.clip(self.speed + 0.5 * float(action[0]), 0.0, 2.0))
        self.pose[2] += 0.3 * float(action[1])
        before = float(np.linalg.norm(GOAL - self.pose[:2]))
        self.pose[:2] += self.speed * np.array([math.cos(self.pose[2]), math.sin(self.pose[2])])
        after = float(np.linalg.norm(GOAL - self.pose[:2]))
        self.t += 1
        reached = self.terminate and after < 1.0
        truncated = self.t >= self.horizon and not reached
        terms = {"progress": before - after, "goal_bonus": float(reached)}
        info = {
            "ego_pose": self.pose.copy(),
            "speed": self.speed,
            "reward_terms": terms,
            "termination_reason": "goal_reached" if reached else "time_limit" if truncated else "",
        }
        return self._obs(), sum(terms.values()), reached, truncated, info


ALGO_KWARGS = {
    "a2c": {"n_steps": 16},
    "acktr": {"n_steps": 16},
    "ppo": {"n_steps": 32, "batch_size": 16, "n_epochs": 2},
    "her": {"n_steps": 32, "batch_size": 16, "n_epochs": 2, "min_segment_len": 2, "goal_scale": GOAL_SCALE},
}
LOSSES = {
    "a2c": ("train/policy_loss", "train/value_loss", "train/entropy_loss", "train/explained_variance"),
    "acktr": (
        "train/policy_loss",
        "train/value_loss",
        "train/entropy_loss",
        "train/explained_variance",
        "train/kl_clip_nu",
    ),
    "ppo": (
        "train/policy_gradient_loss",
        "train/value_loss",
        "train/entropy_loss",
        "train/approx_kl",
        "train/explained_variance",
    ),
}
LOSSES["her"] = LOSSES["ppo"] + ("her/segments",)


def run_config(algo: str, total: int = 384, normalize_reward: bool = False) -> dict:
    return load_run_config(
        [],
        {
            "algo": algo,
            "algo_kwargs": ALGO_KWARGS[algo],
            "policy": {"net_arch": [16], "cnn_features": 16},
            "env": {"observation": {"goal_scale": GOAL_SCALE}},
            "train": {
                "total_timesteps": total,
                "num_envs": 2,
                "checkpoint_every": 2,
                "keep_checkpoints": 3,
                "device": "cpu",
                "seed": 3,
                "normalize_reward": normalize_reward,
            },
        },
    )


def env_factory(terminate: bool = True):
    """Two point-drive envs; ACKTR without the camera (K-FAC's float32 eigh fails on near-empty rasters)."""

    def make(config: dict) -> DummyVecEnv:
        image = config["algo"] != "acktr"
        return DummyVecEnv([lambda: PointDriveEnv(image=image, terminate=terminate)] * config["train"]["num_envs"])

    return make


def progress_rows(run_dir: Path, name: str = "progress.csv") -> list[dict[str, str]]:
    with open(run_dir / "tb" / name) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("algo", ["a2c", "acktr", "ppo", "her"])
def test_short_training_run_learns_logs_and_checkpoints(algo, tmp_path, capsys):
    config = run_config(algo)
    trainer = Trainer(config, env_factory(), tmp_path, log_interval=1)
    before = copy.deepcopy(trainer.model.policy.state_dict())
    model = trainer.train()
    trainer.close()

    assert model.num_timesteps == 384
    moved = [name for name, value in model.policy.state_dict().items() if not th.equal(value, before[name])]
    assert "action_net.weight" in moved and "value_net.weight" in moved
    if algo != "acktr":
        assert any(name.startswith("features_extractor.extractors.camera") for name in moved)

    rows = progress_rows(tmp_path)
    assert len(rows) == 384 // (2 * ALGO_KWARGS[algo]["n_steps"])  # one dump per rollout
    for key in (*LOSSES[algo], "episode/return", "episode/success", "reward_terms/progress", "time/fps"):
        values = [float(row[key]) for row in rows if row.get(key)]
        assert values and all(math.isfinite(v) for v in values), key
    if algo == "her":
        assert max(float(row["her/samples"]) for row in rows) > 0  # hindsight samples joined the updates

    episodes = read_episodes(tmp_path / "episodes.jsonl")
    assert episodes and all(e["timesteps"] <= 384 for e in episodes)
    for e in episodes:
        assert e["return"] == pytest.approx(sum(e["reward_terms"].values()), abs=1e-4)
        assert e["success"] == (e["termination_reason"] == "goal_reached")
    assert yaml.safe_load((tmp_path / "config.yaml").read_text()) == config
    assert (tmp_path / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    saved = list_checkpoints(tmp_path)
    assert len(saved) == 3 and saved[-1].name == "step_0000000384.ckpt"
    assert read_meta(saved[-1])["extra"]["updates"] == 384 // (2 * ALGO_KWARGS[algo]["n_steps"])
    err = capsys.readouterr().err  # not a terminal: tqdm's bar as plain lines, no carriage returns
    assert "100%|" in err and "384/384 [" in err and "steps/s]" in err and "\r" not in err
    assert f"checkpoint at step 384: {saved[-1]}" in err and f"learning curve: {tmp_path / 'learning_curve.png'}" in err


class StopAt(BaseCallback):
    """Stops training at ``steps`` (mid-rollout), as a crash or Ctrl-C would."""

    def __init__(self, steps: int):
        super().__init__()
        self.steps = steps

    def _on_step(self) -> bool:
        return self.num_timesteps < self.steps


def train_straight_and_resumed(algo: str, tmp_path: Path, normalize_reward: bool = False):
    """(straight, resumed) trainers: 384 steps at once, and stopped at 200 then resumed to 384."""
    config = run_config(algo, normalize_reward=normalize_reward)
    make_env = env_factory(terminate=False)  # 16-step episodes: every rollout end is an episode end
    straight = Trainer(config, make_env, tmp_path / "straight", progress=False)
    straight.train()
    straight.close()
    interrupted = Trainer(config, make_env, tmp_path / "resumed", progress=False)
    interrupted.train([StopAt(200)])
    interrupted.close()
    assert interrupted.model.num_timesteps == 200
    assert not (tmp_path / "resumed" / "checkpoints" / "step_0000000200.ckpt").exists()
    resumed = Trainer.resume(tmp_path / "resumed", make_env, progress=False)
    every = 2 * 2 * ALGO_KWARGS[algo]["n_steps"]  # checkpoint_every 2 rollouts of 2 envs
    assert resumed.model.num_timesteps == 200 // every * every  # the last periodic checkpoint
    assert (tmp_path / "resumed" / "tb" / f"progress_resumed_at_{resumed.model.num_timesteps}.csv").exists()
    resumed.train()
    resumed.close()
    return straight, resumed


@pytest.mark.parametrize("algo, normalize_reward", [("a2c", False), ("acktr", False), ("ppo", True), ("her", False)])
def test_resume_continues_exactly_like_the_uninterrupted_run(algo, normalize_reward, tmp_path):
    straight, resumed = train_straight_and_resumed(algo, tmp_path, normalize_reward)
    a, b = straight.model, resumed.model
    assert (a.num_timesteps, a._n_updates) == (b.num_timesteps, b._n_updates) == (384, a._n_updates)
    for name, value in a.policy.state_dict().items():
        assert th.allclose(value, b.policy.state_dict()[name], rtol=0.0, atol=1e-6), name
    optimizer_a, optimizer_b = a.policy.optimizer.state_dict()["state"], b.policy.optimizer.state_dict()["state"]
    for index, state in optimizer_a.items():
        for key, value in state.items():
            if isinstance(value, th.Tensor):
                assert th.allclose(value, optimizer_b[index][key], rtol=0.0, atol=1e-6), (index, key)
    if normalize_reward:
        rms_a, rms_b = a.get_vec_normalize_env().ret_rms, b.get_vec_normalize_env().ret_rms
        assert rms_a.count == rms_b.count and np.allclose(rms_a.var, rms_b.var)
    # the episodes after the checkpoint were played again: the log matches the straight run's
    logs = [read_episodes(tmp_path / run / "episodes.jsonl") for run in ("straight", "resumed")]
    assert logs[0] == logs[1]


def test_resume_without_the_rng_states_would_diverge(tmp_path, monkeypatch):
    """The exact-resume test can fail: without restored RNG states the resumed run samples other actions."""
    monkeypatch.setattr(checkpoints, "_restore_rng", lambda model, rng: None)
    straight, resumed = train_straight_and_resumed("ppo", tmp_path)
    weight_a, weight_b = straight.model.policy.action_net.weight, resumed.model.policy.action_net.weight
    assert not th.allclose(weight_a, weight_b, rtol=0.0, atol=1e-6)


class PausableVecEnv(DummyVecEnv):
    """Records pause calls and steps, like the ROS env whose simulator must not run during an update."""

    def __init__(self, env_fns, events: list[str]):
        super().__init__(env_fns)
        self.events, self.paused = events, False

    def pause(self, paused: bool) -> None:
        self.paused = paused
        self.events.append("pause" if paused else "play")

    def step_wait(self):
        assert not self.paused, "stepped while paused"
        self.events.append("step")
        return super().step_wait()


def test_env_is_paused_during_every_policy_update(tmp_path):
    events: list[str] = []
    env = PausableVecEnv([lambda: PointDriveEnv(image=False)] * 2, events)
    trainer = Trainer(run_config("ppo", total=128), env, tmp_path, progress=False)
    train = trainer.model.train

    def recorded_train() -> None:
        assert env.paused, "policy update while the simulator runs"
        events.append("update")
        train()

    trainer.model.train = recorded_train
    trainer.train()
    assert events.count("update") == 2 and not env.paused
    compact = [e for i, e in enumerate(events) if e != "step" or events[i - 1] != "step"]
    assert compact == ["play", "step", "pause", "update", "play", "step", "pause", "update", "play"]


def test_run_directory_guards(tmp_path):
    config = run_config("ppo", total=64)
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        Trainer.resume(tmp_path, env_factory())
    Trainer(config, env_factory(), tmp_path, progress=False).train()
    with pytest.raises(FileExistsError, match="Trainer.resume"):
        Trainer(config, env_factory(), tmp_path)
    finished = Trainer.resume(tmp_path, env_factory(), progress=False)
    assert finished.model.num_timesteps == 64
    finished.train()  # nothing left to do: no new checkpoint
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_0000000064.ckpt"]
    assert latest_checkpoint(tmp_path).name == "step_0000000064.ckpt"


class ClosableVecEnv(DummyVecEnv):
    closed = False

    def close(self) -> None:
        self.closed = True
        super().close()


def test_num_envs_must_match_the_env_and_a_built_env_is_closed_on_failure(tmp_path):
    one_env = DummyVecEnv([lambda: PointDriveEnv(image=False)])
    with pytest.raises(ConfigError, match="train.num_envs: 2, but the env has 1"):
        Trainer(run_config("ppo"), one_env, tmp_path)
    built: list[ClosableVecEnv] = []

    def factory(config: dict) -> ClosableVecEnv:
        built.append(ClosableVecEnv([lambda: PointDriveEnv(image=False)]))
        return built[-1]

    with pytest.raises(ConfigError, match="train.num_envs"):
        Trainer(run_config("ppo"), factory, tmp_path)
    assert built[0].closed


def test_episode_log_is_cut_back_to_the_checkpoint_on_resume(tmp_path):
    config = run_config("ppo", total=256)
    trainer = Trainer(config, env_factory(terminate=False), tmp_path, progress=False)
    trainer.train([StopAt(200)])
    assert max(e["timesteps"] for e in read_episodes(tmp_path / "episodes.jsonl")) == 192
    with open(tmp_path / "episodes.jsonl", "a") as f:
        f.write('{"timesteps": 19')  # a line cut by the crash
    Trainer.resume(tmp_path, env_factory(terminate=False), progress=False)
    assert max(e["timesteps"] for e in read_episodes(tmp_path / "episodes.jsonl")) == 128
    assert json.loads((tmp_path / "episodes.jsonl").read_text().splitlines()[-1])["timesteps"] == 128


def test_resume_of_a_run_of_another_algorithm_is_refused(tmp_path):
    """An A2C run resumed by a PPO command is an error, not an A2C run going on under the PPO name."""
    Trainer(run_config("a2c", total=32), env_factory(), tmp_path, progress=False).train()
    with pytest.raises(checkpoints.CheckpointError, match="a 'a2c' checkpoint, expected 'ppo'"):
        Trainer.resume(tmp_path, env_factory(), expected_algo="ppo")


@pytest.mark.parametrize("algo", ["a2c", "acktr", "ppo", "her"])
def test_resume_mid_episode_is_bit_for_bit_with_resumable_envs(algo, tmp_path):
    """20-step episodes against rollouts of 16 or 32 steps: the checkpoint falls mid-episode; the envs'
    episodes in progress are replayed (ResumableEnv), SB3's rollout state (and HER's ego pose) restored."""

    def make_env(config: dict) -> DummyVecEnv:
        image = config["algo"] != "acktr"
        env = lambda: ResumableEnv(PointDriveEnv(image=image, terminate=False, horizon=20))  # noqa: E731
        return DummyVecEnv([env] * config["train"]["num_envs"])

    config = run_config(algo)
    straight = Trainer(config, make_env, tmp_path / "straight", progress=False)
    straight.train()
    interrupted = Trainer(config, make_env, tmp_path / "resumed", progress=False)
    interrupted.train([StopAt(200)])
    resumed = Trainer.resume(tmp_path / "resumed", make_env, progress=False)
    assert resumed.exact_resume and (resumed.model.num_timesteps // 2) % 20  # mid-episode in both envs
    resumed.train()
    a, b = straight.model.policy.state_dict(), resumed.model.policy.state_dict()
    assert all(th.equal(a[name], b[name]) for name in a)
    logs = [read_episodes(tmp_path / run / "episodes.jsonl") for run in ("straight", "resumed")]
    assert logs[0] == logs[1]


class HistoryEnv(PointDriveEnv):
    """Starts each episode where the last one of any instance ended: its episode is not a function of its
    seeds and actions (as the simulator's own traffic), so a replay cannot be exact."""

    start = np.zeros(3)

    def reset(self, *, seed=None, options=None):
        _, info = super().reset(seed=seed, options=options)
        self.pose = HistoryEnv.start.copy()
        return self._obs(), info

    def step(self, action):
        result = super().step(action)
        HistoryEnv.start = self.pose.copy()
        return result


def test_a_replay_that_arrives_elsewhere_is_warned_of(tmp_path):
    def make_env(config: dict) -> DummyVecEnv:
        env = lambda: ResumableEnv(HistoryEnv(image=False, terminate=False, horizon=20))  # noqa: E731
        return DummyVecEnv([env] * config["train"]["num_envs"])

    Trainer(run_config("ppo"), make_env, tmp_path, progress=False).train([StopAt(200)])
    with pytest.warns(UserWarning, match="resume is not exact: the replayed episode in progress arrived"):
        Trainer.resume(tmp_path, make_env, progress=False)
