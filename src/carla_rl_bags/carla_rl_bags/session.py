"""An rclpy session for the bag tools: a private context, and SIGINT / SIGTERM turned into a stop request.

The recorder and the player run as their own processes (signals end them cleanly: the bag is closed, the
last messages published) or in a thread of a bigger program (a ``stop`` event ends them; signals stay the
program's). A private context leaves any rclpy the caller already initialized untouched.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import rclpy
from rclpy.context import Context

from carla_rl_common.dds import use_default_profile

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def ros_session(name: str, ros_args: list[str] | None, stop: threading.Event) -> Iterator[Context]:
    """Init a context with ``ros_args`` (``--ros-args ...``); in the main thread, signals set ``stop``."""
    context = Context()
    use_default_profile()
    rclpy.init(args=[name, *(ros_args or [])], context=context)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in STOP_SIGNALS}
    try:
        yield context
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        context.try_shutdown()
