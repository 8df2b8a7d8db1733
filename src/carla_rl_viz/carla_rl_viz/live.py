"""What the live viewers show, gathered from a running stack: one ROS node, latest-message-wins per env.

:class:`LiveNode` subscribes, for each env namespace, to what a view needs: the env node's Step and
EpisodeSummary, the route it publishes on ``waypoints``, the map from ``world_info`` (so it works against a
real bridge too), the other vehicles from the bridge's ``markers`` and a camera image. It keeps serialized
messages only (``raw=True``: no deserialization on the ROS thread); the views (browser server, Foxglove
stream) deserialize and encode at their own pace, in their own threads, through :meth:`EnvView.snapshot` and
:meth:`EnvView.camera_jpeg`. On a 2-core machine every bit of a viewer's CPU is taken from the lockstep loop
(160-200 steps a second), so:

- The markers and camera subscriptions are made only while someone watches (:meth:`LiveNode.watch`): the
  simulator draws markers and renders cameras only for subscribers, and that work is on the loop's path.
- They go to the embedded simulator's *preview* topics (``bridge.PREVIEW_PREFIX``) whenever something
  publishes them: the same markers and images at most ``preview_hz`` (default 20) times a second of wall
  time, where the bridge's topics cost a drawing and a rendering on every tick. A real CARLA bridge has no
  previews; then the bridge's own topics are used. The choice is re-checked every 0.2 s, so a simulator
  started after the viewer is picked up.
- Steps, markers and images are not handed over one callback each (rclpy's executor costs ~0.5 ms of CPU a
  message, most of a viewer's cost at 200 Steps a second): they wait in best-effort readers of a node no
  executor spins, and a thread takes what arrived ``TAKE_HZ`` times a second, only while someone watches.
- While markers arrive, a view shows the Step *of the markers' frame* (by header stamp), so the ego and the
  traffic drawn around it are of one instant: with previews, ``preview_hz`` frames a second.
"""

from __future__ import annotations

import collections
import struct
import threading
import time
from typing import Any

import numpy as np
import rclpy
from carla_msgs.msg import CarlaEgoVehicleInfo, CarlaWorldInfo
from carla_rl_msgs.msg import EpisodeSummary, Step
from nav_msgs.msg import Path
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image
from visualization_msgs.msg import MarkerArray

from carla_rl_common import bridge, codec
from carla_rl_common.bridge import BridgeTopics
from carla_rl_common.dds import use_default_profile
from carla_rl_viz.mapdata import map_from_opendrive

EPISODES_KEPT = 500  # episode returns a view charts
ROUTE_SPACING = 1.0  # metres between route points sent to a view
TAKE_HZ = 50.0  # how often, while someone watches, what arrived is taken (module docstring)
STEP_QUEUE = 32  # Steps a reader keeps between takes, and kept after, to find the one of a marker frame
MARKERS_STALE_S = 0.5  # no markers for this long: show the newest Step (nothing to match it with)
MARKERS_MATCH_S = 0.1  # markers whose Step has not come by then are shown with the newest one
SYNC_PERIOD_S = 0.2  # how often the optional subscriptions follow the watchers and the publishers present


def raw_stamp_ns(raw: bytes, offset: int = 0) -> int | None:
    """header.stamp (ns) of a serialized message whose Header starts ``offset`` bytes into its CDR data, read
    without deserializing: 0 for a Step or an Image, 4 for a MarkerArray (its first marker's; None if empty)."""
    if offset == 4 and len(raw) >= 8 and struct.unpack_from("<I" if raw[1] else ">I", raw, 4)[0] == 0:
        return None  # an empty MarkerArray
    start = 4 + offset  # after the encapsulation header: 00 01 little endian, 00 00 big
    if len(raw) < start + 8:
        return None
    sec, nanosec = struct.unpack_from("<iI" if raw[1] else ">iI", raw, start)
    return sec * 1_000_000_000 + nanosec


def image_to_bgr(msg: Any) -> np.ndarray:
    """A sensor_msgs/Image (bgra8, bgr8, rgb8, mono8, 8UC<n>) as an (H, W, 3) or (H, W) uint8 array to encode."""
    array = bridge.image_to_numpy(msg)
    channels = array.shape[2]
    if msg.encoding in ("bgra8", "bgr8") or (channels == 3 and msg.encoding.startswith("8UC")):
        return array[:, :, :3]
    if msg.encoding == "rgb8":
        return array[:, :, ::-1]
    if channels == 1:
        return array[:, :, 0]
    return array.max(axis=2)  # a multi-channel raster such as the BEV: any layer set shows


class EnvView:
    """The newest messages of one env and the views' cached readings of them (thread-safe)."""

    def __init__(self, namespace: str, changed: threading.Condition):
        self.namespace = namespace
        self.label = bridge.env_id(namespace)
        self._changed = changed  # shared by all envs: a view waits on it for any news
        self._lock = threading.Lock()
        self.step_raw: bytes | None = None  # the Step a view shows (see the module docstring)
        self.step_seq = 0  # Steps shown: what a view waits on for news
        self.markers_raw: bytes | None = None  # the markers shown with it
        self.markers_seq = 0
        self.camera_raw: bytes | None = None
        self.camera_seq = 0
        self.ego_id = -1
        self.map: dict[str, Any] | None = None
        self.map_version = 0
        self.route: list[float] = []
        self.route_version = 0
        self.episodes: collections.deque[dict[str, Any]] = collections.deque(maxlen=EPISODES_KEPT)
        self.episode_version = 0
        self.step_times: collections.deque[tuple[float, int]] = collections.deque(maxlen=50)  # (time, published)
        self.step_has_images = False
        self._published = 0  # Steps the env node published, as far as seen here
        self._last_publication = 0  # the newest Step's publication sequence number
        self._recent: collections.deque[tuple[int | None, int, bytes]] = collections.deque(maxlen=STEP_QUEUE)
        self._taken = 0  # Steps taken; ``_recent`` holds (stamp, number, bytes) of the newest
        self._shown = 0  # number of the Step shown
        self._pending: tuple[int | None, float, bytes] | None = None  # markers whose Step is not here yet
        self._markers_at = -MARKERS_STALE_S  # monotonic arrival time of the newest markers
        self._snapshot: tuple[int, int, dict[str, Any] | None] = (0, 0, None)  # (step_seq, markers_seq, dict)
        self._jpeg: tuple[int, bytes | None] = (0, None)

    # --- written by the ROS thread: keep the bytes, nothing else -------------------------------------------
    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def take(
        self, steps: list[tuple[bytes, dict[str, Any]]], markers: bytes | None = None, camera: bytes | None = None
    ) -> None:
        """What arrived since the last call: Steps (oldest first, with their message info), the newest markers
        and camera image. Shows the Step of the newest markers' frame, or the newest Step while no markers come."""
        now = time.monotonic()
        with self._lock:
            if camera is not None:
                self.camera_raw, self.camera_seq = camera, self.camera_seq + 1
            for raw, info in steps:
                self._count_published(info.get("publication_sequence_number"))
                self._taken += 1
                self._recent.append((raw_stamp_ns(raw), self._taken, raw))
            if steps:
                self.step_times.append((now, self._published))
            if markers is not None:
                self._pending, self._markers_at = (raw_stamp_ns(markers, 4), now, markers), now
            shown = self._show_next(now)
        if shown:
            self._notify()

    def _count_published(self, publication: int | None) -> None:
        """Count Steps published from their sequence numbers: those the reader dropped count too."""
        gap = publication - self._last_publication if publication is not None else 1
        self._published += gap if 0 < gap <= 1_000_000 else 1  # a restarted env node starts again at 1
        self._last_publication = publication or 0

    def _show_next(self, now: float) -> bool:
        """Pick what the views show next (under the lock); True if that changed."""
        newer = [item for item in self._recent if item[1] > self._shown]
        if not newer:
            return False
        if now - self._markers_at > MARKERS_STALE_S:  # no traffic to match: the newest Step
            item, markers = newer[-1], self.markers_raw
        elif self._pending is not None:
            stamp, since, markers = self._pending
            # the Step of the markers' frame, or the first after it (lost in transit); the newest if the stamps
            # never match (a bridge that stamps them otherwise)
            item = next((i for i in newer if stamp is None or i[0] is None or i[0] >= stamp), None)
            if item is None:
                if now - since < MARKERS_MATCH_S:
                    return False  # it comes next
                item = newer[-1]
            self._pending = None
        else:
            return False
        self.step_raw, self.step_seq, self._shown = item[2], self.step_seq + 1, item[1]
        if markers is not self.markers_raw:
            self.markers_raw, self.markers_seq = markers, self.markers_seq + 1
        return True

    def drop_markers(self) -> None:
        """Nobody watches the traffic any more: show Steps alone."""
        with self._lock:
            self._pending, self._markers_at = None, -MARKERS_STALE_S
            if self.markers_raw is not None:
                self.markers_raw, self.markers_seq = None, self.markers_seq + 1

    def on_episode(self, msg: EpisodeSummary) -> None:
        record = codec.summary_record(msg)
        item = {key: record[key] for key in ("episode", "return", "success", "length", "route_completion")}
        item["reason"] = record["termination_reason"]
        with self._lock:
            self.episodes.append(item)
            self.episode_version += 1
        self._notify()

    def on_route(self, msg: Path) -> None:
        points = np.array([[p.pose.position.x, p.pose.position.y] for p in msg.poses], dtype=float).reshape(-1, 2)
        if len(points) > 2:  # keep a point every ROUTE_SPACING metres, and the last one: the goal
            step = np.linalg.norm(np.diff(points, axis=0), axis=1)
            along = np.concatenate([[0.0], np.cumsum(step)])
            keep = np.unique(np.searchsorted(along, np.arange(0.0, along[-1], ROUTE_SPACING)))
            points = points[np.append(keep[keep < len(points) - 1], len(points) - 1)]
        with self._lock:
            self.route = np.round(points, 2).reshape(-1).tolist()
            self.route_version += 1
        self._notify()

    def set_map(self, geometry: dict[str, Any]) -> None:
        with self._lock:
            self.map, self.map_version = geometry, self.map_version + 1
        self._notify()

    # --- read by the views, at their own pace ---------------------------------------------------------------
    def step_rate(self) -> float:
        """Steps per second published over the last second or so (what the loop runs at, as seen here)."""
        times = list(self.step_times)
        if len(times) < 2 or times[-1][0] <= times[0][0] or time.monotonic() - times[-1][0] > 2.0:
            return 0.0
        return (times[-1][1] - times[0][1]) / (times[-1][0] - times[0][0])

    def snapshot(self) -> dict[str, Any] | None:
        """The latest step as plain numbers (JSON-ready), with the other vehicles; None before the first step.

        Deserialized once per new message however many views ask; numbers are the message's own values.
        """
        with self._lock:
            raw, seq, camera_seq = self.step_raw, self.step_seq, self.camera_seq
            markers_raw, markers_seq = self.markers_raw, self.markers_seq
        if raw is None:
            return None
        cached_seq, cached_markers, cached = self._snapshot
        if cached is not None and cached_seq == seq and cached_markers == markers_seq:
            return {**cached, "camera_seq": self._camera_seq(camera_seq), "rate_hz": self.step_rate()}
        msg = deserialize_message(raw, Step)
        self.step_has_images = len(msg.images) > 0
        x, y, yaw = bridge.pose_to_xyyaw(msg.ego_pose)
        c = msg.control
        state = {
            "env": self.label,
            "env_id": msg.env_id,
            "episode": int(msg.episode),
            "step": int(msg.step),
            "frame": int(msg.frame),
            "stamp": bridge.stamp_to_ns(msg.header.stamp) / 1e9,
            "reward": float(msg.reward),
            "terms": {name: float(v) for name, v in zip(msg.reward_term_names, msg.reward_terms)},
            "action": {
                "throttle": float(c.throttle),
                "steer": float(c.steer),
                "brake": float(c.brake),
                "reverse": bool(c.reverse),
                "hand_brake": bool(c.hand_brake),
            },
            "ego": {"x": x, "y": y, "yaw": yaw},
            "speed": float(msg.speed),
            "terminated": bool(msg.terminated),
            "truncated": bool(msg.truncated),
            "reason": msg.termination_reason,
            "traffic": self._traffic(markers_raw),
            "seq": seq,
        }
        self._snapshot = (seq, markers_seq, state)
        return {**state, "camera_seq": self._camera_seq(camera_seq), "rate_hz": self.step_rate()}

    def _camera_seq(self, camera_seq: int) -> int:
        return self.step_seq if self.step_has_images else camera_seq

    def _traffic(self, markers_raw: bytes | None) -> list[list[float]]:
        """[x, y, yaw, length, width] of every vehicle marker but the ego's."""
        if markers_raw is None:
            return []
        boxes = codec.marker_boxes(deserialize_message(markers_raw, MarkerArray), self.ego_id).boxes
        return [
            [round(x, 2), round(y, 2), round(yaw, 3), round(length, 2), round(width, 2)]
            for x, y, yaw, length, width, _ in boxes.tolist()
        ]

    def camera_image(self) -> tuple[int, np.ndarray | None]:
        """(sequence number, image) of the newest camera view: the Step's first image, else the camera topic."""
        with self._lock:
            step_raw, step_seq, camera_raw, camera_seq = self.step_raw, self.step_seq, self.camera_raw, self.camera_seq
        if self.step_has_images and step_raw is not None:
            msg = deserialize_message(step_raw, Step)
            return step_seq, image_to_bgr(msg.images[0]) if msg.images else None
        if camera_raw is None:
            return camera_seq, None
        return camera_seq, image_to_bgr(deserialize_message(camera_raw, Image))

    def camera_jpeg(self, quality: int = 85) -> tuple[int, bytes | None]:
        """The newest camera view as JPEG, encoded once per new image whoever asks (never on the ROS thread)."""
        import cv2  # only a view that shows the camera pays for the import

        seq, image = self.camera_image()
        if self._jpeg[0] == seq and self._jpeg[1] is not None:
            return self._jpeg
        if image is None:
            return seq, None
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        self._jpeg = (seq, data.tobytes() if ok else None)
        return self._jpeg

    def read(self) -> dict[str, Any]:
        """Versions and the slow-changing parts (map, route, episodes), for a view to send what changed."""
        with self._lock:
            return {
                "map": self.map,
                "map_version": self.map_version,
                "route": list(self.route),
                "route_version": self.route_version,
                "episodes": list(self.episodes),
                "episode_version": self.episode_version,
                "step_seq": self.step_seq,
            }


class LiveNode(Node):
    """Subscribes to the topics the views need, for each env namespace; see the module docstring."""

    def __init__(
        self, namespaces: list[str], role_name: str = bridge.DEFAULT_ROLE_NAME, camera: str = "rgb_front", **kwargs: Any
    ):
        super().__init__("carla_rl_live_view", **kwargs)
        self.changed = threading.Condition()
        self.envs = {bridge.env_id(ns): EnvView(ns, self.changed) for ns in namespaces}
        self.topics = BridgeTopics(role_name)
        self.camera = camera
        self._watchers = 0
        self._watch_lock = threading.Lock()
        self._maps: dict[int, dict[str, Any]] = {}  # parsed towns by hash of their OpenDRIVE text
        # Steps, markers and camera images wait in readers of a node nobody spins, for _take (module docstring)
        self._intake = Node(
            "carla_rl_live_view_intake", context=self.context, start_parameter_services=False, enable_rosout=False
        )
        self._steps: dict[str, Any] = {}
        self._optional: dict[str, dict[str, Any]] = {label: {} for label in self.envs}  # kind -> subscription
        latched, t = bridge.qos_latched(), self.topics
        for label, env in self.envs.items():
            self._steps[label] = self._intake.create_subscription(
                Step, self._name(env, t.step), _unused, qos_steps(), raw=True
            )
            self.create_subscription(EpisodeSummary, self._name(env, t.episode), env.on_episode, qos_default_deep())
            self.create_subscription(Path, self._name(env, t.waypoints), env.on_route, latched)
            self.create_subscription(
                CarlaWorldInfo, self._name(env, t.world_info), lambda msg, e=env: self._on_world_info(e, msg), latched
            )
            self.create_subscription(
                CarlaEgoVehicleInfo,
                self._name(env, t.vehicle_info),
                lambda msg, e=env: setattr(e, "ego_id", int(msg.id)),
                latched,
            )
        # subscriptions follow the watchers from the executor's own thread (a steady timer: sim time may stop)
        self.create_timer(SYNC_PERIOD_S, self._sync_optional, clock=Clock(clock_type=ClockType.STEADY_TIME))
        # taking runs in a plain thread: an rclpy timer would cost ~0.7 ms of executor CPU per wake-up
        self._intake_lock = threading.Lock()  # the intake's subscriptions change in _sync_optional
        self._watched, self._stop = threading.Event(), threading.Event()
        self._taker = threading.Thread(target=self._take_loop, name="live-take", daemon=True)
        self._taker.start()

    def destroy_node(self) -> None:
        self._stop.set()
        self._watched.set()
        self._taker.join(timeout=5.0)
        self._intake.destroy_node()
        super().destroy_node()

    @staticmethod
    def _name(env: EnvView, topic: str) -> str:
        return bridge.namespaced(env.namespace, topic)

    def _on_world_info(self, env: EnvView, msg: CarlaWorldInfo) -> None:
        key = hash(msg.opendrive)
        if key not in self._maps:
            try:
                self._maps[key] = map_from_opendrive(
                    msg.opendrive, f"{self._name(env, self.topics.world_info)} ({msg.map_name})"
                )
            except ValueError as exc:
                self.get_logger().error(f"cannot draw the map of {env.label}: {exc}")
                return
        env.set_map(self._maps[key])

    def watch(self, delta: int) -> None:
        """A view started (+1) or stopped (-1) showing traffic and the camera."""
        with self._watch_lock:
            self._watchers = max(0, self._watchers + delta)

    @property
    def watchers(self) -> int:
        return self._watchers

    def _source(self, env: EnvView, preview: str, contract: str) -> str:
        """The simulator's preview topic if something publishes it, else the bridge's per-tick topic."""
        name = self._name(env, preview)
        return name if self.count_publishers(name) else self._name(env, contract)

    def _sync_optional(self) -> None:
        """Markers and camera subscriptions, and taking, follow the watchers; topics as :meth:`_source` picks."""
        t, watched = self.topics, self._watchers > 0
        for label, env in self.envs.items():
            wanted: dict[str, tuple[Any, str]] = {}
            if watched:
                wanted["markers"] = (MarkerArray, self._source(env, t.preview_markers, t.markers))
                if self.camera and not env.step_has_images:  # Steps that carry the camera need no rendering
                    wanted["camera"] = (Image, self._source(env, t.preview_image(self.camera), t.image(self.camera)))
            subs = self._optional[label]
            with self._intake_lock:
                for kind in [k for k, sub in subs.items() if k not in wanted or sub.topic_name != wanted[k][1]]:
                    self._intake.destroy_subscription(subs.pop(kind))
                for kind, (msg_type, topic) in wanted.items():
                    if kind not in subs:
                        subs[kind] = self._intake.create_subscription(msg_type, topic, _unused, qos_latest(), raw=True)
            if "markers" not in subs:
                env.drop_markers()
        if watched:
            self._watched.set()
        else:
            self._watched.clear()

    def _take_loop(self) -> None:
        """TAKE_HZ times a second while someone watches: :meth:`take_now`."""
        period = 1.0 / TAKE_HZ
        while not self._stop.is_set():
            if not self._watched.wait(1.0):
                continue
            started = time.monotonic()
            try:
                self.take_now()
            except RuntimeError:  # the context or a handle went away: shutting down
                if self._stop.is_set() or not self.context.ok():
                    return
                raise
            self._stop.wait(max(0.0, period - (time.monotonic() - started)))

    def take_now(self) -> None:
        """Hand each env what arrived since the last call."""
        with self._intake_lock:
            self._take()

    def _take(self) -> None:
        for label, env in self.envs.items():
            subs = self._optional[label]
            markers, camera = (take(subs[k], limit=1) if k in subs else [] for k in ("markers", "camera"))
            env.take(
                take(self._steps[label], STEP_QUEUE),
                markers[-1][0] if markers else None,
                camera[-1][0] if camera else None,
            )

    def subscribed(self, label: str) -> dict[str, str]:
        """Topic of each optional subscription of one env (markers, camera) now."""
        return {kind: sub.topic_name for kind, sub in self._optional[label].items()}


def _unused(_: Any) -> None:
    """The callback of a subscription nobody spins: its messages are taken by :func:`take`."""


def take(subscription: Any, limit: int) -> list[tuple[bytes, dict[str, Any]]]:
    """Up to ``limit`` waiting messages of a raw subscription, oldest first, with their message info.

    rclpy has no public take; this is what its executor does for a ready subscription.
    """
    out = []
    with subscription.handle:
        for _ in range(limit):
            taken = subscription.handle.take_message(subscription.msg_type, True)
            if taken is None:
                break
            out.append(taken)
    return out


def qos_latest() -> Any:
    """Markers and images for a view: the newest only, best effort (a view acknowledges nothing, so the
    bridge's reliable writers never resend to it or wait on it; a lost frame is replaced by the next)."""
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)


def qos_steps() -> Any:
    """Steps: as :func:`qos_latest`, keeping the last STEP_QUEUE to find the one of a marker frame among them."""
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=STEP_QUEUE, reliability=ReliabilityPolicy.BEST_EFFORT)


def qos_default_deep() -> Any:
    """Episode summaries are rare and each is a point of the returns chart: keep them all."""
    return bridge.qos_default(100)


class LiveThread:
    """rclpy init, a LiveNode and its executor spinning in a background thread; ``close`` undoes all."""

    def __init__(
        self,
        namespaces: list[str],
        role_name: str = bridge.DEFAULT_ROLE_NAME,
        camera: str = "rgb_front",
        args: list[str] | None = None,
    ):
        self._own_context = not rclpy.ok()
        if self._own_context:
            use_default_profile()
            rclpy.init(args=args)
        self.node = LiveNode(namespaces, role_name, camera)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, name="live-ros", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except (ExternalShutdownException, rclpy.executors.ShutdownException):
            pass

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self._thread.join(timeout=5.0)
        self.node.destroy_node()
        if self._own_context:
            rclpy.try_shutdown()
