"""The simulator node: the embedded simulator core behind the CARLA ROS bridge's topics and parameters.

It runs the bridge's synchronous-mode loop (ros-bridge master e9063d9, ``bridge.py``): apply /carla/control
commands (PAUSE blocks until PLAY or STEP_ONCE; STEP_ONCE runs one tick, then pauses) -> tick -> publish
/carla/status and /clock -> publish every sensor of that frame -> with
``synchronous_mode_wait_for_vehicle_control_command`` wait up to 1 s for a vehicle_control_cmd from every ego
vehicle -> next tick. /carla/status goes out at start-up (frame 0), on every tick and whenever
``synchronous_mode_running`` changes (``carla_status_publisher.py``), so a frame number can repeat.

What exists follows the objects file, as on the bridge: every ego vehicle has its vehicle_status,
vehicle_info and vehicle_control_cmd; every sensor and pseudo actor of the file (or of /carla/spawn_object)
gets its topics, named after its id (:mod:`carla_rl_sim.pseudo`); nothing else is published. ``/tf`` carries
each sensor's transform (cameras in their optical frame) and, with ``sensor.pseudo.tf``, ``map -> <role>``.

Beside the bridge's topics it offers live viewers *previews* (``carla_rl/preview/...``, see
``bridge.PREVIEW_PREFIX``): the markers and each camera's image, sent at most ``preview_hz`` times a second of
wall time and rendered only then. A viewer subscribed to the per-tick contract topics would make this node
draw markers and render the camera on every tick (160-200 a second in the lockstep loop), on the loop's path;
the contract topics still go out every tick to whoever subscribes to them.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
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
from geometry_msgs.msg import Pose, Quaternion, TransformStamped, Twist
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, Imu, NavSatFix
from std_msgs.msg import Float32, String
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import Marker, MarkerArray

from carla_rl_common import bridge
from carla_rl_common.bridge import BridgeTopics
from carla_rl_common.direct import COLD_PERIOD_S, DirectSubscriptions
from carla_rl_common.nodes import spin_nodes
from carla_rl_common.objects import ATTACHED_ONLY, PSEUDO_TYPES, load_objects
from carla_rl_common.paths import default_objects_file
from carla_rl_sim import pseudo
from carla_rl_sim.core import Simulator, SimulatorError, load_simulator
from carla_rl_sim.pseudo import PseudoActor

MAX_COORDINATE_M = 1e6  # set_transform beyond this is no place on any map (and overflows the lane raster)
MAX_SPEED_M_S = 1e3  # set_target_velocity beyond this is no vehicle's (and overflows the dynamics)
LOCKSTEP_TICKS = 100  # commanded ticks in a row after which a missed command is a warning, not start-up
FIRST_PSEUDO_ID = 10000  # the bridge numbers its pseudo actors from here (actor_factory.py)


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
        self.objects = load_objects(Path(self.objects_file) if self.objects_file else default_objects_file())
        self.running = True  # /carla/status synchronous_mode_running: False while paused
        self._commands: deque[int] = deque()  # /carla/control commands not yet processed, oldest first
        self._awaiting: set[str] = set()  # egos whose vehicle_control_cmd this tick's wait still needs
        self._warned_wait = False
        # ticks in a row that got their commands: a missed command after a lockstep run is worth a warning, one
        # before (start-up, an agent still loading, a reset's settling) is how the bridge runs
        self._commanded_ticks = 0
        self._command_subs: dict[str, Any] = {}  # role -> its vehicle_control_cmd subscription
        self._lockstep_publishers: dict[str, int] = {}  # role -> publishers of its commands when lockstep began
        self.pseudo_actors: dict[int, PseudoActor] = {}  # uid -> every pseudo sensor and pseudo actor
        self._pseudo_ids = itertools.count(FIRST_PSEUDO_ID)
        self._markers: tuple[int, MarkerArray] | None = None  # (frame, the markers of that frame)
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
        # every CARLA sensor has a tf2 broadcaster on the bridge (sensor.py), the tf pseudo sensor too
        self.pub_tf = self.create_publisher(TFMessage, TF_TOPIC, qos)
        self.pub_preview_markers = (
            self.create_publisher(MarkerArray, world.preview_markers, preview_qos()) if self.preview_hz > 0 else None
        )
        if self.synchronous_mode:  # the bridge takes /carla/control in synchronous mode only
            self.create_subscription(CarlaControl, world.control, self._on_carla_control, bridge.qos_default())
        wake = self.direct.wake_on  # a request ends the wait for a command (the executor serves it)
        wake(self.create_service(SpawnObject, world.spawn_object, self._on_spawn))
        wake(self.create_service(DestroyObject, world.destroy_object, self._on_destroy))
        wake(self.create_service(GetBlueprints, world.get_blueprints, self._on_blueprints))
        self.ego_pubs: dict[str, dict[str, Any]] = {}
        for role, ego in self.sim.egos.items():
            self._make_ego_interfaces(role, ego)
        for spec in self.objects.sensors:
            self._add_pseudo_from_file(spec.type, spec.id, None)
        self._publish_latched(
            self.pub_world_info, CarlaWorldInfo(map_name=self.sim.network.name, opendrive=self.sim.network.opendrive)
        )

    def _make_ego_interfaces(self, role: str, ego) -> None:
        qos, latched = bridge.qos_publisher(), bridge.qos_latched()
        t = BridgeTopics(role)
        pubs: dict[str, Any] = {
            "status": self.create_publisher(CarlaEgoVehicleStatus, t.vehicle_status, qos),
            "info": self.create_publisher(CarlaEgoVehicleInfo, t.vehicle_info, latched),
            "sensors": {},
        }
        self.ego_pubs[role] = pubs
        self._make_sensor_publishers(role, ego)
        # its pseudo actors first: a teleport (actor.pseudo.control) is taken before the command that follows it
        for spec in ego.sensors:
            if spec.type in PSEUDO_TYPES:
                self._add_pseudo_from_file(spec.type, spec.id, role)
        # the loop's hot path (see _wait_for_control), subscribed with the bridge's depth (PUBLISH_DEPTH is what
        # our publishers keep, not what we read)
        self._command_subs[role] = self.direct.create_subscription(
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
            elif sensor.type == "sensor.other.collision":
                pubs[sensor.id] = (self.create_publisher(CarlaCollisionEvent, t.sensor(sensor.id), qos),)
            elif sensor.type == "sensor.other.lane_invasion":
                pubs[sensor.id] = (self.create_publisher(CarlaLaneInvasionEvent, t.sensor(sensor.id), qos),)

    # --- pseudo actors ------------------------------------------------------------------------------------
    def _add_pseudo_from_file(self, kind: str, name: str, role: str | None) -> None:
        try:
            self._add_pseudo(kind, name, role)
        except SimulatorError as exc:
            self.get_logger().warning(f"{self.objects.source}: {name!r}: {exc}")

    def _add_pseudo(self, kind: str, name: str, role: str | None) -> PseudoActor:
        """Create a pseudo sensor or pseudo actor and its topics (see :mod:`carla_rl_sim.pseudo`)."""
        if kind == "sensor.pseudo.objects":
            raise SimulatorError(f"{kind} is not available: /carla/objects needs derived_object_msgs, not installed")
        if role is None and kind in ATTACHED_ONLY:
            raise SimulatorError(f"{kind} must be attached to a vehicle (the bridge's would fail on its first tick)")
        actor = PseudoActor(next(self._pseudo_ids), kind, name, role)
        prefix, pubs, qos = actor.prefix, actor.publishers, bridge.qos_publisher()
        if kind == "sensor.pseudo.markers":
            pubs["markers"] = self.create_publisher(MarkerArray, prefix, qos)
            pubs["static"] = self.create_publisher(MarkerArray, f"{prefix}/static", bridge.qos_latched())
            self._publish_latched(pubs["static"], MarkerArray())  # this world has no static objects to box
        elif kind == "sensor.pseudo.traffic_lights":
            pubs["info"] = self.create_publisher(CarlaTrafficLightInfoList, f"{prefix}/info", latched_qos())
            pubs["status"] = self.create_publisher(CarlaTrafficLightStatusList, f"{prefix}/status", latched_qos())
        elif kind == "sensor.pseudo.actor_list":
            pubs["actors"] = self.create_publisher(CarlaActorList, prefix, qos)
        elif kind == "sensor.pseudo.opendrive_map":
            pubs["map"] = self.create_publisher(String, prefix, latched_qos())
            self._publish_latched(pubs["map"], String(data=self.sim.network.opendrive))
        elif kind == "sensor.pseudo.odom":
            pubs["odometry"] = self.create_publisher(Odometry, prefix, qos)
        elif kind == "sensor.pseudo.speedometer":
            pubs["speedometer"] = self.create_publisher(Float32, prefix, qos)
        elif kind == "actor.pseudo.control":
            default = bridge.qos_default()
            actor.subscriptions = [
                self.direct.create_subscription(
                    self, Pose, f"{prefix}/set_transform", lambda m, r=role: self._on_set_transform(r, m), default
                ),
                self.direct.create_subscription(
                    self, Twist, f"{prefix}/set_target_velocity", lambda m, r=role: self._on_set_velocity(r, m), default
                ),
            ]
        self.pseudo_actors[actor.uid] = actor
        return actor

    def _remove_pseudo(self, uid: int) -> None:
        actor = self.pseudo_actors.pop(uid)
        for pub in actor.publishers.values():
            self.latched.pop(pub.topic_name, None)
            self.destroy_publisher(pub)
        for sub in actor.subscriptions:
            self.direct.destroy_subscription(self, sub)

    def _update_pseudo(self, actor: PseudoActor, stamp) -> None:
        """One tick of a pseudo sensor (tf, control and the latched OpenDRIVE map have nothing to do)."""
        pubs, kind = actor.publishers, actor.type
        if kind == "sensor.pseudo.markers" and self._wants(pubs["markers"]):
            self._publish(pubs["markers"], self._markers_msg(stamp))
        elif kind == "sensor.pseudo.actor_list" and self._wants(pubs["actors"]):
            self._publish(pubs["actors"], self._actor_list_msg())
        elif kind == "sensor.pseudo.traffic_lights":
            lights = self.sim.traffic_light_states()
            ids, states = [i for i, _, _ in lights], [s for _, s, _ in lights]
            last_ids, last_states = actor.last if actor.last is not None else ([], [])
            if ids != last_ids:  # the set of lights changed: their info, latched
                self._publish_latched(pubs["info"], self._traffic_light_info_msg(lights))
            if states != last_states or ids != last_ids:  # on change only
                status = [CarlaTrafficLightStatus(id=int(i), state=int(s)) for i, s in zip(ids, states)]
                self._publish_latched(pubs["status"], CarlaTrafficLightStatusList(traffic_lights=status))
            actor.last = (ids, states)
        elif kind == "sensor.pseudo.odom" and self._wants(pubs["odometry"]):
            self._publish(pubs["odometry"], self._odometry_msg(actor.role, stamp))
        elif kind == "sensor.pseudo.speedometer" and self._wants(pubs["speedometer"]):
            self._publish(pubs["speedometer"], Float32(data=float(self.sim.egos[actor.role].forward_speed)))

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
        self._awaiting.discard(role)

    def _on_set_transform(self, role: str, msg: Pose) -> None:
        """actor.pseudo.control: CARLA's ``set_transform`` (z honoured, the velocity kept; actor_control.py)."""
        x, y, yaw = bridge.pose_to_xyyaw(msg)
        z = float(msg.position.z)
        if not all(map(math.isfinite, (x, y, z, yaw))) or max(abs(x), abs(y), abs(z)) > MAX_COORDINATE_M:
            self.get_logger().warning(
                f"{role}: ignored set_transform to ({x}, {y}, {z}, {yaw}): not finite or beyond "
                f"{MAX_COORDINATE_M:.0e} m",
                throttle_duration_sec=5.0,
            )
            return
        if role in self.sim.egos:
            self.sim.set_transform(role, x, y, yaw, z=z)

    def _on_set_velocity(self, role: str, msg: Twist) -> None:
        """actor.pseudo.control: the Twist's linear part is in the vehicle frame, turned into the map frame by the
        car's heading; its angular z goes to CARLA's left-handed z unconverted, so the car turns the other way
        round than ROS would read it (actor_control.py on_twist)."""
        values = (msg.linear.x, msg.linear.y, msg.linear.z, msg.angular.z)
        if not all(math.isfinite(v) and abs(v) <= MAX_SPEED_M_S for v in values) or role not in self.sim.egos:
            self.get_logger().warning(f"{role}: ignored set_target_velocity {values}", throttle_duration_sec=5.0)
            return
        yaw = self.sim.egos[role].pose[3]
        vx, vy = pseudo.body_to_map(float(msg.linear.x), float(msg.linear.y), yaw)
        self.sim.set_target_velocity(role, vx, vy, float(msg.linear.z), yaw_rate=-float(msg.angular.z))

    def _on_carla_control(self, msg: CarlaControl) -> None:
        if msg.command in (CarlaControl.PLAY, CarlaControl.PAUSE, CarlaControl.STEP_ONCE):
            self._commands.append(int(msg.command))
        else:
            self.get_logger().warning(f"unknown /carla/control command {msg.command}", throttle_duration_sec=5.0)

    def _on_spawn(self, request: SpawnObject.Request, response: SpawnObject.Response) -> SpawnObject.Response:
        try:
            if request.type in PSEUDO_TYPES:
                response.id = self._spawn_pseudo(request)
            else:
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

    def _spawn_pseudo(self, request: SpawnObject.Request) -> int:
        role = None
        if request.attach_to:
            role = next((r for r, e in self.sim.egos.items() if e.id == request.attach_to), None)
            if role is None:  # the bridge's words (actor_factory.py)
                raise SimulatorError(f"Parent actor {request.attach_to} not found")
        return self._add_pseudo(request.type, request.id, role).uid

    def _on_destroy(self, request: DestroyObject.Request, response: DestroyObject.Response) -> DestroyObject.Response:
        if request.id in self.pseudo_actors:
            self._remove_pseudo(request.id)
            response.success = True
            return response
        response.success = self.sim.destroy(request.id)
        for role in [r for r in self.ego_pubs if r not in self.sim.egos]:  # its pseudo actors go with an ego
            for uid in [u for u, a in self.pseudo_actors.items() if a.role == role]:
                self._remove_pseudo(uid)
            del self.ego_pubs[role]
        return response

    def _on_blueprints(self, request: GetBlueprints.Request, response: GetBlueprints.Response):
        response.blueprints = pseudo.filter_blueprints(self.sim.blueprints(), request.filter)
        return response

    # --- the synchronous loop ----------------------------------------------------------------------------
    def run(self, executor: SingleThreadedExecutor) -> None:
        self._publish_status()  # the bridge's status publisher sends frame 0 when it starts
        wait = self.synchronous_mode and self.wait_for_control  # asynchronous mode ignores the flag
        while rclpy.ok():
            if self.synchronous_mode:
                self._process_run_state(executor)
                if not rclpy.ok():
                    return
            self._awaiting = set(self.sim.egos) if wait else set()
            self.tick()
            if 0 < self.max_frames <= self.sim.frame:
                return
            if self._awaiting:  # no ego, no wait
                self._wait_for_control(executor)
            else:
                self.direct.serve(executor, 0.0)
                if not self.synchronous_mode:  # asynchronous: keep wall-clock pace
                    time.sleep(self.fixed_delta_seconds)

    def _process_run_state(self, executor: SingleThreadedExecutor) -> None:
        """The newest /carla/control command: PAUSE blocks until the next one, PLAY runs, STEP_ONCE runs one tick
        and queues a PAUSE; each change of ``synchronous_mode_running`` is a status (bridge.py process_run_state)."""
        command = self._commands[-1] if self._commands else None
        self._commands.clear()
        while command is not None and rclpy.ok():
            if command == CarlaControl.PAUSE:
                self._set_running(False)
                while not self._commands and rclpy.ok():
                    executor.spin_once(timeout_sec=0.05)  # commands and teleports are still taken (and applied)
                command = self._commands.popleft() if self._commands else None
            else:
                self._set_running(True)
                if command == CarlaControl.STEP_ONCE:
                    self._commands.append(CarlaControl.PAUSE)
                return

    def _set_running(self, running: bool) -> None:
        if running != self.running:
            self.running = running
            self._publish_status()

    def _publish_status(self) -> None:
        self._publish(
            self.pub_status,
            CarlaStatus(
                frame=self.sim.frame,
                fixed_delta_seconds=float(self.fixed_delta_seconds),
                synchronous_mode=self.synchronous_mode,
                synchronous_mode_running=self.running,
            ),
        )

    def _wait_for_control(self, executor: SingleThreadedExecutor) -> None:
        """Until every ego that existed at the tick sent a command, at most 1 s (then tick anyway, warning once)."""
        deadline = time.monotonic() + bridge.CONTROL_WAIT_TIMEOUT_S
        while rclpy.ok():
            self._awaiting &= set(self.sim.egos)  # a destroyed ego sends nothing
            if not self._awaiting:
                self._commanded_ticks += 1
                if self._commanded_ticks == LOCKSTEP_TICKS:  # who commands us now, to tell a stop from a fault
                    self._lockstep_publishers = {r: s.get_publisher_count() for r, s in self._command_subs.items()}
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                in_lockstep, self._commanded_ticks = self._commanded_ticks >= LOCKSTEP_TICKS, 0
                if not in_lockstep:
                    self.get_logger().info(
                        "no vehicle_control_cmd within 1 s; ticking anyway (as the bridge; no agent in lockstep yet)",
                        throttle_duration_sec=30.0,
                    )
                elif self._commander_left():  # an agent that finished (or was stopped) is not a fault
                    self.get_logger().info(
                        f"no vehicle_control_cmd from {sorted(self._awaiting)} within 1 s: its agent has gone; "
                        "ticking anyway (as the bridge)"
                    )
                elif not self._warned_wait:
                    self.get_logger().warning(
                        f"no vehicle_control_cmd from {sorted(self._awaiting)} within 1 s; ticking anyway "
                        "(as the bridge; warned once)"
                    )
                    self._warned_wait = True
                return
            # the command (and a teleport) directly; services, /carla/control, a composed env node's reset
            # coroutine through the executor when they wake us, else every COLD_PERIOD_S
            self.direct.serve(executor, min(remaining, COLD_PERIOD_S))

    def _commander_left(self) -> bool:
        """Did a node that commanded an ego we wait for stop publishing (fewer publishers than in lockstep)?"""
        return any(
            role in self._command_subs
            and self._command_subs[role].get_publisher_count() < self._lockstep_publishers.get(role, 0)
            for role in self._awaiting
        )

    def tick(self) -> None:
        self.sim.tick()
        stamp = bridge.sim_time_msg(self.sim.elapsed)
        # Every per-tick topic goes out only while someone subscribes (as the bridge's own publishers cost
        # nothing then): in the lockstep loop each message is a serialisation, a send and a wake-up.
        if self._wants(self.pub_status):
            self._publish_status()
        if self._wants(self.pub_clock):
            self._publish(self.pub_clock, Clock(clock=stamp))
        # world-level data before the egos', whose vehicle_status closes a frame for the env node
        for actor in list(self.pseudo_actors.values()):
            if actor.role is None:
                self._update_pseudo(actor, stamp)
        self._publish_previews(stamp)
        transforms: list[TransformStamped] = []
        for role in self.sim.egos:
            self._publish_ego(role, stamp, transforms)
        if transforms and self._wants(self.pub_tf):
            self._publish(self.pub_tf, TFMessage(transforms=transforms))

    def _publish_previews(self, stamp) -> None:
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
            self.pub_preview_markers.publish(self._markers_msg(stamp))
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

    def _publish_ego(self, role: str, stamp, transforms: list[TransformStamped]) -> None:
        """One ego's topics of this tick; its sensors' transforms (and with a tf pseudo sensor its own) are added
        to ``transforms``."""
        ego, pubs = self.sim.egos[role], self.ego_pubs[role]
        # events and sensors first: the env node closes a frame when its state messages are in
        for sensor in ego.sensors:
            self._publish_sensor(role, ego, sensor, pubs["sensors"].get(sensor.id), stamp, transforms)
        for actor in list(self.pseudo_actors.values()):
            if actor.role == role:
                if actor.type == "sensor.pseudo.tf":
                    transforms.insert(0, self._ego_transform(role, stamp))
                self._update_pseudo(actor, stamp)
        if not self._wants(pubs["status"]):
            return
        status = CarlaEgoVehicleStatus(velocity=float(ego.speed))
        status.header.stamp, status.header.frame_id = stamp, bridge.MAP_FRAME
        a = status.acceleration.linear
        a.x, a.y, a.z = map(float, ego.acceleration_map)  # CARLA's world acceleration, in the map frame
        qx, qy, qz, qw = bridge.yaw_to_quaternion(ego.state.yaw)
        status.orientation = Quaternion(x=qx, y=qy, z=qz, w=qw)
        bridge.control_to_msg(ego.applied_control, status.control)  # as applied: the gearbox's gear
        status.control.header.stamp = stamp
        self._publish(pubs["status"], status)

    def _odometry_msg(self, role: str, stamp) -> Odometry:
        ego = self.sim.egos[role]
        s, (x, y, z, yaw) = ego.state, ego.pose
        odom = Odometry()
        odom.header.stamp, odom.header.frame_id = stamp, bridge.MAP_FRAME
        odom.child_frame_id = bridge.ego_frame(role)
        odom.pose.pose = bridge.pose_msg(x, y, yaw, z=z)
        odom.twist.twist.linear.x, odom.twist.twist.linear.y = float(s.vx), float(s.vy)
        odom.twist.twist.angular.z = float(s.yaw_rate)
        return odom

    def _ego_transform(self, role: str, stamp) -> TransformStamped:
        """``map -> <role>``: the tf pseudo sensor's one transform (tf_sensor.py)."""
        x, y, z, yaw = self.sim.egos[role].pose
        return _transform(bridge.MAP_FRAME, bridge.ego_frame(role), (x, y, z), bridge.yaw_to_quaternion(yaw), stamp)

    def _publish_sensor(self, role: str, ego, sensor, pubs, stamp, transforms: list[TransformStamped]) -> None:
        if pubs is None:
            return
        frame_id = bridge.sensor_frame(role, sensor.id)
        if sensor.type in pseudo.EVENT_TYPES:
            self._publish_events(ego, sensor, pubs[0], stamp, frame_id, transforms)
            return
        if sensor.type in pseudo.FRAMED_TYPES:  # a datum every tick, and its transform with it (sensor.py)
            transforms.append(_sensor_transform(role, sensor, stamp))
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
            s = ego.state  # body frame: what an IMU measures
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

    def _publish_events(self, ego, sensor, pub, stamp, frame_id: str, transforms: list[TransformStamped]) -> None:
        """A collision or lane-invasion sensor's events of this tick, in its frame ``<role>/<id>``; the normal
        impulse as CARLA reports it (its left-handed world frame: the bridge copies it, collision_sensor.py)."""
        if sensor.type == "sensor.other.collision":
            events = []
            for other_id, impulse in ego.collisions:
                msg = CarlaCollisionEvent(other_actor_id=int(other_id))
                msg.normal_impulse.x, msg.normal_impulse.y, msg.normal_impulse.z = map(float, impulse)
                events.append(msg)
        else:
            events = [CarlaLaneInvasionEvent(crossed_lane_markings=[int(m) for m in m_]) for m_ in ego.lane_invasions]
        for msg in events:
            msg.header.stamp, msg.header.frame_id = stamp, frame_id
            self._publish(pub, msg)
        if events:  # an event sensor's transform comes with its events only
            transforms.append(_sensor_transform(ego.role_name, sensor, stamp))

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

    @staticmethod
    def _traffic_light_info_msg(lights) -> CarlaTrafficLightInfoList:
        infos = []
        for light_id, _, (x, y, yaw) in lights:
            info = CarlaTrafficLightInfo(id=int(light_id), transform=bridge.pose_msg(x, y, yaw))
            info.trigger_volume.center.x, info.trigger_volume.center.y = float(x), float(y)
            info.trigger_volume.size.x, info.trigger_volume.size.y, info.trigger_volume.size.z = 3.0, 3.0, 2.0
            infos.append(info)
        return CarlaTrafficLightInfoList(traffic_lights=infos)

    def _markers_msg(self, stamp) -> MarkerArray:
        """A box per vehicle, as the bridge's ``sensor.pseudo.markers`` (marker_sensor.py and
        traffic_participant.py: id = actor id, a CUBE at the box centre in ``map``; the ego green, others red).
        Built once per frame for the contract topic and the preview."""
        if self._markers is not None and self._markers[0] == self.sim.frame:
            return self._markers[1]
        boxes = [(e.id, *e.pose, *e.extent, e.params.height, (0.0, 1.0, 0.0)) for e in self.sim.egos.values()]
        boxes += [
            (v.id, v.x, v.y, 0.0, v.yaw, v.length, v.width, v.height, (1.0, 0.0, 0.0))
            for v in self.sim.traffic.vehicles()
        ]
        markers = MarkerArray()
        for actor_id, x, y, z, yaw, length, width, height, (r, g, b) in boxes:
            m = Marker(id=int(actor_id), type=Marker.CUBE, action=Marker.ADD)
            m.header.stamp, m.header.frame_id = stamp, bridge.MAP_FRAME
            m.pose = bridge.pose_msg(x, y, yaw, z=z + height / 2.0)
            m.scale.x, m.scale.y, m.scale.z = float(length), float(width), float(height)
            m.color.r, m.color.g, m.color.b, m.color.a = r, g, b, 0.3
            markers.markers.append(m)
        self._markers = (self.sim.frame, markers)
        return markers

    def _actor_list_msg(self) -> CarlaActorList:
        """CARLA actors only: vehicles, sensors, traffic lights; no pseudo actors (actor_list_sensor.py)."""
        actors = [
            CarlaActorInfo(id=a.id, parent_id=a.parent_id, type=a.type, rolename=a.rolename)
            for a in self.sim.actors()
            if pseudo.is_carla_actor(a.type)
        ]
        actors += [
            CarlaActorInfo(id=int(i), parent_id=0, type="traffic.traffic_light", rolename="")
            for i, _, _ in self.sim.traffic_light_states()
        ]
        return CarlaActorList(actors=actors)


TF_TOPIC = "tf"  # tf2's /tf (relative, as every bridge name here: a namespaced simulator has its own)


def _transform(parent: str, child: str, xyz, quaternion, stamp) -> TransformStamped:
    t = TransformStamped()
    t.header.stamp, t.header.frame_id, t.child_frame_id = stamp, parent, child
    t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = map(float, xyz)
    r = t.transform.rotation
    r.x, r.y, r.z, r.w = map(float, quaternion)
    return t


def _sensor_transform(role: str, sensor, stamp) -> TransformStamped:
    """``<role> -> <role>/<id>`` at the sensor's mount (the spawn pose, as the bridge in synchronous mode);
    a camera's turned into its optical frame (camera.py)."""
    m = sensor.mount
    q = bridge.rpy_to_quaternion(m.roll, m.pitch, m.yaw)
    if sensor.type.startswith("sensor.camera."):
        q = pseudo.quaternion_multiply(q, pseudo.OPTICAL_ROTATION)
    return _transform(bridge.ego_frame(role), bridge.sensor_frame(role, sensor.id), (m.x, m.y, m.z), q, stamp)


def latched_qos(depth: int = pseudo.LATCHED_DEPTH) -> QoSProfile:
    """The traffic-light and OpenDRIVE topics: reliable, TRANSIENT_LOCAL, depth 10."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
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
