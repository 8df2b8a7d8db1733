"""Scenario sources: suite lookup by name, and N envs sharing one suite without repeating episodes."""

from __future__ import annotations

import math
import subprocess
import sys
import time

import pytest
import yaml

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


def _good_episode() -> dict:
    """The first episode of the committed RLTown01 straight suite (on the map, with a route)."""
    _, (scenario, *_) = load_suite(resolve_suite("straight", "RLTown01"))
    x, y, yaw = scenario.start
    return {"id": "e", "start": [x, y, math.degrees(yaw)], "goal": list(scenario.goal)}


@pytest.mark.parametrize(
    "change,field,message",
    [
        (lambda e: e.update(goal=[1e6, 1e6]), "goal", "not on a driving lane"),
        (lambda e: e["start"].__setitem__(0, e["start"][0] + 1e4), "start", "not on a driving lane"),
        (lambda e: e["start"].__setitem__(1, float("nan")), "start", "finite"),
        (lambda e: e.update(goal=[float("inf"), 0.0]), "goal", "finite"),
        (lambda e: e.update(goal=e["start"][:2]), "goal", "within 1 m of the start"),
        (lambda e: e.update(goal=["a", 0.0]), "goal", "numbers"),
        (lambda e: e.update(traffic=-1), "traffic", "integer >= 0"),
    ],
)
def test_a_suite_is_checked_against_the_map_before_anything_starts(tmp_path, change, field, message):
    """Off the map, NaN/inf, start == goal: one ConfigError naming file, episode index and id, and field
    (these made drive/evaluate over ROS wait 300 s, or crashed the env node with exit 70)."""
    episode = _good_episode()
    change(episode)
    suite = tmp_path / "bad.yaml"
    suite.write_text(yaml.safe_dump({"map": "RLTown01", "episodes": [_good_episode() | {"id": "ok"}, episode]}))
    with pytest.raises(ConfigError, match=rf"bad\.yaml: episodes\[1\] \(id 'e'\)\.{field}: .*{message}"):
        resolve_suite(str(suite), "RLTown01")


def test_a_suite_of_another_town_is_refused(tmp_path):
    """A suite is a list of map coordinates: on a town it was not made for, its starts are off the lanes."""
    suite = tmp_path / "other.yaml"
    suite.write_text(yaml.safe_dump({"episodes": [_good_episode()]}))
    load_suite(suite, RoadNetwork.from_file(town_path("RLTown01")))
    with pytest.raises(ConfigError, match=r"other\.yaml: episodes\[0\] \(id 'e'\)\.start: .*lane of RLTown02"):
        load_suite(suite, RoadNetwork.from_file(town_path("RLTown02")))


def test_drive_refuses_a_bad_suite_in_one_line_before_starting_anything(tmp_path):
    episode = _good_episode() | {"goal": [1e6, 1e6]}
    suite = tmp_path / "bad.yaml"
    suite.write_text(yaml.safe_dump({"episodes": [episode]}))
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "carla_rl_bringup.cli", "drive", "--suite", str(suite), "--episodes", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert "bad.yaml: episodes[0] (id 'e').goal" in result.stderr and elapsed < 30, (elapsed, result.stderr)
