"""The workspace itself: colcon installs the Python packages the ROS way, and our carla_msgs copy steps
aside when the environment already provides carla_msgs (a real bridge's)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
PACKAGES = {
    "carla_rl_sim": ["sim_node"],
    "carla_rl_env": ["env_node"],
    "carla_rl_agents": ["agent_node"],
    "carla_rl_bags": ["recorder", "player"],
    "carla_rl_viz": ["viz_node"],
    "carla_rl_bringup": ["carla-rl"],
    "carla_rl_common": [],
}


def test_colcon_installs_python_packages_with_ros_executables(tmp_path):
    env = dict(os.environ, PATH=f"{VENV / 'bin'}:{os.environ['PATH']}", AMENT_PREFIX_PATH=str(VENV))
    proc = subprocess.run(
        [
            str(VENV / "bin" / "colcon"),
            "--log-base",
            str(tmp_path / "log"),
            "build",
            "--base-paths",
            str(REPO / "src"),
            "--build-base",
            str(tmp_path / "build"),
            "--install-base",
            str(tmp_path / "install"),
            "--packages-select",
            *PACKAGES,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for package, executables in PACKAGES.items():
        prefix = tmp_path / "install" / package
        # where `ros2 run` and launch_ros look: lib/<package>/<executable>, plus the ament index entry
        for exe in executables:
            assert (prefix / "lib" / package / exe).is_file(), f"{package}/{exe}"
        assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / package).is_file()
    assert list((tmp_path / "install" / "carla_rl_common").rglob("RLTown01.xodr")), "the towns are package data"


def test_our_carla_msgs_is_skipped_when_the_environment_has_one(tmp_path):
    script = REPO / "scripts" / "has_foreign_package.py"
    other = tmp_path / "opt" / "carla_bridge"
    marker = other / "share" / "ament_index" / "resource_index" / "packages" / "carla_msgs"
    run = lambda prefixes: subprocess.run(  # noqa: E731
        [sys.executable, str(script), "carla_msgs", str(VENV)], env=dict(os.environ, AMENT_PREFIX_PATH=prefixes)
    )
    assert run(str(VENV)).returncode == 1  # only our own build: build it
    marker.parent.mkdir(parents=True)
    marker.write_text("")
    assert run(f"{other}:{VENV}").returncode == 0  # a bridge's carla_msgs on the path: skip ours
