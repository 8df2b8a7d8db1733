"""Reward terms: named functions of one step's :class:`StepContext`, weighted and summed by config.

``env.reward.terms`` maps term names to weights; each step message carries every configured term's
weighted value, so the reward can be taken apart when debugging. ``carla_paper`` is the reward of the
CARLA paper (Dosovitskiy et al., 2017) that the seed project used:

    r = 1000 (d_prev - d) + 0.05 (v - v_prev) - 0.00002 (c - c_prev) - 2 (s - s_prev) - 2 (o - o_prev)

with d the remaining route distance in km, v the speed in km/h, c the accumulated collision damage, s the
fraction of the car's footprint off the road and o the fraction in an opposite-direction lane. CARLA 0.9
no longer reports s and o; we compute both from the OpenDRIVE lanes and the car's bounding box
(:func:`footprint_fractions`), so the term means the same on the embedded simulator and on real CARLA.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from carla_rl_common.bridge import LANE_MARKING_OTHER, LANE_MARKING_TYPES
from carla_rl_common.config import ConfigError
from carla_rl_env.route import LEAD_HORIZON, RouteTracker
from carla_rl_env.settings import ENV_SCHEMA


@dataclass
class StepContext:
    """What the reward terms see of one step (``*_prev`` values are from the step before)."""

    dt: float
    speed: float  # m/s
    speed_prev: float
    target_speed: float  # m/s, already capped by the speed limit
    remaining: float  # m of route left
    remaining_prev: float
    lateral_offset: float  # m from the route
    heading_error: float  # rad between the car and the route
    steer: float
    steer_prev: float
    collision_impulse: float  # sum of |normal impulse| of this step's collision events (N s)
    collision_damage: float  # accumulated impulse, the CARLA paper's c
    collision_damage_prev: float
    lane_invasion_cost: float  # summed cost of this step's crossed markings (LaneMarkingCosts)
    off_road: float  # fraction of the footprint off the road, the paper's s
    off_road_prev: float
    opposite_lane: float  # fraction in an opposite-direction lane, the paper's o
    opposite_lane_prev: float
    goal_reached: bool


def route_progress(c: StepContext) -> float:
    """Metres of route covered this step."""
    return c.remaining_prev - c.remaining


def paced_progress(c: StepContext) -> float:
    """Metres of route covered this step, counted up to what the target speed covers in a step: progress
    without a premium for speeding (``route_progress`` pays for every metre, so it pays to rush turns)."""
    return min(c.remaining_prev - c.remaining, max(c.target_speed, 0.0) * c.dt)


def speed_tracking(c: StepContext) -> float:
    """1 at the target speed, falling linearly to 0 at standstill and at twice the target."""
    if c.target_speed <= 0:
        return 0.0
    return 1.0 - min(abs(c.speed - c.target_speed) / c.target_speed, 1.0)


def lane_centering(c: StepContext) -> float:
    return -min(abs(c.lateral_offset), 2.0)


def heading_alignment(c: StepContext) -> float:
    return math.cos(c.heading_error) - 1.0


def collision(c: StepContext) -> float:
    """-1 per step with a contact, more for harder ones (impulse in units of 1000 N s)."""
    return -(1.0 + c.collision_impulse / 1000.0) if c.collision_impulse > 0 else 0.0


def lane_invasion(c: StepContext) -> float:
    """Minus the cost of the markings crossed this step (``reward.lane_marking_costs``)."""
    return -c.lane_invasion_cost


def off_road(c: StepContext) -> float:
    return -c.off_road


def steering_smoothness(c: StepContext) -> float:
    return -abs(c.steer - c.steer_prev)


def goal_bonus(c: StepContext) -> float:
    return 1.0 if c.goal_reached else 0.0


def time_penalty(c: StepContext) -> float:
    return -1.0


def carla_paper(c: StepContext) -> float:
    return (
        1000.0 * (c.remaining_prev - c.remaining) / 1000.0
        + 0.05 * (c.speed - c.speed_prev) * 3.6
        - 0.00002 * (c.collision_damage - c.collision_damage_prev)
        - 2.0 * (c.off_road - c.off_road_prev)
        - 2.0 * (c.opposite_lane - c.opposite_lane_prev)
    )


REWARD_TERMS: dict[str, Callable[[StepContext], float]] = {
    f.__name__: f
    for f in (
        route_progress,
        paced_progress,
        speed_tracking,
        lane_centering,
        heading_alignment,
        collision,
        lane_invasion,
        off_road,
        steering_smoothness,
        goal_bonus,
        time_penalty,
        carla_paper,
    )
}


class Reward:
    """The configured weighted sum of terms."""

    def __init__(self, weights: dict[str, float], source: str = "<config>"):
        for name, weight in weights.items():
            if name not in REWARD_TERMS:
                raise ConfigError(
                    source,
                    f"env.reward.terms.{name}",
                    f"unknown reward term (known: {', '.join(sorted(REWARD_TERMS))})",
                )
            if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not math.isfinite(weight):
                raise ConfigError(source, f"env.reward.terms.{name}", f"weight must be a finite number, got {weight!r}")
        self.names = tuple(weights)
        self.weights = np.array([float(weights[n]) for n in self.names])
        self._terms = [REWARD_TERMS[n] for n in self.names]

    def __call__(self, ctx: StepContext) -> np.ndarray:
        """Weighted value of each term (sum them for the reward)."""
        return self.weights * np.array([term(ctx) for term in self._terms])


class LaneMarkingCosts:
    """The cost of crossing lane markings, from ``reward.lane_marking_costs`` (by ``carla.LaneMarkingType``
    name: crossing a solid line, a curb or grass costs more than a broken line). The bridge reports the codes
    0..10 (``crossed_lane_markings``, bridge.LANE_MARKING_TYPES); an unknown code costs what ``other`` does."""

    def __init__(self, reward: dict[str, Any]):
        costs = {**ENV_SCHEMA["reward"]["lane_marking_costs"], **reward.get("lane_marking_costs", {})}
        self.by_code = {LANE_MARKING_TYPES[name]: float(cost) for name, cost in costs.items()}
        self.default = self.by_code[LANE_MARKING_OTHER]

    def __call__(self, markings: list[int] | tuple[int, ...]) -> float:
        """The summed cost of the crossed ``markings`` (codes)."""
        return sum(self.by_code.get(int(m), self.default) for m in markings)


class TargetSpeed:
    """The speed the reward asks for: ``reward.target_speed``, capped by the lane's speed limit and, when
    configured, by the route's curves ahead (``curve_lateral_acceleration``) and by the distance to stop
    ``lead_gap`` m behind the vehicle ahead on the route (both at ``reward.deceleration``): a speed profile
    as a motion planner would drive, so that taking a junction turn at full speed earns nothing."""

    def __init__(self, reward: dict[str, Any]):
        self.cfg = reward

    def __call__(self, route: RouteTracker, speed_limit: float, lead_gap: float) -> float:
        """The target speed (m/s) on ``route`` where the lane allows ``speed_limit`` (0: no limit) and the lead
        vehicle is ``lead_gap`` m ahead (``LEAD_HORIZON``: none)."""
        reward = self.cfg
        target = reward["target_speed"]
        if speed_limit > 0:
            target = min(target, speed_limit)
        decel = float(reward.get("deceleration", 2.5))
        if reward.get("curve_lateral_acceleration", 0.0) > 0:
            target = min(target, route.curve_speed(float(reward["curve_lateral_acceleration"]), decel))
        if reward.get("lead_gap", 0.0) > 0 and lead_gap < LEAD_HORIZON:
            target = min(target, math.sqrt(2.0 * decel * max(lead_gap - float(reward["lead_gap"]), 0.0)))
        return target


def footprint_points(
    x: float, y: float, yaw: float, length: float, width: float, n_long: int = 5, n_lat: int = 3
) -> np.ndarray:
    """A grid of points covering the car's bounding box, in the map frame."""
    u = (np.linspace(-0.5, 0.5, n_long) * length)[:, None]
    v = (np.linspace(-0.5, 0.5, n_lat) * width)[None, :]
    c, s = math.cos(yaw), math.sin(yaw)
    px = x + c * u - s * v
    py = y + s * u + c * v
    return np.stack([px.ravel(), py.ravel()], axis=1)


def footprint_fractions(network, x: float, y: float, yaw: float, length: float, width: float) -> tuple[float, float]:
    """(off-road fraction, opposite-lane fraction) of the car's footprint, from the OpenDRIVE lanes.

    A footprint point is off-road when no driving lane contains it, and in the opposite lane when the
    driving lane containing it runs against the car's heading (more than 90 degrees off).
    """
    points = footprint_points(x, y, yaw, length, width)
    located = network.locate_many(points, np.full(len(points), yaw))
    on_road = np.asarray(located["on_road"], dtype=bool)
    opposite = on_road & (np.abs(np.asarray(located["heading_error"])) > math.pi / 2)
    n = float(len(points))
    return float((~on_road).sum() / n), float(opposite.sum() / n)
