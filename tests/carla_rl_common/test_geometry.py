"""The shared planar geometry, checked against hand-worked cases (not against another copy of the code)."""

from __future__ import annotations

import math

import numpy as np

from carla_rl_common.geometry import box_corners, world_to_ego, wrap_angle


def test_wrap_angle_half_open_interval_and_types() -> None:
    assert wrap_angle(3 * math.pi / 2) == -math.pi / 2
    assert wrap_angle(math.pi) == -math.pi  # [-pi, pi)
    assert isinstance(wrap_angle(1.0), float)
    assert np.allclose(wrap_angle(np.array([0.0, 2 * math.pi + 0.5, -math.pi - 0.5])), [0.0, 0.5, math.pi - 0.5])


def test_world_to_ego_is_x_forward_y_left() -> None:
    # facing +y from (1, 1): (1, 3) is 2 m ahead, (0, 1) is 1 m to the left
    assert np.allclose(world_to_ego((1.0, 3.0), 1.0, 1.0, math.pi / 2), [2.0, 0.0])
    assert np.allclose(
        world_to_ego(np.array([[1.0, 3.0], [0.0, 1.0]]), 1.0, 1.0, math.pi / 2), [[2.0, 0.0], [0.0, 1.0]]
    )
    # one pose per row (HER's relabelled goals)
    poses = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, math.pi]])
    assert np.allclose(
        world_to_ego(np.array([[1.0, 0.0], [1.0, 0.0]]), poses[:, 0], poses[:, 1], poses[:, 2]),
        [[1.0, 0.0], [-1.0, 0.0]],
    )


def test_box_corners_order_front_left_first() -> None:
    corners = box_corners(np.array([10.0, 5.0, math.pi / 2, 4.0, 2.0]))  # facing +y, 4 m long, 2 m wide
    assert np.allclose(corners, [[9.0, 7.0], [11.0, 7.0], [11.0, 3.0], [9.0, 3.0]])
    assert box_corners(np.zeros((3, 5))).shape == (3, 4, 2)
