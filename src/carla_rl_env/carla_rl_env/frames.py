"""Assemble one simulator frame from the bridge's per-topic messages, keyed by their sim-time stamp.

The bridge publishes every message of a frame with that frame's sim time in ``header.stamp``; each topic
arrives in order, but topics interleave arbitrarily. A frame is complete when every *required* topic
(vehicle status, odometry, the configured cameras) has delivered its message for that stamp and a
``/carla/status`` with a new frame number has arrived since the previous frame (:class:`FrameAssembler`
says how frames get their numbers). Event topics (collision, lane invasion) are
optional: they are attached to the frame of their stamp, and one that arrives after its frame was closed
is counted as late and attached to the next frame rather than lost.

Anomalies are counted per kind (``duplicate``, ``out_of_order``, ``late``, ``incomplete_dropped``,
``late_status``, ``missing_status``, ``simulator_restart``) so the node can log each kind once instead of once per
message. A ``/carla/status`` whose frame number goes back means a new simulator: everything is forgotten.

:func:`frame_from_messages` turns one assembled frame into the task's :class:`~carla_rl_env.task.Frame`: the env
node and the offline evaluator (``carla_rl_bags``) both build theirs with it, and the in-process env applies the
same value conversions (:mod:`carla_rl_common.codec`) to the simulator's numbers.

The other vehicles come from the bridge's ``/carla/markers`` (a box per actor, keyed by actor id, no
velocities): :func:`carla_rl_common.codec.marker_boxes` reads them and :class:`VehicleTracker` gives each one a
velocity by differencing its position between consecutive marker messages. The in-process adapter feeds the
same tracker the simulator's boxes each tick, so both paths observe identical velocities.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from carla_rl_common import bridge, codec
from carla_rl_env.task import Frame

# The parts of a frame, as the assembler keys them: the ego's state and each camera required, events optional.
VSTATUS, ODOM, COLLISION, LANE_INVASION = "vehicle_status", "odometry", "collision", "lane_invasion"
#: The other vehicles of a frame (``(boxes, velocities)`` read from that tick's ``/carla/markers``): a required
#: part when the config needs them, since DDS orders no topic against another and the frame must not close on
#: the previous tick's markers.
VEHICLES = "vehicles"


def image_part(camera_id: str) -> str:
    """The part key of a camera's image."""
    return f"image:{camera_id}"


@dataclass
class PartialFrame:
    stamp_ns: int
    parts: dict[str, Any] = field(default_factory=dict)
    events: dict[str, list[Any]] = field(default_factory=dict)
    first_seen: float = 0.0


class FrameAssembler:
    """Collects messages by stamp; ``add`` returns the completed frames (oldest first).

    Frame numbers come from ``/carla/status``, which carries no stamp. The bridge publishes a status with frame 0
    at start-up (before any tick) and repeats the last frame number whenever ``synchronous_mode_running``
    changes: PAUSE -> (f, False); STEP_ONCE -> (f, True), a tick, (f+1, True), (f+1, False); PLAY -> (f, True)
    (ros-bridge carla_status_publisher.py, bridge.py ``process_run_state``). So a status only says "frame n was
    ticked" the first time its number comes: frame 0 and repeated numbers are ignored. In synchronous mode
    (``add_status`` given the fixed delta) every tick advances sim time by exactly that much, so a frame's
    number is the last frame's plus the ticks between their stamps: a lost status, a frame lost beside it or a
    status whose frame a reset dropped cannot shift the numbers of the frames after it. Without a fixed delta
    (asynchronous mode) statuses are matched to frames in order.
    """

    def __init__(self, required: Iterable[str], events: Iterable[str] = ()):
        self.required = frozenset(required)
        self.event_topics = frozenset(events)
        self.pending: dict[int, PartialFrame] = {}
        self.carry_events: dict[str, list[Any]] = {}
        self.anomalies: Counter[str] = Counter()
        self.restart()

    def reset(self) -> None:
        """Forget partial frames and their events (after a teleport the old ones can only confuse); the frame
        numbering goes on."""
        self.pending.clear()
        self.carry_events.clear()

    def restart(self) -> None:
        """Forget everything, stamps and frame numbers included: a new simulator (a restart, or CARLA loading a
        world) counts frames and sim time from zero again, and its messages would all look out of order."""
        self.reset()
        self.statuses: list[int] = []  # frame numbers of /carla/status newer than the last frame's, in order
        self.last_status = -1  # the highest frame number a status carried
        self.last_number = -1  # the last closed frame's number
        self.last_closed_ns = -1  # and its stamp
        self.tick_ns = 0  # synchronous mode's fixed delta (0: unknown or asynchronous)

    def add_status(self, frame_number: int, fixed_delta_seconds: float = 0.0) -> bool:
        """Take one /carla/status; ``fixed_delta_seconds`` when it reports synchronous mode (else 0). True when
        its frame number went back: a new simulator, and everything was forgotten."""
        restarted = frame_number < self.last_status
        if restarted:
            self.anomalies["simulator_restart"] += 1
            self.restart()
        self.tick_ns = round(fixed_delta_seconds * 1e9) if fixed_delta_seconds > 0 else 0
        repeated, self.last_status = frame_number == self.last_status, frame_number
        if repeated or frame_number == 0:  # a run-state change, or the start-up status: no new tick
            return restarted
        if frame_number <= self.last_number:  # its frame was closed without it (close_without_status)
            self.anomalies["late_status"] += 1
        else:
            self.statuses.append(frame_number)
        return restarted

    def add(self, topic: str, stamp_ns: int, msg: Any, now: float = 0.0) -> list[tuple[int, int, dict, dict]]:
        """Add one message; returns ``[(stamp_ns, frame_number, parts, events), ...]`` of completed frames."""
        if stamp_ns <= self.last_closed_ns:
            if topic in self.event_topics:
                self.anomalies["late"] += 1
                self.carry_events.setdefault(topic, []).append(msg)
            else:
                self.anomalies["out_of_order" if stamp_ns < self.last_closed_ns else "duplicate"] += 1
            return []
        frame = self.pending.get(stamp_ns)
        if frame is None:
            frame = self.pending[stamp_ns] = PartialFrame(stamp_ns, first_seen=now)
        if topic in self.event_topics:
            frame.events.setdefault(topic, []).append(msg)
        elif topic in frame.parts:
            self.anomalies["duplicate"] += 1
            return []
        else:
            frame.parts[topic] = msg
        return self.pop_complete()

    def pop_complete(self) -> list[tuple[int, int, dict, dict]]:
        """Close the complete frames for which a status newer than the last frame's has come."""
        done = []
        while self.statuses:
            stamp = self._oldest_complete()
            if stamp is None:
                break
            done.append(self._close(stamp, inferred=False))
        return done

    def close_without_status(self, now: float, grace: float) -> list[tuple[int, int, dict, dict]]:
        """Close the oldest frames that have every required part but no /carla/status after ``grace`` s,
        numbered as the next frame: one lost status would otherwise hold every later frame. A status that
        still comes for such a number is ignored."""
        done = []
        while not self.statuses and self.pending:
            stamp = min(self.pending)
            if not self.required <= self.pending[stamp].parts.keys() or now - self.pending[stamp].first_seen < grace:
                break
            self.anomalies["missing_status"] += 1
            done.append(self._close(stamp, inferred=True))
        return done

    def _oldest_complete(self) -> int | None:
        return next((s for s in sorted(self.pending) if self.required <= self.pending[s].parts.keys()), None)

    def _close(self, stamp: int, inferred: bool) -> tuple[int, int, dict, dict]:
        frame = self.pending.pop(stamp)
        # frames older than this one never completed: their messages were lost (before the first complete frame,
        # the node joined a frame whose first messages were sent before its subscriptions matched: no fault)
        for older in [s for s in self.pending if s < stamp]:
            if self.last_number >= 0:
                self.anomalies["incomplete_dropped"] += 1
            del self.pending[older]
            if len(self.statuses) > 1:  # (matched in order) its status belongs to the lost frame
                self.statuses.pop(0)
        if self.tick_ns and self.last_number >= 0:
            number = self.last_number + max(1, round((stamp - self.last_closed_ns) / self.tick_ns))
        elif inferred or not self.statuses:
            number = (self.last_number if self.last_number >= 0 else self.last_status) + 1
        else:
            number = self.statuses[0]
        self.statuses = [n for n in self.statuses if n > number]
        self.last_number, self.last_closed_ns = number, stamp
        events = frame.events
        for topic, msgs in self.carry_events.items():
            events.setdefault(topic, [])[:0] = msgs
        self.carry_events = {}
        return stamp, number, frame.parts, events

    def missing(self, now: float, timeout: float) -> tuple[int, list[str]] | None:
        """The oldest pending frame older than ``timeout`` and the required topics it still lacks."""
        for stamp in sorted(self.pending):
            frame = self.pending[stamp]
            if now - frame.first_seen >= timeout:
                return stamp, sorted(self.required - frame.parts.keys())
        return None


def frame_assembler(camera_ids: list[str], vehicles: bool = False) -> FrameAssembler:
    """The assembler of the env's frames: vehicle status, odometry, each camera and, with ``vehicles``, the
    tick's other vehicles (:data:`VEHICLES`) required; events optional."""
    required = [VSTATUS, ODOM, *(image_part(c) for c in camera_ids), *([VEHICLES] if vehicles else [])]
    return FrameAssembler(required=required, events=[COLLISION, LANE_INVASION])


def frame_from_messages(
    stamp_ns: int,
    frame_number: int,
    parts: dict[str, Any],
    events: dict[str, list[Any]],
    camera_ids: list[str],
    vehicles: np.ndarray,
    vehicle_velocities: np.ndarray | None = None,
) -> Frame:
    """The :class:`Frame` of one assembled frame's bridge messages (images already as arrays), with the other
    vehicles as last read from the markers."""
    status, odom = parts[VSTATUS], parts[ODOM]
    x, y, yaw = bridge.pose_to_xyyaw(odom.pose.pose)
    accel = status.acceleration.linear  # map frame, as CARLA reports it
    collisions = [
        (int(e.other_actor_id), codec.impulse_norm(e.normal_impulse.x, e.normal_impulse.y, e.normal_impulse.z))
        for e in events.get(COLLISION, [])
    ]
    invasions = [int(m) for e in events.get(LANE_INVASION, []) for m in e.crossed_lane_markings]
    return Frame(
        stamp_ns=stamp_ns,
        frame=frame_number,
        x=x,
        y=y,
        yaw=yaw,
        speed=float(status.velocity),
        acceleration=codec.longitudinal_acceleration(accel.x, accel.y, yaw),
        control=bridge.msg_to_control(status.control),
        collisions=collisions,
        lane_invasions=invasions,
        images={c: parts[image_part(c)] for c in camera_ids},
        vehicles=vehicles,
        vehicle_velocities=vehicle_velocities,
    )


class VehicleTracker:
    """World-frame velocities ``(vx, vy)`` in m/s of the other vehicles, by differencing each one's position
    with its position at the previous update (matched by actor id) over the stamps' interval.

    A vehicle first seen (or seen again after missing an update's list) gets ``(0, 0)``, as does one whose
    displacement implies more than ``MAX_SPEED`` (a teleport). A repeated stamp returns the velocities already
    computed for it; a stamp that goes back (a new simulator) starts over.
    """

    MAX_SPEED = 70.0  # m/s

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.stamp_ns = -1
        self.ids = np.zeros(0, np.int64)
        self.xy = np.zeros((0, 2))
        self._prev: tuple[int, np.ndarray, np.ndarray] | None = None  # stamp, ids, xy of the update before

    def update(self, stamp_ns: int, ids: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """The velocities ``(N, 2)`` of the vehicles ``ids`` (rows of ``boxes``, x and y first) at ``stamp_ns``."""
        ids = np.asarray(ids, dtype=np.int64)
        xy = np.asarray(boxes, dtype=np.float64)[:, :2].reshape(len(ids), 2)
        if stamp_ns < self.stamp_ns:
            self.reset()
        elif stamp_ns == self.stamp_ns and self._prev is not None:
            self.stamp_ns, self.ids, self.xy = self._prev  # the same frame again: difference with the one before
        velocities = np.zeros((len(ids), 2))
        if self.stamp_ns >= 0 and len(ids) and len(self.ids) and stamp_ns > self.stamp_ns:
            order = np.argsort(self.ids, kind="stable")
            known = self.ids[order]
            at = np.minimum(np.searchsorted(known, ids), len(known) - 1)
            found = known[at] == ids
            v = (xy - self.xy[order[at]]) / ((stamp_ns - self.stamp_ns) * 1e-9)
            ok = found & (np.hypot(v[:, 0], v[:, 1]) <= self.MAX_SPEED)
            velocities[ok] = v[ok]
        self._prev = (self.stamp_ns, self.ids, self.xy)
        self.stamp_ns, self.ids, self.xy = stamp_ns, ids, xy.copy()
        return velocities
