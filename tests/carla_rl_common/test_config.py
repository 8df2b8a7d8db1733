"""Config validation: unknown keys and wrong types fail naming the file and the dotted key."""

from __future__ import annotations

import pytest

from carla_rl_common.config import ConfigError, load_yaml
from carla_rl_env.settings import load_env_config


def write(tmp_path, text, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_and_override(tmp_path):
    path = write(tmp_path, "env:\n  reward:\n    target_speed: 6\n  observation:\n    goal: false\n")
    cfg = load_env_config([path])
    assert cfg["env"]["reward"]["target_speed"] == 6.0 and isinstance(cfg["env"]["reward"]["target_speed"], float)
    assert cfg["env"]["observation"]["goal"] is False
    assert cfg["env"]["observation"]["measurements"] is True  # untouched default


def test_later_file_wins(tmp_path):
    a = write(tmp_path, "sim:\n  traffic: 3\n  seed: 1\n", "a.yaml")
    b = write(tmp_path, "sim:\n  traffic: 5\n", "b.yaml")
    cfg = load_env_config([a, b])
    assert (cfg["sim"]["traffic"], cfg["sim"]["seed"]) == (5, 1)


def test_unknown_key_names_file_and_key(tmp_path):
    path = write(tmp_path, "env:\n  rewrad:\n    target_speed: 6\n")
    with pytest.raises(ConfigError) as err:
        load_env_config([path])
    assert str(path) in str(err.value) and "env.rewrad" in str(err.value)
    assert "reward" in str(err.value)  # the known keys are listed


def test_wrong_type_names_file_and_key(tmp_path):
    path = write(tmp_path, "env:\n  episode:\n    stuck_seconds: fast\n")
    with pytest.raises(ConfigError) as err:
        load_env_config([path])
    assert str(path) in str(err.value) and "env.episode.stuck_seconds" in str(err.value)
    assert "expected float" in str(err.value)


def test_bool_is_not_an_int(tmp_path):
    path = write(tmp_path, "sim:\n  traffic: true\n")
    with pytest.raises(ConfigError, match="sim.traffic"):
        load_env_config([path])


def test_unknown_reward_term_lists_known_names(tmp_path):
    from carla_rl_env.rewards import Reward

    with pytest.raises(ConfigError) as err:
        Reward({"route_progress": 1.0, "speeding": 2.0}, source="ppo.yaml")
    assert "ppo.yaml" in str(err.value) and "env.reward.terms.speeding" in str(err.value)
    assert "carla_paper" in str(err.value)


def test_invalid_yaml_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_yaml(write(tmp_path, "env: [unclosed\n"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_yaml(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_yaml(tmp_path / "missing.yaml")


def test_yaml_is_loaded_safely(tmp_path):
    path = write(tmp_path, "env: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_yaml(path)


def test_unknown_camera_id_lists_the_objects_files_cameras(tmp_path):
    from carla_rl_env.settings import check_sensors

    path = write(tmp_path, "env:\n  observation:\n    cameras: [{id: rgb_back, width: 84, height: 84}]\n")
    config = load_env_config([path])
    with pytest.raises(ConfigError) as err:
        check_sensors(config, str(path))
    message = str(err.value)
    assert str(path) in message and "env.observation.cameras[0].id" in message
    assert "'rgb_back'" in message and "cameras: rgb_front" in message
    ok = load_env_config([], {"env": {"observation": {"cameras": [{"id": "rgb_front", "width": 8, "height": 8}]}}})
    check_sensors(ok)
