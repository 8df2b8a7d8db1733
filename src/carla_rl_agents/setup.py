from setuptools import find_packages, setup

package_name = "carla_rl_agents"
setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    zip_safe=False,
    description="RL agents: A2C, ACKTR, PPO and on-policy HER; training, checkpoints, evaluation and their nodes.",
    license="MIT",
    entry_points={
        "console_scripts": [
            "agent_node = carla_rl_agents.node:main",
            "train_node = carla_rl_agents.train_node:main",
            "eval_node = carla_rl_agents.eval_node:main",
        ]
    },
)
