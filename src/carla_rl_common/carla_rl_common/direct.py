"""Hot-path subscriptions taken in a plain loop, outside rclpy's executor.

Every ``spin_once`` of rclpy's executor rebuilds its wait set from every entity of every node and wraps each
callback in a Task; between processes of the lockstep loop that Python work is most of a message's cost here
(benchmarks/RESULTS.md). :class:`DirectSubscriptions` waits on one wait set that holds only the subscriptions
of the loop (a Step, a command, a frame's state messages), takes every ready message and calls its callback
directly, in the order the subscriptions were added.

The subscriptions are ordinary ones of the node, so the node's executor may take their messages too (with
the same callbacks); :meth:`DirectSubscriptions.serve` spins that executor now and then (``COLD_PERIOD_S``)
for everything else: services, timers, coroutines, parameters. Both must run in the same thread.

Ctrl-C (or SIGTERM) makes rclpy's signal handler shut the context down under a running loop; the next wait
set then cannot be built. Every call here raises rclpy's ``ExternalShutdownException`` instead, which
``carla_rl_common.nodes.spin_nodes`` takes as the end of the process (no traceback).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rclpy.context import Context
from rclpy.executors import Executor, ExternalShutdownException
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from rclpy.service import Service
from rclpy.signals import SignalHandlerGuardCondition
from rclpy.subscription import Subscription
from rclpy.utilities import get_default_context, timeout_sec_to_nsec

#: how often a loop that takes its hot messages directly spins the executor for the rest (seconds)
COLD_PERIOD_S = 0.05


@contextmanager
def _shutdown_ends(context: Context) -> Iterator[None]:
    """Turn rclpy's errors of a context that was shut down meanwhile (a signal) into ExternalShutdownException."""
    if not context.ok():
        raise ExternalShutdownException()
    try:
        yield
    except (_rclpy.RCLError, TypeError, RuntimeError):
        if context.ok():
            raise
        raise ExternalShutdownException() from None


class DirectSubscriptions:
    """Subscriptions whose messages a loop takes without the executor (see the module docstring).

    One per process (a composed simulator + env node share it): ``spin_once`` serves every subscription of
    the process's hot path in one wait. Services registered with :meth:`wake_on` end a wait without
    being served, as does :attr:`kick` (a callback completed a future a coroutine awaits): the caller then
    spins its executor, so a request or a coroutine does not wait for the next ``COLD_PERIOD_S``.
    """

    def __init__(self, context: Context | None = None):
        self.context = context or get_default_context()
        self.subscriptions: list[Subscription] = []
        self.wake_services: list[Service] = []
        self.kick = False
        self._sigint = SignalHandlerGuardCondition(context=self.context)
        self._cold_due = 0.0  # monotonic time serve() spins the executor next

    def create_subscription(
        self, node: Node, msg_type: type, topic: str, callback: Callable, qos, *, raw: bool = False
    ) -> Subscription:
        """``node.create_subscription``, taken by :meth:`spin_once` from now on (in the order of creation)."""
        sub = node.create_subscription(msg_type, topic, callback, qos, raw=raw)
        self.subscriptions.append(sub)
        return sub

    def destroy_subscription(self, node: Node, sub: Subscription) -> None:
        """Stop taking ``sub`` and destroy it."""
        self.subscriptions.remove(sub)
        node.destroy_subscription(sub)

    def wake_on(self, service: Service) -> Service:
        """A request to ``service`` ends :meth:`spin_once`'s wait (its executor serves it); returns it."""
        self.wake_services.append(service)
        return service

    def spin_once(self, timeout_sec: float) -> bool:
        """Call the callbacks of every message there is, waiting up to ``timeout_sec`` for one if there is none.

        True: something else needs the executor (a woken-on service has a request, :attr:`kick`, Ctrl-C).
        Messages already there are taken without a wait set (a take costs ~2 us here, a wait ~90 us even
        when something is ready).
        """
        with _shutdown_ends(self.context):
            return self._spin_once(timeout_sec)

    def _spin_once(self, timeout_sec: float) -> bool:
        if self._take_ready() or self.kick:
            return self._woken(())
        wait_set = _rclpy.WaitSet(len(self.subscriptions), 1, 0, 0, len(self.wake_services), 0, self.context.handle)
        wait_set.clear_entities()
        for sub in self.subscriptions:
            wait_set.add_subscription(sub.handle)
        for srv in self.wake_services:
            wait_set.add_service(srv.handle)
        wait_set.add_guard_condition(self._sigint.handle)
        wait_set.wait(timeout_sec_to_nsec(timeout_sec))
        self._take_ready()
        return self._woken(wait_set.get_ready_entities("service") + wait_set.get_ready_entities("guard_condition"))

    def _take_ready(self) -> bool:
        """Take every message waiting on our subscriptions and call its callback: one message of each
        subscription per round, in their order, as rclpy's executor does per wait (a frame's messages are
        served together, before the next frame's).

        A round takes first and calls after. A publisher sends a frame's messages in order (the simulator its
        events before the state that closes the frame), but they come in while the round takes: a subscription
        that had nothing when its turn came is looked at once more when a later one had a message, so a
        callback never closes a frame whose earlier-sent event is already here ("late" lane invasions).
        """
        took = False
        while True:
            subs = list(self.subscriptions)
            batch = [self._take(sub) for sub in subs]
            last = max((i for i, msg in enumerate(batch) if msg is not None), default=-1)
            if last < 0:
                return took
            for i in range(last):
                if batch[i] is None:
                    batch[i] = self._take(subs[i])
            took = True
            for sub, msg in zip(subs, batch):
                if msg is not None and sub in self.subscriptions:  # a callback may have destroyed a later one
                    sub.callback(msg)

    @staticmethod
    def _take(sub: Subscription) -> Any:
        with sub.handle:
            taken = sub.handle.take_message(sub.msg_type, sub.raw)
        return None if taken is None else taken[0]

    def _woken(self, others) -> bool:
        woke, self.kick = self.kick or bool(others), False
        return woke

    def serve(self, executor: Executor, timeout_sec: float) -> None:
        """One round of a process's loop: :meth:`spin_once`, then one ``spin_once(0)`` of ``executor`` when
        something woke us for it or ``COLD_PERIOD_S`` passed since its last one.

        A constant executor timeout: rclpy's executor keeps serving the ready batch of its last wait only
        while ``spin_once`` gets the same arguments (a new value rebuilds the wait set per callback).
        """
        if self.spin_once(timeout_sec) or time.monotonic() >= self._cold_due:
            with _shutdown_ends(self.context):
                executor.spin_once(timeout_sec=0.0)
            self._cold_due = time.monotonic() + COLD_PERIOD_S

    def spin_until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Take messages until ``done()`` (True) or ``timeout`` seconds passed (False)."""
        deadline = time.monotonic() + timeout
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.spin_once(min(remaining, 0.1))
        return True

    def destroy(self) -> None:
        self._sigint.destroy()
        self.subscriptions.clear()
