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


class StopRequest(threading.Event):
    """A ``stop`` event that keeps which signal set it, so a tool's last line can say what ended it."""

    def __init__(self) -> None:
        super().__init__()
        self.signal_name = ""  # "SIGTERM", ...; "" while no signal set it


def stop_reason(stop: threading.Event, context: Context) -> str:
    """Why a session's loop ended, for its tool's last line: "stopped by SIGTERM", "stopped by its caller"
    (``stop.set()`` in the program), "its ROS context shut down"; "" when none of these (an error)."""
    if isinstance(stop, StopRequest) and stop.signal_name:
        return f"stopped by {stop.signal_name}"
    if stop.is_set():
        return "stopped by its caller"
    return "" if context.ok() else "its ROS context shut down"


@contextmanager
def ros_session(name: str, ros_args: list[str] | None, stop: threading.Event) -> Iterator[Context]:
    """Init a context with ``ros_args`` (``--ros-args ...``); in the main thread, signals set ``stop`` (and
    name themselves in it when it is a :class:`StopRequest`)."""
    context = Context()
    use_default_profile()
    rclpy.init(args=[name, *(ros_args or [])], context=context)

    def on_signal(signum: int, _frame: object) -> None:
        if isinstance(stop, StopRequest):
            stop.signal_name = signal.Signals(signum).name
        stop.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    try:
        yield context
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        context.try_shutdown()
