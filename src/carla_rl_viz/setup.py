from setuptools import find_packages, setup

package_name = "carla_rl_viz"
setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    package_data={package_name: ["web/static/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    zip_safe=False,
    description="Visualisation: rviz markers and TF, Foxglove streaming, a live browser view, episode videos.",
    license="MIT",
    entry_points={"console_scripts": ["viz_node = carla_rl_viz.markers_node:main", "viz_view = carla_rl_viz.cli:main"]},
)
