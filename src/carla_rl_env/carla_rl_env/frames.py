"""Assemble one simulator frame from the bridge's per-topic messages, keyed by their sim-time stamp.

The bridge publishes every message of a frame with that frame's sim time in ``header.stamp``; each topic
arrives in order, but topics interleave arbitrarily. A frame is complete when every *required* topic
(vehicle status, odometry, the configured cameras) has delivered its message for that stamp and a
``/carla/status`` has arrived since the previous frame. Event topics (collision, lane invasion) are
optional: they are attached to the frame of their stamp, and one that arrives after its frame was closed
is counted as late and attached to the next frame rather than lost.

Anomalies are counted per kind (``duplicate``, ``out_of_order``, ``late``, ``incomplete_dropped``,
``status_not_increasing``, ``simulator_restart``) so the node can log each kind once instead of once per
message. A ``/carla/status`` whose frame number goes back means a new simulator: everything is forgotten.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable


@dataclass
class PartialFrame:
    stamp_ns: int
    parts: dict[str, Any] = field(default_factory=dict)
    events: dict[str, list[Any]] = field(default_factory=dict)
    first_seen: float = 0.0


class FrameAssembler:
    """Collects messages by stamp; ``add`` returns the completed frames (oldest first)."""

    def __init__(self, required: Iterable[str], events: Iterable[str] = ()):
        self.required = frozenset(required)
        self.event_topics = frozenset(events)
        self.pending: dict[int, PartialFrame] = {}
        self.last_closed_ns = -1
        self.status_frames: list[int] = []  # /carla/status frame numbers not yet assigned to a frame
        self.last_frame_number = -1
        self.carry_events: dict[str, list[Any]] = {}
        self.anomalies: Counter[str] = Counter()

    def reset(self) -> None:
        """Forget partial frames (after a teleport the old ones can only confuse)."""
        self.pending.clear()
        self.status_frames.clear()
        self.carry_events.clear()

    def restart(self) -> None:
        """Forget everything, stamps included: a new simulator (a restart, or CARLA loading a world) counts
        frames and sim time from zero again, and its messages would all look out of order."""
        self.reset()
        self.pending.clear()
        self.last_closed_ns = -1
        self.last_frame_number = -1

    def add_status(self, frame_number: int) -> None:
        if frame_number < self.last_frame_number:  # frame numbers only go back with a new simulator
            self.anomalies["simulator_restart"] += 1
            self.restart()
        elif frame_number == self.last_frame_number:
            self.anomalies["status_not_increasing"] += 1
        self.last_frame_number = max(self.last_frame_number, frame_number)
        self.status_frames.append(frame_number)

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
        done = []
        while self.status_frames:
            complete = [s for s in sorted(self.pending) if self.required <= self.pending[s].parts.keys()]
            if not complete:
                break
            stamp = complete[0]
            frame = self.pending.pop(stamp)
            # frames older than this one never completed: their messages were lost
            for older in [s for s in self.pending if s < stamp]:
                self.anomalies["incomplete_dropped"] += 1
                del self.pending[older]
                if len(self.status_frames) > 1:  # its status message belongs to the lost frame
                    self.status_frames.pop(0)
            self.last_closed_ns = stamp
            events = frame.events
            for topic, msgs in self.carry_events.items():
                events.setdefault(topic, [])[:0] = msgs
            self.carry_events = {}
            done.append((stamp, self.status_frames.pop(0), frame.parts, events))
        return done

    def missing(self, now: float, timeout: float) -> tuple[int, list[str]] | None:
        """The oldest pending frame older than ``timeout`` and the required topics it still lacks."""
        for stamp in sorted(self.pending):
            frame = self.pending[stamp]
            if now - frame.first_seen >= timeout:
                return stamp, sorted(self.required - frame.parts.keys())
        return None
