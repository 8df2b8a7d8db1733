from setuptools import find_packages, setup

package_name = "carla_rl_bringup"
setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    zip_safe=False,
    description="The carla-rl command, the stacks of config/stacks.yaml and the process launcher.",
    license="MIT",
    entry_points={
        "console_scripts": [
            "carla-rl = carla_rl_bringup.cli:main",
            "composed_node = carla_rl_bringup.composed:main",
            "traffic_manager = carla_rl_bringup.traffic_manager:main",
        ]
    },
)
