"""The driving task: one frame of bridge data in, observation, reward terms and episode end out.

This module has no ROS dependency. The env node feeds it frames assembled from the bridge's topics and the
in-process adapter feeds it frames straight from the simulator core, so both compute identical
observations and rewards for identical frames. :class:`DrivingTask` composes the parts, each in its own
module: the observation (:mod:`carla_rl_env.observations`, one module per part), the reward
(:mod:`carla_rl_env.rewards`), the episode end (:mod:`carla_rl_env.termination`) and the route progress
(:mod:`carla_rl_env.route`). The values several parts read (speed limit, target speed, lead vehicle) are
computed once per frame, here. This module also holds the frame, the transition and the episode statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gymnasium import spaces

from carla_rl_common.bridge import Control
from carla_rl_common.geometry import wrap_angle
from carla_rl_common.opendrive.types import RouteWaypoint
from carla_rl_env.actions import ActionMapper
from carla_rl_env.observations.base import ObservationBuilder, ObservationContext, ObservationPart
from carla_rl_env.observations.bev import BevObservation
from carla_rl_env.observations.goal import GoalObservation
from carla_rl_env.observations.images import CameraObservation
from carla_rl_env.observations.measurements import MeasurementLayout, MeasurementObservation
from carla_rl_env.rewards import LaneMarkingCosts, Reward, StepContext, TargetSpeed, footprint_fractions
from carla_rl_env.route import LEAD_HORIZON, RouteTracker
from carla_rl_env.settings import check_observation
from carla_rl_env.termination import Termination


@dataclass
class Frame:
    """Everything the task needs from one simulator frame (bridge messages already decoded)."""

    stamp_ns: int
    frame: int
    x: float
    y: float
    yaw: float
    speed: float  # m/s
    acceleration: float  # m/s^2, longitudinal (codec.longitudinal_acceleration)
    control: Control  # the control applied in this frame
    collisions: list[tuple[int, float]] = field(default_factory=list)  # (other actor id, |impulse|)
    lane_invasions: list[int] = field(default_factory=list)
    images: dict[str, np.ndarray] = field(default_factory=dict)  # sensor id -> (H, W, C) uint8
    vehicles: np.ndarray = field(default_factory=lambda: np.zeros((0, 6)))  # others: x, y, yaw, l, w, h
    # world-frame velocities (vx, vy) in m/s of the rows of ``vehicles`` (frames.VehicleTracker); None: unknown,
    # taken as standing still
    vehicle_velocities: np.ndarray | None = None


@dataclass
class Transition:
    observation: dict[str, np.ndarray]
    reward: float
    reward_terms: dict[str, float]
    terminated: bool
    truncated: bool
    reason: str


@dataclass
class EpisodeStats:
    length: int = 0
    episode_return: float = 0.0
    collisions: int = 0
    lane_invasions: int = 0
    distance: float = 0.0
    speed_sum: float = 0.0
    success: bool = False
    route_completion: float = 0.0
    reason: str = ""
    term_sums: dict[str, float] = field(default_factory=dict)

    @property
    def mean_speed(self) -> float:
        return self.speed_sum / self.length if self.length else 0.0

    def add_step(
        self, frame: Frame, prev: Frame, reward: float, terms: dict[str, float], route_completion: float
    ) -> None:
        """Count one step, from ``prev`` to ``frame``."""
        self.length += 1
        self.episode_return += reward
        self.collisions += len(frame.collisions)
        self.lane_invasions += len(frame.lane_invasions)
        self.distance += math.hypot(frame.x - prev.x, frame.y - prev.y)
        self.speed_sum += frame.speed
        self.route_completion = route_completion
        for name, value in terms.items():
            self.term_sums[name] += value


class DrivingTask:
    """Observation, reward and episode logic for one ego vehicle on one road network.

    Without a ``network`` (the map has not arrived yet) the task only answers its spaces.
    """

    def __init__(
        self,
        config: dict[str, Any],
        network,
        dt: float,
        vehicle_extent: tuple[float, float] = (4.7, 1.9),
        source: str = "<config>",
    ):
        self.cfg = config
        self.network = network
        self.dt = dt
        self.length, self.width = vehicle_extent
        self.actions = ActionMapper(config["action"], source)
        self.reward = Reward(config["reward"]["terms"], source)
        check_observation(config, source)
        obs = config["observation"]
        self.measurement_layout = MeasurementLayout(obs)
        self.measurement_names = self.measurement_layout.names
        self.nearby = self.measurement_layout.nearby_count
        self._measurements = MeasurementObservation(self.measurement_layout, float(obs.get("nearby_radius", 30.0)))
        self._goal = GoalObservation(obs["goal_scale"])
        parts: list[ObservationPart] = [CameraObservation(cam) for cam in obs["cameras"]]
        if obs["bev"]:
            parts.append(BevObservation(obs, network, vehicle_extent))
        if obs["measurements"]:
            parts.append(self._measurements)
        if obs["goal"]:
            parts.append(self._goal)
        self.observations = ObservationBuilder(parts, obs["frame_stack"])
        self.target_speed = TargetSpeed(config["reward"])
        self.lane_marking_costs = LaneMarkingCosts(config["reward"])
        self.termination = Termination(config["episode"], dt)
        self.lead = (LEAD_HORIZON, 0.0)  # (distance, closing speed) of the vehicle ahead on the route
        self.route: RouteTracker | None = None
        self.stats = EpisodeStats()
        self.prev: Frame | None = None  # the last frame of the running episode
        self.last_observation: dict[str, np.ndarray] = {}

    @property
    def observation_space(self) -> spaces.Dict:
        return self.observations.space

    @property
    def action_space(self) -> spaces.Space:
        return self.actions.space

    # --- episode -----------------------------------------------------------------------------------------
    def reset(self, route: list[RouteWaypoint], frame: Frame) -> dict[str, np.ndarray]:
        """Start an episode on ``route``; ``frame`` is the first frame after the car settled at the start."""
        self.replan(route, frame)
        self.stats = EpisodeStats(term_sums=dict.fromkeys(self.reward.names, 0.0))
        self.termination.reset(self.route.length)
        self.damage = 0.0
        self.prev = frame
        self.lead = (LEAD_HORIZON, 0.0)
        self.lead = self._lead_vehicle(frame)
        self.prev_fracs = footprint_fractions(self.network, frame.x, frame.y, frame.yaw, self.length, self.width)
        self.observations.reset()
        return self._observe(frame, self._context())

    def step(self, frame: Frame) -> Transition:
        """Advance the episode by one frame."""
        assert self.route is not None, "reset() first"
        remaining_prev = self.route.remaining
        self.route.update(frame.x, frame.y)
        self.lead = self._lead_vehicle(frame)
        context = self._context()
        impulse = sum(i for _, i in frame.collisions)
        damage_prev, self.damage = self.damage, self.damage + impulse
        fracs = footprint_fractions(self.network, frame.x, frame.y, frame.yaw, self.length, self.width)
        heading_error = wrap_angle(frame.yaw - self.route.heading())
        goal_reached = self.termination.goal_reached(self.route)
        ctx = StepContext(
            dt=self.dt,
            speed=frame.speed,
            speed_prev=self.prev.speed,
            target_speed=context.target_speed,
            remaining=self.route.remaining,
            remaining_prev=remaining_prev,
            lateral_offset=self.route.lateral_offset(frame.x, frame.y),
            heading_error=heading_error,
            steer=frame.control.steer,
            steer_prev=self.prev.control.steer,
            collision_impulse=impulse,
            collision_damage=self.damage,
            collision_damage_prev=damage_prev,
            lane_invasion_cost=self.lane_marking_costs(frame.lane_invasions),
            off_road=fracs[0],
            off_road_prev=self.prev_fracs[0],
            opposite_lane=fracs[1],
            opposite_lane_prev=self.prev_fracs[1],
            goal_reached=goal_reached,
        )
        values = self.reward(ctx)
        terms = {n: float(v) for n, v in zip(self.reward.names, values)}
        reward = float(values.sum())

        end = self.termination.step(frame, self.route, fracs[0], heading_error, goal_reached, self.stats.length + 1)
        self.stats.add_step(frame, self.prev, reward, terms, self.route.completion)
        if end.terminated or end.truncated:
            self.stats.success, self.stats.reason = goal_reached, end.reason
        self.prev, self.prev_fracs = frame, fracs
        return Transition(self._observe(frame, context), reward, terms, end.terminated, end.truncated, end.reason)

    def replan(self, route: list[RouteWaypoint], frame: Frame) -> None:
        """Follow a new route from here on (a re-routing goal); progress restarts on the new route."""
        self.route = RouteTracker(route)
        self.route.update(frame.x, frame.y)
        self._in_junction = [self.network.lanes[w.key].junction >= 0 for w in route]

    def truncate(self, reason: str) -> None:
        """End the episode from outside (a sensor timed out, the simulator died)."""
        self.stats.reason = reason

    def _lead_vehicle(self, frame: Frame) -> tuple[float, float]:
        """(gap in m, closing speed in m/s) to the vehicle ahead on the route (``RouteTracker.lead_gap``);
        ``(LEAD_HORIZON, 0)`` when there is none. The closing speed is the change of the gap."""
        gap = self.route.lead_gap(frame.vehicles, frame.x, frame.y, self.length)
        prev_gap = self.lead[0]
        closing = (prev_gap - gap) / self.dt if gap < LEAD_HORIZON and prev_gap < LEAD_HORIZON else 0.0
        return gap, closing

    def _context(self) -> ObservationContext:
        """The values of the current frame that the observation parts and the reward share."""
        speed_limit = self.network.lanes[self.route.waypoints[self.route.index].key].speed_limit
        return ObservationContext(
            self.route,
            self._in_junction,
            speed_limit,
            self.target_speed(self.route, speed_limit, self.lead[0]),
            self.lead,
        )

    # --- observation -------------------------------------------------------------------------------------
    def _observe(self, frame: Frame, context: ObservationContext) -> dict[str, np.ndarray]:
        self.last_observation = self.observations.observe(frame, context)
        return self.last_observation

    def measurements(self, frame: Frame) -> np.ndarray:
        """The measurement vector of ``frame`` (one frame, unstacked) on the running episode's route."""
        return self._measurements.observe(frame, self._context())

    def nearby_vehicles(self, frame: Frame) -> np.ndarray:
        """The nearby-vehicle slots of ``frame`` (:class:`~carla_rl_env.observations.nearby.NearbyVehicles`)."""
        return self._measurements.nearby.observe(frame)

    def goal_vector(self, frame: Frame) -> np.ndarray:
        """The goal of the running episode's route in the ego frame of ``frame``, scaled."""
        return self._goal.observe(frame, self._context())
