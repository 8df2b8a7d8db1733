"""Test-wide settings: every test run gets its own ROS_DOMAIN_ID and localhost-only DDS discovery.

Runs on one machine (CI, a developer's laptop, two terminals) must never see each other's topics.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from carla_rl_common.dds import apply_to_this_process

REPO = Path(__file__).resolve().parents[1]
SHARED_MAPS = REPO.parent / "shared" / "data" / "maps" / "carla"
sys.path.insert(0, str(Path(__file__).parent / "helpers"))


def _pick_domain_id() -> int:
    # 1..100 from the pid: distinct for concurrent runs, and inside the range every RMW accepts
    return 1 + os.getpid() % 100


# localhost-only discovery, Fast DDS with our profile: what every process of the stack gets (and its children)
apply_to_this_process(domain_id=int(os.environ.get("CARLA_RL_TEST_DOMAIN_ID", _pick_domain_id())))


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_maps() -> Path:
    if not SHARED_MAPS.is_dir():
        pytest.skip(f"CARLA's towns are not beside the checkout ({SHARED_MAPS})")
    return SHARED_MAPS


@pytest.fixture()
def ros_node(request):
    """A node in a fresh rclpy context, named after the test module; shut down after the test."""
    import rclpy

    rclpy.init()
    node = rclpy.create_node(request.module.__name__.rsplit(".", 1)[-1])
    yield node
    node.destroy_node()
    rclpy.try_shutdown()
