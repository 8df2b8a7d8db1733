"""Fuzz every subscriber of the env node, the simulator node and the recorder with random and malformed
messages (hypothesis): wrong image sizes and encodings, NaN/inf and extreme fields, empty arrays, stamps that
jump back and forth. The callbacks are called as the executor calls them, on real nodes. Pass: no exception,
the nodes keep working (the simulator's state stays finite, the recorder's bag holds every message), and each
kind of rejection is logged once, not once per message (calls with rclpy's ``throttle_duration_sec`` are
rate-limited by rclpy and not counted).

Cases: ``CARLA_RL_FUZZ=large`` runs the large profile (conftest.py); each test prints how many cases ran.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter

import numpy as np
import pytest
import rclpy
import yaml
from fuzz_messages import image, message, stamp
from hypothesis import given
from hypothesis import strategies as st
from rclpy.parameter import Parameter

from carla_rl_common import bridge
from carla_rl_env.frames import frame_from_messages

CASES: Counter[str] = Counter()


class LogRecorder:
    """Stands in for a node's logger: records warnings and errors (the real logger still prints them)."""

    def __init__(self, real):
        self.real, self.calls = real, []

    def _record(self, level: str):
        def log(text, *args, **kwargs):
            self.calls.append((level, str(text), kwargs))
            return True

        return log

    def __getattr__(self, name):
        if name in ("warning", "warn", "error", "fatal"):
            return self._record(name)
        return lambda *a, **k: True  # debug, info

    def repeated(self) -> dict[str, int]:
        """Kinds of unthrottled warnings logged more than once (digits and quoted values masked). Errors are
        events (an episode truncated by a timeout), one per episode, not rejections of a message."""
        shapes = Counter(
            re.sub(r"\d+|'[^']*'|\([^)]*\)", "#", text)[:70]
            for level, text, kw in self.calls
            if level != "error" and "throttle_duration_sec" not in kw
        )
        return {k: n for k, n in shapes.items() if n > 1}


@pytest.fixture(scope="module")
def ros():
    owns = not rclpy.ok()
    if owns:
        rclpy.init()
    yield
    if owns:
        rclpy.try_shutdown()


# --- env node ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def env_node(ros, tmp_path_factory):
    from carla_msgs.msg import CarlaWorldInfo

    from carla_rl_common.towns import town_path
    from carla_rl_env.node import EnvNode

    config = tmp_path_factory.mktemp("fuzz") / "env.yaml"
    config.write_text(
        yaml.safe_dump(
            {"env": {"observation": {"bev": True, "cameras": [{"id": "rgb_front", "width": 32, "height": 32}]}}}
        )
    )
    node = EnvNode(parameter_overrides=[Parameter("config", value=[str(config)])])
    node._on_world_info(CarlaWorldInfo(map_name="RLTown01", opendrive=town_path("RLTown01").read_text()))
    node.get_logger = lambda log=LogRecorder(node.get_logger()): log
    yield node
    node.destroy_node()


def _activate(node) -> None:
    """Put the env node in a running episode, as its reset service leaves it (without a simulator)."""
    from carla_msgs.msg import CarlaEgoVehicleStatus
    from nav_msgs.msg import Odometry

    if node.active:
        return
    scenario = node.scenarios.next()
    odom = Odometry()
    odom.pose.pose = bridge.pose_msg(*scenario.start)
    picture = bridge.image_to_numpy(
        bridge.numpy_to_image(np.zeros((32, 32, 4), np.uint8), "bgra8", bridge.ns_to_stamp(0), "rgb_front")
    )
    parts = {"odometry": odom, "vehicle_status": CarlaEgoVehicleStatus(), "image:rgb_front": picture}
    frame = frame_from_messages(node.assembler.last_closed_ns + 1, 1, parts, {}, node.camera_ids, node.vehicles)
    node.task.reset(node.scenarios.route(scenario), frame)
    node.scenario, node.episode, node.step_index = scenario, node.episode + 1, 0
    node.matcher.expect(None)
    node.folder.clear()
    node.active = True
    node.last_frame_wall = time.monotonic()


def _stamped(msg, sec_nsec):
    if hasattr(msg, "header"):
        msg.header.stamp.sec, msg.header.stamp.nanosec = sec_nsec
    return msg


def _env_inputs(node) -> st.SearchStrategy:
    """A random message for a random subscription, or a whole frame (state, image, status) of random values."""
    from carla_msgs.msg import CarlaEgoVehicleStatus, CarlaStatus
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import Image

    subs = sorted(node.subscriptions, key=lambda s: s.topic_name)
    by_topic = {s.topic_name: s for s in subs}

    def strategy(sub):
        if sub.msg_type is Image:
            return st.one_of(image(Image), message(Image))
        return message(sub.msg_type)

    single = st.sampled_from(subs).flatmap(
        lambda s: st.tuples(st.just([s.topic_name]), st.lists(strategy(s), min_size=1, max_size=3))
    )
    t = node.topics
    frame = st.tuples(
        stamp(), message(Odometry), message(CarlaEgoVehicleStatus), image(Image), message(CarlaStatus)
    ).map(
        lambda parts: (
            [t.odometry, t.vehicle_status, t.image("rgb_front"), t.status],
            [_stamped(m, parts[0]) for m in parts[1:]],
        )
    )
    return st.one_of(single, frame).map(
        lambda pair: [
            (by_topic["/" + n.lstrip("/")], m)
            for n, ms in [pair]
            for n, m in zip(n if len(n) == len(ms) else n * len(ms), ms)
        ]
    )


def test_fuzz_env_node_subscribers(env_node):
    node = env_node

    @given(st.data())
    def run(data):
        _activate(node)
        for sub, msg in data.draw(_env_inputs(node)):
            sub.callback(msg)
            CASES["env node messages"] += 1
        node._check_timeouts()
        CASES["env node cases"] += 1

    run()
    log = node.get_logger()
    assert not log.repeated(), log.repeated()
    print(
        f"\nfuzz env node: {CASES['env node cases']} cases, {CASES['env node messages']} messages, "
        f"{len(log.calls)} warnings logged; assembler anomalies {dict(node.assembler.anomalies)}"
    )


# --- simulator node ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sim_node(ros):
    from carla_rl_sim.node import SimulatorNode

    node = SimulatorNode()
    node.get_logger = lambda log=LogRecorder(node.get_logger()): log
    yield node
    node.destroy_node()


def test_fuzz_simulator_subscribers(sim_node):
    node = sim_node
    subs = sorted(node.subscriptions, key=lambda s: s.topic_name)

    @given(
        st.lists(
            st.sampled_from(subs).flatmap(lambda s: st.tuples(st.just(s), message(s.msg_type))), min_size=1, max_size=4
        )
    )
    def run(inputs):
        for sub, msg in inputs:
            sub.callback(msg)
            CASES["simulator messages"] += 1
        node.paused = node.step_once = False  # a fuzzed PAUSE must not stop the ticks we check
        node.tick()
        for ego in node.sim.egos.values():
            s = ego.state
            assert all(map(math.isfinite, (s.x, s.y, s.yaw, s.vx, s.vy, ego.speed))), s
        CASES["simulator cases"] += 1

    run()
    log = node.get_logger()
    assert not log.repeated(), log.repeated()
    print(
        f"\nfuzz simulator: {CASES['simulator cases']} cases, {CASES['simulator messages']} messages, "
        f"{len(log.calls)} warnings logged"
    )


# --- recorder ---------------------------------------------------------------------------------------------
def test_fuzz_recorder_subscribers(ros, tmp_path):
    from carla_rl_bags.reader import open_bag
    from carla_rl_bags.recorder import RecorderNode, RecordOptions

    node = RecorderNode(RecordOptions(output=str(tmp_path / "bag")))
    subs = list(node.subscriptions)
    sent = Counter()
    try:

        @given(st.lists(st.tuples(st.sampled_from(subs), st.binary(max_size=256)), min_size=1, max_size=5))
        def run(inputs):
            for sub, data in inputs:  # raw subscriptions: the CDR bytes as they came off the wire, any bytes
                sub.callback(data)
                sent[sub.topic_name] += 1
            CASES["recorder cases"] += 1

        run()
    finally:
        node.close()
        node.destroy_node()
    with open_bag(tmp_path / "bag") as bag:
        counts = Counter(m.topic for m in bag.messages())
    assert counts == sent  # every message, malformed or not, is in the bag: a recorder does not judge
    print(f"\nfuzz recorder: {CASES['recorder cases']} cases, {sum(sent.values())} messages on {len(sent)} topics")
