from setuptools import find_packages, setup

package_name = "carla_rl_sim"
setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    zip_safe=False,
    description="Embedded simulator speaking the CARLA ROS bridge contract on OpenDRIVE maps.",
    license="MIT",
    entry_points={"console_scripts": ["sim_node = carla_rl_sim.node:main"]},
)
