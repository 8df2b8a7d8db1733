"""The first pass over a bag: which topics hold one env's messages, and what the recording holds.

:func:`bridge_events` turns the raw bridge topics back into what the env node saw: frames assembled by stamp
with the env node's assembler and frame builder (:mod:`carla_rl_env.frames`), the other vehicles read from the
markers as it reads them, and every other stack message decoded. :func:`index_recording` keeps everything but
the frames' contents (their stamps, the steps, summaries, routes, goals, map and dt) for planning the episodes
(:mod:`.episodes`); the second pass (:mod:`.runner`) reads the frames again.

Collision, lane-invasion and marker messages are attached to the frame of their stamp before that frame's
state arrives, the order the env node subscribes in for exactly that purpose (the recorder's own arrival
order across topics is not the env node's): the index collects them (``prefeed``) for the second pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from carla_msgs.msg import (
    CarlaCollisionEvent,
    CarlaEgoVehicleInfo,
    CarlaEgoVehicleStatus,
    CarlaLaneInvasionEvent,
    CarlaStatus,
    CarlaWorldInfo,
)
from carla_rl_msgs.msg import EpisodeSummary, Step
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry
from nav_msgs.msg import Path as PathMsg
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image
from visualization_msgs.msg import MarkerArray

from carla_rl_bags import BagError
from carla_rl_bags.reader import Bag
from carla_rl_common import bridge, codec
from carla_rl_common.bridge import BridgeTopics, Control, namespaced
from carla_rl_env.frames import (
    COLLISION,
    LANE_INVASION,
    ODOM,
    VSTATUS,
    VehicleTracker,
    frame_assembler,
    frame_from_messages,
    image_part,
)

MARKERS = "markers"  # the kind of the bridge's markers (not a frame part: the env node keeps the latest)
# --- which topics -------------------------------------------------------------------------------------------
TYPES = {
    "status": CarlaStatus,
    "world_info": CarlaWorldInfo,
    VSTATUS: CarlaEgoVehicleStatus,
    ODOM: Odometry,
    COLLISION: CarlaCollisionEvent,
    LANE_INVASION: CarlaLaneInvasionEvent,
    MARKERS: MarkerArray,
    "vehicle_info": CarlaEgoVehicleInfo,
    "step": Step,
    "episode": EpisodeSummary,
    "waypoints": PathMsg,
    "goal": PoseStamped,
    "image": Image,
}


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
        wanted = {
            t.status: "status",
            t.world_info: "world_info",
            t.vehicle_status: VSTATUS,
            t.odometry: ODOM,
            t.collision: COLLISION,
            t.lane_invasion: LANE_INVASION,
            t.markers: MARKERS,
            t.vehicle_info: "vehicle_info",
            t.step: "step",
            t.episode: "episode",
            t.waypoints: "waypoints",
            t.goal: "goal",
            **{t.image(c): image_part(c) for c in camera_ids},
        }
        kinds = {}
        for relative, kind in wanted.items():
            name = namespaced(namespace, relative)
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
        return [
            k
            for k in (VSTATUS, ODOM, "status", "world_info", *(image_part(c) for c in self.camera_ids))
            if not self.has(k)
        ]


def find_namespaces(bag: Bag, role: str) -> list[str]:
    """Env namespaces recorded in ``bag``: where the ego's odometry or the env's steps are."""
    found = []
    for suffix in (BridgeTopics(role).odometry, BridgeTopics().step):
        for name in bag.topics:
            if name.endswith("/" + suffix):
                ns = name[: -len(suffix)].strip("/")
                if ns not in found:
                    found.append(ns)
    return found


# --- pass over the bag: messages -> frames and stack messages, in receive order ------------------------------
def bridge_events(
    bag: Bag, topics: EnvTopics, prefeed: dict[int, list[tuple[str, Any]]] | None = None
) -> Iterator[tuple[str, int, Any]]:
    """``(kind, receive_ns, payload)``: assembled frames (``"frame"``, a Frame) and every decoded stack message.

    Collision, lane-invasion and marker messages of a stamp in ``prefeed`` are applied from it just before the
    first state message of that stamp; without ``prefeed`` they are applied in arrival order and also yielded
    (kind ``"attach"``, payload ``(kind, stamp, msg)``) so a first pass can collect them.
    """
    assembler = frame_assembler(topics.camera_ids)  # the env node's
    vehicles, velocities, ego_id = np.zeros((0, 6)), np.zeros((0, 2)), -1
    tracker = VehicleTracker()  # the env node's: velocities differenced between markers messages by actor id
    fed: set[int] = set()

    def attach(kind: str, stamp: int, msg: Any, now: float) -> list:
        nonlocal vehicles, velocities
        if kind == MARKERS:
            read = codec.marker_boxes(msg, ego_id)
            finite = np.isfinite(read.boxes).all(axis=1)
            vehicles = read.boxes[finite]
            velocities = tracker.update(read.stamp_ns, read.ids[finite], vehicles)
            return []
        return assembler.add(kind, stamp, msg, now)

    def frames(done: list) -> Iterator[tuple[str, int, Any]]:
        for stamp_ns, number, parts, events in done:
            yield (
                "frame",
                recv,
                frame_from_messages(stamp_ns, number, parts, events, topics.camera_ids, vehicles, velocities),
            )

    for message in bag.messages(topics.kinds):
        kind, recv, now = topics.kinds[message.topic], message.timestamp, message.timestamp / 1e9
        msg = deserialize_message(message.data, TYPES["image" if kind.startswith("image:") else kind])
        if kind == "status":  # numbered as the env node numbers them (frames.FrameAssembler)
            dt = float(msg.fixed_delta_seconds)
            assembler.add_status(int(msg.frame), dt if msg.synchronous_mode and 0.0 < dt < float("inf") else 0.0)
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


def index_recording(bag: Bag, topics: EnvTopics, on_frame: Callable[[], object] | None = None) -> RecordingIndex:
    """Everything but the frames' contents: frame stamps, steps, summaries, routes, goals, map and dt.
    ``on_frame`` is called once per assembled frame (a progress bar's update)."""
    index = RecordingIndex()
    attached: list[tuple[str, int, Any]] = []
    for kind, recv, payload in bridge_events(bag, topics):
        if kind == "frame":
            index.frames.append((payload.stamp_ns, recv, payload.frame))
            if on_frame is not None:
                on_frame()
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
            index.paths.append(
                (recv, bridge.stamp_to_ns(payload.header.stamp), [bridge.pose_to_xyyaw(p.pose) for p in payload.poses])
            )
        elif kind == "goal":
            index.goals.append((recv, (float(payload.pose.position.x), float(payload.pose.position.y))))
    stamps = set(index.frame_stamps)
    for kind, stamp, msg in attached:
        if stamp in stamps:
            index.prefeed.setdefault(stamp, []).append((kind, msg))
    index.dt = index.dt or bridge.DEFAULT_FIXED_DELTA_SECONDS
    return index


def _step_record(msg: Step, recv: int) -> StepRecord:
    return StepRecord(
        int(msg.episode),
        int(msg.step),
        int(msg.frame),
        bridge.stamp_to_ns(msg.header.stamp),
        recv,
        float(msg.reward),
        dict(zip(msg.reward_term_names, (float(v) for v in msg.reward_terms))),
        bool(msg.terminated),
        bool(msg.truncated),
        msg.termination_reason,
        bridge.msg_to_control(msg.control),
        float(msg.speed),
    )
