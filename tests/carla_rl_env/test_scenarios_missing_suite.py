"""A town without committed suites: the error tells the exact command that generates them, and that command,
run as printed, makes the suite the same call then finds."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys

import pytest

from carla_rl_common.towns import town_path
from carla_rl_env import scenarios


def test_a_missing_suite_names_the_command_that_generates_it(tmp_path, monkeypatch):
    monkeypatch.setattr(scenarios, "SUITES_DIR", tmp_path / "suites")  # where the committed suites would be
    monkeypatch.chdir(tmp_path)
    town = tmp_path / "maps" / "MyTown.xodr"
    town.parent.mkdir()
    shutil.copy(town_path("RLTown01"), town)
    with pytest.raises(FileNotFoundError) as error:
        scenarios.find_suite("one_turn", str(town))
    message = str(error.value)
    assert message.startswith("no suite 'one_turn' for town MyTown (known: none; or give a suite .yaml path)")
    command = message.split("generate them with: ", 1)[1]
    assert command == f"python -m carla_rl_env.suites --town {town} --out suites/MyTown"
    argv = shlex.split(command)
    done = subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert scenarios.resolve_suite("one_turn", str(town)) == tmp_path / "suites" / "MyTown" / "one_turn.yaml"


def test_a_town_only_carla_knows_needs_its_map_for_the_command(tmp_path, monkeypatch):
    monkeypatch.setattr(scenarios, "SUITES_DIR", tmp_path / "suites")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        FileNotFoundError, match=r"python -m carla_rl_env\.suites --town <Town03\.xodr> --out suites/Town03"
    ):
        scenarios.find_suite("navigation", "Town03")


def test_a_town_with_suites_lists_them_without_the_command():
    with pytest.raises(FileNotFoundError) as error:
        scenarios.find_suite("nowhere", "RLTown01")
    assert "known: navigation, navigation_dynamic, one_turn, straight" in str(error.value)
    assert "carla_rl_env.suites" not in str(error.value)
