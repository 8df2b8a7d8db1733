"""The DDS settings of our processes: the shipped Fast DDS profile is named unless the user names their own,
and Fast DDS itself loads it without an error (a process with a bad one starts too, so only its log tells)."""

from __future__ import annotations

import subprocess
import sys

from carla_rl_common.dds import FASTDDS_PROFILE, ros_environment

START_A_PUBLISHER = """
import rclpy
from std_msgs.msg import Int32
rclpy.init()
node = rclpy.create_node("profile_check")
node.create_publisher(Int32, "profile_check", 10)
node.destroy_node()
rclpy.shutdown()
print("started")
"""


def test_the_shipped_profile_is_named_unless_the_user_names_one():
    assert ros_environment(base={})["FASTRTPS_DEFAULT_PROFILES_FILE"] == str(FASTDDS_PROFILE)
    mine = {"FASTRTPS_DEFAULT_PROFILES_FILE": "/etc/mine.xml"}
    assert ros_environment(base=mine)["FASTRTPS_DEFAULT_PROFILES_FILE"] == "/etc/mine.xml"
    fastdds3 = ros_environment(base={"FASTDDS_DEFAULT_PROFILES_FILE": "/etc/mine.xml"})
    assert "FASTRTPS_DEFAULT_PROFILES_FILE" not in fastdds3
    cyclone = ros_environment(base={"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"})
    assert "FASTRTPS_DEFAULT_PROFILES_FILE" not in cyclone


def start_with(profile) -> subprocess.CompletedProcess:
    env = ros_environment(base={**ros_environment(), "FASTRTPS_DEFAULT_PROFILES_FILE": str(profile)})
    return subprocess.run(
        [sys.executable, "-c", START_A_PUBLISHER], env=env, capture_output=True, text=True, timeout=60
    )


def test_fast_dds_loads_the_shipped_profile_without_an_error(tmp_path):
    ours = start_with(FASTDDS_PROFILE)
    assert ours.returncode == 0 and "started" in ours.stdout
    assert "XMLPARSER" not in ours.stdout + ours.stderr, ours.stdout + ours.stderr  # Fast DDS logs to either
    # the check can fail: an element Fast DDS does not know is logged, and the process starts anyway
    broken = tmp_path / "broken.xml"
    broken.write_text(FASTDDS_PROFILE.read_text().replace("heartbeatPeriod>", "heartbeat_period>"))
    theirs = start_with(broken)
    assert theirs.returncode == 0 and "XMLPARSER" in theirs.stdout + theirs.stderr
