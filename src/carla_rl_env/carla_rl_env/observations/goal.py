"""The goal: the route's last waypoint in the ego frame, divided by ``env.observation.goal_scale``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from gymnasium import spaces

from carla_rl_common.geometry import world_to_ego
from carla_rl_env.observations.base import ObservationContext, ObservationPart

if TYPE_CHECKING:
    from carla_rl_env.task import Frame


class GoalObservation(ObservationPart):
    """``(x, y) / goal_scale`` float32 of the goal (x forward, y left); never stacked, as it is what hindsight
    relabelling (``carla_rl_agents.algos.OnPolicyHER``) replaces."""

    key = "goal"
    stacked = False

    def __init__(self, goal_scale: float):
        self.goal_scale = goal_scale

    @property
    def space(self) -> spaces.Box:
        return spaces.Box(-np.inf, np.inf, (2,), np.float32)

    def observe(self, frame: Frame, context: ObservationContext) -> np.ndarray:
        goal = context.route.waypoints[-1]
        gx, gy = world_to_ego((goal.x, goal.y), frame.x, frame.y, frame.yaw)
        return np.array([gx / self.goal_scale, gy / self.goal_scale], np.float32)
