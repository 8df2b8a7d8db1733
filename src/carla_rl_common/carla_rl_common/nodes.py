"""The ``main`` of our long-running node processes (simulator, env node, viz node, composed sim + env)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from carla_rl_common.dds import use_default_profile


def spin_nodes(
    prog: str,
    make_nodes: Callable[[], Sequence[Node]],
    usage_errors: tuple[type[Exception], ...],
    args: list[str] | None = None,
    run: Callable[[SingleThreadedExecutor, Sequence[Node]], None] | None = None,
) -> int:
    """Create the nodes, serve them on one executor until Ctrl-C or shutdown, clean up; the exit code.

    ``usage_errors`` raised while creating the nodes (a bad config, a missing map) print one line naming
    ``prog`` and give 2, no traceback. The nodes are added in the given order (the executor serves ready
    callbacks in that order); ``run`` replaces ``executor.spin()`` (the simulator's own loop).
    """
    use_default_profile()
    rclpy.init(args=args)
    try:
        nodes = list(make_nodes())
    except usage_errors as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    executor = SingleThreadedExecutor()
    for node in nodes:
        executor.add_node(node)
    try:
        if run is None:
            executor.spin()
        else:
            run(executor, nodes)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
