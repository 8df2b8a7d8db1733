"""The env node: CARLA bridge topics in, RL steps and episodes out.

Subscribes to the ego vehicle's bridge topics (names from :mod:`carla_rl_common.bridge`), assembles each
frame, runs the :class:`~carla_rl_env.task.DrivingTask` on it and publishes a ``carla_rl_msgs/Step``; at an
episode end it publishes a ``carla_rl_msgs/EpisodeSummary``. The reset service (re)spawns traffic through
``/carla/spawn_object``, teleports the ego to its lane's height through ``control/set_transform``, stops it
through ``control/set_target_velocity`` and brakes for a few frames before answering with the first
observation: the same calls work on a real CARLA bridge.
"""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from typing import Any

import numpy as np
import rclpy
import yaml
from carla_msgs.msg import (
    CarlaCollisionEvent,
    CarlaControl,
    CarlaEgoVehicleControl,
    CarlaEgoVehicleInfo,
    CarlaEgoVehicleStatus,
    CarlaLaneInvasionEvent,
    CarlaStatus,
    CarlaWorldInfo,
)
from carla_msgs.srv import DestroyObject, SpawnObject
from carla_rl_msgs.msg import EpisodeSummary, Step
from carla_rl_msgs.srv import GetSpec, Reset
from geometry_msgs.msg import Pose, PoseStamped, Twist
from nav_msgs.msg import Odometry, Path
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.task import Future
from sensor_msgs.msg import Image
from visualization_msgs.msg import MarkerArray

from carla_rl_common import bridge, codec
from carla_rl_common.bridge import BridgeTopics
from carla_rl_common.config import ConfigError
from carla_rl_common.direct import COLD_PERIOD_S, DirectSubscriptions
from carla_rl_common.nodes import spin_nodes
from carla_rl_common.opendrive import RoadNetwork
from carla_rl_common.spaces import space_to_json
from carla_rl_env.episode import (
    BRAKE,
    TRAFFIC_BLUEPRINTS,
    CommandMatcher,
    Settle,
    StepFolder,
    episode_record,
    replaces_traffic,
)
from carla_rl_env.frames import (
    COLLISION,
    LANE_INVASION,
    ODOM,
    VEHICLES,
    VSTATUS,
    VehicleTracker,
    frame_assembler,
    frame_from_messages,
    image_part,
)
from carla_rl_env.scenarios import Scenario, ScenarioSource, resolve_suite
from carla_rl_env.settings import check_sensors, load_env_config, needs_vehicles
from carla_rl_env.task import DrivingTask, Frame, Transition

STATUS_GRACE_S = 0.2  # a frame complete but for its /carla/status waits this long for it (see _check_timeouts)
FOREIGN_HOLD_S = 2.0  # a second publisher's going-back statuses are dropped this long while the first ticks on
MAP_WAIT_S = 30.0  # a reset waits this long for /carla/world_info (a real CARLA may still be loading the town)


class EnvNode(Node):
    """One RL environment over one ego vehicle of one (embedded or real) CARLA world."""

    def __init__(self, local_inputs: bool = False, **kwargs: Any):
        """``local_inputs``: take the simulator's topics by direct call (see carla_rl_bringup.composed), not DDS."""
        super().__init__("carla_rl_env", **kwargs)
        self.direct = DirectSubscriptions(self.context)  # the per-tick topics, taken by run() (or composed's loop)
        # resolved topic name -> callback, for a simulator node in this process to call (None: all DDS)
        self.local_inputs: dict[str, Any] | None = {} if local_inputs else None
        config_files = self.declare_parameter("config", Parameter.Type.STRING_ARRAY).value or []
        self.seed = self.declare_parameter("seed", 0).value
        self.env_id = self.declare_parameter("env_id", bridge.env_id(self.get_namespace())).value
        self.env_index = self.declare_parameter("env_index", 0).value  # which of num_envs envs this is
        self.num_envs = self.declare_parameter("num_envs", 1).value
        suite = self.declare_parameter("suite", "").value  # a suite kind or file: replaces env.scenario.suite
        self.config = load_env_config(config_files)
        if suite:
            path = resolve_suite(suite, self.config["sim"]["town"]).resolve()
            self.config = load_env_config(config_files, {"env": {"scenario": {"suite": str(path)}}})
        self.cfg = self.config["env"]
        self.source = ", ".join(config_files) or "<defaults>"
        check_sensors(self.config, self.source)
        self.topics = BridgeTopics(self.cfg["role_name"])
        self.camera_ids = [c["id"] for c in self.cfg["observation"]["cameras"]]
        self.crops = {c["id"]: c.get("crop", [0, 0, 0, 0]) for c in self.cfg["observation"]["cameras"]}
        self.assembler = frame_assembler(self.camera_ids, vehicles=needs_vehicles(self.cfg))
        self.task: DrivingTask | None = None
        self.scenarios: ScenarioSource | None = None
        self.dt = bridge.DEFAULT_FIXED_DELTA_SECONDS
        self.episode = 0
        self.step_index = 0
        self.active = False  # an episode is running: frames become steps
        self.paused = False
        self.scenario: Scenario | None = None
        self.frame_waiters: list[Future] = []
        self.map_waiters: list[Future] = []
        self.last_frame_wall = time.monotonic()
        self.traffic_ids: list[int] = []
        self.vehicles = np.zeros((0, 6))  # the other vehicles, from /carla/markers (when needs_vehicles)
        self.vehicle_velocities = np.zeros((0, 2))  # theirs, differenced between markers messages by actor id
        self.vehicle_tracker = VehicleTracker()
        self.ego_id = -1
        self.matcher = CommandMatcher()  # the agent's last vehicle_control_cmd since the last step
        self.folder = StepFolder()  # the last frame, not yet published as a step
        self.logged: Counter[str] = Counter()
        self._anomaly_kinds = 0  # kinds of FrameAssembler anomalies already reported
        self._held_since: float | None = None  # since when statuses of a possible second simulator are dropped
        self._other_frame = -1  # the last frame number such a status carried
        self._two_since = 0.0  # when two live simulators were first seen
        self._make_interfaces()

    # --- interfaces -------------------------------------------------------------------------------------
    def _make_interfaces(self) -> None:
        t, qos, latched = self.topics, bridge.qos_default(), bridge.qos_latched()
        # The executor serves ready subscriptions in creation order. A frame closes when its state messages
        # are in, so what must be part of it comes first: the agent's command (before the frame it caused),
        # the other vehicles and the events (the simulator publishes them before the ego's state).
        self.command_sub = self.direct.create_subscription(
            self, CarlaEgoVehicleControl, t.vehicle_control_cmd, self._on_command, qos
        )
        sim = self._subscribe_simulator
        sim(CarlaWorldInfo, t.world_info, self._on_world_info, latched, hot=False)
        if needs_vehicles(self.cfg):  # other vehicles (BEV, lead, nearby): the bridge's markers pseudo sensor
            sim(MarkerArray, t.markers, self._on_markers, qos)
            sim(CarlaEgoVehicleInfo, t.vehicle_info, self._on_vehicle_info, latched, hot=False)
        sim(CarlaCollisionEvent, t.collision, lambda m: self._on_part(COLLISION, m), qos)
        sim(CarlaLaneInvasionEvent, t.lane_invasion, lambda m: self._on_part(LANE_INVASION, m), qos)
        self.create_subscription(CarlaControl, t.control, self._on_carla_control, qos)
        self.create_subscription(PoseStamped, t.goal, self._on_goal, qos)
        sim(CarlaStatus, t.status, self._on_status, qos)
        for cam in self.camera_ids:
            sim(Image, t.image(cam), lambda m, c=cam: self._on_part(image_part(c), m), qos)
        sim(Odometry, t.odometry, lambda m: self._on_part(ODOM, m), qos)
        sim(CarlaEgoVehicleStatus, t.vehicle_status, lambda m: self._on_part(VSTATUS, m), qos)
        self.pub_step = self.create_publisher(Step, t.step, bridge.qos_publisher())
        self.pub_episode = self.create_publisher(EpisodeSummary, t.episode, bridge.qos_publisher())
        self.pub_control = self.create_publisher(CarlaEgoVehicleControl, t.vehicle_control_cmd, qos)
        self.pub_transform = self.create_publisher(Pose, t.set_transform, qos)
        self.pub_velocity = self.create_publisher(Twist, t.set_target_velocity, qos)
        self.pub_waypoints = self.create_publisher(Path, t.waypoints, latched)
        self.spawn_client = self.create_client(SpawnObject, t.spawn_object)
        self.despawn_client = self.create_client(DestroyObject, t.destroy_object)
        # The reset is a coroutine that waits for frames: it gets its own callback group, since a callback
        # group stays taken until its coroutine finishes and the frames arrive through the default group.
        self.direct.wake_on(
            self.create_service(Reset, t.reset, self._on_reset, callback_group=MutuallyExclusiveCallbackGroup())
        )
        self.direct.wake_on(self.create_service(GetSpec, t.spec, self._on_spec))
        # wall-clock timer: a stalled simulator stops sim time, and with it any sim-time timer
        self.create_timer(0.1, self._check_timeouts, clock=Clock(clock_type=ClockType.STEADY_TIME))

    def _subscribe_simulator(self, msg_type: type, topic: str, callback, qos, hot: bool = True) -> None:
        """Subscribe to a topic the simulator (or bridge) publishes: a per-tick (``hot``) one is taken directly
        (:mod:`carla_rl_common.direct`); composed, the simulator calls ``callback`` itself."""
        if self.local_inputs is not None:
            self.local_inputs[self.resolve_topic_name(topic)] = callback
        elif hot:
            self.direct.create_subscription(self, msg_type, topic, callback, qos)
        else:
            self.create_subscription(msg_type, topic, callback, qos)

    def run(self, executor) -> None:
        """Take the per-tick topics directly as they come; spin ``executor`` for the rest (services, timers,
        the reset coroutine) when they need it, else every ``COLD_PERIOD_S``."""
        while rclpy.ok():
            self.direct.serve(executor, COLD_PERIOD_S)

    def _log_once(self, kind: str, text: str) -> None:
        """Log the first occurrence of each kind of problem (and count the rest), not every message."""
        self.logged[kind] += 1
        if self.logged[kind] == 1:
            self.get_logger().warning(f"{text} (further '{kind}' problems are counted, not logged)")

    # --- inputs ------------------------------------------------------------------------------------------
    def _on_world_info(self, msg: CarlaWorldInfo) -> None:
        if self.task is not None and self.task.network is not None and msg.opendrive == self.task.network.opendrive:
            return  # the same map again (latched: a restarted simulator, DDS rediscovery): keep the episode
        try:
            network = RoadNetwork.from_string(msg.opendrive, source=f"{self.topics.world_info} ({msg.map_name})")
        except ValueError as exc:
            self._log_once("bad world_info", f"cannot use the map from {self.topics.world_info}: {exc}")
            return
        if self.active:  # another map under a running episode: it cannot go on
            self._truncate("map_changed")
        self.task = DrivingTask(self.cfg, network, self.dt, source=self.source)
        self.scenarios = ScenarioSource(network, self.cfg, self.seed, self.env_index, self.num_envs)
        self.get_logger().info(f"map {msg.map_name}: {len(network.driving_lanes())} driving lanes")
        waiters, self.map_waiters = self.map_waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(True)

    def _on_status(self, msg: CarlaStatus) -> None:
        dt = float(msg.fixed_delta_seconds)
        fixed = math.isfinite(dt) and dt > 0.0
        if fixed:
            self.dt = dt
        elif dt != 0.0:  # 0: not reported (keep ours)
            self._log_once("bad fixed_delta_seconds", f"ignored fixed_delta_seconds={dt} on {self.topics.status}")
        if msg.synchronous_mode:  # a pause (PAUSE, or after a STEP_ONCE) stops the ticks: no timeout then
            self.paused = not msg.synchronous_mode_running
        last = self.assembler.last_status  # frame numbers only go back with a new simulator
        if int(msg.frame) < last and self._another_simulator(int(msg.frame)):
            return
        if self._held_since is not None and int(msg.frame) > last:
            self._report_two_simulators(int(msg.frame))  # the current one ticks on: both are alive
        # frames are numbered by their stamps only when every tick takes the fixed delta (FrameAssembler)
        if self.assembler.add_status(int(msg.frame), dt if fixed and msg.synchronous_mode else 0.0):
            self.get_logger().warning(
                f"{self.env_id}: {self.topics.status} frame {msg.frame} after {last}: a new simulator; "
                "forgetting the old one",
                throttle_duration_sec=10.0,
            )
            self.traffic_ids = []
        self._deliver(self.assembler.pop_complete())

    def _another_simulator(self, frame: int) -> bool:
        """A /carla/status whose frame number goes back: True to drop it (keep the current simulator).

        A restarted simulator (``--restart``, a respawned bridge) counts from 0 again while the old one is gone;
        another stack's simulator in the same ROS domain does too, but the old one ticks on beside it. With
        one publisher of the topic it is a restart. With more, it may still be one (a killed process's
        endpoints stay in the graph until their lease ends): such statuses are dropped for ``FOREIGN_HOLD_S``,
        and the new simulator is adopted only if the current one sent nothing meanwhile.
        """
        if self.count_publishers(self.resolve_topic_name(self.topics.status)) < 2:
            self._held_since = None
            return False
        now, self._other_frame = time.monotonic(), frame
        if self._held_since is None:
            self._held_since = now
        if now - self._held_since < FOREIGN_HOLD_S:
            return True
        self._held_since = None  # the current simulator stayed silent: it was a restart
        return False

    def _report_two_simulators(self, frame: int) -> None:
        """Statuses of two live simulators interleave: an error (once) naming every publisher of the topic, as
        soon as discovery has told their node names (or after ``FOREIGN_HOLD_S``)."""
        now = time.monotonic()
        self._held_since = now  # keep dropping the other one's statuses
        if self.logged["two_simulators"]:
            return
        topic = self.resolve_topic_name(self.topics.status)
        infos = self.get_publishers_info_by_topic(topic)
        self._two_since = self._two_since or now
        if any(i.node_name == "_NODE_NAME_UNKNOWN_" for i in infos) and now - self._two_since < FOREIGN_HOLD_S:
            return
        self.logged["two_simulators"] += 1
        publishers = ", ".join(
            f"{info.node_namespace.rstrip('/')}/{info.node_name} (gid {bytes(info.endpoint_gid[:12]).hex()})"
            for info in infos
        )
        self.get_logger().error(
            f"{self.env_id}: two simulators publish {topic} in this ROS domain ({publishers}): this one's frame "
            f"{frame}, another's {self._other_frame}; keeping this one, dropping the other's statuses. Give each "
            "stack a domain of its own (carla-rl does unless --domain-id or ROS_DOMAIN_ID names one)"
        )

    def _on_carla_control(self, msg: CarlaControl) -> None:
        # STEP_ONCE leaves a paused bridge paused after its tick (bridge.py process_run_state)
        if msg.command in (CarlaControl.PAUSE, CarlaControl.PLAY):
            self.paused = msg.command == CarlaControl.PAUSE

    def _on_part(self, topic: str, msg: Any) -> None:
        stamp = bridge.stamp_to_ns(msg.header.stamp)
        if topic.startswith("image:"):
            try:
                msg = bridge.image_to_numpy(msg)
            except ValueError as exc:
                self._log_once(f"malformed {topic}", f"dropped a malformed {topic[6:]} image: {exc}")
                return
            problem = self._image_problem(topic[6:], msg)
            if problem:
                self._log_once(f"unusable {topic}", f"dropped an unusable {topic[6:]} image: {problem}")
                return
        elif not _finite_numbers(topic, msg):
            self._log_once(f"non-finite {topic}", f"dropped a {topic} message with NaN or inf values")
            return
        self._deliver(self.assembler.add(topic, stamp, msg, time.monotonic()))
        if len(self.assembler.anomalies) != self._anomaly_kinds:  # a new kind: say so once
            self._anomaly_kinds = len(self.assembler.anomalies)
            for kind in self.assembler.anomalies:
                if kind not in self.logged:
                    self._log_once(kind, f"{self.env_id}: frame assembly: {kind} message ({topic})")

    def _image_problem(self, camera: str, image: np.ndarray) -> str:
        """Why a well-formed image cannot become this camera's observation ("" if it can)."""
        height, width, channels = image.shape
        top, bottom, left, right = self.crops[camera]
        if channels not in (3, 4):
            return f"{channels} channel(s), expected bgr8 or bgra8"
        if height <= top + bottom or width <= left + right:
            return f"{width}x{height} is empty after the crop {self.crops[camera]}"
        return ""

    def _on_vehicle_info(self, msg: CarlaEgoVehicleInfo) -> None:
        self.ego_id = int(msg.id)

    def _on_markers(self, msg: MarkerArray) -> None:
        """Keep the latest boxes of the other vehicles (markers of the ego and non-boxes are skipped)."""
        read = codec.marker_boxes(msg, self.ego_id)
        finite = np.isfinite(read.boxes).all(axis=1)
        if not finite.all():
            self._log_once(
                "non-finite markers", f"dropped marker boxes with NaN or inf values on {self.topics.markers}"
            )
        self.vehicles = read.boxes[finite]
        self.vehicle_velocities = self.vehicle_tracker.update(read.stamp_ns, read.ids[finite], self.vehicles)
        if read.stamp_ns >= 0:  # the tick's vehicles are a part of its frame (an empty array has no stamp)
            self._deliver(
                self.assembler.add(VEHICLES, read.stamp_ns, (self.vehicles, self.vehicle_velocities), time.monotonic())
            )

    def _on_goal(self, msg: PoseStamped) -> None:
        """A new goal on /carla/<role>/goal re-plans the route from the car's current pose."""
        if not self.active or self.task is None or self.task.prev is None:
            return
        if not (math.isfinite(msg.pose.position.x) and math.isfinite(msg.pose.position.y)):
            self._log_once("non-finite goal", f"ignored a goal with NaN or inf coordinates on {self.topics.goal}")
            return
        p = self.task.prev
        try:
            route = self.task.network.route((p.x, p.y, p.yaw), (msg.pose.position.x, msg.pose.position.y))
        except ValueError as exc:
            self.get_logger().warning(f"no route to the new goal: {exc}", throttle_duration_sec=5.0)
            return
        self.task.replan(route, p)
        self._publish_route(route)

    # --- frames -> steps ---------------------------------------------------------------------------------
    def _deliver(self, frames: list) -> None:
        for stamp_ns, frame_number, parts, events in frames:
            self.last_frame_wall = time.monotonic()
            vehicles, velocities = parts.get(VEHICLES, (self.vehicles, self.vehicle_velocities))
            frame = frame_from_messages(stamp_ns, frame_number, parts, events, self.camera_ids, vehicles, velocities)
            waiters, self.frame_waiters = self.frame_waiters, []
            for future in waiters:
                future.set_result(frame)
                self.direct.kick = True  # the reset coroutine waits for it: spin the executor now
            if self.active and not waiters:
                self._advance(frame)

    def _advance(self, frame: Frame) -> None:
        """One frame of the running episode; a step is published per agent command (see CommandMatcher)."""
        carried = self.folder.carry
        tr = self.task.step(frame)
        # frames the simulator ticked without a new command: folded in; not a fault once the agent has gone (it
        # finished or is stopping: the simulator ticks on after its 1 s wait). Commands come from it and from
        # our own reset publisher.
        if self.folder.add(tr, frame) and self.command_sub.get_publisher_count() > 1:
            self._log_once(
                "uncommanded_frame",
                f"{self.env_id}: frame {carried[1].frame} was ticked without a "
                "new vehicle_control_cmd (the bridge's 1 s wait ran out?); folded into the next step",
            )
        commanded = self.matcher.applied(frame)
        self.get_logger().debug(
            f"frame {frame.frame}: control {frame.control}, command {self.matcher.command}, commanded={commanded}"
        )
        if commanded or tr.terminated or tr.truncated:
            self._publish_carry()
        elif self.matcher.command is not None:
            # The agent's command reached us but the simulator ticked without it: it was lost on the way
            # (e.g. published before DDS matched the agent with the simulator). Relay it, or lockstep stalls.
            self._log_once(
                "relayed_command",
                f"{self.env_id}: frame {frame.frame} did not apply the agent's command; relaying it to the simulator",
            )
            self.pub_control.publish(bridge.control_to_msg(self.matcher.command, CarlaEgoVehicleControl()))

    def _publish_carry(self) -> None:
        self.matcher.expect(None)
        self._publish_step(*self.folder.take())

    def _on_command(self, msg: CarlaEgoVehicleControl) -> None:
        if not self.active:
            return
        if not all(map(math.isfinite, (msg.throttle, msg.steer, msg.brake))):
            self._log_once("non-finite command", "ignored a vehicle_control_cmd with NaN or inf values")
            return
        self.matcher.expect(bridge.msg_to_control(msg))
        carry = self.folder.carry
        self.get_logger().debug(f"command {self.matcher.command}, carry {carry[1].frame if carry else None}")
        if carry is not None and self.matcher.applied(carry[1]):  # the frame came in first
            self._publish_carry()

    def _publish_step(self, transition: Transition, frame: Frame) -> None:
        self.step_index += 1
        self.pub_step.publish(self._step_msg(transition, frame))
        if transition.terminated or transition.truncated:
            self.active = False
            self._publish_episode()

    def _step_msg(self, tr: Transition, frame: Frame) -> Step:
        msg = Step(env_id=self.env_id, episode=self.episode, step=self.step_index, frame=frame.frame)
        msg.header.stamp = bridge.ns_to_stamp(frame.stamp_ns)
        msg.header.frame_id = bridge.MAP_FRAME
        codec.put_observation(msg, tr.observation, self.task.measurement_names)
        msg.reward = float(tr.reward)
        msg.reward_term_names = list(tr.reward_terms)
        msg.reward_terms = [float(v) for v in tr.reward_terms.values()]
        msg.terminated, msg.truncated, msg.termination_reason = tr.terminated, tr.truncated, tr.reason
        bridge.control_to_msg(frame.control, msg.control)
        msg.ego_pose = bridge.pose_msg(frame.x, frame.y, frame.yaw)
        msg.speed = float(frame.speed)
        return msg

    def _publish_episode(self) -> None:
        record = episode_record(self.task.stats, self.env_id, self.episode, self.scenario)
        self.pub_episode.publish(codec.summary_msg(record, EpisodeSummary()))

    def _check_timeouts(self) -> None:
        # a frame whose /carla/status never came (a sample lost beside 800x600 images waits for its writer's
        # next heartbeat: 3 s by Fast DDS's default, 50 ms with our profile, a user's may differ) is closed
        # without it, as the next frame number, instead of stalling the loop into a timeout
        self._deliver(self.assembler.close_without_status(time.monotonic(), STATUS_GRACE_S))
        if not self.active or self.paused:
            return
        timeout = self.cfg["sensor_timeout"]
        now = time.monotonic()
        missing = self.assembler.missing(now, timeout)
        if missing is not None:
            reason = f"sensor_timeout: {', '.join(missing[1])}"
        elif now - self.last_frame_wall > timeout:
            reason = "simulator_timeout"
        else:
            return
        self.get_logger().error(f"{self.env_id} episode {self.episode}: truncated after {timeout:.1f} s, {reason}")
        self._truncate(reason)

    def _truncate(self, reason: str) -> None:
        """End the running episode now as truncated (the last frame's observation, no reward)."""
        self.assembler.reset()
        self.task.truncate(reason)
        prev = self.task.prev
        self._publish_step(
            Transition(
                self.task.last_observation, 0.0, dict.fromkeys(self.task.reward.names, 0.0), False, True, reason
            ),
            prev,
        )

    # --- reset and spec ----------------------------------------------------------------------------------
    async def _on_reset(self, request: Reset.Request, response: Reset.Response) -> Reset.Response:
        if self.task is None and not await self._wait_for_map(MAP_WAIT_S):
            response.success, response.message = (
                False,
                (f"no map on {self.topics.world_info} after {MAP_WAIT_S:.0f} s: is the simulator (or bridge) running?"),
            )
            return response
        try:
            scenario = self._pick_scenario(request)
            route = self.scenarios.route(scenario)
        except (KeyError, ValueError, RuntimeError) as exc:
            response.success, response.message = False, str(exc)
            return response
        self.active = False
        await self._respawn_traffic(scenario)
        frame = await self._teleport_and_settle(scenario.start)
        if frame is None:
            response.success, response.message = False, "the simulator sent no frames during the reset"
            return response
        self.scenario, self.episode, self.step_index = scenario, self.episode + 1, 0
        self.matcher.expect(None)
        self.folder.clear()
        observation = self.task.reset(route, frame)
        self._publish_route(route)
        self.active = True
        self.last_frame_wall = time.monotonic()
        response.success, response.message = True, f"scenario {scenario.id}"
        response.observation = self._step_msg(
            Transition(observation, 0.0, dict.fromkeys(self.task.reward.names, 0.0), False, False, ""), frame
        )
        return response

    def _pick_scenario(self, request: Reset.Request) -> Scenario:
        if request.seed >= 0:
            self.scenarios.reseed(int(request.seed))
        if request.use_poses:
            sx, sy, syaw = bridge.pose_to_xyyaw(request.start)
            gx, gy, _ = bridge.pose_to_xyyaw(request.goal)
            return Scenario(
                "custom", (sx, sy, syaw), (gx, gy), int(self.cfg["scenario"]["traffic"]), max(int(request.seed), 0)
            )
        if request.scenario_id:
            return self.scenarios.by_id(request.scenario_id)
        return self.scenarios.next()

    async def _respawn_traffic(self, scenario: Scenario) -> None:
        if not replaces_traffic(scenario, self.traffic_ids):
            return
        if not self.spawn_client.service_is_ready():
            self._log_once("no_spawn_service", "no /carla/spawn_object service: traffic not (re)spawned")
            return
        for actor_id in self.traffic_ids:
            await self._call(self.despawn_client, DestroyObject.Request(id=actor_id))
        self.traffic_ids = []
        for i in range(scenario.traffic):
            blueprint = TRAFFIC_BLUEPRINTS[i % len(TRAFFIC_BLUEPRINTS)]
            req = SpawnObject.Request(type=blueprint, id=f"traffic_{i}", random_pose=True)
            res = await self._call(self.spawn_client, req)
            if res is None:  # a simulator that died keeps its service in the graph for a while
                self._log_once("spawn_timeout", f"{self.topics.spawn_object} did not answer; traffic not spawned")
                return
            if res.id >= 0:
                self.traffic_ids.append(res.id)
            else:  # e.g. a blueprint the world lacks, or a random spawn point taken
                self._log_once(
                    f"spawn_failed {blueprint}",
                    f"{self.topics.spawn_object} could not spawn {blueprint} ({req.id}): {res.error_string!r}",
                )

    async def _call(self, client, request) -> Any:
        """``client``'s answer to ``request``, or None after ``sensor_timeout`` s (a dead simulator's service
        never answers, and an unanswered await would block every later reset)."""
        future = client.call_async(request)
        timer = self.create_timer(
            self.cfg["sensor_timeout"],
            lambda: future.done() or future.set_result(None),
            clock=Clock(clock_type=ClockType.STEADY_TIME),
        )
        try:
            return await future
        finally:
            self.destroy_timer(timer)
            if future.result() is None:
                client.remove_pending_request(future)

    async def _teleport_and_settle(self, start: tuple[float, float, float]) -> Frame | None:
        """Teleport to ``start`` (at its lane's z), stop the car and brake until it rests there for
        ``settle_frames`` frames (:class:`~carla_rl_env.episode.Settle`)."""
        self.assembler.reset()
        settle = Settle(start, self.cfg["settle_frames"], self.task.network)
        self._teleport(settle)
        while not settle.done:
            self.pub_control.publish(bridge.control_to_msg(BRAKE, CarlaEgoVehicleControl()))
            frame = await self._next_frame(self.cfg["sensor_timeout"])
            if frame is None:
                return None
            if settle.feed(frame):
                self._teleport(settle)
        frame = settle.frame
        # A tick that ran out of the bridge's 1 s wait leaves one of our brake commands in flight; it would
        # tick once more after the agent's first command. Let it arrive now and start from that frame.
        while frame is not None:
            late = await self._next_frame(0.05)
            if late is None:
                break
            frame = late
        return frame

    def _teleport(self, settle: Settle) -> None:
        """Teleport to the settle's pose and set the velocity to zero: set_transform keeps it on CARLA."""
        x, y, z, yaw = settle.pose
        self.pub_transform.publish(bridge.pose_msg(x, y, yaw, z))
        self.pub_velocity.publish(Twist())

    async def _wait_for_map(self, timeout: float) -> bool:
        future = Future()
        self.map_waiters.append(future)
        timer = self.create_timer(
            timeout, lambda: future.done() or future.set_result(False), clock=Clock(clock_type=ClockType.STEADY_TIME)
        )
        try:
            return await future
        finally:
            self.destroy_timer(timer)

    async def _next_frame(self, timeout: float) -> Frame | None:
        """The next completed frame, or None after ``timeout`` s of wall time."""
        future = Future()
        self.frame_waiters.append(future)

        def expire() -> None:
            if not future.done():
                self.frame_waiters.remove(future)
                future.set_result(None)

        timer = self.create_timer(timeout, expire, clock=Clock(clock_type=ClockType.STEADY_TIME))
        try:
            return await future
        finally:
            self.destroy_timer(timer)

    def _publish_route(self, route) -> None:
        """Publish the route on waypoints, unless a waypoint publisher (carla_waypoint_publisher) runs."""
        if self.count_publishers(self.pub_waypoints.topic_name) > 1:
            return
        path = Path()
        path.header.frame_id = bridge.MAP_FRAME
        path.header.stamp = self.get_clock().now().to_msg()
        for w in route:
            ps = PoseStamped()
            ps.header.frame_id = bridge.MAP_FRAME
            ps.pose = bridge.pose_msg(w.x, w.y, w.yaw)
            path.poses.append(ps)
        self.pub_waypoints.publish(path)

    def _on_spec(self, request: GetSpec.Request, response: GetSpec.Response) -> GetSpec.Response:
        task = self.task or DrivingTask(self.cfg, None, self.dt, source=self.source)
        response.observation_space = space_to_json(task.observation_space)
        response.action_space = space_to_json(task.action_space)
        response.config = yaml.safe_dump(self.config, sort_keys=False)
        return response


def _finite_numbers(topic: str, msg: Any) -> bool:
    """False when a state or event message carries NaN or inf where the task reads numbers."""
    if topic == ODOM:
        p, q, v = msg.pose.pose.position, msg.pose.pose.orientation, msg.twist.twist.linear
        values = (p.x, p.y, p.z, q.x, q.y, q.z, q.w, v.x, v.y)
    elif topic == VSTATUS:
        c = msg.control
        values = (msg.velocity, msg.acceleration.linear.x, msg.acceleration.linear.y, c.throttle, c.steer, c.brake)
    elif topic == COLLISION:
        values = (msg.normal_impulse.x, msg.normal_impulse.y, msg.normal_impulse.z)
    else:
        return True
    return all(map(math.isfinite, values))


def main(args: list[str] | None = None) -> int:
    return spin_nodes(
        "carla_rl_env",
        lambda: [EnvNode(parameter_overrides=[Parameter("use_sim_time", value=True)])],
        (ConfigError,),
        args,
        run=lambda executor, nodes: nodes[0].run(executor),
    )


if __name__ == "__main__":
    sys.exit(main())
