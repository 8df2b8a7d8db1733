"""The nearest other vehicles in the ego frame (``env.observation.nearby_vehicles`` slots, nearest first).

Not an entry of the observation dict of its own: the slots are the last block of the measurement vector
(:class:`~carla_rl_env.observations.measurements.MeasurementObservation`), named ``nearby_<i>_<feature>``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from gymnasium import spaces

if TYPE_CHECKING:
    from carla_rl_env.task import Frame

#: Per vehicle, in the ego frame (x forward, y left): position / nearby_radius, velocity relative to the ego /
#: NEARBY_SPEED_SCALE, heading relative to the ego's (cos, sin), and 1 for a vehicle (an empty slot is zeros).
NEARBY_FEATURES = ("x", "y", "vx", "vy", "cos_yaw", "sin_yaw", "present")
NEARBY_SPEED_SCALE = 10.0  # m/s


def nearby_names(count: int) -> tuple[str, ...]:
    """``nearby_<i>_<feature>`` of ``count`` slots, in the order of the flattened array."""
    return tuple(f"nearby_{i}_{f}" for i in range(count) for f in NEARBY_FEATURES)


class NearbyVehicles:
    """``(count, len(NEARBY_FEATURES))`` float32: the nearest other vehicles whose centres lie within
    ``radius`` m of the ego's, nearest first, in the ego frame (see ``NEARBY_FEATURES``); the slots left over
    are zeros. Relative velocities take the ego's as ``frame.speed`` along its heading, and a frame without
    the others' velocities has them standing still."""

    def __init__(self, count: int, radius: float):
        self.count = count
        self.radius = radius

    @property
    def space(self) -> spaces.Box:
        return spaces.Box(-np.inf, np.inf, (self.count, len(NEARBY_FEATURES)), np.float32)

    def observe(self, frame: Frame) -> np.ndarray:
        out = np.zeros((self.count, len(NEARBY_FEATURES)), np.float32)
        boxes = frame.vehicles
        if not self.count or not len(boxes):
            return out
        dx, dy = boxes[:, 0] - frame.x, boxes[:, 1] - frame.y
        distance = np.hypot(dx, dy)
        near = np.flatnonzero(distance <= self.radius)
        if not len(near):
            return out
        near = near[np.argsort(distance[near], kind="stable")[: self.count]]
        c, s = math.cos(frame.yaw), math.sin(frame.yaw)
        velocities = frame.vehicle_velocities
        if velocities is None or len(velocities) != len(boxes):
            vx = vy = np.zeros(len(near))
        else:
            vx, vy = velocities[near, 0], velocities[near, 1]
        relative_yaw = boxes[near, 2] - frame.yaw
        n = len(near)
        out[:n, 0] = (c * dx[near] + s * dy[near]) / self.radius
        out[:n, 1] = (-s * dx[near] + c * dy[near]) / self.radius
        out[:n, 2] = (c * vx + s * vy - frame.speed) / NEARBY_SPEED_SCALE
        out[:n, 3] = (-s * vx + c * vy) / NEARBY_SPEED_SCALE
        out[:n, 4] = np.cos(relative_yaw)
        out[:n, 5] = np.sin(relative_yaw)
        out[:n, 6] = 1.0
        return out
