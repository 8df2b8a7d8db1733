"""Planar geometry every layer shares: angle wrapping, map -> ego frame, vehicle box corners.

Map frame as the bridge publishes it (ROS: x east, y north, yaw counter-clockwise); ego frame x forward,
y left. Scalars go through ``math`` and arrays through numpy, so a scalar caller gets a ``float`` back and
the same bits as before these helpers were shared.
"""

from __future__ import annotations

import math
from typing import overload

import numpy as np

_TWO_PI = 2.0 * math.pi


@overload
def wrap_angle(angle: float) -> float: ...
@overload
def wrap_angle(angle: np.ndarray) -> np.ndarray: ...
def wrap_angle(angle):
    """Wrap radians to ``[-pi, pi)``; a float for a scalar, an array for an array."""
    if np.ndim(angle) == 0:
        return (float(angle) + math.pi) % _TWO_PI - math.pi
    return (np.asarray(angle, dtype=float) + np.pi) % _TWO_PI - np.pi


def world_to_ego(points: np.ndarray, x, y, yaw) -> np.ndarray:
    """Map-frame points ``(..., 2)`` in the ego frame of pose ``(x, y, yaw)``.

    The pose may be scalars (one ego) or arrays broadcasting against ``points[..., 0]`` (one ego per point
    row, as HER's relabelled goals)."""
    points = np.asarray(points, dtype=float)
    dx, dy = points[..., 0] - x, points[..., 1] - y
    if np.ndim(yaw) == 0:
        c, s = math.cos(yaw), math.sin(yaw)
    else:
        c, s = np.cos(yaw), np.sin(yaw)
    return np.stack([c * dx + s * dy, -s * dx + c * dy], axis=-1)


_CORNER_SIGNS_X = np.array([1.0, 1.0, -1.0, -1.0])
_CORNER_SIGNS_Y = np.array([1.0, -1.0, -1.0, 1.0])


def box_corners(boxes: np.ndarray) -> np.ndarray:
    """``(M, 4, 2)`` ground corners (front-left, front-right, rear-right, rear-left) of ``(x, y, yaw, length,
    width)`` rows; one row ``(5,)`` gives ``(4, 2)``."""
    boxes = np.asarray(boxes, dtype=float)
    single = boxes.ndim == 1
    boxes = np.atleast_2d(boxes)
    c, s = np.cos(boxes[:, 2]), np.sin(boxes[:, 2])
    dx = _CORNER_SIGNS_X[None, :] * (boxes[:, 3] / 2.0)[:, None]
    dy = _CORNER_SIGNS_Y[None, :] * (boxes[:, 4] / 2.0)[:, None]
    xs = boxes[:, 0, None] + c[:, None] * dx - s[:, None] * dy
    ys = boxes[:, 1, None] + s[:, None] * dx + c[:, None] * dy
    corners = np.stack([xs, ys], axis=2)
    return corners[0] if single else corners
