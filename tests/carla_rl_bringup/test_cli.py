"""The carla-rl command: subcommands, options named as the issues and the bridge name them, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def carla_rl(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "carla_rl_bringup.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def test_help_lists_subcommands():
    out = carla_rl("--help").stdout
    for sub in ("drive", "sim", "map", "demo"):
        assert sub in out


def test_sim_takes_the_bridge_parameters():
    out = carla_rl("sim", "--help").stdout
    for option in (
        "--synchronous-mode",
        "--synchronous-mode-wait-for-vehicle-control-command",
        "--fixed-delta-seconds",
        "--ego-vehicle-role-name",
        "--map",
        "--objects",
    ):
        assert option in out


def test_map_export_geojson(tmp_path):
    out = tmp_path / "town.geojson"
    proc = carla_rl("map", "export", "RLTown01", "--format", "geojson", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    features = data["features"]
    assert data["type"] == "FeatureCollection" and len(features) == 152  # RLTown01's driving lanes
    keys = {f["properties"]["key"] for f in features}
    for f in features:
        props = f["properties"]
        assert f["geometry"]["type"] == "LineString" and len(f["geometry"]["coordinates"]) >= 2
        assert set(props) >= {"key", "road", "section", "lane", "junction", "successors"}
        assert set(props["successors"]) <= keys


def test_map_export_to_stdout_on_a_carla_town(shared_maps):
    proc = carla_rl("map", "export", str(shared_maps / "Town01.xodr"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["features"]


def test_drive_rejects_a_bad_config_before_starting(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("env:\n  reward:\n    terms:\n      speeding: 1.0\n")
    proc = carla_rl("drive", "--config", str(bad), timeout=60)
    assert proc.returncode == 2
    assert str(bad) in proc.stderr and "env.reward.terms.speeding" in proc.stderr and "route_progress" in proc.stderr
    typo = tmp_path / "typo.yaml"
    typo.write_text("env:\n  obsevation: {}\n")
    proc = carla_rl("drive", "--config", str(typo), timeout=60)
    assert proc.returncode == 2
    assert str(typo) in proc.stderr and "env.obsevation" in proc.stderr


def test_unknown_town_is_a_clear_error():
    proc = carla_rl("map", "export", "Town99")
    assert proc.returncode == 1 and "RLTown01" in proc.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], False),
        (["--synchronous-mode-wait-for-vehicle-control-command"], True),
        (["--synchronous-mode-wait-for-vehicle-control-command", "true"], True),
        (["--synchronous-mode-wait-for-vehicle-control-command", "False"], False),
        (["--no-synchronous-mode-wait-for-vehicle-control-command"], False),
    ],
)
def test_sim_bool_options_take_a_flag_a_value_or_no(args, expected):
    from carla_rl_bringup.cli import build_parser

    parsed = build_parser().parse_args(["sim", *args])
    assert parsed.synchronous_mode_wait_for_vehicle_control_command is expected
    assert parsed.synchronous_mode is True
