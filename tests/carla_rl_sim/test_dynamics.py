"""Plausibility of the ego vehicle model against a real mid-size sedan, and control sanitising."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from carla_rl_sim.dynamics import (
    GEAR_UP_SPEEDS,
    VehicleControl,
    VehicleParams,
    VehicleState,
    sanitize_control,
    step,
    teleported,
    vehicle_info,
    with_velocity,
)

DT = 0.05
PARAMS = VehicleParams()


def drive(state: VehicleState, control: VehicleControl, steps: int) -> VehicleState:
    for _ in range(steps):
        state = step(state, control, PARAMS, DT)
    return state


def test_zero_to_100_kmh_takes_5_to_10_seconds():
    state, t = VehicleState(), 0.0
    while state.vx < 100 / 3.6 and t < 20.0:
        state, t = step(state, VehicleControl(throttle=1.0), PARAMS, DT), t + DT
    assert 5.0 <= t <= 10.0


def test_top_speed_is_180_to_260_kmh():
    state = drive(VehicleState(vx=50.0), VehicleControl(throttle=1.0), 3000)
    assert 180.0 <= state.vx * 3.6 <= 260.0
    assert abs(step(state, VehicleControl(throttle=1.0), PARAMS, DT).vx - state.vx) < 0.01  # settled


def test_full_braking_from_100_kmh_stops_within_35_to_45_m():
    state = VehicleState(vx=100 / 3.6)
    for _ in range(400):
        state = step(state, VehicleControl(brake=1.0), PARAMS, DT)
        if state.vx == 0.0:
            break
    assert state.vx == 0.0
    assert 35.0 <= state.x <= 45.0


def test_braked_car_at_rest_does_not_creep():
    state = drive(VehicleState(vx=3.0), VehicleControl(brake=0.5), 100)
    assert state.vx == 0.0 and state.speed == 0.0
    x = state.x
    state = drive(state, VehicleControl(brake=1.0, steer=1.0), 200)
    assert (state.x, state.vx, state.vy, state.yaw_rate) == (x, 0.0, 0.0, 0.0)
    # a little throttle does not overcome rolling resistance plus brake either
    state = drive(state, VehicleControl(throttle=0.1, brake=1.0, reverse=True), 50)
    assert state.vx == 0.0


def circle_radius(xs: np.ndarray, ys: np.ndarray) -> float:
    """Least-squares circle fit through the points."""
    a = np.column_stack([2 * xs, 2 * ys, np.ones_like(xs)])
    cx, cy, c = np.linalg.lstsq(a, xs**2 + ys**2, rcond=None)[0]
    return math.sqrt(c + cx**2 + cy**2)


def test_minimum_turning_radius_at_full_lock_is_4_5_to_7_m():
    state, xs, ys = VehicleState(vx=2.0), [], []
    for i in range(400):  # hold ~2 m/s with a P controller, full left lock (CARLA steer -1 = left)
        error = 2.0 - state.vx
        state = step(
            state,
            VehicleControl(throttle=min(max(error, 0.0), 1.0), brake=min(max(-error, 0.0), 1.0), steer=-1.0),
            PARAMS,
            DT,
        )
        if i >= 100:
            xs.append(state.x)
            ys.append(state.y)
    assert state.yaw_rate > 0.0  # left = counter-clockwise in the ROS frame
    assert 4.5 <= circle_radius(np.array(xs), np.array(ys)) <= 7.0


def test_positive_steer_turns_right_like_carla():
    state = drive(VehicleState(vx=10.0), VehicleControl(throttle=0.3, steer=0.3), 40)
    assert state.yaw < -0.1 and state.y < 0.0 and state.steer < 0.0


def test_reverse_with_throttle_drives_backwards():
    state = drive(VehicleState(), VehicleControl(throttle=0.5, reverse=True), 60)
    assert state.vx < -1.0 and state.x < -1.0 and state.gear == -1 and state.reverse


def test_stable_under_random_controls_at_bridge_dt():
    rng = np.random.default_rng(0)
    state = VehicleState()
    for i in range(3000):
        if i % 20 == 0:
            control = VehicleControl(
                throttle=float(rng.uniform()),
                steer=float(rng.uniform(-1, 1)),
                brake=float(rng.uniform() < 0.2),
                hand_brake=bool(rng.uniform() < 0.05),
                reverse=bool(rng.uniform() < 0.1),
            )
        state = step(state, control, PARAMS, DT)
        values = (state.x, state.y, state.yaw, state.vx, state.vy, state.yaw_rate, state.ax, state.ay)
        assert all(math.isfinite(v) for v in values)
        assert state.speed < 80.0 and abs(state.yaw_rate) < 5.0 and abs(state.ay) < 2.0 * PARAMS.mu * 9.81


def test_lateral_acceleration_limited_by_tyre_friction():
    state = drive(VehicleState(vx=25.0), VehicleControl(throttle=0.3, steer=1.0), 100)
    assert abs(state.ay) <= PARAMS.mu * 9.81 * 1.1
    assert math.isfinite(state.yaw)


@pytest.mark.parametrize("field,value", [("throttle", math.nan), ("steer", math.inf), ("brake", -math.inf)])
def test_non_finite_controls_become_zero_and_are_reported(field, value):
    clean, problems = sanitize_control(VehicleControl(**{field: value}))
    assert getattr(clean, field) == 0.0
    assert len(problems) == 1 and field in problems[0]
    state = step(VehicleState(vx=5.0), clean, PARAMS, DT)
    assert all(math.isfinite(v) for v in (state.x, state.vx, state.yaw_rate))


def test_out_of_range_controls_are_clamped_and_reported():
    clean, problems = sanitize_control(VehicleControl(throttle=1.5, steer=-3.0, brake=-0.2, gear=2))
    assert (clean.throttle, clean.steer, clean.brake, clean.gear) == (1.0, -1.0, 0.0, 2)
    assert sorted(p.split("=")[0] for p in problems) == ["brake", "steer", "throttle"]


def test_valid_control_passes_unchanged():
    control = VehicleControl(
        throttle=0.4, steer=-0.2, brake=0.1, hand_brake=True, reverse=True, gear=-1, manual_gear_shift=True
    )
    assert sanitize_control(control) == (control, [])


def test_vehicle_info_has_carla_fields_populated():
    info = vehicle_info(PARAMS)
    assert len(info["wheels"]) == 4
    for i, wheel in enumerate(info["wheels"]):
        for key in ("tire_friction", "damping_rate", "radius", "max_brake_torque", "max_handbrake_torque"):
            assert wheel[key] > 0.0, key
        assert (wheel["max_steer_angle"] > 0.0) == (i < 2)  # only the front wheels steer
        assert wheel["position"][0] > 0 if i < 2 else wheel["position"][0] < 0
    assert info["wheels"][0]["max_steer_angle"] == pytest.approx(PARAMS.max_steer_angle)
    for key in (
        "max_rpm",
        "moi",
        "damping_rate_full_throttle",
        "damping_rate_zero_throttle_clutch_engaged",
        "damping_rate_zero_throttle_clutch_disengaged",
        "gear_switch_time",
        "clutch_strength",
        "mass",
        "drag_coefficient",
    ):
        assert info[key] > 0.0, key
    assert info["use_gear_autobox"] is True and len(info["center_of_mass"]) == 3


def test_step_speed(capsys):
    state, control = VehicleState(vx=10.0), VehicleControl(throttle=0.5, steer=0.1)
    n = 20000
    start = time.perf_counter()
    for _ in range(n):
        state = step(state, control, PARAMS, DT)
    with capsys.disabled():
        print(f"\n[dynamics] {(time.perf_counter() - start) / n * 1e6:.1f} us per vehicle step")


# CARLA: Unreal/CarlaUE4/Plugins/Carla/Source/Carla/Vehicle/MovementComponents/DefaultMovementComponent.cpp
# (ProcessControl) and Vehicle/CarlaWheeledVehicle.cpp (FlushVehicleControl): the applied control reports the
# gearbox's current gear, an automatic box's 1..n forward by speed, -1 in reverse, 0 at standstill.
def test_automatic_gear_follows_the_speed_schedule():
    state = VehicleState()
    assert step(state, VehicleControl(), PARAMS, DT).gear == 0  # at rest, no throttle: neutral
    gears = []
    for _ in range(600):
        state = step(state, VehicleControl(throttle=1.0), PARAMS, DT)
        assert state.gear == 1 + sum(state.vx > s for s in GEAR_UP_SPEEDS) and not state.reverse
        gears.append(state.gear)
    assert gears == sorted(gears) and gears[0] == 1 and gears[-1] == len(GEAR_UP_SPEEDS) + 1
    assert step(state, VehicleControl(brake=1.0), PARAMS, DT).gear >= 1  # still rolling: still in gear


def test_reverse_is_gear_minus_one_and_a_manual_gear_is_reported_as_selected():
    backing = drive(VehicleState(), VehicleControl(throttle=0.5, reverse=True), 40)
    assert backing.gear == -1 and backing.reverse and backing.vx < 0.0
    # a manual reverse gear drives backwards too: reverse is the gear's sign, not the command's flag
    manual = drive(VehicleState(), VehicleControl(throttle=0.5, gear=-1, manual_gear_shift=True), 40)
    assert manual.gear == -1 and manual.reverse and manual.vx < 0.0
    third = drive(VehicleState(), VehicleControl(throttle=0.5, gear=3, manual_gear_shift=True), 5)
    assert third.gear == 3 and not third.reverse
    neutral = drive(VehicleState(), VehicleControl(throttle=1.0, gear=0, manual_gear_shift=True), 20)
    assert neutral.gear == 0 and neutral.vx == 0.0  # neutral: no drive


# ros-bridge carla_common/src/carla_common/transforms.py (carla_acceleration_to_ros_accel) with ego_vehicle.py:
# vehicle_status.acceleration is CARLA's world acceleration, i.e. the map frame, not the body frame.
def test_map_frame_acceleration_of_a_car_on_a_circle_points_to_its_centre():
    state = drive(VehicleState(yaw=math.pi / 2, vx=10.0), VehicleControl(throttle=0.3, steer=0.3), 300)
    before = state
    state = step(state, VehicleControl(throttle=0.3, steer=0.3), PARAMS, DT)
    (vx0, vy0), (vx1, vy1) = before.velocity_map, state.velocity_map
    assert (state.ax_map, state.ay_map) == pytest.approx(((vx1 - vx0) / DT, (vy1 - vy0) / DT))
    # the body-frame acceleration rotated into the map frame (mid-step heading) agrees; unrotated it does not
    yaw = before.yaw + 0.5 * (state.yaw - before.yaw)
    c, s = math.cos(yaw), math.sin(yaw)
    longitudinal, lateral = state.ax_map * c + state.ay_map * s, -state.ax_map * s + state.ay_map * c
    assert (longitudinal, lateral) == pytest.approx((state.ax, state.ay), rel=0.05, abs=0.05)
    assert math.hypot(state.ax_map - state.ax, state.ay_map - state.ay) > 1.0
    # turning right: the lateral part is centripetal, v * yaw_rate, towards the centre (the right)
    assert lateral < -3.0 and lateral == pytest.approx(state.vx * state.yaw_rate, rel=0.05)


# CARLA's actor.set_transform keeps the physics velocity (world frame); ros-bridge actor_control.py on_pose.
def test_teleport_keeps_the_world_velocity_and_sets_z():
    moving = VehicleState(x=1.0, y=2.0, yaw=0.0, vx=8.0, vy=0.5, yaw_rate=0.2)
    moved = teleported(moving, 50.0, -3.0, 4.5, math.pi / 2)
    assert (moved.x, moved.y, moved.z, moved.yaw) == (50.0, -3.0, 4.5, pytest.approx(math.pi / 2))
    assert moved.velocity_map == pytest.approx(moving.velocity_map)
    assert moved.yaw_rate == 0.2 and moved.speed == pytest.approx(moving.speed)
    assert step(moved, VehicleControl(), PARAMS, DT).z == 4.5  # the flat world keeps it


# CARLA's actor.set_target_velocity / set_target_angular_velocity; ros-bridge actor_control.py on_twist.
def test_set_velocity_is_in_the_map_frame():
    state = VehicleState(yaw=math.pi / 2, vx=5.0, yaw_rate=0.3)
    east = with_velocity(state, 2.0, 0.0)
    assert east.velocity_map == pytest.approx((2.0, 0.0)) and east.vy == pytest.approx(-2.0)
    assert east.yaw_rate == 0.3 and with_velocity(state, 0.0, 0.0, 0.0).yaw_rate == 0.0
