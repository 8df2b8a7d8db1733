"""The driving task: one frame of bridge data in, observation, reward terms and episode end out.

This module has no ROS dependency. The env node feeds it frames assembled from the bridge's topics and the
in-process adapter feeds it frames straight from the simulator core, so both compute identical
observations and rewards for identical frames.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from gymnasium import spaces

from carla_rl_common.bridge import Control
from carla_rl_common.geometry import world_to_ego, wrap_angle
from carla_rl_common.opendrive.types import RouteWaypoint
from carla_rl_env.actions import ActionMapper
from carla_rl_env.rewards import Reward, StepContext, footprint_fractions
from carla_rl_env.route import COMMANDS, RouteTracker
from carla_rl_env.settings import check_observation

MEASUREMENT_NAMES = (
    "speed", "acceleration", "steer", "throttle", "brake", "lateral_offset", "heading_error",
    "junction_distance", *(f"command_{c.name.lower()}" for c in COMMANDS), "goal_distance", "speed_limit",
)
# Channels of the BEV observation (CARLA-Roach style masks), rendered from the map, route and vehicles.
BEV_CHANNELS = ("road", "marking_solid", "marking_broken", "route", "ego", "vehicles")
# Scales that bring each measurement to roughly [-1, 1] for learning; the step message carries scaled values.
MEASUREMENT_SCALES = {"speed": 10.0, "acceleration": 10.0, "lateral_offset": 2.0, "heading_error": math.pi,
                      "junction_distance": 50.0, "goal_distance": 250.0, "speed_limit": 10.0, "target_speed": 10.0,
                      "lead_distance": 40.0, "lead_closing_speed": 10.0}
# Measurements that describe the route to the goal (and so change with the goal): hindsight relabelling
# (carla_rl_agents.algos.OnPolicyHER) zeroes them, and relabels goal_distance, in relabelled observations.
ROUTE_MEASUREMENTS = ("lateral_offset", "heading_error", "junction_distance", "target_speed",
                      *(f"command_{c.name.lower()}" for c in COMMANDS))
ROUTE_POINT_SCALE = 30.0  # m: ego-frame route points ahead are divided by this
LEAD_HORIZON = 40.0  # m of route ahead searched for a lead vehicle
LEAD_CORRIDOR = 2.5  # m: a vehicle whose centre is this close to the route ahead is in the car's path
# Per nearby vehicle (``env.observation.nearby_vehicles``, nearest first), in the ego frame (x forward, y left):
# position / nearby_radius, velocity relative to the ego / NEARBY_SPEED_SCALE, heading relative to the ego's
# (cos, sin), and 1 for a vehicle (a slot without one is all zeros).
NEARBY_FEATURES = ("x", "y", "vx", "vy", "cos_yaw", "sin_yaw", "present")
NEARBY_SPEED_SCALE = 10.0  # m/s


def measurement_names(observation: dict[str, Any]) -> tuple[str, ...]:
    """Names of one frame's measurement vector for an ``env.observation`` config: the fixed ones, then
    ``target_speed`` and ``route_{x,y}_<d>m`` with ``route_lookahead``, then ``lead_*`` with ``lead_vehicle``,
    then ``nearby_<i>_<feature>`` (``NEARBY_FEATURES``) for each of the ``nearby_vehicles`` slots (configs that
    predate those keys get the fixed vector, so older checkpoints keep their spaces; each addition comes last,
    so a policy can be warm-started by zero-padding its first layer)."""
    names = list(MEASUREMENT_NAMES)
    lookahead = observation.get("route_lookahead") or []
    if lookahead:
        names.append("target_speed")
        for d in lookahead:
            names += [f"route_x_{float(d):g}m", f"route_y_{float(d):g}m"]
    if observation.get("lead_vehicle", False):
        names += ["lead_distance", "lead_closing_speed"]
    for i in range(int(observation.get("nearby_vehicles", 0) or 0)):
        names += [f"nearby_{i}_{f}" for f in NEARBY_FEATURES]
    return tuple(names)


def needs_vehicles(env: dict[str, Any]) -> bool:
    """Does an ``env`` config observe or reward the other vehicles (so a frame source must provide them)?
    The BEV draws them, the lead vehicle and the nearby vehicles are measured, ``lead_gap`` caps the target
    speed behind the lead vehicle."""
    obs = env["observation"]
    return bool(obs.get("bev") or obs.get("lead_vehicle") or obs.get("nearby_vehicles", 0) > 0
                or env["reward"].get("lead_gap", 0.0) > 0)


@dataclass
class Frame:
    """Everything the task needs from one simulator frame (bridge messages already decoded)."""

    stamp_ns: int
    frame: int
    x: float
    y: float
    yaw: float
    speed: float  # m/s
    acceleration: float  # m/s^2, longitudinal
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


def preprocess_image(image: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """Crop, grayscale and resize one camera image to the observation's (H, W, C) uint8."""
    top, bottom, left, right = spec.get("crop", [0, 0, 0, 0])
    h, w = image.shape[:2]
    image = image[top:h - bottom, left:w - right]
    channels = image.shape[2]
    if spec.get("grayscale", False):
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY if channels == 4 else cv2.COLOR_BGR2GRAY)[..., None]
    elif channels == 4:
        image = image[..., :3]  # bgra8 -> bgr: alpha carries nothing in CARLA's RGB camera
    size = (int(spec["width"]), int(spec["height"]))
    if image.shape[1::-1] != size:
        resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        image = resized[..., None] if resized.ndim == 2 else resized
    return np.ascontiguousarray(image)


class DrivingTask:
    """Observation, reward and episode logic for one ego vehicle on one road network."""

    def __init__(self, config: dict[str, Any], network, dt: float, vehicle_extent: tuple[float, float] = (4.7, 1.9),
                 source: str = "<config>"):
        self.cfg = config
        self.network = network
        self.dt = dt
        self.length, self.width = vehicle_extent
        self.actions = ActionMapper(config["action"], source)
        self.reward = Reward(config["reward"]["terms"], source)
        self.cameras: list[dict[str, Any]] = list(config["observation"]["cameras"])
        self.stack = max(1, int(config["observation"]["frame_stack"]))
        self.measurement_names = measurement_names(config["observation"])
        self.lookahead = [float(d) for d in config["observation"].get("route_lookahead") or []]
        self.nearby = int(config["observation"].get("nearby_vehicles", 0) or 0)
        self.nearby_radius = float(config["observation"].get("nearby_radius", 30.0))
        check_observation(config, source)
        self.lead = (LEAD_HORIZON, 0.0)  # (distance, closing speed) of the vehicle ahead on the route
        self.route: RouteTracker | None = None
        self.stats = EpisodeStats()
        self.bev = None
        if config["observation"]["bev"] and network is not None:
            from carla_rl_sim.render import BevRenderer  # the simulator's renderer, fed from bridge topics

            obs = config["observation"]
            self.bev = BevRenderer(network.lanes, size=int(obs["bev_size"]),
                                   pixels_per_meter=float(obs["bev_pixels_per_meter"]),
                                   ego_offset=int(obs["bev_size"]) // 4)
        self.prev: Frame | None = None  # the last frame of the running episode
        self.last_observation: dict[str, np.ndarray] = {}

    # --- spaces ------------------------------------------------------------------------------------------
    @property
    def observation_space(self) -> spaces.Dict:
        obs = self.cfg["observation"]
        parts: dict[str, spaces.Space] = {}
        for cam in self.cameras:
            c = 1 if cam.get("grayscale", False) else 3
            parts[cam["id"]] = spaces.Box(0, 255, (int(cam["height"]), int(cam["width"]), c * self.stack), np.uint8)
        if obs["bev"]:
            n = int(obs["bev_size"])
            parts["bev"] = spaces.Box(0, 255, (n, n, len(BEV_CHANNELS) * self.stack), np.uint8)
        if obs["measurements"]:
            parts["measurements"] = spaces.Box(-np.inf, np.inf, (len(self.measurement_names) * self.stack,),
                                               np.float32)
        if obs["goal"]:
            parts["goal"] = spaces.Box(-np.inf, np.inf, (2,), np.float32)
        return spaces.Dict(parts)

    @property
    def action_space(self) -> spaces.Space:
        return self.actions.space

    # --- episode -----------------------------------------------------------------------------------------
    def reset(self, route: list[RouteWaypoint], frame: Frame) -> dict[str, np.ndarray]:
        """Start an episode on ``route``; ``frame`` is the first frame after the car settled at the start."""
        self.replan(route, frame)
        self.stats = EpisodeStats(term_sums={n: 0.0 for n in self.reward.names})
        ep = self.cfg["episode"]
        self.time_limit = self.route.length / max(ep["min_average_speed"], 1e-3) + ep["time_limit_margin"]
        self.elapsed = 0.0
        self.stuck_time = 0.0
        self.damage = 0.0
        self.prev = frame
        self.lead = (LEAD_HORIZON, 0.0)
        self.lead = self._lead_vehicle(frame)
        self.prev_fracs = footprint_fractions(self.network, frame.x, frame.y, frame.yaw, self.length, self.width)
        self._history: list[dict[str, np.ndarray]] = []
        if self.bev is not None:
            self.bev.reset()
        return self._observe(frame)

    def step(self, frame: Frame) -> Transition:
        """Advance the episode by one frame."""
        assert self.route is not None, "reset() first"
        ep = self.cfg["episode"]
        remaining_prev = self.route.remaining
        self.route.update(frame.x, frame.y)
        self.lead = self._lead_vehicle(frame)
        impulse = sum(i for _, i in frame.collisions)
        damage_prev, self.damage = self.damage, self.damage + impulse
        fracs = footprint_fractions(self.network, frame.x, frame.y, frame.yaw, self.length, self.width)
        heading_error = wrap_angle(frame.yaw - self.route.heading())
        goal_reached = self.route.remaining <= ep["goal_radius"]
        ctx = StepContext(
            dt=self.dt, speed=frame.speed, speed_prev=self.prev.speed, target_speed=self._target_speed(frame),
            remaining=self.route.remaining, remaining_prev=remaining_prev,
            lateral_offset=self.route.lateral_offset(frame.x, frame.y), heading_error=heading_error,
            steer=frame.control.steer, steer_prev=self.prev.control.steer, collision_impulse=impulse,
            collision_damage=self.damage, collision_damage_prev=damage_prev,
            lane_invasions=tuple(frame.lane_invasions), off_road=fracs[0], off_road_prev=self.prev_fracs[0],
            opposite_lane=fracs[1], opposite_lane_prev=self.prev_fracs[1], goal_reached=goal_reached,
        )
        values = self.reward(ctx)
        terms = {n: float(v) for n, v in zip(self.reward.names, values)}
        reward = float(values.sum())

        self.elapsed += self.dt
        self.stuck_time = self.stuck_time + self.dt if frame.speed < ep["stuck_speed"] else 0.0
        terminated, truncated, reason = self._end(frame, fracs, heading_error, goal_reached)
        self._account(frame, reward, terms, terminated or truncated, reason, goal_reached)
        self.prev, self.prev_fracs = frame, fracs
        return Transition(self._observe(frame), reward, terms, terminated, truncated, reason)

    def replan(self, route: list[RouteWaypoint], frame: Frame) -> None:
        """Follow a new route from here on (a re-routing goal); progress restarts on the new route."""
        self.route = RouteTracker(route)
        self.route.update(frame.x, frame.y)
        self._in_junction = [self.network.lanes[w.key].junction >= 0 for w in route]

    def truncate(self, reason: str) -> None:
        """End the episode from outside (a sensor timed out, the simulator died)."""
        self.stats.reason = reason

    def _end(self, frame: Frame, fracs: tuple[float, float], heading_error: float,
             goal_reached: bool) -> tuple[bool, bool, str]:
        ep = self.cfg["episode"]
        if goal_reached:
            return True, False, "goal_reached"
        if frame.collisions and ep["terminate_on_collision"]:
            return True, False, "collision"
        if ep["terminate_on_off_road"] and fracs[0] >= ep["off_road_fraction"]:
            return True, False, "off_road"
        if self.route.deviation > ep["max_route_deviation"]:
            return True, False, "route_deviation"
        if abs(heading_error) > math.radians(ep["wrong_way_angle_deg"]) and frame.speed > 1.0:
            return True, False, "wrong_way"
        if self.elapsed >= self.time_limit - 1e-9:  # sums of dt carry rounding errors
            return False, True, "time_limit"
        if 0 < ep["max_episode_steps"] <= self.stats.length + 1:
            return False, True, "max_episode_steps"
        if self.stuck_time >= ep["stuck_seconds"] - 1e-9:
            return False, True, "stuck"
        return False, False, ""

    def _account(self, frame: Frame, reward: float, terms: dict[str, float], done: bool, reason: str,
                 success: bool) -> None:
        s = self.stats
        s.length += 1
        s.episode_return += reward
        s.collisions += len(frame.collisions)
        s.lane_invasions += len(frame.lane_invasions)
        s.distance += math.hypot(frame.x - self.prev.x, frame.y - self.prev.y)
        s.speed_sum += frame.speed
        s.route_completion = self.route.completion
        for name, value in terms.items():
            s.term_sums[name] += value
        if done:
            s.success, s.reason = success, reason

    def _target_speed(self, frame: Frame) -> float:
        """The speed the reward asks for: ``reward.target_speed``, capped by the lane's speed limit and, when
        configured, by the route's curves ahead (``curve_lateral_acceleration``) and by the distance to stop
        ``lead_gap`` m behind the vehicle ahead on the route (both at ``reward.deceleration``): a speed profile
        as a motion planner would drive, so that taking a junction turn at full speed earns nothing."""
        reward = self.cfg["reward"]
        target = reward["target_speed"]
        limit = self._speed_limit()
        if limit > 0:
            target = min(target, limit)
        decel = float(reward.get("deceleration", 2.5))
        if reward.get("curve_lateral_acceleration", 0.0) > 0:
            target = min(target, self.route.curve_speed(float(reward["curve_lateral_acceleration"]), decel))
        if reward.get("lead_gap", 0.0) > 0 and self.lead[0] < LEAD_HORIZON:
            target = min(target, math.sqrt(2.0 * decel * max(self.lead[0] - float(reward["lead_gap"]), 0.0)))
        return target

    def _lead_vehicle(self, frame: Frame) -> tuple[float, float]:
        """(gap in m, closing speed in m/s) to the nearest other vehicle on the route ahead: one whose centre
        lies within ``LEAD_CORRIDOR`` m of the route's next ``LEAD_HORIZON`` m (the gap is bumper to bumper
        along the route); ``(LEAD_HORIZON, 0)`` when there is none. The closing speed is the change of the gap."""
        r = self.route
        gap = LEAD_HORIZON
        if len(frame.vehicles):
            near = frame.vehicles[np.hypot(frame.vehicles[:, 0] - frame.x, frame.vehicles[:, 1] - frame.y)
                                  < LEAD_HORIZON + 10.0]
            if len(near):
                hi = int(np.searchsorted(r.cum, r.progress + LEAD_HORIZON + 5.0, side="right"))
                path, along = r.xy[r.index:hi + 1], r.cum[r.index:hi + 1] - r.progress
                d = np.hypot(near[:, None, 0] - path[None, :, 0], near[:, None, 1] - path[None, :, 1])
                j = d.argmin(axis=1)
                hit = (d[np.arange(len(near)), j] < LEAD_CORRIDOR) & (along[j] > 0)
                if hit.any():
                    gaps = along[j][hit] - (near[hit, 3] + self.length) / 2.0
                    gap = float(np.clip(gaps.min(), 0.0, LEAD_HORIZON))
        prev_gap = self.lead[0]
        closing = (prev_gap - gap) / self.dt if gap < LEAD_HORIZON and prev_gap < LEAD_HORIZON else 0.0
        return gap, closing

    def _speed_limit(self) -> float:
        return self.network.lanes[self.route.waypoints[self.route.index].key].speed_limit

    # --- observation -------------------------------------------------------------------------------------
    def measurements(self, frame: Frame) -> np.ndarray:
        r = self.route
        values = {
            "speed": frame.speed, "acceleration": frame.acceleration, "steer": frame.control.steer,
            "throttle": frame.control.throttle, "brake": frame.control.brake,
            "lateral_offset": r.lateral_offset(frame.x, frame.y),
            "heading_error": wrap_angle(frame.yaw - r.heading()),
            "junction_distance": r.distance_to_junction(self._in_junction),
            "goal_distance": r.remaining, "speed_limit": self._speed_limit(),
        }
        if self.lookahead:
            values["target_speed"] = self._target_speed(frame)
            points = world_to_ego(r.points_ahead(self.lookahead), frame.x, frame.y, frame.yaw)
            for d, (px, py) in zip(self.lookahead, points):
                values[f"route_x_{d:g}m"], values[f"route_y_{d:g}m"] = px / ROUTE_POINT_SCALE, py / ROUTE_POINT_SCALE
        values["lead_distance"], values["lead_closing_speed"] = self.lead
        one_hot = r.command_one_hot()
        for i, c in enumerate(COMMANDS):
            values[f"command_{c.name.lower()}"] = one_hot[i]
        named = self.measurement_names[:len(self.measurement_names) - self.nearby * len(NEARBY_FEATURES)]
        out = np.array([values[n] / MEASUREMENT_SCALES.get(n, 1.0) for n in named], np.float32)
        if self.nearby:  # the nearby_<i>_* names come last (measurement_names)
            out = np.concatenate([out, self.nearby_vehicles(frame).ravel()])
        return out

    def nearby_vehicles(self, frame: Frame) -> np.ndarray:
        """``(nearby_vehicles, len(NEARBY_FEATURES))`` float32: the nearest other vehicles whose centres lie
        within ``nearby_radius`` m of the ego's, nearest first, in the ego frame (see ``NEARBY_FEATURES``); the
        slots left over are zeros. Relative velocities take the ego's as ``frame.speed`` along its heading."""
        out = np.zeros((self.nearby, len(NEARBY_FEATURES)), np.float32)
        boxes = frame.vehicles
        if not self.nearby or not len(boxes):
            return out
        dx, dy = boxes[:, 0] - frame.x, boxes[:, 1] - frame.y
        distance = np.hypot(dx, dy)
        near = np.flatnonzero(distance <= self.nearby_radius)
        if not len(near):
            return out
        near = near[np.argsort(distance[near], kind="stable")[:self.nearby]]
        c, s = math.cos(frame.yaw), math.sin(frame.yaw)
        velocities = frame.vehicle_velocities
        if velocities is None or len(velocities) != len(boxes):
            vx = vy = np.zeros(len(near))
        else:
            vx, vy = velocities[near, 0], velocities[near, 1]
        relative_yaw = boxes[near, 2] - frame.yaw
        n = len(near)
        out[:n, 0] = (c * dx[near] + s * dy[near]) / self.nearby_radius
        out[:n, 1] = (-s * dx[near] + c * dy[near]) / self.nearby_radius
        out[:n, 2] = (c * vx + s * vy - frame.speed) / NEARBY_SPEED_SCALE
        out[:n, 3] = (-s * vx + c * vy) / NEARBY_SPEED_SCALE
        out[:n, 4] = np.cos(relative_yaw)
        out[:n, 5] = np.sin(relative_yaw)
        out[:n, 6] = 1.0
        return out

    def goal_vector(self, frame: Frame) -> np.ndarray:
        goal = self.route.waypoints[-1]
        gx, gy = world_to_ego((goal.x, goal.y), frame.x, frame.y, frame.yaw)
        scale = self.cfg["observation"]["goal_scale"]
        return np.array([gx / scale, gy / scale], np.float32)

    def _observe(self, frame: Frame) -> dict[str, np.ndarray]:
        obs = self.cfg["observation"]
        current: dict[str, np.ndarray] = {}
        for cam in self.cameras:
            if cam["id"] not in frame.images:
                raise KeyError(f"frame has no image from sensor {cam['id']!r}")
            current[cam["id"]] = preprocess_image(frame.images[cam["id"]], cam)
        if self.bev is not None:
            raster = self.bev.render((frame.x, frame.y, frame.yaw), (self.length, self.width), frame.vehicles,
                                     self.route.xy[self.route.index:])
            current["bev"] = np.ascontiguousarray(raster.transpose(1, 2, 0))
        if obs["measurements"]:
            current["measurements"] = self.measurements(frame)
        self._history = (self._history + [current])[-self.stack:]
        while len(self._history) < self.stack:  # the first frames of an episode repeat the oldest
            self._history.insert(0, self._history[0])
        out = {k: np.concatenate([h[k] for h in self._history], axis=-1) for k in current}
        if obs["goal"]:
            out["goal"] = self.goal_vector(frame)
        self.last_observation = out
        return out
