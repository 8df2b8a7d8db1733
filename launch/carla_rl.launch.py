"""Bring up a carla-rl stack with ros2 launch: the same nodes `carla-rl up` starts (config/stacks.yaml).

    ros2 launch launch/carla_rl.launch.py stack:=drive sim:=embedded num_envs:=2 episodes:=4
    ros2 launch launch/carla_rl.launch.py stack:=drive sim:=carla host:=127.0.0.1 port:=2000 town:=Town01 viz:=rviz

Only the launch API lives here; what a stack starts is carla_rl_bringup.stacks (expand, StackNode.launch_ros_kwargs).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from carla_rl_bringup.stacks import LAUNCH_ARGUMENTS, expand, load_stacks


def _nodes(context):
    args = {name: LaunchConfiguration(name).perform(context) for name in LAUNCH_ARGUMENTS}
    # check=True: a bad config or checkpoint is one error here, before any node starts (as with carla-rl up)
    return [Node(**node.launch_ros_kwargs()) for node in expand(load_stacks(), args, check=True)]


def generate_launch_description():
    arguments = [
        DeclareLaunchArgument(name, default_value=default, description=text)
        for name, (default, text) in LAUNCH_ARGUMENTS.items()
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=_nodes)])
