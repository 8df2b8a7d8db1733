"""The simulator node's viewer previews, as a separate process stepped in lockstep by this test.

The previews (markers and the camera on ``carla_rl/preview/...``) must go out at most ``preview_hz`` times a
second of wall time while the loop ticks faster, on every tick while it ticks slower, and be the same frames
as the bridge topics; the bridge topics (``/carla/markers``, the camera image) still go out every tick to
their subscribers. With ``preview_hz`` 0 there are no preview topics.
"""

from __future__ import annotations

import json
import os
import time

import pytest
import rclpy
from carla_msgs.msg import CarlaEgoVehicleControl
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from visualization_msgs.msg import MarkerArray

from carla_rl_bringup.launcher import NodeSpec, ProcessGroup
from carla_rl_common import bridge
from carla_rl_common.bridge import BridgeTopics

pytestmark = pytest.mark.slow

T = BridgeTopics()
PREVIEW_HZ = 10.0
DT = bridge.DEFAULT_FIXED_DELTA_SECONDS
OBJECTS = {
    "objects": [
        {
            "type": "vehicle.tesla.model3",
            "id": "ego_vehicle",
            "sensors": [
                {
                    "type": "sensor.camera.rgb",
                    "id": "rgb_front",
                    "image_size_x": 84,
                    "image_size_y": 84,
                    "fov": 90.0,
                    "spawn_point": {"x": 2.0, "y": 0.0, "z": 2.0, "roll": 0.0, "pitch": 0.0, "yaw": 0.0},
                }
            ],
        },
        {"type": "sensor.pseudo.markers", "id": "markers"},  # /carla/markers exists only when spawned
    ]
}


def frame_of(stamp) -> int:
    return round(bridge.stamp_to_ns(stamp) / (DT * 1e9))


class Receiver:
    """This test's node: drives the simulator one tick per command and records what each topic carried."""

    def __init__(self) -> None:
        self.node = rclpy.create_node("preview_test")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.got: dict[str, list[tuple[float, int, bytes]]] = {
            k: [] for k in ("markers", "image", "p_markers", "p_image")
        }
        deep = bridge.qos_default(1000)
        preview = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)
        for kind, msg_type, topic, qos in (
            ("markers", MarkerArray, T.markers, deep),
            ("image", Image, T.image("rgb_front"), deep),
            ("p_markers", MarkerArray, T.preview_markers, preview),
            ("p_image", Image, T.preview_image("rgb_front"), preview),
        ):
            self.node.create_subscription(msg_type, "/" + topic, lambda m, k=kind: self._record(k, m), qos)
        self.control = self.node.create_publisher(
            CarlaEgoVehicleControl, "/" + T.vehicle_control_cmd, bridge.qos_default()
        )

    def _record(self, kind: str, msg) -> None:
        header = msg.markers[0].header if kind.endswith("markers") else msg.header
        data = bytes(msg.data) if kind.endswith("image") else b""
        self.got[kind].append((time.monotonic(), frame_of(header.stamp), data))

    def spin_until(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate() and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.01)
        return predicate()

    def tick(self) -> int:
        """One command, then wait for that tick's bridge markers; the frame number."""
        before = len(self.got["markers"])
        for _ in range(20):  # a command lost before the simulator matched us is sent again
            self.control.publish(CarlaEgoVehicleControl(throttle=0.3))
            if self.spin_until(lambda: len(self.got["markers"]) > before, 0.5):
                return self.got["markers"][-1][1]
        raise AssertionError("the simulator did not tick on a command")

    def close(self) -> None:
        self.node.destroy_node()


@pytest.fixture
def receiver():
    rclpy.init()
    rx = Receiver()
    yield rx
    rx.close()
    rclpy.shutdown()


def start_sim(tmp_path, **params) -> ProcessGroup:
    objects = tmp_path / "objects.json"
    objects.write_text(json.dumps(OBJECTS))
    group = ProcessGroup(dict(os.environ), log=open(tmp_path / "sim.log", "w"))
    group.start(
        NodeSpec(
            "sim",
            "carla_rl_sim.node",
            "",
            {
                "objects_file": str(objects),
                "traffic": 3,
                "seed": 1,
                "synchronous_mode_wait_for_vehicle_control_command": True,
                **params,
            },
        )
    )
    return group


def test_previews_at_most_preview_hz_while_the_bridge_topics_go_out_every_tick(receiver, tmp_path):
    group = start_sim(tmp_path, preview_hz=PREVIEW_HZ)
    try:
        rx, node = receiver, receiver.node

        def matched() -> bool:
            topics = (T.markers, T.image("rgb_front"), T.preview_markers, T.preview_image("rgb_front"))
            return all(node.count_publishers("/" + t) == 1 for t in topics)

        assert rx.spin_until(matched, 30), "the simulator's topics did not appear"
        rx.tick()
        rx.spin_until(lambda: False, 0.5)  # the preview subscriptions match too

        # faster than preview_hz: the loop is as fast as this test can step it
        for got in rx.got.values():
            got.clear()
        start = time.monotonic()
        frames = [rx.tick() for _ in range(300)]
        seconds = time.monotonic() - start
        rx.spin_until(lambda: False, 0.2)
        assert len(frames) / seconds > 3 * PREVIEW_HZ, "the test stepped too slowly to check the throttle"
        for kind in ("markers", "image"):  # the bridge topics: every tick
            assert [f for _, f, _ in rx.got[kind]] == frames, kind
        previews = [f for _, f, _ in rx.got["p_markers"]]
        assert [f for _, f, _ in rx.got["p_image"]] == previews
        assert 0.5 * PREVIEW_HZ * seconds <= len(previews) <= PREVIEW_HZ * seconds + 1, (
            f"{len(previews)} previews in {seconds:.2f} s at preview_hz {PREVIEW_HZ}"
        )
        assert set(previews) <= set(frames) and previews == sorted(previews)
        # a preview image is the frame's camera image (rendered once for both)
        images = {f: data for _, f, data in rx.got["image"]}
        assert all(data == images[f] for _, f, data in rx.got["p_image"])

        # slower than preview_hz: every tick
        rx.spin_until(lambda: False, 2.0 / PREVIEW_HZ)
        for got in rx.got.values():
            got.clear()
        slow = []
        for _ in range(6):
            slow.append(rx.tick())
            rx.spin_until(lambda: False, 1.5 / PREVIEW_HZ)
        assert [f for _, f, _ in rx.got["p_markers"]] == slow
        assert [f for _, f, _ in rx.got["p_image"]] == slow
    finally:
        group.stop()


def test_no_previews_with_preview_hz_zero(receiver, tmp_path):
    group = start_sim(tmp_path, preview_hz=0.0)
    try:
        node = receiver.node
        assert receiver.spin_until(lambda: node.count_publishers("/" + T.markers) == 1, 30)
        receiver.tick()
        assert node.count_publishers("/" + T.preview_markers) == 0
        assert node.count_publishers("/" + T.preview_image("rgb_front")) == 0
    finally:
        group.stop()
