#!/usr/bin/env bash
# Source ROS, the bridge and this workspace, then run the given command.
set -e
source "/opt/ros/${ROS_DISTRO:-humble}/setup.bash"
source /opt/carla-ros-bridge/install/setup.bash
source /opt/carla-rl/install/setup.bash
exec "$@"
