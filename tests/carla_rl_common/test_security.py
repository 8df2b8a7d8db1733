"""Security defaults: localhost-only discovery unless asked, no shell or ROS-argument interpretation of
user-supplied names, safe YAML."""

from __future__ import annotations

import subprocess
import sys

import yaml

from carla_rl_bringup.launcher import NodeSpec
from carla_rl_common.dds import ros_environment

HOSTILE = [
    "a b; touch pwned",
    "$(touch pwned)",
    "`touch pwned`",
    "x\nros-args:=--remap",
    "--ros-args -r a:=b",
    "'\"quoted\"'",
    "*",
]


def test_discovery_is_localhost_only_unless_network_is_asked_for():
    env = ros_environment(base={"ROS_LOCALHOST_ONLY": "0"})
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST" and "ROS_LOCALHOST_ONLY" not in env
    assert ros_environment(network=True, base={})["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SUBNET"
    assert ros_environment(domain_id=42, base={})["ROS_DOMAIN_ID"] == "42"


def test_node_parameters_travel_in_a_yaml_file_not_on_the_command_line(tmp_path):
    spec = NodeSpec("env", "carla_rl_env.node", "env_0", {"config": HOSTILE, "town": HOSTILE[1]})
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": spec.parameters}}))
    command = spec.command(params)
    assert all(h not in " ".join(command) for h in HOSTILE)  # only our fixed arguments and the file's path
    assert yaml.safe_load(params.read_text())["/**"]["ros__parameters"]["config"] == HOSTILE


def test_cli_with_hostile_file_names(tmp_path):
    for name in HOSTILE[:4]:
        path = tmp_path / name.replace("\n", "_").replace("/", "_")
        path.write_text("env:\n  bogus_key: 1\n")
        proc = subprocess.run(
            [sys.executable, "-m", "carla_rl_bringup.cli", "drive", "--config", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        assert proc.returncode == 2 and "env.bogus_key" in proc.stderr  # read as a plain file, then rejected
        assert str(path) in proc.stderr
    assert not (tmp_path / "pwned").exists()
