"""When an episode ends, and why: the ``env.episode`` rules, checked once per step.

Termination (the MDP ended: ``goal_reached``, ``collision``, ``off_road``, ``route_deviation``, ``wrong_way``)
comes before truncation (the episode was cut: ``time_limit``, ``max_episode_steps``, ``stuck``), and within
each the first rule that holds names the reason, in that order.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

from carla_rl_env.route import RouteTracker

if TYPE_CHECKING:
    from carla_rl_env.task import Frame


class EpisodeEnd(NamedTuple):
    terminated: bool
    truncated: bool
    reason: str  # "" while the episode runs


class Termination:
    """The episode's clocks (time on the route, time standing still) and its end rules."""

    def __init__(self, episode: dict[str, Any], dt: float):
        self.cfg = episode
        self.dt = dt
        self.time_limit = math.inf
        self.elapsed = 0.0
        self.stuck_time = 0.0

    def reset(self, route_length: float) -> None:
        """Start the clocks; the time limit is the route driven at ``min_average_speed``, plus a margin."""
        ep = self.cfg
        self.time_limit = route_length / max(ep["min_average_speed"], 1e-3) + ep["time_limit_margin"]
        self.elapsed = 0.0
        self.stuck_time = 0.0

    def goal_reached(self, route: RouteTracker) -> bool:
        return route.remaining <= self.cfg["goal_radius"]

    def step(
        self, frame: Frame, route: RouteTracker, off_road: float, heading_error: float, goal_reached: bool, steps: int
    ) -> EpisodeEnd:
        """Advance the clocks by one step and check the rules for ``frame``, the episode's ``steps``-th.

        :param off_road: fraction of the car's footprint off the road
        :param heading_error: rad between the car and the route
        """
        ep = self.cfg
        self.elapsed += self.dt
        self.stuck_time = self.stuck_time + self.dt if frame.speed < ep["stuck_speed"] else 0.0
        if goal_reached:
            return EpisodeEnd(True, False, "goal_reached")
        if frame.collisions and ep["terminate_on_collision"]:
            return EpisodeEnd(True, False, "collision")
        if ep["terminate_on_off_road"] and off_road >= ep["off_road_fraction"]:
            return EpisodeEnd(True, False, "off_road")
        if route.deviation > ep["max_route_deviation"]:
            return EpisodeEnd(True, False, "route_deviation")
        if abs(heading_error) > math.radians(ep["wrong_way_angle_deg"]) and frame.speed > 1.0:
            return EpisodeEnd(True, False, "wrong_way")
        if self.elapsed >= self.time_limit - 1e-9:  # sums of dt carry rounding errors
            return EpisodeEnd(False, True, "time_limit")
        if 0 < ep["max_episode_steps"] <= steps:
            return EpisodeEnd(False, True, "max_episode_steps")
        if self.stuck_time >= ep["stuck_seconds"] - 1e-9:
            return EpisodeEnd(False, True, "stuck")
        return EpisodeEnd(False, False, "")
