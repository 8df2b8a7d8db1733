"""Replay a bag onto the ROS graph with its recorded timing, like ``ros2 bag play --clock``.

Messages are republished as the serialized bytes they were recorded as (no decoding), at their recorded
receive times scaled by ``rate`` (0: as fast as possible). With ``clock`` the player publishes
``rosgraph_msgs/Clock`` on ``/clock`` carrying the bag's time: before each message (the time of that
message) and at 100 Hz in between, so nodes with ``use_sim_time`` run on the recording's timeline; the
recorded ``/clock`` topics are then left out (two clocks would fight) unless named in ``include``. Without
``clock`` the recorded ``/clock`` (the simulator's sim time) is replayed like any other topic.

Each topic is re-offered with the QoS it was recorded with: latched topics (``world_info``) are published
TRANSIENT_LOCAL, so late subscribers get them. With ``start_offset`` the last message of each latched topic
before the offset is published first (a late start must not lose the map).
"""

from __future__ import annotations

import argparse
import fnmatch
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosbags.interfaces import QosReliability

from carla_rl_bags import BagError
from carla_rl_bags.options import add_replay_arguments, parse_remaps
from carla_rl_bags.reader import Bag, RawMessage, TopicMeta, open_bag
from carla_rl_bags.session import ros_session
from carla_rl_bags.typestore import message_class
from carla_rl_common.bridge import BridgeTopics, namespaced

NODE_NAME = "carla_rl_bag_player"
CLOCK_PERIOD_S = 0.01  # 100 Hz, ros2 bag play's default clock rate
CDR_LE_HEADER = b"\x00\x01\x00\x00"
CLOCK_TYPE = "rosgraph_msgs/msg/Clock"


def clock_cdr(ns: int) -> bytes:
    """A serialized rosgraph_msgs/Clock of ``ns`` nanoseconds (built directly: no encoding in the hot path)."""
    return CDR_LE_HEADER + struct.pack("<iI", ns // 1_000_000_000, ns % 1_000_000_000)


def select_topics(
    topics: dict[str, TopicMeta], include: list[str] | None, exclude: list[str] | None, clock: bool
) -> list[str]:
    """Topics to replay: ``include`` (names or fnmatch patterns; default all) minus ``exclude``.

    With ``clock``, recorded clock topics are left out unless ``include`` names them.
    """

    def matches(name: str, patterns: list[str]) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in patterns)

    chosen = []
    for name, meta in topics.items():
        if include is not None and not matches(name, include):
            continue
        if exclude and matches(name, exclude):
            continue
        if clock and include is None and meta.msgtype == CLOCK_TYPE:
            continue
        chosen.append(name)
    return chosen


def bridge_latched(name: str) -> bool:
    """Whether the bridge contract makes ``name`` a latched topic (for bags recorded without QoS metadata)."""
    t = BridgeTopics(role_name="*")
    patterns = (t.world_info, t.map, t.traffic_lights_info, t.vehicle_info, t.waypoints)
    return any(fnmatch.fnmatchcase(name, f"*/{p}") for p in patterns)


def replay_qos(meta: TopicMeta) -> QoSProfile:
    """The recorded publishers' QoS: TRANSIENT_LOCAL for latched topics, best effort if any offered it."""
    latched = meta.latched or (not meta.qos and bridge_latched(meta.name))
    best_effort = any(q.reliability == QosReliability.BEST_EFFORT for q in meta.qos)
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=1 if latched else 10,
        reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


class Player:
    """Publishers for the chosen topics and the clock, and the timing loop."""

    def __init__(self, node: Node, bag: Bag, topics: list[str], remap: dict[str, str], clock: bool):
        self.bag, self.topics = bag, topics
        self.publishers: dict[str, Any] = {}
        for name in topics:
            meta = bag.topics[name]
            try:
                cls = message_class(meta.msgtype)
            except BagError as exc:
                raise BagError(f"{bag.path}: cannot replay {name}: {exc} (exclude the topic)") from exc
            self.publishers[name] = node.create_publisher(cls, namespaced("", remap.get(name, name)), replay_qos(meta))
        self.clock_pub = None
        if clock:
            from rosgraph_msgs.msg import Clock

            name = namespaced("", BridgeTopics().clock)
            self.clock_pub = node.create_publisher(Clock, namespaced("", remap.get(name, name)), 10)
        self.published = 0
        self.last_clock = -1

    def publish_clock(self, bag_ns: int) -> None:
        if self.clock_pub is not None and bag_ns > self.last_clock:
            self.clock_pub.publish(clock_cdr(bag_ns))
            self.last_clock = bag_ns

    def publish(self, message: RawMessage) -> None:
        self.publish_clock(message.timestamp)
        self.publishers[message.topic].publish(message.data)
        self.published += 1

    def latched_before(self, start_ns: int) -> list[RawMessage]:
        """The last message of each latched topic recorded before ``start_ns``."""
        latched = [
            t for t in self.topics if self.publishers[t].qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
        ]
        last: dict[str, RawMessage] = {}
        for message in self.bag.messages(latched, stop_ns=start_ns):
            last[message.topic] = message
        return sorted(last.values(), key=lambda m: m.timestamp)

    def run_once(self, start_ns: int, rate: float, stop: threading.Event) -> None:
        """Publish every message from ``start_ns`` on, at ``rate`` x the recorded pace (0: at once).

        Each pass starts the clock over, like ``ros2 bag play --loop``.
        """
        self.last_clock = -1
        for message in self.latched_before(start_ns):
            self.publish(message)
        wall0 = time.monotonic()
        for message in self.bag.messages(self.topics, start_ns=start_ns):
            if stop.is_set():
                return
            if rate > 0:
                self._wait_until(wall0 + (message.timestamp - start_ns) / 1e9 / rate, start_ns, wall0, rate, stop)
            self.publish(message)

    def _wait_until(self, target: float, start_ns: int, wall0: float, rate: float, stop: threading.Event) -> None:
        """Sleep until the wall time ``target``, publishing the advancing bag time at 100 Hz meanwhile."""
        while not stop.is_set():
            now = time.monotonic()
            if now >= target:
                return
            if self.clock_pub is not None:
                self.publish_clock(start_ns + int((now - wall0) * rate * 1e9))
            time.sleep(min(target - now, CLOCK_PERIOD_S))


def play(
    bag: Path | str,
    rate: float = 1.0,
    loop: bool = False,
    start_offset: float = 0.0,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    remap: dict[str, str] | None = None,
    clock: bool = True,
    *,
    stop: threading.Event | None = None,
    ready: threading.Event | None = None,
    delay: float = 0.5,
    ros_args: list[str] | None = None,
) -> int:
    """Replay ``bag``; returns 0 when done (or stopped by SIGINT / SIGTERM in the main thread, or ``stop``), 1
    when the bag is damaged (what was readable is replayed, the problems logged).

    ``include`` / ``exclude``: topic names or fnmatch patterns. ``remap``: recorded topic -> topic to publish
    on (the key ``/clock`` moves the generated clock, e.g. to ``/env_0/clock``). ``start_offset``: seconds
    after the bag's start. ``loop``: start over (clock included) until stopped.
    ``delay`` s pass between creating the publishers and the first message, so that subscribers match
    (``ros2 bag play --delay``). ``ready`` is set when the publishers exist. Raises BagError for an
    unreadable bag or a topic whose type is not installed (exclude it to replay the rest).
    """
    if rate < 0 or start_offset < 0:
        raise BagError(f"rate and start_offset must not be negative (got {rate}, {start_offset})")
    stop = stop or threading.Event()
    with open_bag(bag) as opened, ros_session(NODE_NAME, ros_args, stop) as context:
        node = Node(NODE_NAME, context=context)
        for problem in opened.problems:
            node.get_logger().warning(problem)
        topics = select_topics(opened.topics, include, exclude, clock)
        try:
            player = Player(node, opened, topics, remap or {}, clock)
            if ready is not None:
                ready.set()
            stop.wait(delay)
            start_ns = opened.start_ns + int(start_offset * 1e9)
            while not stop.is_set():
                player.run_once(start_ns, rate, stop)
                if not loop:
                    break
            node.get_logger().info(f"published {player.published} messages from {opened.path}")
            if opened.problems:  # what was readable went out; say the bag was not whole
                node.get_logger().error(f"{opened.path} is damaged ({len(opened.problems)} problem(s), logged above)")
                return 1
        finally:
            node.destroy_node()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m carla_rl_bags.player BAG [options] [--ros-args ...]`` (the replay stack)."""
    from rclpy.utilities import remove_ros_args

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m carla_rl_bags.player", description=__doc__.split("\n")[0])
    add_replay_arguments(parser)
    args = parser.parse_args(remove_ros_args([NODE_NAME, *argv])[1:])
    try:
        return play(
            args.bag,
            args.rate,
            args.loop,
            args.start_offset,
            args.include,
            args.exclude,
            parse_remaps(args.remap),
            clock=not args.no_clock,
            ros_args=argv,
        )
    except (BagError, ValueError) as exc:
        print(f"carla_rl_bags.player: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
