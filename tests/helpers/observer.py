"""A passive ROS 2 observer for end-to-end tests: records what crosses the graph, in arrival order."""

from __future__ import annotations

import threading
import time

import rclpy
from carla_msgs.msg import CarlaEgoVehicleControl, CarlaStatus
from carla_rl_msgs.msg import EpisodeSummary, Step
from rclpy.executors import SingleThreadedExecutor

from carla_rl_common.bridge import BridgeTopics, qos_default


class Observer:
    """Subscribes to the status, control, step and episode topics of one env namespace."""

    def __init__(self, namespace: str = ""):
        rclpy.init()
        self.node = rclpy.create_node("test_observer")
        self.events: list[tuple[str, object]] = []
        ns = f"/{namespace}" if namespace else ""
        t = BridgeTopics()
        qos = qos_default(1000)
        for kind, msg_type, topic in (
            ("status", CarlaStatus, t.status),
            ("control", CarlaEgoVehicleControl, t.vehicle_control_cmd),
            ("step", Step, t.step),
            ("episode", EpisodeSummary, t.episode),
        ):
            self.node.create_subscription(msg_type, f"{ns}/{topic}", lambda m, k=kind: self.events.append((k, m)), qos)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def of(self, kind: str) -> list:
        return [m for k, m in self.events if k == kind]

    def close(self, quiet: float = 1.0, limit: float = 15.0) -> None:
        """Stop once nothing arrived for ``quiet`` s (what is in flight gets in), at most ``limit`` s."""
        deadline = time.monotonic() + limit
        seen = -1
        while len(self.events) != seen and time.monotonic() < deadline:
            seen = len(self.events)
            time.sleep(quiet)
        self._stop.set()
        self._thread.join(timeout=5)
        self.node.destroy_node()
        rclpy.shutdown()
