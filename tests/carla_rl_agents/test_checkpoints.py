"""Checkpoints: round trips (PPO, ACKTR's K-FAC state, SAC, normalisation), atomic writes, the K newest kept,
and refusals with the file named: truncated, foreign, another algorithm or space, pickled payloads."""

import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
import yaml
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from carla_rl_agents.checkpoints import (
    META_NAME,
    STATE_NAME,
    CheckpointError,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_policy,
    prune_checkpoints,
    read_meta,
    read_run_config,
    save_checkpoint,
)
from carla_rl_agents.models import build_model
from carla_rl_agents.settings import load_run_config
from carla_rl_common.config import ConfigError

th.set_num_threads(1)

OBSERVATION = spaces.Dict(
    {
        "measurements": spaces.Box(-np.inf, np.inf, (4,), np.float32),
        "goal": spaces.Box(-5.0, 5.0, (2,), np.float32),
        "camera": spaces.Box(0, 255, (36, 36, 3), np.uint8),
    }
)
STEER_THROTTLE = spaces.Box(-1.0, 1.0, (2,), np.float32)


class RandomDriveEnv(gym.Env):
    """Random observations of the given spaces, reward from the action, 8-step episodes, pose and speed infos."""

    def __init__(self, observation_space: spaces.Dict = OBSERVATION, action_space: spaces.Space = STEER_THROTTLE):
        self.observation_space, self.action_space = observation_space, action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        self.observation_space.seed(int(self.np_random.integers(2**31)))
        self.t = 0
        return self.observation_space.sample(), {"ego_pose": np.zeros(3), "speed": 0.0}

    def step(self, action):
        self.t += 1
        reward = float(np.sum(action)) if isinstance(self.action_space, spaces.Box) else float(action)
        info = {"ego_pose": np.array([self.t, 0.0, 0.0]), "speed": 1.0}
        return self.observation_space.sample(), reward, False, self.t >= 8, info


def make_env(**kwargs) -> DummyVecEnv:
    return DummyVecEnv([lambda: RandomDriveEnv(**kwargs)])


def small_config(algo: str = "ppo", **algo_kwargs) -> dict:
    defaults = {"ppo": {"n_steps": 16, "batch_size": 8, "n_epochs": 2}, "acktr": {"n_steps": 8}}.get(algo, {})
    return load_run_config(
        [],
        {
            "algo": algo,
            "algo_kwargs": {**defaults, **algo_kwargs},
            "policy": {"net_arch": [16], "cnn_features": 8},
            "train": {"device": "cpu"},
        },
    )


def trained(config: dict, env=None, steps: int = 32):
    model = build_model(config, env or make_env())
    return model.learn(steps)


def assert_same_tensors(a, b) -> None:
    """Nested state dicts hold equal tensors and values."""
    if isinstance(a, th.Tensor):
        assert th.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same_tensors(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_tensors(x, y)
    else:
        assert a == b


@pytest.fixture
def ppo_checkpoint(tmp_path) -> tuple[Path, PPO, dict]:
    config = small_config()
    model = trained(config)
    return save_checkpoint(model, checkpoint_path(tmp_path, model.num_timesteps), config), model, config


def test_round_trip_restores_weights_optimizer_counters_and_statistics(ppo_checkpoint):
    path, model, _ = ppo_checkpoint
    assert path.name == "step_0000000032.ckpt" and path.parent.name == "checkpoints"
    loaded = load_checkpoint(path, make_env(), expected_algo="ppo")
    assert isinstance(loaded, PPO)
    assert_same_tensors(model.get_parameters(), loaded.get_parameters())
    assert loaded.policy.optimizer.state_dict()["state"]  # Adam moments, not a fresh optimizer
    assert (loaded.num_timesteps, loaded._n_updates, loaded._episode_num) == (32, model._n_updates, 0)
    assert loaded._n_updates == 4  # two rollouts, two epochs each
    assert [i["r"] for i in loaded.ep_info_buffer] == [i["r"] for i in model.ep_info_buffer]


def test_round_trip_restores_rng_states(ppo_checkpoint):
    path, model, _ = ppo_checkpoint
    expected = (th.rand(3), np.random.rand(3), model.action_space.sample())
    th.manual_seed(123)
    np.random.seed(123)
    loaded = load_checkpoint(path, make_env())
    got = (th.rand(3), np.random.rand(3), loaded.action_space.sample())
    assert th.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1])
    assert np.array_equal(expected[2], got[2])


@dataclass
class SpacesOnly:
    """What a consumer without a running env (e.g. offline bag evaluation) hands to load_policy."""

    observation_space: spaces.Space
    action_space: spaces.Space


def test_load_policy_drives_like_the_saved_model(ppo_checkpoint):
    path, model, _ = ppo_checkpoint
    env = make_env()
    policy_model = load_policy(path, env)
    assert not policy_model.policy.training
    assert env._seeds == [None]  # env only read for its spaces: not seeded (nor reset)
    obs = env.reset()
    assert np.array_equal(model.predict(obs, deterministic=True)[0], policy_model.predict(obs, deterministic=True)[0])
    assert policy_model.num_timesteps == 0  # weights only
    from_spaces = load_policy(path, SpacesOnly(OBSERVATION, STEER_THROTTLE))
    single = {key: value[0] for key, value in obs.items()}  # unbatched, channel-last camera
    expected = policy_model.predict(obs, deterministic=True)[0][0]
    assert np.array_equal(from_spaces.predict(single, deterministic=True)[0], expected)


def test_meta_json_is_plain_json_with_config_spaces_and_counters(ppo_checkpoint):
    path, _, config = ppo_checkpoint
    with zipfile.ZipFile(path) as archive:
        assert set(archive.namelist()) == {META_NAME, STATE_NAME}
        meta = json.loads(archive.read(META_NAME))
    assert meta["format"] == "carla-rl-checkpoint" and meta["format_version"] == 1
    assert meta["algo"] == "ppo" and meta["config"] == json.loads(json.dumps(config))
    assert meta["num_timesteps"] == 32 and meta["n_updates"] == 4
    # channel-last images are stored as the policy sees them (SB3 transposes them)
    assert meta["observation_space"]["spaces"]["camera"]["shape"] == [3, 36, 36]
    assert meta["action_space"]["shape"] == [2]
    assert read_meta(path)["config"] == config


def test_acktr_kfac_state_round_trips(tmp_path):
    config = small_config("acktr")
    no_camera = spaces.Dict({k: v for k, v in OBSERVATION.spaces.items() if k != "camera"})
    model = trained(config, make_env(observation_space=no_camera), steps=24)
    kfac_state = model.policy.optimizer.state_dict()
    assert kfac_state["kfac_steps"] == 3 and any("Q_a" in s for s in kfac_state["state"].values())
    path = save_checkpoint(model, tmp_path / "acktr.ckpt", config)
    loaded = load_checkpoint(path, make_env(observation_space=no_camera), expected_algo="acktr")
    assert_same_tensors(kfac_state, loaded.policy.optimizer.state_dict())
    assert loaded.policy.optimizer.steps == 3


def test_reward_normalisation_statistics_round_trip_and_need_vec_normalize(tmp_path):
    config = small_config()
    model = trained(config, VecNormalize(make_env(), norm_obs=False))
    path = save_checkpoint(model, tmp_path / "norm.ckpt", config)
    loaded = load_checkpoint(path, VecNormalize(make_env(), norm_obs=False))
    saved_rms, loaded_rms = model.get_vec_normalize_env().ret_rms, loaded.get_vec_normalize_env().ret_rms
    assert loaded_rms.count == saved_rms.count and np.array_equal(loaded_rms.var, saved_rms.var)
    with pytest.raises(CheckpointError, match="not wrapped in VecNormalize"):
        load_checkpoint(path, make_env())


def test_truncated_checkpoint_is_refused_naming_the_file(ppo_checkpoint, tmp_path):
    path, _, _ = ppo_checkpoint
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as err:
        load_checkpoint(cut, make_env())
    assert str(cut) in str(err.value)
    flipped = bytearray(path.read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF  # inside state.pt: the zip's CRC catches it
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match=f"{corrupt}: truncated or corrupt"):
        load_checkpoint(corrupt, make_env())
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.ckpt", make_env())


def test_checkpoint_of_another_algorithm_is_refused(ppo_checkpoint):
    path, _, _ = ppo_checkpoint
    with pytest.raises(CheckpointError, match=f"{path}: a 'ppo' checkpoint, expected 'acktr'"):
        load_checkpoint(path, make_env(), expected_algo="acktr")


def test_a_run_of_another_algorithm_or_a_corrupt_run_config_is_one_line_naming_the_file(tmp_path):
    """``--resume`` of an A2C run in a PPO command, or a run whose config.yaml was damaged: a ConfigError
    (one line, the file named), never a resume as the other algorithm or a UnicodeDecodeError traceback."""
    saved = tmp_path / "config.yaml"
    saved.write_text(yaml.safe_dump(load_run_config([], {"algo": "a2c"})))
    assert read_run_config(tmp_path)["algo"] == "a2c"
    with pytest.raises(ConfigError, match=f"^{saved}: algo: this run trains 'a2c', not 'ppo'") as error:
        read_run_config(tmp_path, expected_algo="ppo")
    assert "\n" not in str(error.value)
    saved.write_bytes(saved.read_bytes()[:40] + bytes(range(128, 256)))
    with pytest.raises(ConfigError, match=f"^{saved}: not UTF-8 text") as error:
        read_run_config(tmp_path)
    assert "\n" not in str(error.value)
    saved.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match=f"^{saved}"):
        read_run_config(tmp_path)
    with pytest.raises(ConfigError, match="no such file: not a training run directory"):
        read_run_config(tmp_path / "elsewhere")


def test_other_observation_or_action_space_is_refused_naming_both(ppo_checkpoint):
    path, _, _ = ppo_checkpoint
    wider = spaces.Dict({**OBSERVATION.spaces, "measurements": spaces.Box(-np.inf, np.inf, (5,), np.float32)})
    with pytest.raises(CheckpointError, match="observation space") as err:
        load_checkpoint(path, make_env(observation_space=wider))
    assert str(path) in str(err.value) and "(4,)" in str(err.value) and "(5,)" in str(err.value)
    without_camera = spaces.Dict({k: v for k, v in OBSERVATION.spaces.items() if k != "camera"})
    with pytest.raises(CheckpointError, match="observation space"):
        load_policy(path, make_env(observation_space=without_camera))
    with pytest.raises(CheckpointError, match="action space .*Discrete"):
        load_policy(path, make_env(action_space=spaces.Discrete(3)))


class Payload:
    """Unpickling this would create a file: a checkpoint must never get that far."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def rewrite_state(path: Path, out: Path, state: object) -> Path:
    """``path``'s checkpoint with ``state.pt`` replaced by ``torch.save(state)`` (full pickle)."""
    buffer = io.BytesIO()
    th.save(state, buffer)
    with zipfile.ZipFile(path) as archive:
        meta = archive.read(META_NAME)
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(META_NAME, meta)
        archive.writestr(STATE_NAME, buffer.getvalue())
    return out


def test_pickled_payload_is_refused_without_running_it(ppo_checkpoint, tmp_path):
    path, model, _ = ppo_checkpoint
    marker = tmp_path / "pwned"
    hostile = rewrite_state(
        path,
        tmp_path / "hostile.ckpt",
        {"params": model.get_parameters(), "variables": {}, "rng": Payload(marker), "normalization": None},
    )
    for load in (load_checkpoint, load_policy):
        with pytest.raises(CheckpointError, match="refusing to unpickle") as err:
            load(hostile, make_env())
        assert str(hostile) in str(err.value)
    assert not marker.exists()
    numpy_inside = rewrite_state(path, tmp_path / "numpy.ckpt", {"params": {}, "rng": np.zeros(3)})
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        load_checkpoint(numpy_inside, make_env())


def test_foreign_zip_files_are_refused(ppo_checkpoint, tmp_path):
    path, model, _ = ppo_checkpoint
    sb3_file = tmp_path / "sb3_model.zip"
    model.save(sb3_file)
    with pytest.raises(CheckpointError, match="not a carla-rl checkpoint"):
        load_policy(sb3_file, make_env())
    newer = tmp_path / "newer.ckpt"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(newer, "w") as dst:
        meta = json.loads(src.read(META_NAME))
        dst.writestr(META_NAME, json.dumps({**meta, "format_version": 99}))
        dst.writestr(STATE_NAME, src.read(STATE_NAME))
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(newer, make_env())


def test_saving_is_atomic_and_latest_returns_complete_checkpoints_only(tmp_path, monkeypatch):
    config = small_config()
    model = build_model(config, make_env())
    first = save_checkpoint(model, checkpoint_path(tmp_path, 16), config)
    # a crash between writing and renaming leaves only a hidden temporary file
    monkeypatch.setattr(os, "replace", lambda src, dst: (_ for _ in ()).throw(OSError("power cut")))
    with pytest.raises(OSError, match="power cut"):
        save_checkpoint(model, checkpoint_path(tmp_path, 32), config)
    monkeypatch.undo()
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == [first.name]
    (tmp_path / "checkpoints" / ".step_0000000048.ckpt.123.tmp").write_bytes(b"half a zip")
    assert latest_checkpoint(tmp_path) == first
    # a damaged newest file (e.g. a disk error) is skipped, with a warning
    checkpoint_path(tmp_path, 64).write_bytes(first.read_bytes()[:100])
    with pytest.warns(UserWarning, match="step_0000000064.ckpt: truncated or corrupt"):
        assert latest_checkpoint(tmp_path) == first
    assert latest_checkpoint(tmp_path / "no_run") is None


def test_prune_keeps_the_newest_k(tmp_path):
    config = small_config()
    model = build_model(config, make_env())
    for steps in (16, 160, 32, 48):
        save_checkpoint(model, checkpoint_path(tmp_path, steps), config)
    assert [p.name for p in list_checkpoints(tmp_path)][-1] == "step_0000000160.ckpt"
    removed = prune_checkpoints(tmp_path, keep=2)
    assert [p.name for p in removed] == ["step_0000000016.ckpt", "step_0000000032.ckpt"]
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_0000000048.ckpt", "step_0000000160.ckpt"]


def test_loading_a_policy_for_driving_warns_of_nothing(repo):
    """The committed model trained 16 envs with minibatches of 1024; built on one env only to act, SB3 would
    warn that the minibatch exceeds the rollout: inference models get a minibatch that fits."""
    import warnings

    from carla_rl_agents.checkpoints import check_checkpoint, load_policy, read_meta
    from carla_rl_env.inprocess import InProcessEnv
    from carla_rl_sim.core import load_simulator

    path = repo / "models" / "ppo_rltown01.ckpt"
    config = read_meta(path)["config"]
    assert config["algo_kwargs"]["batch_size"] > config["algo_kwargs"]["n_steps"]
    env = InProcessEnv(config, load_simulator("RLTown01", "", 0.05, 0, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_policy(path, env)
        check_checkpoint(path)
