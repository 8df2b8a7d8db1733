from setuptools import find_packages, setup

package_name = "carla_rl_bags"
setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    zip_safe=False,
    description="rosbag2 bags of the stack: record, replay, inspect, repair-read and score offline.",
    license="MIT",
    entry_points={"console_scripts": ["recorder = carla_rl_bags.recorder:main", "player = carla_rl_bags.player:main"]},
)
