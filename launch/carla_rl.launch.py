"""Bring up a carla-rl stack with ros2 launch: the same nodes `carla-rl up` starts (config/stacks.yaml).

    ros2 launch launch/carla_rl.launch.py stack:=drive sim:=embedded num_envs:=2 episodes:=4
    ros2 launch launch/carla_rl.launch.py stack:=drive sim:=carla host:=127.0.0.1 port:=2000 town:=Town01 viz:=rviz
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from carla_rl_bringup.stacks import LAUNCH_ARGUMENTS, expand, load_stacks


def _nodes(context):
    args = {name: LaunchConfiguration(name).perform(context) for name in LAUNCH_ARGUMENTS}
    return [
        Node(package=node.package, executable=node.executable, name=node.name, namespace=node.namespace or None,
             parameters=[node.parameters], arguments=node.arguments, output="screen",
             remappings=[("/clock", f"/{node.namespace}/clock")] if node.namespace else [])
        for node in expand(load_stacks(), args)
    ]


def generate_launch_description():
    arguments = [DeclareLaunchArgument(name, default_value=default, description=text)
                 for name, (default, text) in LAUNCH_ARGUMENTS.items()]
    return LaunchDescription([*arguments, OpaqueFunction(function=_nodes)])
