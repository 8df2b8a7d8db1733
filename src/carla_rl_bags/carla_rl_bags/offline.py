"""Offline evaluation: score a recorded drive with the current env config, with no simulator running.

The raw bridge topics of a bag (recorded from our embedded simulator or from a real CARLA + bridge) are
turned back into what the env node computed live: ``world_info`` gives the road network, frames are
assembled by stamp with the env node's :class:`~carla_rl_env.frames.FrameAssembler`, and a
:class:`~carla_rl_env.task.DrivingTask` built from the given config yields observations, reward terms and
episode ends. Recording the same drive and evaluating it with the same config reproduces the live returns.

Episodes:

* With recorded ``carla_rl/step`` messages, an episode is the frames its steps cover: the last step's frame
  and the ``EpisodeSummary.length`` frames up to it (steps fold frames the simulator ticked on its own), after
  the *reset frame* the env node started it on. Without the summary (a recording cut mid-episode), the frames
  from the first step's on.
* Its route is the ``waypoints`` Path the env published for it (lanes and road options re-planned between its
  ends), else one planned from the reset pose to the last recorded ``goal``. Paths or goals arriving during
  the episode re-plan it, as they do live.
* Without step messages (a bag of a bridge driven by something else), each Path (or, failing that, goal) starts
  an episode at the latest frame before it, which runs until the task ends it or the next one starts.
* Without a map or a route, the recorded step messages alone are reported, and the report says so.

Collision, lane-invasion and marker messages are attached to the frame of their stamp before that frame's
state arrives, the order the env node subscribes in for exactly that purpose (the recorder's own arrival
order across topics is not the env node's).

With a policy (a checkpoint, loaded with ``carla_rl_agents.checkpoints.load_policy``, or any object with
``predict(obs, deterministic=True) -> (action, state)``), its action on every rebuilt observation (a batch of
one, as the agent node calls it) is compared with the recorded one: the control applied in the next
frame, mapped into the action space with ``ActionMapper.from_control``.

Outputs in ``out_dir``: ``report.md``, ``report.json``, ``returns.png``, ``reward_curves.png`` and, with a
policy, ``action_errors.png``.
"""
from __future__ import annotations

import bisect
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
from carla_msgs.msg import (CarlaCollisionEvent, CarlaEgoVehicleInfo, CarlaEgoVehicleStatus,
                            CarlaLaneInvasionEvent, CarlaStatus, CarlaWorldInfo)
from carla_rl_msgs.msg import EpisodeSummary, Step
from geometry_msgs.msg import PoseStamped
from gymnasium import spaces
from matplotlib.figure import Figure
from nav_msgs.msg import Odometry, Path as PathMsg
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image
from visualization_msgs.msg import MarkerArray

from carla_rl_bags import BagError
from carla_rl_bags.reader import Bag, open_bag
from carla_rl_bags.recorder import absolute_name
from carla_rl_common import bridge
from carla_rl_common.bridge import BridgeTopics, Control
from carla_rl_common.opendrive import RoadNetwork
from carla_rl_common.opendrive.types import RoadOption, RouteWaypoint
from carla_rl_env.actions import ActionMapper
from carla_rl_env.frames import FrameAssembler, VehicleTracker, marker_vehicles
from carla_rl_env.settings import load_env_config
from carla_rl_env.task import DrivingTask, Frame

# Frame parts, keyed as the env node keys them.
VSTATUS, ODOM, COLLISION, LANE_INVASION, MARKERS = "vehicle_status", "odometry", "collision", "lane_invasion", "markers"
ROUTE_MATCH_M = 0.05  # a re-planned route within this of every recorded waypoint is the recorded route
AGREEMENT_TOLERANCE = 0.1  # continuous actions agree when every component is within this


def image_part(camera_id: str) -> str:
    return f"image:{camera_id}"


# --- bridge messages -> Frame: the env node's logic, here as functions it can share ---------------------------
def frame_assembler(camera_ids: list[str]) -> FrameAssembler:
    """The env node's assembler: vehicle status, odometry and each camera required; events optional."""
    return FrameAssembler(required=[VSTATUS, ODOM, *(image_part(c) for c in camera_ids)],
                          events=[COLLISION, LANE_INVASION])


def frame_from_messages(stamp_ns: int, frame_number: int, parts: dict[str, Any], events: dict[str, list[Any]],
                        camera_ids: list[str], vehicles: np.ndarray,
                        vehicle_velocities: np.ndarray | None = None) -> Frame:
    """A :class:`Frame` from one assembled frame's bridge messages (images already as arrays)."""
    status, odom = parts[VSTATUS], parts[ODOM]
    x, y, yaw = bridge.pose_to_xyyaw(odom.pose.pose)
    collisions = [(int(e.other_actor_id), math.sqrt(e.normal_impulse.x ** 2 + e.normal_impulse.y ** 2
                                                     + e.normal_impulse.z ** 2)) for e in events.get(COLLISION, [])]
    invasions = [int(m) for e in events.get(LANE_INVASION, []) for m in e.crossed_lane_markings]
    return Frame(stamp_ns=stamp_ns, frame=frame_number, x=x, y=y, yaw=yaw, speed=float(status.velocity),
                 acceleration=float(status.acceleration.linear.x), control=bridge.msg_to_control(status.control),
                 collisions=collisions, lane_invasions=invasions,
                 images={c: parts[image_part(c)] for c in camera_ids}, vehicles=vehicles,
                 vehicle_velocities=vehicle_velocities)


# --- which topics -------------------------------------------------------------------------------------------
TYPES = {"status": CarlaStatus, "world_info": CarlaWorldInfo, VSTATUS: CarlaEgoVehicleStatus, ODOM: Odometry,
         COLLISION: CarlaCollisionEvent, LANE_INVASION: CarlaLaneInvasionEvent, MARKERS: MarkerArray,
         "vehicle_info": CarlaEgoVehicleInfo, "step": Step, "episode": EpisodeSummary, "waypoints": PathMsg,
         "goal": PoseStamped, "image": Image}


def type_name(cls: Any) -> str:
    return f"{cls.__module__.split('.')[0]}/msg/{cls.__name__}"


@dataclass
class EnvTopics:
    """The topics of one env namespace in a bag: topic -> kind (a TYPES key; cameras by their part key)."""

    namespace: str
    kinds: dict[str, str]
    camera_ids: list[str]

    @classmethod
    def of(cls, bag: Bag, namespace: str, cfg: dict[str, Any]) -> EnvTopics:
        t = BridgeTopics(cfg["role_name"])
        camera_ids = [c["id"] for c in cfg["observation"]["cameras"]]
        wanted = {t.status: "status", t.world_info: "world_info", t.vehicle_status: VSTATUS, t.odometry: ODOM,
                  t.collision: COLLISION, t.lane_invasion: LANE_INVASION, t.markers: MARKERS,
                  t.vehicle_info: "vehicle_info", t.step: "step", t.episode: "episode", t.waypoints: "waypoints",
                  t.goal: "goal", **{t.image(c): image_part(c) for c in camera_ids}}
        kinds = {}
        for relative, kind in wanted.items():
            name = absolute_name(relative, namespace)
            if name in bag.topics:
                expected = type_name(TYPES["image" if kind.startswith("image:") else kind])
                if bag.topics[name].msgtype != expected:
                    raise BagError(f"{bag.path}: {name} has type {bag.topics[name].msgtype}, expected {expected}")
                kinds[name] = kind
        return cls(namespace, kinds, camera_ids)

    def has(self, kind: str) -> bool:
        return kind in self.kinds.values()

    def missing_for_frames(self) -> list[str]:
        """Required frame kinds the bag lacks (then no frame can be rebuilt)."""
        return [k for k in (VSTATUS, ODOM, "status", "world_info", *(image_part(c) for c in self.camera_ids))
                if not self.has(k)]


def find_namespaces(bag: Bag, role: str) -> list[str]:
    """Env namespaces recorded in ``bag``: where the ego's odometry or the env's steps are."""
    found = []
    for suffix in (BridgeTopics(role).odometry, BridgeTopics().step):
        for name in bag.topics:
            if name.endswith("/" + suffix):
                ns = name[:-len(suffix)].strip("/")
                if ns not in found:
                    found.append(ns)
    return found


# --- pass over the bag: messages -> frames and stack messages, in receive order ------------------------------
def bridge_events(bag: Bag, topics: EnvTopics, prefeed: dict[int, list[tuple[str, Any]]] | None = None
                  ) -> Iterator[tuple[str, int, Any]]:
    """``(kind, receive_ns, payload)``: assembled frames (``"frame"``, a Frame) and every decoded stack message.

    Collision, lane-invasion and marker messages of a stamp in ``prefeed`` are applied from it just before the
    first state message of that stamp; without ``prefeed`` they are applied in arrival order and also yielded
    (kind ``"attach"``, payload ``(kind, stamp, msg)``) so a first pass can collect them.
    """
    assembler = frame_assembler(topics.camera_ids)
    vehicles, velocities, ego_id = np.zeros((0, 6)), np.zeros((0, 2)), -1
    tracker = VehicleTracker()  # the env node's: velocities differenced between markers messages by actor id
    fed: set[int] = set()

    def attach(kind: str, stamp: int, msg: Any, now: float) -> list:
        nonlocal vehicles, velocities
        if kind == MARKERS:
            marker_stamp, ids, boxes = marker_vehicles(msg, ego_id)
            finite = np.isfinite(boxes).all(axis=1)
            vehicles = boxes[finite]
            velocities = tracker.update(marker_stamp, ids[finite], vehicles)
            return []
        return assembler.add(kind, stamp, msg, now)

    def frames(done: list) -> Iterator[tuple[str, int, Any]]:
        for stamp_ns, number, parts, events in done:
            yield "frame", recv, frame_from_messages(stamp_ns, number, parts, events, topics.camera_ids, vehicles,
                                                        velocities)

    for message in bag.messages(topics.kinds):
        kind, recv, now = topics.kinds[message.topic], message.timestamp, message.timestamp / 1e9
        msg = deserialize_message(message.data, TYPES["image" if kind.startswith("image:") else kind])
        if kind == "status":
            assembler.add_status(int(msg.frame))
            yield "status", recv, msg
            yield from frames(assembler.pop_complete())
        elif kind in (COLLISION, LANE_INVASION, MARKERS):
            stamp = bridge.stamp_to_ns(msg.header.stamp if kind != MARKERS else _markers_stamp(msg))
            if prefeed is None or stamp not in prefeed:
                yield from frames(attach(kind, stamp, msg, now))
            if prefeed is None:
                yield "attach", recv, (kind, stamp, msg)
        elif kind in (VSTATUS, ODOM) or kind.startswith("image:"):
            stamp = bridge.stamp_to_ns(msg.header.stamp)
            if kind.startswith("image:"):
                try:
                    msg = bridge.image_to_numpy(msg)
                except ValueError:
                    continue  # the env node drops a malformed image the same way
            if prefeed is not None and stamp in prefeed and stamp not in fed:
                fed.add(stamp)
                for attach_kind, attach_msg in prefeed[stamp]:
                    yield from frames(attach(attach_kind, stamp, attach_msg, now))
            yield from frames(assembler.add(kind, stamp, msg, now))
        else:
            if kind == "vehicle_info":
                ego_id = int(msg.id)
            yield kind, recv, msg


def _markers_stamp(msg: MarkerArray) -> Any:
    return msg.markers[0].header.stamp if msg.markers else bridge.ns_to_stamp(0)


# --- first pass: what the recording holds -----------------------------------------------------------------------
@dataclass
class StepRecord:
    """A recorded step message without its observation."""

    episode: int
    step: int
    frame: int
    stamp_ns: int
    recv_ns: int
    reward: float
    terms: dict[str, float]
    terminated: bool
    truncated: bool
    reason: str
    control: Control
    speed: float


@dataclass
class RecordingIndex:
    frames: list[tuple[int, int, int]] = field(default_factory=list)  # (stamp_ns, receive_ns, number), complete
    steps: dict[tuple[str, int], list[StepRecord]] = field(default_factory=dict)
    summaries: dict[tuple[str, int], EpisodeSummary] = field(default_factory=dict)
    paths: list[tuple[int, int, list[tuple[float, float, float]]]] = field(default_factory=list)  # recv, stamp
    goals: list[tuple[int, tuple[float, float]]] = field(default_factory=list)
    world: CarlaWorldInfo | None = None
    dt: float = 0.0
    synchronous: bool = False  # /carla/status says so: every frame advances sim time by exactly dt
    prefeed: dict[int, list[tuple[str, Any]]] = field(default_factory=dict)

    @property
    def frame_stamps(self) -> list[int]:
        return [f[0] for f in self.frames]


def index_recording(bag: Bag, topics: EnvTopics) -> RecordingIndex:
    """Everything but the frames' contents: frame stamps, steps, summaries, routes, goals, map and dt."""
    index = RecordingIndex()
    attached: list[tuple[str, int, Any]] = []
    for kind, recv, payload in bridge_events(bag, topics):
        if kind == "frame":
            index.frames.append((payload.stamp_ns, recv, payload.frame))
        elif kind == "attach":
            attached.append(payload)
        elif kind == "status":
            index.dt = index.dt or float(payload.fixed_delta_seconds)
            index.synchronous = index.synchronous or bool(payload.synchronous_mode)
        elif kind == "world_info" and index.world is None:
            index.world = payload
        elif kind == "step":
            index.steps.setdefault((payload.env_id, int(payload.episode)), []).append(_step_record(payload, recv))
        elif kind == "episode":
            index.summaries[(payload.env_id, int(payload.episode))] = payload
        elif kind == "waypoints":
            index.paths.append((recv, bridge.stamp_to_ns(payload.header.stamp),
                                [bridge.pose_to_xyyaw(p.pose) for p in payload.poses]))
        elif kind == "goal":
            index.goals.append((recv, (float(payload.pose.position.x), float(payload.pose.position.y))))
    stamps = set(index.frame_stamps)
    for kind, stamp, msg in attached:
        if stamp in stamps:
            index.prefeed.setdefault(stamp, []).append((kind, msg))
    index.dt = index.dt or bridge.DEFAULT_FIXED_DELTA_SECONDS
    return index


def _step_record(msg: Step, recv: int) -> StepRecord:
    return StepRecord(int(msg.episode), int(msg.step), int(msg.frame), bridge.stamp_to_ns(msg.header.stamp), recv,
                      float(msg.reward),
                      dict(zip(msg.reward_term_names, (float(v) for v in msg.reward_terms))), bool(msg.terminated),
                      bool(msg.truncated), msg.termination_reason, bridge.msg_to_control(msg.control), float(msg.speed))


# --- episodes -----------------------------------------------------------------------------------------------
class Goal(NamedTuple):
    """A route still to plan: from the car's pose when it is needed to this recorded goal point."""

    x: float
    y: float


Poses = list[tuple[float, float, float]]  # a recorded waypoints Path


@dataclass
class EpisodePlan:
    """Which frames make an episode and which route it follows."""

    env_id: str
    episode: int
    reset_stamp: int | None  # None: the recorded steps alone are reported
    last_stamp: int | None  # None: until the task ends it (or the next episode starts)
    route: list[RouteWaypoint] | Goal | None
    route_source: str
    replans: list[tuple[int, Poses | Goal]] = field(default_factory=list)  # (receive_ns, new route)
    steps: list[StepRecord] = field(default_factory=list)
    summary: EpisodeSummary | None = None
    notes: list[str] = field(default_factory=list)

    @cached_property
    def step_stamps(self) -> frozenset[int]:
        return frozenset(s.stamp_ns for s in self.steps)

    def decides_at(self, stamp_ns: int) -> bool:
        """Whether the agent acted on this frame's observation: every frame, or, with recorded steps, the frames
        a step was published for (the env folds frames the simulator ticked without a new command)."""
        return not self.steps or stamp_ns in self.step_stamps


def route_from_path(network: RoadNetwork, poses: list[tuple[float, float, float]]) -> tuple[list[RouteWaypoint], str]:
    """The route a waypoints Path shows: its points, with lanes and road options re-planned between its ends."""
    if len(poses) < 2:
        raise ValueError("the Path has fewer than two poses")
    planned = network.route(poses[0], poses[-1][:2])
    if len(planned) == len(poses) and all(math.hypot(w.x - x, w.y - y) < ROUTE_MATCH_M
                                          for w, (x, y, _) in zip(planned, poses)):
        return [RouteWaypoint(x, y, yaw, w.key, w.road_option) for w, (x, y, yaw) in zip(planned, poses)], "waypoints"
    located = [network.locate(x, y, yaw).key for x, y, yaw in poses]
    if any(k is None for k in located):
        raise ValueError("Path poses lie off the road network")
    return ([RouteWaypoint(x, y, yaw, k, RoadOption.LANEFOLLOW) for (x, y, yaw), k in zip(poses, located)],
            "waypoints (lanes located; road options unknown)")


def plan_episodes(index: RecordingIndex, network: RoadNetwork | None) -> list[EpisodePlan]:
    """Episodes from the recorded steps, else from the recorded routes (see the module doc)."""
    if index.steps:
        return _plans_from_steps(index, network)
    return _plans_from_routes(index, network)


def _plans_from_steps(index: RecordingIndex, network: RoadNetwork | None) -> list[EpisodePlan]:
    stamps = index.frame_stamps
    recorded = set(stamps)
    plans, previous_end = [], -1
    for (env_id, episode), steps in sorted(index.steps.items(), key=lambda kv: kv[1][0].recv_ns):
        steps = sorted(steps, key=lambda s: s.step)
        plan = EpisodePlan(env_id, episode, None, steps[-1].stamp_ns, None, "none", steps=steps,
                           summary=index.summaries.get((env_id, episode)))
        plans.append(plan)
        window = (previous_end, steps[0].recv_ns)
        previous_end = steps[-1].recv_ns
        if network is None:
            plan.notes.append("no map (world_info) recorded: recorded steps only")
            continue
        last = bisect.bisect_left(stamps, steps[-1].stamp_ns)
        first = bisect.bisect_left(stamps, steps[0].stamp_ns)
        if last == len(stamps) or stamps[last] != steps[-1].stamp_ns or first == len(stamps):
            plan.notes.append("the frames of its steps are not all in the recording: recorded steps only")
            continue
        length = int(plan.summary.length) if plan.summary is not None else last - first + 1
        if plan.summary is None:
            plan.notes.append("no EpisodeSummary recorded: assumed no frame folded into its first step")
        reset = last - length
        if reset < 0:
            plan.notes.append("the episode started before the recording: recorded steps only")
            continue
        numbered = index.frames[last][2] == steps[-1].frame  # the assembler's frame numbers match the env's
        lost = _lost_frames(index, stamps[reset:last + 1], plan.step_stamps - recorded)
        if lost or (numbered and index.frames[last][2] - index.frames[reset][2] != length):
            plan.notes.append(f"frames of the episode are missing from the recording{lost}: recorded steps only")
            continue
        plan.reset_stamp = stamps[reset]
        _attach_route(plan, index, network, window, steps[-1].recv_ns)
    return plans


def _lost_frames(index: RecordingIndex, episode: list[int], absent: frozenset[int]) -> str:
    """Why ``episode`` (its frames' stamps, reset to last) is not the episode's every frame ('' if it is): steps'
    frames ``absent`` from the bag, or sim time jumping by more than one tick (a synchronous simulator advances
    exactly ``dt`` a frame; a recorder that fell behind the publishers' history loses whole frames)."""
    if absent:
        return f" ({len(absent)} frame(s) the live run stepped on)"
    if not index.synchronous:
        return ""
    tick = int(round(index.dt * 1e9))
    jumps = [(a, b) for a, b in zip(episode, episode[1:]) if b - a > 1.5 * tick]
    if jumps:
        a, b = jumps[0]
        return f" (sim time jumps {a / 1e9:.3f} -> {b / 1e9:.3f} s)"
    return ""


def _attach_route(plan: EpisodePlan, index: RecordingIndex, network: RoadNetwork, window: tuple[int, int],
                  end_recv: int) -> None:
    """The route published for the episode (in ``window`` of receive times), and later re-plans."""
    paths = [(t, p) for t, _, p in index.paths if window[0] < t < window[1]]
    goals = [(t, g) for t, g in index.goals if t < window[1]]
    try:
        if paths:
            plan.route, plan.route_source = route_from_path(network, paths[-1][1])
        elif goals:
            plan.route, plan.route_source = Goal(*goals[-1][1]), "planned to the recorded goal"
    except ValueError as exc:
        plan.notes.append(f"the recorded route is unusable ({exc}): recorded steps only")
        plan.reset_stamp = None
        return
    if plan.route is None:
        plan.notes.append("no waypoints Path or goal recorded for it: recorded steps only")
        plan.reset_stamp = None
        return
    later: list[tuple[int, Poses | Goal]] = [(t, p) for t, _, p in index.paths if window[1] <= t < end_recv]
    later += [(t, Goal(*g)) for t, g in index.goals if window[1] <= t < end_recv]
    plan.replans = sorted(later, key=lambda x: x[0])


def _plans_from_routes(index: RecordingIndex, network: RoadNetwork | None) -> list[EpisodePlan]:
    """No step messages: each Path (else goal) starts an episode on the frame it was published for.

    That is the frame whose stamp the Path carries (the publisher's sim time, as the env node and the bridge's
    waypoint publisher stamp it), else the latest frame received before it.
    """
    if network is None or not index.frames:
        return []
    starts: list[tuple[int, int, Poses | Goal]] = list(index.paths) or [(t, -1, Goal(*g)) for t, g in index.goals]
    stamps, receive = index.frame_stamps, [f[1] for f in index.frames]
    plans = []
    for i, (recv, stamp, route) in enumerate(starts):
        k = bisect.bisect_left(stamps, stamp)
        if k == len(stamps) or stamps[k] != stamp:
            k = bisect.bisect_right(receive, recv) - 1
        if k < 0:
            continue
        plan = EpisodePlan("", i + 1, stamps[k], None, None, "none")
        try:
            if isinstance(route, Goal):
                plan.route, plan.route_source = route, "planned to the recorded goal"
            else:
                plan.route, plan.route_source = route_from_path(network, route)
        except ValueError as exc:
            plan.notes.append(f"the recorded route is unusable ({exc})")
            plan.reset_stamp = None
        plans.append(plan)
    plans = [p for p in plans if p.reset_stamp is not None] + [p for p in plans if p.reset_stamp is None]
    for plan, following in zip(plans, plans[1:]):
        plan.last_stamp = _frame_before(stamps, following.reset_stamp)
    return plans


def _frame_before(stamps: list[int], stamp: int) -> int:
    return stamps[max(bisect.bisect_left(stamps, stamp) - 1, 0)]


# --- second pass: run the task ------------------------------------------------------------------------------
class Policy(Protocol):
    def predict(self, observation: Any, deterministic: bool = True) -> tuple[Any, Any]: ...


@dataclass
class OfflineSpaces:
    """What ``load_policy(path, env)`` gets for ``env``: the spaces of the configured task, one env."""

    observation_space: spaces.Space
    action_space: spaces.Space
    num_envs: int = 1


@dataclass
class ActionLog:
    """Policy actions against recorded ones, per episode: as controls (errors) and actions (agreement)."""

    mapper: ActionMapper
    episodes: list[int] = field(default_factory=list)  # id() of the EpisodePlan of each sample
    policy: list[Control] = field(default_factory=list)
    recorded: list[Control] = field(default_factory=list)
    agree: list[bool] = field(default_factory=list)

    def add(self, plan: EpisodePlan, action: Any, speed: float, applied: Control) -> None:
        """One observation: the policy's ``action`` (at ``speed``) against the control ``applied`` next."""
        recorded_action = self.mapper.from_control(applied)
        self.episodes.append(id(plan))
        self.policy.append(self.mapper.to_control(action, speed))
        self.recorded.append(applied)
        if self.mapper.kind == "discrete":
            self.agree.append(int(np.asarray(action).reshape(())) == recorded_action)
        else:
            clipped = np.clip(np.asarray(action, np.float64).reshape(-1), self.mapper.space.low, self.mapper.space.high)
            self.agree.append(bool(np.max(np.abs(clipped - recorded_action)) <= AGREEMENT_TOLERANCE))

    def errors(self, plan: EpisodePlan | None = None) -> dict[str, np.ndarray]:
        """Policy minus recorded steer, throttle and brake (of one episode's samples, or all)."""
        keep = [plan is None or e == id(plan) for e in self.episodes]
        return {k: np.array([getattr(p, k) - getattr(r, k) for p, r, w in zip(self.policy, self.recorded, keep) if w])
                for k in ("steer", "throttle", "brake")}

    def summary(self, plan: EpisodePlan | None = None) -> dict[str, Any]:
        agree = [a for a, e in zip(self.agree, self.episodes) if plan is None or e == id(plan)]
        return {"samples": len(agree), "agreement_rate": float(np.mean(agree)) if agree else 0.0,
                "agreement_tolerance": AGREEMENT_TOLERANCE if self.mapper.kind != "discrete" else 0,
                **{f"{k}_mae": float(np.mean(np.abs(v))) if len(v) else 0.0 for k, v in self.errors(plan).items()}}


class EpisodeRunner:
    """Feeds the second pass's frames to a DrivingTask per planned episode."""

    def __init__(self, cfg: dict[str, Any], network: RoadNetwork, dt: float, plans: list[EpisodePlan],
                 policy: Policy | None, actions: ActionLog | None, source: str):
        self.cfg, self.network, self.dt, self.source = cfg, network, dt, source
        self.by_reset = {p.reset_stamp: p for p in plans if p.reset_stamp is not None}
        self.policy, self.actions = policy, actions
        self.plan: EpisodePlan | None = None
        self.task: DrivingTask | None = None
        self.results: dict[int, dict[str, Any]] = {}  # id(plan) -> result
        self.pending: tuple[Any, float] | None = None  # the policy's action on the last observation, and speed

    def frame(self, recv: int, frame: Frame) -> None:
        plan = self.by_reset.get(frame.stamp_ns)
        if plan is not None:
            self._start(plan, frame)
        elif self.plan is not None:
            self._advance(recv, frame)

    def _start(self, plan: EpisodePlan, frame: Frame) -> None:
        self.plan, self.pending = None, None
        try:
            route = self._route(plan.route, frame)
        except ValueError as exc:
            plan.notes.append(f"no route from the reset pose ({exc}): recorded steps only")
            return
        self.plan = plan
        self.task = DrivingTask(self.cfg, self.network, self.dt, source=self.source)
        observation = self.task.reset(route, frame)
        self.results[id(plan)] = {"rewards": [], "ended": False, "stats": self.task.stats}
        self._observe(observation, frame)

    def _route(self, route: list[RouteWaypoint] | Goal | Poses, frame: Frame) -> list[RouteWaypoint]:
        """A route to follow from ``frame`` on: a goal is planned from its pose, a Path's poses matched."""
        if isinstance(route, Goal):
            return self.network.route((frame.x, frame.y, frame.yaw), (route.x, route.y))
        if route and not isinstance(route[0], RouteWaypoint):
            return route_from_path(self.network, route)[0]
        return route

    def _advance(self, recv: int, frame: Frame) -> None:
        plan, result = self.plan, self.results[id(self.plan)]
        while plan.replans and plan.replans[0][0] < recv:  # a Path or goal that arrived before this frame
            try:
                self.task.replan(self._route(plan.replans.pop(0)[1], self.task.prev), self.task.prev)
            except ValueError as exc:
                plan.notes.append(f"a re-plan was unusable ({exc})")
        decides = plan.decides_at(frame.stamp_ns)
        if decides and self.pending is not None and self.actions is not None:
            self.actions.add(plan, self.pending[0], self.pending[1], frame.control)
            self.pending = None
        tr = self.task.step(frame)
        result["rewards"].append(tr.reward)
        if tr.terminated or tr.truncated:
            result["ended"] = True
        elif decides:
            self._observe(tr.observation, frame)
        if result["ended"] or frame.stamp_ns == plan.last_stamp:
            self.plan = None

    def _observe(self, observation: dict[str, np.ndarray], frame: Frame) -> None:
        if self.policy is not None:
            batch = {k: v[None] for k, v in observation.items()}
            action, _ = self.policy.predict(batch, deterministic=True)
            self.pending = (np.asarray(action)[0], frame.speed)


def evaluate_bag(bag: Path | str, config_paths: list[str], checkpoint: Path | None, out_dir: Path | str, *,
                 policy: Policy | None = None) -> dict[str, Any]:
    """Rebuild every recorded episode with the config of ``config_paths`` and report it (see module doc).

    Returns the report (also written to ``out_dir/report.json`` beside ``report.md`` and the plots). Raises
    BagError when the bag is unreadable or holds neither bridge topics nor step messages to evaluate.
    """
    config = load_env_config(config_paths)
    cfg, source = config["env"], ", ".join(map(str, config_paths)) or "<defaults>"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open_bag(bag) as opened:
        namespaces = find_namespaces(opened, cfg["role_name"])
        if not namespaces:
            raise BagError(f"{opened.path}: no topics of ego role {cfg['role_name']!r} and no carla_rl steps to "
                           f"evaluate (topics: {', '.join(sorted(opened.topics)) or 'none'})")
        mapper = ActionMapper(cfg["action"], source)
        task_spaces = DrivingTask(cfg, None, bridge.DEFAULT_FIXED_DELTA_SECONDS, source=source)
        if policy is None and checkpoint is not None:
            policy = _load_policy(Path(checkpoint), OfflineSpaces(task_spaces.observation_space, mapper.space))
        actions = ActionLog(mapper) if policy is not None else None
        report: dict[str, Any] = {"bag": str(opened.path), "config": [str(p) for p in config_paths],
                                  "checkpoint": str(checkpoint) if checkpoint else None,
                                  "problems": list(opened.problems), "notes": [], "episodes": []}
        for ns in namespaces:
            report["episodes"] += _evaluate_namespace(opened, ns, cfg, source, policy, actions, report["notes"])
    report["policy"] = actions.summary() if actions is not None else None
    report["plots"] = _plots(report, actions, out)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(markdown_report(report))
    return report


def _load_policy(checkpoint: Path, env: OfflineSpaces) -> Policy:
    try:
        from carla_rl_agents.checkpoints import load_policy
    except ImportError as exc:
        raise BagError(f"cannot load {checkpoint}: carla_rl_agents.checkpoints is unavailable ({exc})") from exc
    return load_policy(str(checkpoint), env)


def _evaluate_namespace(bag: Bag, ns: str, cfg: dict[str, Any], source: str, policy: Policy | None,
                        actions: ActionLog | None, notes: list[str]) -> list[dict[str, Any]]:
    topics = EnvTopics.of(bag, ns, cfg)
    where = f"/{ns}" if ns else "the root namespace"
    missing = topics.missing_for_frames()
    if missing:
        notes.append(f"{where}: no {', '.join(missing)} recorded: observations and rewards cannot be rebuilt")
    index = index_recording(bag, topics)
    network = None
    if index.world is not None and not missing:
        try:
            network = RoadNetwork.from_string(index.world.opendrive, source=f"{bag.path}: world_info "
                                                                                f"({index.world.map_name})")
        except ValueError as exc:
            notes.append(f"{where}: the recorded map does not load: {exc}")
    plans = plan_episodes(index, network)
    if not plans:
        notes.append(f"{where}: nothing to evaluate (no carla_rl steps, waypoints or goals recorded)")
        return []
    runner = None
    if network is not None and any(p.reset_stamp is not None for p in plans):
        runner = EpisodeRunner(cfg, network, index.dt, plans, policy, actions, source)
        for kind, recv, payload in bridge_events(bag, topics, index.prefeed):
            if kind == "frame":
                runner.frame(recv, payload)
    if policy is not None and actions is not None:
        _compare_on_recorded_steps(bag, topics, [p for p in plans if p.reset_stamp is None], policy, actions)
    results = [_episode_result(p, runner, ns) for p in plans]
    for plan, result in zip(plans, results):
        result["policy"] = actions.summary(plan) if actions is not None else None
    return results


def step_observation(msg: Step) -> dict[str, np.ndarray]:
    """The observation a step message carries, as the gym adapter builds it."""
    out = {name: bridge.image_to_numpy(image).copy() for name, image in zip(msg.image_names, msg.images)}
    if msg.measurements:
        out["measurements"] = np.asarray(msg.measurements, dtype=np.float32)
    if msg.goal:
        out["goal"] = np.asarray(msg.goal, dtype=np.float32)
    return out


def _compare_on_recorded_steps(bag: Bag, topics: EnvTopics, plans: list[EpisodePlan], policy: Policy,
                               actions: ActionLog) -> None:
    """Without rebuilt observations: the policy on each recorded step's observation vs the next step's control."""
    wanted = {(p.env_id, p.episode): p for p in plans}
    pending: dict[tuple[str, int], tuple[Any, float]] = {}
    for message in bag.messages([n for n, k in topics.kinds.items() if k == "step"]) if wanted else ():
        msg = deserialize_message(message.data, Step)
        key = (msg.env_id, int(msg.episode))
        if key not in wanted:
            continue
        if key in pending:
            actions.add(wanted[key], *pending.pop(key), bridge.msg_to_control(msg.control))
        if not (msg.terminated or msg.truncated):
            action, _ = policy.predict({k: v[None] for k, v in step_observation(msg).items()}, deterministic=True)
            pending[key] = (np.asarray(action)[0], float(msg.speed))


def _episode_result(plan: EpisodePlan, runner: EpisodeRunner | None, ns: str) -> dict[str, Any]:
    recorded = None
    if plan.steps or plan.summary is not None:
        s = plan.summary
        recorded = {"length": int(s.length) if s is not None else len(plan.steps),
                    "return": float(s.episode_return) if s is not None else sum(x.reward for x in plan.steps),
                    "termination_reason": s.termination_reason if s is not None else plan.steps[-1].reason}
    base = {"namespace": ns, "env_id": plan.env_id, "episode": plan.episode, "route_source": plan.route_source,
            "notes": plan.notes, "recorded": recorded}
    rebuilt = runner.results.get(id(plan)) if runner is not None else None
    if rebuilt is None:
        return {**base, "mode": "recorded steps only", **_recorded_only(plan)}
    stats = rebuilt["stats"]
    if not rebuilt["ended"] and plan.last_stamp is None:
        plan.notes.append("the recording ends before the episode does")
    out = {**base, "mode": "rebuilt", "length": stats.length, "return": stats.episode_return,
           "reward_terms": dict(stats.term_sums), "collisions": stats.collisions,
           "lane_invasions": stats.lane_invasions,
           "route_completion": stats.route_completion, "mean_speed": stats.mean_speed, "distance": stats.distance,
           "success": stats.success, "termination_reason": stats.reason if rebuilt["ended"] else "",
           "rewards": rebuilt["rewards"]}
    if recorded is not None:
        out["return_difference"] = out["return"] - recorded["return"]
    return out


def _recorded_only(plan: EpisodePlan) -> dict[str, Any]:
    steps, s = plan.steps, plan.summary
    terms: dict[str, float] = {}
    for step in steps:
        for name, value in step.terms.items():
            terms[name] = terms.get(name, 0.0) + value
    return {"length": int(s.length) if s is not None else len(steps), "return": float(sum(x.reward for x in steps)),
            "reward_terms": terms,
            "collisions": int(s.collisions) if s is not None else None,
            "lane_invasions": int(s.lane_invasions) if s is not None else None,
            "route_completion": float(s.route_completion) if s is not None else None,
            "mean_speed": float(np.mean([x.speed for x in steps])) if steps else 0.0,
            "distance": float(s.distance) if s is not None else None, "success": bool(s.success) if s else None,
            "termination_reason": steps[-1].reason if steps else "", "rewards": [x.reward for x in steps]}


# --- outputs ------------------------------------------------------------------------------------------------
def _label(e: dict[str, Any]) -> str:
    return f"{e['env_id'] or e['namespace'] or 'env'} #{e['episode']}"


def _plots(report: dict[str, Any], actions: ActionLog | None, out: Path) -> list[str]:
    """returns.png, reward_curves.png and (with a policy) action_errors.png; returns their file names.

    Figures are drawn without pyplot (no global state, no display): PNGs render with matplotlib's Agg.
    """
    episodes, written = report["episodes"], []
    if episodes:
        fig = Figure(figsize=(max(4.0, 0.6 * len(episodes) + 2), 3.5))
        ax = fig.subplots()
        x = np.arange(len(episodes))
        ax.bar(x, [e["return"] for e in episodes], color="tab:blue", label="evaluated")
        recorded = [(i, e["recorded"]["return"]) for i, e in enumerate(episodes) if e["recorded"]]
        if recorded:
            ax.scatter(*zip(*recorded), color="black", marker="x", zorder=3, label="recorded live")
        ax.set_xticks(x, [_label(e) for e in episodes], rotation=45, ha="right")
        ax.set_ylabel("episode return")
        ax.legend()
        written.append(_save(fig, out / "returns.png"))
        fig = Figure(figsize=(6, 3.5))
        ax = fig.subplots()
        for e in episodes:
            ax.plot(np.cumsum(e["rewards"]), label=_label(e))
        ax.set_xlabel("step")
        ax.set_ylabel("cumulative reward")
        if len(episodes) <= 12:
            ax.legend(fontsize="small")
        written.append(_save(fig, out / "reward_curves.png"))
    if actions is not None and actions.agree:
        fig = Figure(figsize=(10, 3))
        axes = fig.subplots(1, 3)
        for ax, (name, errors) in zip(axes, actions.errors().items()):
            ax.hist(errors, bins=41, range=(-1.0, 1.0), color="tab:orange")
            ax.set_title(f"{name}: policy - recorded")
        written.append(_save(fig, out / "action_errors.png"))
    return written


def _save(fig: Figure, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path.name


def _number(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown_report(report: dict[str, Any]) -> str:
    """The report as Markdown: notes, the episode table, reward terms, the policy comparison, the plots."""
    lines = [f"# Offline evaluation of `{report['bag']}`", "",
             f"Config: {', '.join(f'`{c}`' for c in report['config']) or 'defaults'}"
             + (f"; checkpoint `{report['checkpoint']}`" if report["checkpoint"] else ""), ""]
    for title, items in (("Problems with the bag", report["problems"]), ("Notes", report["notes"])):
        if items:
            lines += [f"## {title}", "", *(f"- {item}" for item in items), ""]
    episodes = report["episodes"]
    lines += ["## Episodes", "", "| episode | mode | route | steps | return | recorded return | difference | "
              "collisions | lane invasions | route completion | mean speed (m/s) | end |",
              "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for e in episodes:
        rec = e["recorded"] or {}
        lines.append(f"| {_label(e)} | {e['mode']} | {e['route_source']} | {e['length']} | {_number(e['return'], 4)} "
                     f"| {_number(rec.get('return'), 4)} | {_number(e.get('return_difference'), 6)} "
                     f"| {_number(e['collisions'])} | {_number(e['lane_invasions'])} "
                     f"| {_number(e['route_completion'])} | {_number(e['mean_speed'], 2)} "
                     f"| {e['termination_reason'] or '(running)'} |")
    notes = [f"- {_label(e)}: {n}" for e in episodes for n in e["notes"]]
    if notes:
        lines += ["", *notes]
    terms = sorted({t for e in episodes for t in e["reward_terms"]})
    if terms:
        lines += ["", "## Reward terms (sums per episode)", "", "| episode | " + " | ".join(terms) + " |",
                  "| --- |" + " ---: |" * len(terms)]
        lines += [f"| {_label(e)} | " + " | ".join(_number(e["reward_terms"].get(t), 4) for t in terms) + " |"
                  for e in episodes]
    policy = report["policy"]
    if policy is not None:
        tolerance = f"all components within {policy['agreement_tolerance']}" if policy["agreement_tolerance"] \
            else "same discrete action"
        lines += ["", "## Policy vs recorded actions", "",
                  f"{policy['samples']} observations; agreement ({tolerance}): {policy['agreement_rate']:.1%}", "",
                  "| | steer | throttle | brake |", "| --- | ---: | ---: | ---: |",
                  f"| mean absolute error | {policy['steer_mae']:.4f} | {policy['throttle_mae']:.4f} "
                  f"| {policy['brake_mae']:.4f} |", "",
                  "| episode | observations | agreement | steer MAE | throttle MAE | brake MAE |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        lines += [f"| {_label(e)} | {p['samples']} | {p['agreement_rate']:.1%} | {p['steer_mae']:.4f} "
                  f"| {p['throttle_mae']:.4f} | {p['brake_mae']:.4f} |" for e in episodes if (p := e["policy"])]
    if report["plots"]:
        lines += ["", "## Plots", "", *(f"![{Path(p).stem}]({p})" for p in report["plots"])]
    return "\n".join(lines) + "\n"
