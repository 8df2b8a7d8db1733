"""The viz node: rviz2 markers, a colour BEV image and TF for one env (``ros2 run carla_rl_viz viz_node``).

Per env namespace it listens to what the bridge (or the embedded simulator) and the env node publish and
draws it for rviz2 (``config/carla_rl.rviz``):

* ``carla_rl/markers/map`` (MarkerArray, TRANSIENT_LOCAL, published once per map): road surface and lane
  boundaries from ``/carla/world_info``; a late rviz still gets them.
* ``carla_rl/markers`` (MarkerArray, per ``carla_rl/step``): remaining route (``/carla/<role>/waypoints``),
  goal (the route's end), ego box, traffic boxes (``/carla/markers``) and a text panel with speed, the
  applied action and the reward terms.
* ``carla_rl/bev`` (Image ``rgb8``): a colour bird's-eye view per step, drawn only while someone subscribes.
* TF ``map -> <role>`` (per odometry message) and static ``<role> -> <role>/<sensor>`` (from the objects
  file). The real bridge publishes these itself (``sensor.pseudo.tf`` and every sensor's transform), so with
  ``publish_tf: auto`` (default) the node first listens to ``tf``: if another node already publishes the
  ego's transform it stays quiet, else it takes over after a few frames. ``true``/``false`` force it.

Topics are relative: in namespace ``env_i`` everything, TF included, lives under ``/env_i`` (each env is its
own world with its own ``map`` frame); point rviz at one env with ``-r /tf:=/env_i/tf`` and its topics.
Callbacks only convert and publish; the lockstep loop never waits for this node.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from carla_msgs.msg import CarlaEgoVehicleInfo, CarlaWorldInfo
from carla_rl_msgs.msg import Step
from nav_msgs.msg import Odometry, Path
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import MarkerArray

from carla_rl_common import bridge
from carla_rl_common.bridge import BridgeTopics
from carla_rl_common.config import ConfigError
from carla_rl_common.nodes import spin_nodes
from carla_rl_common.opendrive import RoadNetwork
from carla_rl_common.paths import default_objects_file
from carla_rl_viz import markers
from carla_rl_viz.views import BevView

TF_MODES = ("auto", "true", "false")
AUTO_DECIDE_FRAMES = 5  # odometry frames to watch ``tf`` for another publisher of the ego's transform


def tf_qos() -> QoSProfile:
    """tf2's ``/tf`` profile (tf2_ros.TransformBroadcaster): depth 100, reliable, volatile."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=100,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


class VizNode(Node):
    """Markers, BEV image and TF of one env (see the module docstring)."""

    def __init__(self, **kwargs: Any):
        super().__init__("carla_rl_viz", **kwargs)
        p = self.declare_parameter
        self.role = p("role_name", bridge.DEFAULT_ROLE_NAME).value
        objects_file = p("objects_file", "").value or str(default_objects_file())
        # auto | true | false; dynamically typed so that a YAML boolean (publish_tf: true) works too
        self.tf_mode = str(p("publish_tf", "auto", ParameterDescriptor(dynamic_typing=True)).value).lower()
        self.show_traffic = p("traffic", True).value
        self.bev_size = p("bev_size", 192).value
        if self.tf_mode not in TF_MODES:
            raise ConfigError(
                "parameters", "publish_tf", f"expected one of {', '.join(TF_MODES)}, got {self.tf_mode!r}"
            )
        from carla_rl_common.objects import load_objects

        try:
            self.vehicle = load_objects(objects_file).vehicle(self.role)
        except KeyError:
            raise ConfigError(
                objects_file, "objects", f"no vehicle with id {self.role!r} (parameter role_name)"
            ) from None
        self.topics = BridgeTopics(self.role)
        self.map_name = ""
        self.bev: BevView | None = None
        self.route: markers.RouteCursor | None = None
        self.episode = -1
        self.ego_id = -1
        self.ego_size = markers.DEFAULT_EGO_SIZE
        self.traffic: list = []
        self.boxes = np.zeros((0, 6))
        self.odometry_seen = 0
        self.tf_sub = None
        self.publishing_tf = self.tf_mode == "true"
        self._make_interfaces()

    def _make_interfaces(self) -> None:
        t, qos, latched = self.topics, bridge.qos_default(), bridge.qos_latched()
        self.pub_map = self.create_publisher(MarkerArray, markers.MAP_MARKERS_TOPIC, latched)
        self.pub_markers = self.create_publisher(MarkerArray, markers.STEP_MARKERS_TOPIC, qos)
        self.pub_bev = self.create_publisher(Image, markers.BEV_IMAGE_TOPIC, qos)
        self.create_subscription(CarlaWorldInfo, t.world_info, self._on_world_info, latched)
        self.create_subscription(Path, t.waypoints, self._on_waypoints, latched)
        self.create_subscription(CarlaEgoVehicleInfo, t.vehicle_info, self._on_vehicle_info, latched)
        if self.show_traffic:  # the simulator draws /carla/markers only while someone subscribes
            self.create_subscription(MarkerArray, t.markers, self._on_carla_markers, qos)
        self.create_subscription(Step, t.step, self._on_step, qos)
        if self.tf_mode != "false":
            self.pub_tf = self.create_publisher(TFMessage, markers.TF_TOPIC, tf_qos())
            self.pub_tf_static = self.create_publisher(TFMessage, markers.TF_STATIC_TOPIC, latched)
            self.create_subscription(Odometry, t.odometry, self._on_odometry, qos)
            if self.tf_mode == "auto":
                self.tf_sub = self.create_subscription(TFMessage, markers.TF_TOPIC, self._on_tf, tf_qos())
            else:
                self._start_tf()

    # --- map and route -----------------------------------------------------------------------------------
    def _on_world_info(self, msg: CarlaWorldInfo) -> None:
        if msg.map_name == self.map_name and self.bev is not None:
            return
        try:
            network = RoadNetwork.from_string(msg.opendrive, source=f"{self.topics.world_info} ({msg.map_name})")
        except ValueError as exc:
            self.get_logger().error(f"cannot draw the map from world_info: {exc}")
            return
        self.map_name = msg.map_name
        self.pub_map.publish(markers.map_markers(network.lanes.values()))
        self.bev = BevView(network.lanes, size=self.bev_size)
        self.get_logger().info(f"map {msg.map_name}: {len(network.lanes)} lanes drawn on {self.pub_map.topic_name}")

    def _on_waypoints(self, msg: Path) -> None:
        xy = np.array([(p.pose.position.x, p.pose.position.y) for p in msg.poses], dtype=float).reshape(-1, 2)
        self.route = markers.RouteCursor(xy)

    def _on_vehicle_info(self, msg: CarlaEgoVehicleInfo) -> None:
        self.ego_id = int(msg.id)

    def _on_carla_markers(self, msg: MarkerArray) -> None:
        ego = next((m for m in msg.markers if m.id == self.ego_id), None)
        if ego is not None:
            self.ego_size = (ego.scale.x, ego.scale.y, ego.scale.z)
        self.traffic = markers.traffic_boxes(msg, self.ego_id)

    # --- per step ----------------------------------------------------------------------------------------
    def _on_step(self, msg: Step) -> None:
        x, y, yaw = bridge.pose_to_xyyaw(msg.ego_pose)
        if msg.episode != self.episode and self.route is not None:
            self.episode, self.route.index = msg.episode, 0
        route = self.route.advance(x, y) if self.route is not None else []
        goal = self.route.goal if self.route is not None else None
        self.pub_markers.publish(markers.step_markers(msg, route, goal, self.traffic, self.ego_size))
        if self.bev is not None and self.pub_bev.get_subscription_count():
            self._publish_bev(msg, (x, y, yaw))

    def _publish_bev(self, msg: Step, pose: tuple[float, float, float]) -> None:
        boxes = [
            (
                t.pose.position.x,
                t.pose.position.y,
                bridge.quaternion_to_yaw(
                    t.pose.orientation.x, t.pose.orientation.y, t.pose.orientation.z, t.pose.orientation.w
                ),
                t.scale.x,
                t.scale.y,
                t.scale.z,
            )
            for t in self.traffic
        ]
        route = self.route.xy[self.route.index :] if self.route is not None else None
        image = self.bev.render(pose, self.ego_size, boxes, route)
        self.pub_bev.publish(bridge.numpy_to_image(image, "rgb8", msg.header.stamp, bridge.ego_frame(self.role)))

    # --- TF ----------------------------------------------------------------------------------------------
    def _on_tf(self, msg: TFMessage) -> None:
        """auto mode, before deciding: someone else publishes the ego's transform -> leave TF to them."""
        if any(t.child_frame_id == bridge.ego_frame(self.role) for t in msg.transforms):
            self.get_logger().info(
                f"another node publishes {bridge.ego_frame(self.role)}'s transform on "
                f"{self.tf_sub.topic_name}: not publishing TF"
            )
            self._stop_watching_tf()
            self.tf_mode = "false"

    def _stop_watching_tf(self) -> None:
        if self.tf_sub is not None:
            self.destroy_subscription(self.tf_sub)
            self.tf_sub = None

    def _start_tf(self) -> None:
        self.publishing_tf = True
        self.pub_tf_static.publish(TFMessage(transforms=markers.sensor_transforms(self.vehicle)))

    def _on_odometry(self, msg: Odometry) -> None:
        if self.tf_mode == "false":
            return
        if not self.publishing_tf:
            self.odometry_seen += 1
            if self.odometry_seen < AUTO_DECIDE_FRAMES:
                return
            self._stop_watching_tf()
            self.get_logger().info(
                f"no other node publishes {bridge.ego_frame(self.role)}'s transform: "
                f"publishing TF on {self.pub_tf.topic_name}"
            )
            self._start_tf()
        self.pub_tf.publish(TFMessage(transforms=[markers.ego_transform(msg)]))


def main(args: list[str] | None = None) -> int:
    return spin_nodes("carla_rl_viz", lambda: [VizNode()], (ConfigError, ValueError, OSError), args)


if __name__ == "__main__":
    sys.exit(main())
