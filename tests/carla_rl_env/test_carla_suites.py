"""The committed suites of CARLA's own Town01 and Town02 (config/suites/Town0N) are what the generator writes
from CARLA's maps (read from ``../shared``, never copied into the project), and they resolve by town path."""

from __future__ import annotations

import pytest

from carla_rl_common.opendrive import RoadNetwork
from carla_rl_env import suites
from carla_rl_env.scenarios import load_suite, resolve_suite


@pytest.mark.parametrize("town", ["Town01", "Town02"])
def test_committed_suites_equal_fresh_output(town, shared_maps, repo):
    network = RoadNetwork.from_file(shared_maps / f"{town}.xodr")
    folder = repo / "config" / "suites" / town
    for name, text in suites.render_suites(network).items():
        assert (folder / name).read_text(encoding="utf-8") == text, f"{folder / name} is stale"


@pytest.mark.parametrize("town", ["Town01", "Town02"])
def test_a_kind_resolves_for_the_town_s_xodr(town, shared_maps):
    path = resolve_suite("navigation", str(shared_maps / f"{town}.xodr"))
    name, episodes = load_suite(path)
    assert name == town and len(episodes) == 25  # load_suite names the map
