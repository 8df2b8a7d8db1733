from setuptools import find_packages, setup

package_name = "carla_rl_common"
setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    package_data={package_name: ["fastdds_profile.xml", "towns/*.xodr"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    zip_safe=False,
    description="Shared pieces of carla-rl: bridge contract, OpenDRIVE road network, config validation, "
    "world pieces (objects files, BEV raster, shipped towns).",
    license="MIT",
)
