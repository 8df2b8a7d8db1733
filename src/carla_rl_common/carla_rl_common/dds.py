"""DDS settings for the processes we start: localhost-only discovery unless the user opts in.

Jazzy reads ``ROS_AUTOMATIC_DISCOVERY_RANGE`` (``LOCALHOST`` keeps discovery on this machine). The
deprecated ``ROS_LOCALHOST_ONLY`` would override it, so we remove it from the children's environment.
``--network`` switches to ``SUBNET`` discovery so envs and agents on several machines find each other.
(A Humble container, e.g. a real bridge's, needs ``ROS_LOCALHOST_ONLY=1`` set there instead.)

Fast DDS reads :data:`FASTDDS_PROFILE` (a reliable writer's heartbeat every 50 ms instead of 3 s, so a sample
lost beside large images is repaired at once; see the file) unless the user names a profile file of their own.
Every process we start gets it through :func:`ros_environment`; a process that calls ``rclpy.init`` itself
calls :func:`use_default_profile` first.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path

FASTDDS_PROFILE = Path(__file__).with_name("fastdds_profile.xml")
PROFILE_VARIABLES = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")  # Fast DDS 2.x, 3.x


def add_ros_options(p: argparse.ArgumentParser) -> None:
    """``--domain-id`` and ``--network``, the options every command that joins the ROS graph takes."""
    p.add_argument(
        "--domain-id", type=int, default=None, help="ROS_DOMAIN_ID for every process (default: inherited, else 0)"
    )
    p.add_argument(
        "--network", action="store_true", help="let DDS discovery leave this machine (default: localhost only)"
    )


def ros_environment(
    network: bool = False, domain_id: int | None = None, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment for a child process (a copy of ``base``, os.environ by default)."""
    env = dict(os.environ if base is None else base)
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    env.pop("ROS_LOCALHOST_ONLY", None)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "SUBNET" if network else "LOCALHOST"
    if domain_id is not None:
        if not 0 <= int(domain_id) <= 232:
            raise ValueError(f"ROS_DOMAIN_ID must be in 0..232, got {domain_id}")
        env["ROS_DOMAIN_ID"] = str(int(domain_id))
    env.setdefault("PYTHONUNBUFFERED", "1")
    use_default_profile(env)
    return env


def use_default_profile(env: MutableMapping[str, str] | None = None) -> None:
    """Point Fast DDS at :data:`FASTDDS_PROFILE` in ``env`` (os.environ by default) unless a profile file is
    named there already or another RMW is chosen; must happen before ``rclpy.init`` to take effect."""
    env = os.environ if env is None else env
    if env.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp").startswith("rmw_fastrtps") and not any(
        env.get(v) for v in PROFILE_VARIABLES
    ):
        env["FASTRTPS_DEFAULT_PROFILES_FILE"] = str(FASTDDS_PROFILE)


def apply_to_this_process(network: bool = False, domain_id: int | None = None) -> None:
    """Same settings for the current process; call before ``rclpy.init``."""
    os.environ.update(ros_environment(network, domain_id))
