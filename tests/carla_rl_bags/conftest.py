"""Fixtures of the bag tests: a ROS graph node spun in a thread (its own rclpy context), and waiting."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node


class Graph:
    """A node in a private context, spun in a thread; ``got[topic]`` = [(arrival monotonic, message)]."""

    def __init__(self) -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = Node("bag_test", context=self.context)
        self.got: dict[str, list[tuple[float, Any]]] = {}
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def listen(self, msg_type: Any, topic: str, qos: Any, raw: bool = False) -> None:
        """Keep every message of ``topic`` (its CDR bytes with ``raw``) with its arrival time."""
        self.got[topic] = []
        self.node.create_subscription(
            msg_type, topic, lambda m: self.got[topic].append((time.monotonic(), m)), qos, raw=raw
        )

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.02)

    def settle(self, quiet: float = 1.0, limit: float = 15.0) -> None:
        """Return once nothing arrived for ``quiet`` s (what is in flight gets in), at most ``limit`` s."""
        deadline, seen = time.monotonic() + limit, -1
        while sum(map(len, self.got.values())) != seen and time.monotonic() < deadline:
            seen = sum(map(len, self.got.values()))
            time.sleep(quiet)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.node.destroy_node()
        self.context.try_shutdown()


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def graph():
    g = Graph()
    yield g
    g.close()


@pytest.fixture(scope="module")
def module_graph():
    g = Graph()
    yield g
    g.close()


@pytest.fixture(scope="session")
def wait_for() -> Callable[[Callable[[], bool], float, str], None]:
    return _wait_for
