"""Record topics of the running stack into a rosbag2 bag, like ``ros2 bag record`` (which PyPI does not have).

An rclpy node subscribes with *raw* subscriptions (the CDR bytes as they came off the wire, never decoded) to
the selected topics as they appear in the graph, and writes them with ``rosbags`` together with each type's
full definition and hash, so ``ros2 bag info/play`` (Jazzy), Foxglove and ``rosbags`` open the bag. Each
message is stamped with its receive time (rosbag2's semantics; the sim time stays in the headers).

* Topics: by default the bridge and stack topics the env node uses (see :func:`default_topics`), else the
  given names or ``fnmatch`` patterns; relative names are resolved in ``namespace``. The default ego's
  contract topics are subscribed at once (see :func:`contract_topics`); others are discovered every 0.1 s,
  so sensors spawned later are recorded from when they appear. A topic enters the bag once a publisher of
  it is seen (or with its first message, if that comes first).
* QoS: a topic whose publishers all offer TRANSIENT_LOCAL (``world_info``) is subscribed TRANSIENT_LOCAL, so
  its latched message is recorded too; the offered profiles are stored, and the player re-offers them.
* Storage: MCAP (default) or sqlite3. ``compression="zstd"`` compresses MCAP chunks (rosbag2's MCAP
  ``zstd`` storage preset: readers need nothing special), or each sqlite3 message (rosbag2's ``message``
  compression mode).
* Splitting (``max_bag_size`` bytes of payload, ``max_bag_duration`` s): one bag directory with numbered
  storage files ``DIR/DIR_0.mcap``, ``DIR/DIR_1.mcap``, ... and one ``metadata.yaml``, rosbag2's layout.
  rosbags writes one file per bag, so the split in progress is written as its own bag in ``DIR/DIR_<i>/``
  and moved beside the others when it closes; ``metadata.yaml`` always lists the closed files.
* Losses: a recorder that falls more than a publisher's history (the bridge keeps 10 messages) behind loses
  messages, and DDS says nothing. Messages are taken outside rclpy's executor to keep up, and a gap in
  ``/carla/status`` frame numbers is logged as frames missing (counted again when the bag closes).
* Stopping: SIGINT, SIGTERM (when run as a process or in the main thread) or the ``stop`` event. Messages
  already received by DDS are taken and written before the bag is closed; the last line says what stopped it
  (``closed DIR: N messages on T topics in F file(s); stopped by SIGTERM``).
* Killed (SIGKILL, power loss): an MCAP split in progress is always a complete MCAP file without a summary
  (:class:`_LiveMcap`: each chunk is followed by a footer, overwritten by the next chunk), linked into the bag
  directory under its final name, and ``metadata.yaml`` is written when the split opens and rewritten after
  every chunk, listing exactly what is on disk. So a killed recording opens in rosbags as it is (a valid MCAP
  needs no summary: readers that scan, as Foxglove does, read it too); only the messages of the chunk in
  memory are lost (at most :data:`FLUSH_PERIOD_S` of them, or 1 MiB). ``carla-rl bag repair`` then adds the
  summary (index) that a clean close writes.

Run ``python -m carla_rl_bags.recorder --output DIR [--topics ...]``, or start the module as a node
(its options are also ROS parameters: ``output``, ``topics``, ``namespace``, ``storage``, ``compression``,
``max_bag_size``, ``max_bag_duration``).
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from carla_msgs.msg import CarlaStatus
from rclpy.clock import Clock, ClockType
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode
from rosbags.rosbag2.metadata import dump_qos_v9

from carla_rl_bags import BagError
from carla_rl_bags.options import add_record_arguments
from carla_rl_bags.session import StopRequest, ros_session, stop_reason
from carla_rl_bags.typestore import message_class, message_definition
from carla_rl_common.bridge import BridgeTopics, namespaced
from carla_rl_common.direct import DirectSubscriptions

NODE_NAME = "carla_rl_bag_recorder"
STORAGES = {
    "mcap": (StoragePlugin.MCAP, CompressionMode.STORAGE),
    "sqlite3": (StoragePlugin.SQLITE3, CompressionMode.MESSAGE),
}
COMPRESSIONS = ("", "zstd")
DISCOVERY_PERIOD_S = 0.1
WAIT_FOR_S = 30.0  # longest wait for the publishers of ``wait_for`` topics before "recorder ready"
RECORD_DEPTH = 1000  # per-topic queue: the writer may lag a burst (a split closing) without losing messages
# /tf of the bridge's sensor.pseudo.tf; not part of BridgeTopics (our simulator does not publish it)
TF_TOPICS = ("tf", "tf_static")
INFINITE_NS = 2**63 - 1
FLUSH_PERIOD_S = 1.0  # an MCAP chunk is written at least this often (receive time): what a SIGKILL can lose
MCAP_MAGIC = b"\x89MCAP0\r\n"
# an MCAP Footer record without a summary (summary start 0, summary offsets start 0, CRC 0), then the magic
EMPTY_FOOTER = b"\x02" + (20).to_bytes(8, "little") + bytes(20) + MCAP_MAGIC


def default_topics(namespace: str = "") -> list[str]:
    """Absolute name patterns of what the env node reads and the stack publishes, for every ego role.

    Status, clock, world info (latched), markers, each ego's vehicle status and info, odometry, collision,
    lane invasion, camera images and camera infos, vehicle_control_cmd, carla/control, goal and waypoints,
    the env's step and episode topics, and /tf.
    """
    t = BridgeTopics(role_name="*")
    names = [
        t.clock,
        t.status,
        t.world_info,
        t.markers,
        t.control,
        t.vehicle_status,
        t.vehicle_info,
        t.odometry,
        t.collision,
        t.lane_invasion,
        t.image("*"),
        t.camera_info("*"),
        t.vehicle_control_cmd,
        t.goal,
        t.waypoints,
        t.step,
        t.episode,
        *TF_TOPICS,
    ]
    return [namespaced(namespace, n) for n in names]


@dataclass
class RecordOptions:
    """What to record where; every field is also a ROS parameter of the recorder node."""

    output: str
    topics: list[str] = field(default_factory=list)  # names or fnmatch patterns; empty: default_topics()
    namespace: str = ""  # one env namespace, or several comma-separated
    storage: str = "mcap"
    compression: str = ""  # "" or "zstd"
    max_bag_size: int = 0  # bytes of payload per storage file; 0: no limit
    max_bag_duration: float = 0.0  # seconds per storage file; 0: no limit
    wait_for: list[str] = field(default_factory=list)  # topics whose publishers must match before "ready"

    def validate(self) -> None:
        if not self.output:
            raise BagError("no output bag directory given (--output, or the 'output' parameter)")
        if self.storage not in STORAGES:
            raise BagError(f"unknown storage {self.storage!r} (known: {', '.join(STORAGES)})")
        if self.compression not in COMPRESSIONS:
            raise BagError(f"unknown compression {self.compression!r} (known: zstd, or none)")
        if self.max_bag_size < 0 or self.max_bag_duration < 0:
            raise BagError("max_bag_size and max_bag_duration must not be negative")


# --- QoS ----------------------------------------------------------------------------------------------------
def _qos_time(duration: Any) -> QosTime:
    """An rclpy Duration as rosbag2 stores it; 'infinite' (rmw's default) as int64 max nanoseconds."""
    ns = min(int(duration.nanoseconds), INFINITE_NS)
    return QosTime(ns // 1_000_000_000, ns % 1_000_000_000)


def offered_qos(profile: QoSProfile) -> Qos:
    """A publisher's offered rclpy QoS profile as rosbags stores it in the bag's metadata."""
    return Qos(
        history=QosHistory[profile.history.name],
        depth=int(profile.depth),
        reliability=QosReliability[profile.reliability.name],
        durability=QosDurability[profile.durability.name],
        deadline=_qos_time(profile.deadline),
        lifespan=_qos_time(profile.lifespan),
        liveliness=QosLiveliness[profile.liveliness.name],
        liveliness_lease_duration=_qos_time(profile.liveliness_lease_duration),
        avoid_ros_namespace_conventions=bool(profile.avoid_ros_namespace_conventions),
    )


def subscription_qos(offered: list[QoSProfile]) -> QoSProfile:
    """A profile compatible with every publisher that asks for the most they all give (rosbag2's adaptation)."""
    reliable = all(p.reliability == ReliabilityPolicy.RELIABLE for p in offered)
    latched = bool(offered) and all(p.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in offered)
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=RECORD_DEPTH,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


# --- writing ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Topic:
    name: str
    msgtype: str
    qos: tuple[Qos, ...]
    digest: str  # RIHS01 type hash


class _ValidTail:
    """The file under rosbags' MCAP writer: after every write an empty-summary footer follows the data, and the
    next write overwrites it, so the file on disk is a complete MCAP whenever no write is under way."""

    def __init__(self, file: Any):
        self._file = file
        self._end = file.tell()
        self._footer()

    def write(self, data: bytes | memoryview) -> int:
        self._file.seek(self._end)
        written = self._file.write(data)
        self._end += written
        self._footer()
        return written

    def tell(self) -> int:
        return self._end

    def _footer(self) -> None:
        self._file.write(EMPTY_FOOTER)
        self._file.flush()

    def close(self) -> None:
        """rosbags closes after its own footer: drop the empty one behind it."""
        self._file.seek(self._end)
        self._file.truncate()
        self._file.close()


class _LiveMcap:
    """What the recorder needs of rosbags' MCAP writer (rosbags 0.11 ``McapWriter``: ``bio``, ``chunk``,
    ``close_chunk``) to keep a split readable while it is written: :class:`_ValidTail` under it, and a way
    to write the pending chunk now. ``tests/carla_rl_bags`` kill a recorder to pin this."""

    def __init__(self, writer: Writer):
        self.storage = writer.storage
        self.storage.bio = _ValidTail(self.storage.bio)

    @property
    def written(self) -> int:
        """Bytes on disk: changes exactly when a chunk was written."""
        return self.storage.bio.tell()

    def flush(self) -> None:
        """Write the pending chunk (if it holds anything)."""
        if self.storage.chunk.bio.tell():
            self.storage.close_chunk()


class SplitWriter:
    """One rosbag2 bag directory written with rosbags, split into numbered storage files (see module doc)."""

    def __init__(
        self, path: Path, storage: str = "mcap", compression: str = "", max_bytes: int = 0, max_duration_ns: int = 0
    ):
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{self.path} exists already; a recording never overwrites one")
        self.path.mkdir(parents=True)
        self.plugin, self.compression_mode = STORAGES[storage]
        self.compression = compression
        self.max_bytes, self.max_duration_ns = max_bytes, max_duration_ns
        self.topics: list[_Topic] = []
        self.closed: list[dict[str, Any]] = []  # rosbag2_bagfile_information of each closed split
        self.count = 0
        self._open_split()

    def add_topic(self, name: str, msgtype: str, qos: list[Qos]) -> int:
        """Register a topic (its definition is embedded in every split); returns its handle for write()."""
        self.topics.append(_Topic(name, msgtype, tuple(qos), message_definition(msgtype)[1]))
        self.connections.append(self._connect(self.topics[-1]))
        self.split_counts.append(0)
        return len(self.topics) - 1

    def write(self, handle: int, timestamp: int, data: bytes) -> None:
        """Write one serialized message received at ``timestamp`` (ns), starting a new split when due."""
        if self.split_start is None:
            self.split_start = timestamp
        elif self._split_due(timestamp, len(data)):
            self._close_split()
            self._open_split()
            self.split_start = timestamp
        self.writer.write(self.connections[handle], timestamp, data)
        self.split_bytes += len(data)
        self.split_counts[handle] += 1
        self.split_end = max(self.split_end, timestamp)
        self.count += 1
        if self.live is not None:
            if timestamp - self.flushed_at >= FLUSH_PERIOD_S * 1e9:
                self.live.flush()
            if self.live.written != self.on_disk:  # a chunk went to disk: say so in metadata.yaml
                self.on_disk, self.flushed_at = self.live.written, timestamp
                self._write_metadata(self._live_info())

    def close(self) -> None:
        """Close the current split and write the final metadata.yaml."""
        self._close_split()

    @property
    def files(self) -> list[Path]:
        return [self.path / f for info in self.closed for f in info["relative_file_paths"]]

    def _split_due(self, timestamp: int, size: int) -> bool:
        too_big = self.max_bytes > 0 and self.split_bytes > 0 and self.split_bytes + size > self.max_bytes
        too_long = self.max_duration_ns > 0 and timestamp - self.split_start >= self.max_duration_ns
        return too_big or too_long

    def _open_split(self) -> None:
        self.split_dir = self.path / f"{self.path.name}_{len(self.closed)}"
        self.writer = Writer(self.split_dir, version=Writer.VERSION_LATEST, storage_plugin=self.plugin)
        if self.compression:
            self.writer.set_compression(self.compression_mode, CompressionFormat[self.compression.upper()])
        self.writer.open()
        self.connections = [self._connect(t) for t in self.topics]
        self.split_start: int | None = None
        self.split_end = 0
        self.split_bytes = 0
        self.split_counts = [0] * len(self.topics)
        self.live: _LiveMcap | None = None
        if self.plugin == StoragePlugin.MCAP:  # the split in progress, readable as it grows (see module doc)
            name = f"{self.split_dir.name}.mcap"
            os.link(self.split_dir / name, self.path / name)  # one file, two names: closing renames onto itself
            self.live = _LiveMcap(self.writer)
            self.on_disk, self.flushed_at = self.live.written, 0
            self._write_metadata(self._live_info())

    def _connect(self, topic: _Topic) -> Any:
        msgdef, digest = message_definition(topic.msgtype)
        return self.writer.add_connection(
            topic.name, topic.msgtype, msgdef=msgdef, rihs01=digest, offered_qos_profiles=list(topic.qos)
        )

    def _close_split(self) -> None:
        """Close the split's bag, move its storage file beside the others, rewrite the merged metadata."""
        self.writer.close()
        info = yaml.safe_load((self.split_dir / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        for name in info["relative_file_paths"]:
            os.replace(self.split_dir / name, self.path / name)
        shutil.rmtree(self.split_dir)
        self.closed.append(info)
        self._write_metadata()

    def _live_info(self) -> dict[str, Any]:
        """rosbag2 metadata of the split in progress as far as it is on disk (every message written so far,
        since it is called right after a chunk went out; topics registered since come with the next chunk)."""
        name = f"{self.split_dir.name}.mcap"
        count = sum(self.split_counts)
        start = self.split_start if count and self.split_start is not None else 0
        duration = self.split_end - start if count else 0
        return {
            "version": Writer.VERSION_LATEST,
            "storage_identifier": "mcap",
            "relative_file_paths": [name],
            "duration": {"nanoseconds": duration},
            "starting_time": {"nanoseconds_since_epoch": start},
            "message_count": count,
            "topics_with_message_count": [
                {
                    "topic_metadata": {
                        "name": t.name,
                        "type": t.msgtype,
                        "serialization_format": "cdr",
                        "offered_qos_profiles": dump_qos_v9(list(t.qos)),
                        "type_description_hash": t.digest,
                    },
                    "message_count": n,
                }
                for t, n in zip(self.topics, self.split_counts)
                if n
            ],
            "compression_format": "",
            "compression_mode": "",
            "files": [
                {
                    "path": name,
                    "starting_time": {"nanoseconds_since_epoch": start},
                    "duration": {"nanoseconds": duration},
                    "message_count": count,
                }
            ],
            "custom_data": None,
            "ros_distro": "rosbags",
        }

    def _write_metadata(self, live: dict[str, Any] | None = None) -> None:
        """``metadata.yaml`` of the closed splits (and the one in progress), replaced atomically."""
        splits = self.closed + ([live] if live is not None else [])
        merged = self.path / "metadata.yaml.tmp"
        merged.write_text(yaml.safe_dump({"rosbag2_bagfile_information": merge_metadata(splits)}, sort_keys=False))
        os.replace(merged, self.path / "metadata.yaml")


def merge_metadata(splits: list[dict[str, Any]]) -> dict[str, Any]:
    """rosbag2 metadata of one bag made of the storage files of ``splits`` (each a one-file bag's metadata)."""
    with_messages = [s for s in splits if s["message_count"]]
    start = min((s["starting_time"]["nanoseconds_since_epoch"] for s in with_messages), default=INFINITE_NS)
    end = max(
        (s["starting_time"]["nanoseconds_since_epoch"] + s["duration"]["nanoseconds"] for s in with_messages),
        default=start,
    )
    topics: dict[tuple[str, str], dict[str, Any]] = {}
    for split in splits:
        for entry in split["topics_with_message_count"]:
            key = (entry["topic_metadata"]["name"], entry["topic_metadata"]["type"])
            count = entry["message_count"] + (topics[key]["message_count"] if key in topics else 0)
            topics[key] = {"topic_metadata": entry["topic_metadata"], "message_count": count}
    merged = dict(splits[-1])
    merged.update(
        {
            "relative_file_paths": [p for s in splits for p in s["relative_file_paths"]],
            "files": [f for s in splits for f in s["files"]],
            "message_count": sum(s["message_count"] for s in splits),
            "starting_time": {"nanoseconds_since_epoch": start},
            "duration": {"nanoseconds": end - start if with_messages else 0},
            "topics_with_message_count": list(topics.values()),
        }
    )
    return merged


# --- the node -----------------------------------------------------------------------------------------------
def contract_topics(namespace: str = "") -> dict[str, tuple[str, bool]]:
    """Absolute name -> (type, latched) of the default ego's topics whose types the bridge contract fixes.

    The recorder subscribes to these before their publishers exist, so DDS matches them the moment a
    publisher appears (a drive's first steps come soon after its nodes start); cameras, other roles and
    anything else selected are subscribed when discovery shows them.
    """
    t = BridgeTopics()
    table = {
        t.clock: ("rosgraph_msgs/msg/Clock", False),
        t.status: ("carla_msgs/msg/CarlaStatus", False),
        t.world_info: ("carla_msgs/msg/CarlaWorldInfo", True),
        t.control: ("carla_msgs/msg/CarlaControl", False),
        t.markers: ("visualization_msgs/msg/MarkerArray", False),
        t.vehicle_status: ("carla_msgs/msg/CarlaEgoVehicleStatus", False),
        t.vehicle_info: ("carla_msgs/msg/CarlaEgoVehicleInfo", True),
        t.odometry: ("nav_msgs/msg/Odometry", False),
        t.collision: ("carla_msgs/msg/CarlaCollisionEvent", False),
        t.lane_invasion: ("carla_msgs/msg/CarlaLaneInvasionEvent", False),
        t.vehicle_control_cmd: ("carla_msgs/msg/CarlaEgoVehicleControl", False),
        t.goal: ("geometry_msgs/msg/PoseStamped", False),
        t.waypoints: ("nav_msgs/msg/Path", True),
        t.step: ("carla_rl_msgs/msg/Step", False),
        t.episode: ("carla_rl_msgs/msg/EpisodeSummary", False),
    }
    return {namespaced(namespace, name): entry for name, entry in table.items()}


def contract_qos(latched: bool) -> QoSProfile:
    """The bridge's QoS (reliable; latched topics TRANSIENT_LOCAL), with the recorder's queue depth."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=RECORD_DEPTH,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


@dataclass
class _Subscription:
    msgtype: str
    qos: QoSProfile
    handle: Any  # the rclpy subscription
    confirmed: bool  # matched against the publishers discovery shows (contract subscriptions start unconfirmed)


class RecorderNode(Node):
    """Subscribes to the selected topics and writes every message they carry into a SplitWriter.

    A topic enters the bag with its first message (or when its publishers are discovered, if earlier), with
    the QoS profiles its publishers offer.
    """

    def __init__(self, options: RecordOptions, **kwargs: Any):
        super().__init__(NODE_NAME, **kwargs)
        self.options = self._read_parameters(options)
        self.options.validate()
        # several envs: "env_0,env_1" records each one's topics (a stack with num_envs > 1)
        self.namespaces = namespaces = (self.options.namespace or self.get_namespace()).split(",")
        self.patterns = [namespaced(ns, p) for ns in namespaces for p in self.options.topics] or [
            p for ns in namespaces for p in default_topics(ns)
        ]
        self.writer = SplitWriter(
            Path(self.options.output),
            self.options.storage,
            self.options.compression,
            self.options.max_bag_size,
            int(self.options.max_bag_duration * 1e9),
        )
        # messages are taken in a plain loop (serve()): rclpy's executor costs ~0.5 ms a message, and a recorder
        # slower than the lockstep loop falls behind until the publishers' history (a bridge's 10, ours 100) drops
        self.direct = DirectSubscriptions(self.context)
        self.subscribed: dict[str, _Subscription] = {}
        self.handles: dict[str, int] = {}  # topic -> writer handle
        self.refused: set[str] = set()
        self.received = 0
        # /carla/status numbers every frame: a jump means the recorder fell behind and DDS dropped messages
        self.status_topics = {namespaced(ns, BridgeTopics().status) for ns in namespaces}
        self.last_frame: dict[str, int] = {}
        self.lost_frames = 0
        self.get_logger().info(
            f"recording to {self.writer.path} ({self.options.storage}"
            f"{', ' + self.options.compression if self.options.compression else ''}): "
            f"{', '.join(self.patterns)}"
        )
        for topic, (msgtype, latched) in {k: v for ns in namespaces for k, v in contract_topics(ns).items()}.items():
            if self.selected(topic):
                self._subscribe(topic, msgtype, contract_qos(latched), confirmed=False)
        self.discover()
        self.timer = self.create_timer(DISCOVERY_PERIOD_S, self.discover, clock=Clock(clock_type=ClockType.STEADY_TIME))

    def _read_parameters(self, options: RecordOptions) -> RecordOptions:
        """The function's arguments are the parameters' defaults; a parameters file overrides them."""

        def param(name: str, default: Any) -> Any:
            return self.declare_parameter(name, default).value

        topics = self.declare_parameter("topics", options.topics or Parameter.Type.STRING_ARRAY).value
        wait_for = self.declare_parameter("wait_for", options.wait_for or Parameter.Type.STRING_ARRAY).value
        return RecordOptions(
            output=param("output", options.output),
            topics=list(topics or []),
            namespace=param("namespace", options.namespace),
            storage=param("storage", options.storage),
            compression=param("compression", options.compression),
            max_bag_size=param("max_bag_size", options.max_bag_size),
            max_bag_duration=float(param("max_bag_duration", float(options.max_bag_duration))),
            wait_for=list(wait_for or []),
        )

    def selected(self, topic: str) -> bool:
        return any(fnmatch.fnmatchcase(topic, p) for p in self.patterns)

    def discover(self) -> None:
        """Subscribe to selected topics that have publishers; re-subscribe a contract subscription whose type
        or QoS does not fit what the publishers offer (e.g. a bridge publishing a topic volatile)."""
        for topic, types in self.get_topic_names_and_types():
            if topic in self.refused or not self.selected(topic):
                continue
            known = self.subscribed.get(topic)
            if known is not None and known.confirmed:
                continue
            offered = [p.qos_profile for p in self.get_publishers_info_by_topic(topic)]
            if not offered:
                continue
            qos = subscription_qos(offered)
            if (
                known is not None
                and topic not in self.handles
                and (
                    known.msgtype != types[0]
                    or (known.qos.durability, known.qos.reliability) != (qos.durability, qos.reliability)
                )
            ):
                self.direct.destroy_subscription(self, known.handle)
                del self.subscribed[topic]
                known = None
            if known is None:
                if len(types) > 1:
                    self.get_logger().warning(f"{topic} carries several types {types}; recording {types[0]} only")
                self._subscribe(topic, types[0], qos, confirmed=True)
            else:
                known.confirmed = True
            if topic in self.subscribed and topic not in self.handles:
                self._register(topic)

    def _subscribe(self, topic: str, msgtype: str, qos: QoSProfile, confirmed: bool) -> None:
        try:
            cls = message_class(msgtype)
        except BagError as exc:
            self.refused.add(topic)
            self.get_logger().warning(f"not recording {topic}: {exc}")
            return
        handle = self.direct.create_subscription(
            self, cls, topic, lambda data, t=topic: self._on_message(t, data), qos, raw=True
        )
        self.subscribed[topic] = _Subscription(msgtype, qos, handle, confirmed)

    def _on_message(self, topic: str, data: bytes) -> None:
        handle = self.handles.get(topic)
        if handle is None:
            handle = self._register(topic)
        self.writer.write(handle, time.time_ns(), data)
        self.received += 1
        if topic in self.status_topics:
            self._check_frames(topic, data)

    def _check_frames(self, topic: str, data: bytes) -> None:
        try:
            frame = int(deserialize_message(data, CarlaStatus).frame)
        except Exception:
            return
        last = self.last_frame.get(topic)
        self.last_frame[topic] = frame
        if last is not None and frame > last + 1:
            self.lost_frames += frame - last - 1
            self.get_logger().warning(
                f"{topic}: frames {last + 1}..{frame - 1} are missing: the recorder fell behind the simulator "
                f"(a bridge's publishers keep 10 messages, ours 100) or the simulator skipped them; "
                f"{self.lost_frames} lost so far",
                throttle_duration_sec=5.0,
            )

    def _register(self, topic: str) -> int:
        """Add ``topic`` to the bag with its publishers' offered QoS (the subscription's, if none is known yet)."""
        known = self.subscribed[topic]
        offered = [p.qos_profile for p in self.get_publishers_info_by_topic(topic)] or [known.qos]
        self.handles[topic] = self.writer.add_topic(topic, known.msgtype, [offered_qos(p) for p in offered])
        self.get_logger().info(f"+ {topic} [{known.msgtype}]")
        return self.handles[topic]

    def unmatched(self) -> list[str]:
        """The ``wait_for`` topics (in every namespace) not yet subscribed and matched with a publisher."""
        names = [namespaced(ns, t) for ns in self.namespaces for t in self.options.wait_for]
        return [n for n in names if n not in self.subscribed or self.subscribed[n].handle.get_publisher_count() == 0]

    def serve(self, executor: SingleThreadedExecutor, timeout_sec: float = 0.1) -> None:
        """Take and write every message there is (waiting up to ``timeout_sec``); the discovery timer too."""
        self.direct.serve(executor, timeout_sec)

    def drain(self, quiet_s: float = 0.2, limit_s: float = 5.0) -> None:
        """Take what DDS already received (a stop must not lose it) until nothing arrives for ``quiet_s``."""
        self.destroy_timer(self.timer)
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            seen = self.received
            self.direct.spin_once(quiet_s)
            if self.received == seen:
                break

    def destroy_node(self) -> None:
        self.direct.destroy()
        super().destroy_node()

    def close(self, reason: str = "") -> None:
        """Close the bag; the last line says what it holds and ``reason``, what ended it ("stopped by SIGINT")."""
        self.writer.close()
        self.get_logger().info(
            f"closed {self.writer.path}: {self.writer.count} messages on {len(self.handles)} "
            f"topics in {len(self.writer.files)} file(s)"
            + (f"; {self.lost_frames} frame(s) missing" if self.lost_frames else "")
            + (f"; {reason}" if reason else "")
        )


def record(
    output: Path | str,
    topics: list[str] | None = None,
    namespace: str = "",
    storage: str = "mcap",
    compression: str | None = None,
    max_bag_size: int = 0,
    max_bag_duration: float = 0.0,
    stop: threading.Event | None = None,
    ready: threading.Event | None = None,
    *,
    ros_args: list[str] | None = None,
    wait_for: list[str] | None = None,
) -> int:
    """Record until SIGINT / SIGTERM (main thread) or ``stop``; returns 0 once the bag is closed.

    ``ready`` is set once the bag is open, the topics present now are subscribed and each ``wait_for`` topic
    has a matched publisher (or ``WAIT_FOR_S`` passed). ``ros_args`` are
    ``--ros-args ...`` for the node (a parameters file, a namespace). Raises BagError for a bad option or
    an existing output directory.
    """
    stop = stop or StopRequest()
    options = RecordOptions(
        str(output),
        list(topics or []),
        namespace,
        storage,
        compression or "",
        int(max_bag_size),
        float(max_bag_duration),
        list(wait_for or []),
    )
    with ros_session(NODE_NAME, ros_args, stop) as context:
        node = RecorderNode(options, context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        try:
            # DDS matches a subscription to a publisher some time after both exist: a stack's first episode
            # starts only once the recorder hears the topics it needs (`wait_for`)
            deadline = time.monotonic() + WAIT_FOR_S
            while node.unmatched() and time.monotonic() < deadline and not stop.is_set():
                node.serve(executor, 0.05)
            if node.unmatched():
                node.get_logger().warning(
                    f"no publisher matched within {WAIT_FOR_S:.0f} s: {', '.join(node.unmatched())}; recording anyway"
                )
            node.get_logger().info("recorder ready")  # `carla-rl up` waits for this line
            if ready is not None:
                ready.set()
            while not stop.is_set() and context.ok():
                node.serve(executor)
            node.drain()
        finally:
            node.close(stop_reason(stop, context))
            executor.shutdown()
            node.destroy_node()
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m carla_rl_bags.recorder", description=__doc__.split("\n")[0])
    add_record_arguments(p, output_required=False)  # the output may come as a ROS parameter
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m carla_rl_bags.recorder`` (options also as ROS parameters)."""
    from rclpy.utilities import remove_ros_args

    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(remove_ros_args([NODE_NAME, *argv])[1:])
    try:
        return record(
            args.output,
            args.topics,
            args.namespace,
            args.storage,
            "" if args.compression == "none" else args.compression,
            args.max_bag_size,
            args.max_bag_duration,
            ros_args=argv,
            wait_for=args.wait_for,
        )
    except BagError as exc:
        print(f"carla_rl_bags.recorder: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
