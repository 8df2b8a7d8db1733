"""The simulator node: the embedded simulator core behind the CARLA ROS bridge's topics and parameters.

It runs the bridge's synchronous-mode loop: apply /carla/control commands (PAUSE blocks until PLAY or
STEP_ONCE) -> tick -> publish /carla/status and /clock -> publish every sensor of that frame -> with
``synchronous_mode_wait_for_vehicle_control_command`` wait up to 1 s for a vehicle_control_cmd -> next tick.

Beside the bridge's topics it offers live viewers *previews* (``carla_rl/preview/...``, see
``bridge.PREVIEW_PREFIX``): the markers and each camera's image, sent at most ``preview_hz`` times a second of
wall time and rendered only then. A viewer subscribed to the per-tick contract topics would make this node
draw markers and render the camera on every tick (160-200 a second in the lockstep loop), on the loop's path;
the contract topics still go out every tick to whoever subscribes to them.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any

import rclpy
from carla_msgs.msg import (
    CarlaActorInfo,
    CarlaActorList,
    CarlaCollisionEvent,
    CarlaControl,
    CarlaEgoVehicleControl,
    CarlaEgoVehicleInfo,
    CarlaEgoVehicleInfoWheel,
    CarlaEgoVehicleStatus,
    CarlaLaneInvasionEvent,
    CarlaStatus,
    CarlaTrafficLightInfo,
    CarlaTrafficLightInfoList,
    CarlaTrafficLightStatus,
    CarlaTrafficLightStatusList,
    CarlaWorldInfo,
)
from carla_msgs.srv import DestroyObject, GetBlueprints, SpawnObject
from geometry_msgs.msg import Pose, Quaternion
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, Imu, NavSatFix
from std_msgs.msg import Float32, String
from visualization_msgs.msg import Marker, MarkerArray

from carla_rl_common import bridge
from carla_rl_common.bridge import BridgeTopics
from carla_rl_common.direct import COLD_PERIOD_S, DirectSubscriptions
from carla_rl_common.nodes import spin_nodes
from carla_rl_sim.core import Simulator, SimulatorError, load_simulator

MAX_COORDINATE_M = 1e6  # set_transform beyond this is no place on any map (and overflows the lane raster)


class SimulatorNode(Node):
    """Publishes one frame of bridge topics per tick and serves the bridge's control topics and services."""

    def __init__(self, direct: DirectSubscriptions | None = None, **kwargs: Any):
        """``direct``: the process's hot-path subscriptions (a composed env node's; default: our own)."""
        super().__init__("carla_ros_bridge", **kwargs)
        self.direct = direct or DirectSubscriptions(self.context)
        p = self.declare_parameter
        self.town = p("town", "RLTown01").value
        self.objects_file = p("objects_file", "").value
        self.synchronous_mode = p("synchronous_mode", True).value
        self.wait_for_control = p("synchronous_mode_wait_for_vehicle_control_command", False).value
        self.fixed_delta_seconds = p("fixed_delta_seconds", bridge.DEFAULT_FIXED_DELTA_SECONDS).value
        self.role_names = list(p("ego_vehicle_role_name", list(bridge.EGO_ROLE_NAMES)).value)
        self.traffic = p("traffic", 0).value
        self.seed = p("seed", 0).value
        self.traffic_lights = p("traffic_lights", False).value
        self.max_frames = p("max_frames", 0).value  # 0 = run until shut down (tests and benchmarks bound it)
        self.preview_hz = float(
            p(
                "preview_hz",
                20.0,
                ParameterDescriptor(
                    description="viewer previews (markers, camera images) per second of wall time; 0: none"
                ),
            ).value
        )
        if not 0.0 <= self.preview_hz < math.inf:
            raise ValueError(f"preview_hz must be a finite number >= 0, got {self.preview_hz}")

        self.sim: Simulator = load_simulator(
            self.town,
            self.objects_file,
            self.fixed_delta_seconds,
            self.traffic,
            self.seed,
            self.role_names,
            self.traffic_lights,
        )
        self.paused = False
        self.step_once = False
        self.control_received = False
        self._warned_wait = False
        # Composition (carla_rl_bringup.composed): an env node in this process takes our messages by direct call,
        # keyed by resolved topic name, instead of through DDS; latched ones are kept to hand over on attach.
        self.local_sinks: dict[str, Callable[[Any], None]] = {}
        self.latched: dict[str, Any] = {}
        self.preview_pubs: dict[tuple[str, str], Any] = {}  # (role, sensor id) -> preview image publisher
        self._preview_due = 0.0  # monotonic time of the next preview
        self._rendered: dict[tuple[str, str], tuple[int, Any]] = {}  # (role, sensor id) -> (frame, render)
        self._make_interfaces()
        self.get_logger().info(
            f"embedded simulator: map {self.sim.network.name}, egos {list(self.sim.egos)}, "
            f"synchronous_mode={self.synchronous_mode}, wait_for_control={self.wait_for_control}, "
            f"fixed_delta_seconds={self.fixed_delta_seconds}"
        )

    # --- interfaces -------------------------------------------------------------------------------------
    def _make_interfaces(self) -> None:
        qos, latched = bridge.qos_publisher(), bridge.qos_latched()
        world = BridgeTopics()
        self.pub_clock = self.create_publisher(Clock, world.clock, qos)
        self.pub_status = self.create_publisher(CarlaStatus, world.status, qos)
        self.pub_world_info = self.create_publisher(CarlaWorldInfo, world.world_info, latched)
        self.pub_map = self.create_publisher(String, world.map, latched)
        self.pub_actor_list = self.create_publisher(CarlaActorList, world.actor_list, qos)
        self.pub_tl_status = self.create_publisher(CarlaTrafficLightStatusList, world.traffic_lights_status, qos)
        self.pub_tl_info = self.create_publisher(CarlaTrafficLightInfoList, world.traffic_lights_info, latched)
        self.pub_markers = self.create_publisher(MarkerArray, world.markers, qos)
        self.pub_preview_markers = (
            self.create_publisher(MarkerArray, world.preview_markers, preview_qos()) if self.preview_hz > 0 else None
        )
        self.create_subscription(CarlaControl, world.control, self._on_carla_control, bridge.qos_default())
        wake = self.direct.wake_on  # a request ends the wait for a command (the executor serves it)
        wake(self.create_service(SpawnObject, world.spawn_object, self._on_spawn))
        wake(self.create_service(DestroyObject, world.destroy_object, self._on_destroy))
        wake(self.create_service(GetBlueprints, world.get_blueprints, self._on_blueprints))
        self.ego_pubs: dict[str, dict[str, Any]] = {}
        for role, ego in self.sim.egos.items():
            self._make_ego_interfaces(role, ego)
        self._publish_latched(
            self.pub_world_info, CarlaWorldInfo(map_name=self.sim.network.name, opendrive=self.sim.network.opendrive)
        )
        self._publish_latched(self.pub_map, String(data=self.sim.network.opendrive))
        self._publish_latched(self.pub_tl_info, self._traffic_light_info_msg())

    def _make_ego_interfaces(self, role: str, ego) -> None:
        qos, latched = bridge.qos_publisher(), bridge.qos_latched()
        t = BridgeTopics(role)
        pubs: dict[str, Any] = {
            "status": self.create_publisher(CarlaEgoVehicleStatus, t.vehicle_status, qos),
            "info": self.create_publisher(CarlaEgoVehicleInfo, t.vehicle_info, latched),
            "odometry": self.create_publisher(Odometry, t.odometry, qos),
            "speedometer": self.create_publisher(Float32, t.speedometer, qos),
            "collision": self.create_publisher(CarlaCollisionEvent, t.collision, qos),
            "lane_invasion": self.create_publisher(CarlaLaneInvasionEvent, t.lane_invasion, qos),
            "sensors": {},
        }
        self.ego_pubs[role] = pubs
        self._make_sensor_publishers(role, ego)
        # the loop's hot path (see _wait_for_control); a teleport before the command that follows it
        # (subscribed with the bridge's depth: PUBLISH_DEPTH is what our publishers keep, not what we read)
        self.direct.create_subscription(
            self, Pose, t.set_transform, lambda msg, r=role: self._on_set_transform(r, msg), bridge.qos_default()
        )
        self.direct.create_subscription(
            self,
            CarlaEgoVehicleControl,
            t.vehicle_control_cmd,
            lambda msg, r=role: self._on_vehicle_control(r, msg),
            bridge.qos_default(),
        )
        self._publish_latched(pubs["info"], self._vehicle_info_msg(role))

    def _make_sensor_publishers(self, role: str, ego) -> None:
        t, qos, pubs = BridgeTopics(role), bridge.qos_publisher(), self.ego_pubs[role]["sensors"]
        for sensor in ego.sensors:
            if sensor.id in pubs:
                continue
            if sensor.type in ("sensor.camera.rgb", "sensor.pseudo.bev"):
                pubs[sensor.id] = (
                    self.create_publisher(Image, t.image(sensor.id), qos),
                    self.create_publisher(CameraInfo, t.camera_info(sensor.id), qos),
                )
                if self.preview_hz > 0:
                    self.preview_pubs[role, sensor.id] = self.create_publisher(
                        Image, t.preview_image(sensor.id), preview_qos()
                    )
            elif sensor.type == "sensor.other.imu":
                pubs[sensor.id] = (self.create_publisher(Imu, t.sensor(sensor.id), qos),)
            elif sensor.type == "sensor.other.gnss":
                pubs[sensor.id] = (self.create_publisher(NavSatFix, t.sensor(sensor.id), qos),)

    # --- publishing ---------------------------------------------------------------------------------------
    def attach(self, sinks: dict[str, Callable[[Any], None]]) -> None:
        """Deliver the topics named in ``sinks`` (resolved names) by calling them, in publication order."""
        self.local_sinks.update(sinks)
        for topic, msg in self.latched.items():
            if topic in sinks:
                sinks[topic](msg)

    def _wants(self, pub) -> bool:
        """Does anyone take this topic? Per-tick topics nobody subscribes to are neither built nor sent."""
        return pub.topic_name in self.local_sinks or pub.get_subscription_count() > 0

    def _publish(self, pub, msg) -> None:
        sink = self.local_sinks.get(pub.topic_name)
        if sink is not None:
            sink(msg)
        if pub.get_subscription_count():
            pub.publish(msg)

    def _publish_latched(self, pub, msg) -> None:
        self.latched[pub.topic_name] = msg
        pub.publish(msg)  # transient local: late subscribers get it from DDS
        sink = self.local_sinks.get(pub.topic_name)
        if sink is not None:
            sink(msg)

    # --- callbacks (short: they only record what the next tick applies) ------------------------------------
    def _on_vehicle_control(self, role: str, msg: CarlaEgoVehicleControl) -> None:
        problems = self.sim.apply_control(role, bridge.msg_to_control(msg))
        if problems:
            self.get_logger().warning(f"{role}: control clamped: {', '.join(problems)}", throttle_duration_sec=5.0)
        self.control_received = True

    def _on_set_transform(self, role: str, msg: Pose) -> None:
        x, y, yaw = bridge.pose_to_xyyaw(msg)
        if not all(map(math.isfinite, (x, y, yaw))) or max(abs(x), abs(y)) > MAX_COORDINATE_M:
            self.get_logger().warning(
                f"{role}: ignored set_transform to ({x}, {y}, {yaw}): not finite or beyond {MAX_COORDINATE_M:.0e} m",
                throttle_duration_sec=5.0,
            )
            return
        self.sim.set_transform(role, x, y, yaw)

    def _on_carla_control(self, msg: CarlaControl) -> None:
        if msg.command == CarlaControl.PAUSE:
            self.paused = True
        elif msg.command == CarlaControl.PLAY:
            self.paused, self.step_once = False, False
        elif msg.command == CarlaControl.STEP_ONCE:
            self.step_once = True
        else:
            self.get_logger().warning(f"unknown /carla/control command {msg.command}", throttle_duration_sec=5.0)

    def _on_spawn(self, request: SpawnObject.Request, response: SpawnObject.Response) -> SpawnObject.Response:
        try:
            pose = None if request.random_pose else bridge.pose_to_6dof(request.transform)
            response.id = self.sim.spawn(
                request.type, request.id, pose, {kv.key: kv.value for kv in request.attributes}, request.attach_to
            )
        except (SimulatorError, ValueError) as exc:
            response.id, response.error_string = -1, str(exc)
            return response
        for role, ego in self.sim.egos.items():  # a new ego or sensor gets its publishers
            if role not in self.ego_pubs:
                self._make_ego_interfaces(role, ego)
            else:
                self._make_sensor_publishers(role, ego)
        return response

    def _on_destroy(self, request: DestroyObject.Request, response: DestroyObject.Response) -> DestroyObject.Response:
        response.success = self.sim.destroy(request.id)
        return response

    def _on_blueprints(self, request: GetBlueprints.Request, response: GetBlueprints.Response):
        response.blueprints = [b for b in self.sim.blueprints() if request.filter in b or request.filter in ("", "*")]
        return response

    # --- the synchronous loop ----------------------------------------------------------------------------
    def run(self, executor: SingleThreadedExecutor) -> None:
        while rclpy.ok():
            if self.paused and not self.step_once:
                executor.spin_once(timeout_sec=0.05)
                continue
            self.control_received = False
            self.tick()
            if self.step_once:
                self.step_once, self.paused = False, True
            if 0 < self.max_frames <= self.sim.frame:
                return
            if self.wait_for_control:
                self._wait_for_control(executor)
            else:
                self.direct.serve(executor, 0.0)
                if not self.synchronous_mode:  # asynchronous: keep wall-clock pace
                    time.sleep(self.fixed_delta_seconds)

    def _wait_for_control(self, executor: SingleThreadedExecutor) -> None:
        deadline = time.monotonic() + bridge.CONTROL_WAIT_TIMEOUT_S
        while not self.control_received and rclpy.ok() and not self.paused:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if not self._warned_wait:
                    self.get_logger().warning("no vehicle_control_cmd within 1 s; ticking anyway (as the bridge)")
                    self._warned_wait = True
                return
            # the command (and a teleport) directly; services, /carla/control, a composed env node's reset
            # coroutine through the executor when they wake us, else every COLD_PERIOD_S
            self.direct.serve(executor, min(remaining, COLD_PERIOD_S))

    def tick(self) -> None:
        self.sim.tick()
        stamp = bridge.sim_time_msg(self.sim.elapsed)
        # Every per-tick topic goes out only while someone subscribes (as the bridge's own publishers cost
        # nothing then): in the lockstep loop each message is a serialisation, a send and a wake-up.
        if self._wants(self.pub_status):
            self._publish(
                self.pub_status,
                CarlaStatus(
                    frame=self.sim.frame,
                    fixed_delta_seconds=float(self.fixed_delta_seconds),
                    synchronous_mode=self.synchronous_mode,
                    synchronous_mode_running=not self.paused,
                ),
            )
        if self._wants(self.pub_clock):
            self._publish(self.pub_clock, Clock(clock=stamp))
        # world-level data before the egos', whose vehicle_status closes a frame for the env node
        if self._wants(self.pub_actor_list):  # every tick, as the bridge's pseudo sensor
            self._publish(self.pub_actor_list, self._actor_list_msg())
        markers = None
        if self._wants(self.pub_markers):  # drawn only for someone watching (rviz, a bag, the BEV)
            markers = self._markers_msg(stamp)
            self._publish(self.pub_markers, markers)
        if self._wants(self.pub_tl_status):
            lights = self.sim.traffic_light_states()
            if lights:
                self._publish(
                    self.pub_tl_status,
                    CarlaTrafficLightStatusList(
                        traffic_lights=[CarlaTrafficLightStatus(id=i, state=s) for i, s, _ in lights]
                    ),
                )
        self._publish_previews(stamp, markers)
        for role in self.sim.egos:
            self._publish_ego(role, stamp)

    def _publish_previews(self, stamp, markers: MarkerArray | None) -> None:
        """Markers and camera images for viewers, at most preview_hz a second (wall time), only to subscribers.

        Sent before the egos' topics, as the contract markers, so a viewer has them when that frame's Step comes.
        """
        if self.pub_preview_markers is None:
            return
        now = time.monotonic()
        if now < self._preview_due:
            return
        due = self._preview_due + 1.0 / self.preview_hz
        self._preview_due = due if due > now else now + 1.0 / self.preview_hz  # a slow loop: every tick
        if self.pub_preview_markers.get_subscription_count():
            self.pub_preview_markers.publish(markers if markers is not None else self._markers_msg(stamp))
        for role, ego in self.sim.egos.items():
            for sensor in ego.sensors:
                pub = self.preview_pubs.get((role, sensor.id))
                if pub is not None and pub.get_subscription_count():
                    image, encoding, _ = self._render(role, sensor.id)
                    pub.publish(bridge.numpy_to_image(image, encoding, stamp, bridge.sensor_frame(role, sensor.id)))

    def _render(self, role: str, sensor_id: str) -> tuple[Any, str, dict[str, Any]]:
        """The sensor's image of this frame, rendered once if both a preview and the contract topic want it."""
        frame, result = self._rendered.get((role, sensor_id), (-1, None))
        if frame != self.sim.frame:
            result = self.sim.render(role, sensor_id)
            self._rendered[role, sensor_id] = (self.sim.frame, result)
        return result

    def _publish_ego(self, role: str, stamp) -> None:
        ego, pubs = self.sim.egos[role], self.ego_pubs[role]
        # events first: the env node closes a frame when its state messages are in
        for other_id, impulse in ego.collisions:
            msg = CarlaCollisionEvent(other_actor_id=int(other_id))
            msg.header.stamp, msg.header.frame_id = stamp, role
            msg.normal_impulse.x, msg.normal_impulse.y, msg.normal_impulse.z = map(float, impulse)
            self._publish(pubs["collision"], msg)
        for markings in ego.lane_invasions:
            msg = CarlaLaneInvasionEvent(crossed_lane_markings=[int(m) for m in markings])
            msg.header.stamp, msg.header.frame_id = stamp, role
            self._publish(pubs["lane_invasion"], msg)
        for sensor in ego.sensors:
            self._publish_sensor(role, ego, sensor, pubs["sensors"].get(sensor.id), stamp)
        s = ego.state
        if self._wants(pubs["speedometer"]):
            self._publish(pubs["speedometer"], Float32(data=float(ego.speed)))
        if self._wants(pubs["odometry"]):
            self._publish(pubs["odometry"], self._odometry_msg(role, s, stamp))
        if not self._wants(pubs["status"]):
            return
        status = CarlaEgoVehicleStatus(velocity=float(ego.speed))
        status.header.stamp, status.header.frame_id = stamp, bridge.MAP_FRAME
        status.acceleration.linear.x, status.acceleration.linear.y = float(s.ax), float(s.ay)
        qx, qy, qz, qw = bridge.yaw_to_quaternion(s.yaw)
        status.orientation = Quaternion(x=qx, y=qy, z=qz, w=qw)
        bridge.control_to_msg(ego.applied_control, status.control)
        status.control.header.stamp = stamp
        self._publish(pubs["status"], status)

    @staticmethod
    def _odometry_msg(role: str, s, stamp) -> Odometry:
        odom = Odometry()
        odom.header.stamp, odom.header.frame_id = stamp, bridge.MAP_FRAME
        odom.child_frame_id = bridge.ego_frame(role)
        odom.pose.pose = bridge.pose_msg(s.x, s.y, s.yaw)
        odom.twist.twist.linear.x, odom.twist.twist.linear.y = float(s.vx), float(s.vy)
        odom.twist.twist.angular.z = float(s.yaw_rate)
        return odom

    def _publish_sensor(self, role: str, ego, sensor, pubs, stamp) -> None:
        if pubs is None:
            return
        frame_id = bridge.sensor_frame(role, sensor.id)
        if sensor.type in ("sensor.camera.rgb", "sensor.pseudo.bev"):
            if not (self._wants(pubs[0]) or self._wants(pubs[1])):
                return  # rendering is most of a camera's cost: skip it while nobody listens
            image, encoding, fields = self._render(role, sensor.id)
            if self._wants(pubs[0]):
                self._publish(pubs[0], bridge.numpy_to_image(image, encoding, stamp, frame_id))
            if self._wants(pubs[1]):
                info = CameraInfo(**fields)
                info.header.stamp, info.header.frame_id = stamp, frame_id
                self._publish(pubs[1], info)
        elif not self._wants(pubs[0]):
            return
        elif sensor.type == "sensor.other.imu":
            msg = Imu()
            msg.header.stamp, msg.header.frame_id = stamp, frame_id
            s = ego.state
            accel = msg.linear_acceleration
            accel.x, accel.y, accel.z = float(s.ax), float(s.ay), 9.81
            msg.angular_velocity.z = float(s.yaw_rate)
            qx, qy, qz, qw = bridge.yaw_to_quaternion(s.yaw)
            msg.orientation = Quaternion(x=qx, y=qy, z=qz, w=qw)
            self._publish(pubs[0], msg)
        elif sensor.type == "sensor.other.gnss":
            msg = NavSatFix()
            msg.header.stamp, msg.header.frame_id = stamp, frame_id
            msg.latitude, msg.longitude, msg.altitude = self.sim.network.to_geodetic(ego.state.x, ego.state.y, 2.0)
            self._publish(pubs[0], msg)

    def _vehicle_info_msg(self, role: str) -> CarlaEgoVehicleInfo:
        ego = self.sim.egos[role]
        info = ego.info
        msg = CarlaEgoVehicleInfo(id=ego.id, type=ego.type_id, rolename=role)
        for wheel in info["wheels"]:
            w = CarlaEgoVehicleInfoWheel(**{k: float(v) for k, v in wheel.items() if k != "position"})
            w.position.x, w.position.y, w.position.z = map(float, wheel["position"])
            msg.wheels.append(w)
        for key in (
            "max_rpm",
            "moi",
            "damping_rate_full_throttle",
            "damping_rate_zero_throttle_clutch_engaged",
            "damping_rate_zero_throttle_clutch_disengaged",
            "gear_switch_time",
            "clutch_strength",
            "mass",
            "drag_coefficient",
        ):
            setattr(msg, key, float(info[key]))
        msg.use_gear_autobox = bool(info["use_gear_autobox"])
        msg.center_of_mass.x, msg.center_of_mass.y, msg.center_of_mass.z = map(float, info["center_of_mass"])
        return msg

    def _traffic_light_info_msg(self) -> CarlaTrafficLightInfoList:
        infos = []
        for light_id, _, (x, y, yaw) in self.sim.traffic_light_states():
            info = CarlaTrafficLightInfo(id=int(light_id), transform=bridge.pose_msg(x, y, yaw))
            info.trigger_volume.center.x, info.trigger_volume.center.y = float(x), float(y)
            info.trigger_volume.size.x, info.trigger_volume.size.y, info.trigger_volume.size.z = 3.0, 3.0, 2.0
            infos.append(info)
        return CarlaTrafficLightInfoList(traffic_lights=infos)

    def _markers_msg(self, stamp) -> MarkerArray:
        """A box per vehicle, like the bridge's pseudo sensor ``sensor.pseudo.markers``."""
        boxes = [
            (e.id, e.state.x, e.state.y, e.state.yaw, *e.extent, e.params.height, (0.1, 0.6, 1.0))
            for e in self.sim.egos.values()
        ]
        boxes += [
            (v.id, v.x, v.y, v.yaw, v.length, v.width, v.height, (1.0, 0.5, 0.1)) for v in self.sim.traffic.vehicles()
        ]
        markers = MarkerArray()
        for actor_id, x, y, yaw, length, width, height, (r, g, b) in boxes:
            m = Marker(id=int(actor_id), type=Marker.CUBE, action=Marker.ADD, ns="vehicles")
            m.header.stamp, m.header.frame_id = stamp, bridge.MAP_FRAME
            m.pose = bridge.pose_msg(x, y, yaw, z=height / 2.0)
            m.scale.x, m.scale.y, m.scale.z = float(length), float(width), float(height)
            m.color.r, m.color.g, m.color.b, m.color.a = r, g, b, 0.8
            markers.markers.append(m)
        return markers

    def _actor_list_msg(self) -> CarlaActorList:
        return CarlaActorList(
            actors=[
                CarlaActorInfo(id=a.id, parent_id=a.parent_id, type=a.type, rolename=a.rolename)
                for a in self.sim.actors()
            ]
        )


def preview_qos() -> QoSProfile:
    """Previews: the newest only, best effort (a viewer that falls behind skips frames, nothing is resent)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)


def main(args: list[str] | None = None) -> int:
    return spin_nodes(
        "carla_rl_sim",
        lambda: [SimulatorNode()],
        (SimulatorError, ValueError, OSError),
        args,
        run=lambda executor, nodes: nodes[0].run(executor),
    )


if __name__ == "__main__":
    sys.exit(main())
