"""Test-wide settings: every test run gets its own ROS_DOMAIN_ID and localhost-only DDS discovery.

Runs on one machine (CI, a developer's laptop, two terminals) must never see each other's topics.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from carla_rl_common.dds import TEST_DOMAINS, DomainError, allocate_domain, apply_to_this_process, runtime_dir

REPO = Path(__file__).resolve().parents[1]
SHARED_MAPS = REPO.parent / "shared" / "data" / "maps" / "carla"
sys.path.insert(0, str(Path(__file__).parent / "helpers"))
_lease = None  # this run's domain, held (locked) until pytest exits


def _pick_domain_id() -> int:
    """A domain of TEST_DOMAINS (never one a carla-rl stack is given) that no other test run holds and no DDS
    participant uses, held for the whole run; the pid picks one when all are taken."""
    global _lease
    directory = runtime_dir() / "tests"
    directory.mkdir(mode=0o700, exist_ok=True)
    try:
        _lease = allocate_domain(TEST_DOMAINS, directory)
    except DomainError:
        return TEST_DOMAINS.start + os.getpid() % len(TEST_DOMAINS)
    return _lease.domain


# localhost-only discovery, Fast DDS with our profile: what every process of the stack gets (and its children)
apply_to_this_process(domain_id=int(os.environ.get("CARLA_RL_TEST_DOMAIN_ID") or _pick_domain_id()))


def pytest_unconfigure(config) -> None:
    if _lease is not None:  # the run's domain is free for the next one
        _lease.release()


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
