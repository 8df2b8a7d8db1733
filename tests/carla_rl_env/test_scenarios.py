"""Scenario sources: suite lookup by name, and N envs sharing one suite without repeating episodes."""

from __future__ import annotations

import pytest

from carla_rl_common.config import ConfigError
from carla_rl_common.opendrive import RoadNetwork
from carla_rl_common.towns import town_path
from carla_rl_env.scenarios import ScenarioSource, load_suite, resolve_suite
from carla_rl_env.settings import load_env_config


def test_resolve_suite_by_kind_and_errors(tmp_path):
    path = resolve_suite("one_turn", "RLTown01")
    assert path.name == "one_turn.yaml" and path.parent.name == "RLTown01"
    with pytest.raises(FileNotFoundError, match="known: navigation, navigation_dynamic, one_turn, straight"):
        resolve_suite("two_turns", "RLTown01")
    with pytest.raises(FileNotFoundError, match="suite file not found"):
        resolve_suite(str(tmp_path / "missing.yaml"), "RLTown01")


def test_envs_split_a_suite():
    network = RoadNetwork.from_file(town_path("RLTown01"))
    suite = resolve_suite("straight", "RLTown01")
    cfg = load_env_config([], {"env": {"scenario": {"suite": str(suite)}}})["env"]
    sources = [ScenarioSource(network, cfg, seed=0, offset=i, stride=3) for i in range(3)]
    seen = [s.next().id for _ in range(9) for s in sources][:25]
    assert len(set(seen)) == 25  # 25 episodes, none twice before the suite is done


def test_bad_suite_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("map: RLTown01\nepisodes:\n- {id: a, start: [1, 2], goal: [3, 4]}\n")
    with pytest.raises(ConfigError, match=r"episodes\[0\]"):
        load_suite(bad)
