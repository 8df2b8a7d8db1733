"""The ``main`` of our long-running node processes (simulator, env node, viz node, composed sim + env)."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Sequence

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from carla_rl_common.dds import use_default_profile

#: the signal (SIGINT, SIGTERM) that stopped the last :func:`spin_nodes`, for a command to say why it ended
stop_signal: signal.Signals | None = None


def _note_stop_signals() -> None:
    """Remember which stop signal comes; rclpy's handler (installed by ``rclpy.init``) shuts the context down,
    then calls this one. SIGINT raises KeyboardInterrupt as before unless it was ignored (a launcher started
    in the background passes it on ignored; rclpy's handler takes it all the same)."""
    interrupt = callable(signal.getsignal(signal.SIGINT))  # Python's handler (or a launcher's), not SIG_IGN

    def note(signum: int, frame) -> None:
        global stop_signal
        stop_signal = signal.Signals(signum)
        if signum == signal.SIGINT and interrupt:
            raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, note)


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
    _note_stop_signals()
    rclpy.init(args=args)
    try:
        nodes = list(make_nodes())
    except usage_errors as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    except KeyboardInterrupt:  # stopped while it built its nodes (a town's map, say)
        rclpy.try_shutdown()
        return 0
    except Exception:
        if rclpy.ok() and stop_signal is None:
            raise
        return 0  # a stop signal shut rclpy down under a node's constructor
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
    except Exception:
        # rclpy's signal handler shuts the context down under a running loop: whatever call comes next (a wait
        # set, a publisher's subscription count) fails with RCLError; and a KeyboardInterrupt raised while
        # pybind11 converts a call's arguments comes out as a RuntimeError. After a stop signal, that is the
        # stop, not a fault (rclpy shuts the context down from its own thread, so it may still look ok)
        if rclpy.ok() and stop_signal is None:
            raise
    finally:
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
