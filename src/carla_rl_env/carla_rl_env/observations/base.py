"""What every observation part is, what it reads besides the frame, and how frames are stacked."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from gymnasium import spaces

from carla_rl_env.route import RouteTracker

if TYPE_CHECKING:
    from carla_rl_env.task import Frame


@dataclass(frozen=True)
class ObservationContext:
    """The task's view of the frame that the parts share, computed once per frame by the task (the reward
    reads the same values)."""

    route: RouteTracker  # already updated with the frame
    in_junction: Sequence[bool]  # per route waypoint
    speed_limit: float  # m/s, of the lane the car is on
    target_speed: float  # m/s, the reward's speed profile (rewards.TargetSpeed)
    lead: tuple[float, float]  # (gap in m, closing speed in m/s) to the vehicle ahead on the route


class ObservationPart(ABC):
    """One entry of the observation dict."""

    key: str
    #: Whether ``env.observation.frame_stack`` stacks this part's frames along its last axis.
    stacked: bool = True

    @property
    @abstractmethod
    def space(self) -> spaces.Box:
        """The space of one frame."""

    @abstractmethod
    def observe(self, frame: Frame, context: ObservationContext) -> np.ndarray:
        """This part of the observation of ``frame``, in :attr:`space`."""

    def reset(self) -> None:  # noqa: B027 - optional hook: most parts keep no state between frames
        """Forget the last episode (called at episode start)."""


def stacked_space(space: spaces.Box, n: int) -> spaces.Box:
    """``space`` of ``n`` frames concatenated along the last axis."""
    return spaces.Box(
        np.concatenate([space.low] * n, axis=-1), np.concatenate([space.high] * n, axis=-1), dtype=space.dtype
    )


class ObservationBuilder:
    """The observation dict of ``parts`` (in their order), the stacked ones holding the last ``frame_stack``
    frames, oldest first."""

    def __init__(self, parts: Sequence[ObservationPart], frame_stack: int = 1):
        self.parts = list(parts)
        self.frame_stack = max(1, int(frame_stack))
        self._history: list[dict[str, np.ndarray]] = []

    @property
    def space(self) -> spaces.Dict:
        return spaces.Dict(
            {p.key: stacked_space(p.space, self.frame_stack) if p.stacked else p.space for p in self.parts}
        )

    def reset(self) -> None:
        self._history = []
        for part in self.parts:
            part.reset()

    def observe(self, frame: Frame, context: ObservationContext) -> dict[str, np.ndarray]:
        current = {p.key: p.observe(frame, context) for p in self.parts if p.stacked}
        self._history = (self._history + [current])[-self.frame_stack :]
        while len(self._history) < self.frame_stack:  # the first frames of an episode repeat the oldest
            self._history.insert(0, self._history[0])
        return {
            p.key: np.concatenate([h[p.key] for h in self._history], axis=-1)
            if p.stacked
            else p.observe(frame, context)
            for p in self.parts
        }
