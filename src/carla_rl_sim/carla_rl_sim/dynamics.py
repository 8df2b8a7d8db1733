"""Ego vehicle dynamics: a dynamic bicycle model that blends into a kinematic one at low speed.

Frame and signs: the state lives in the ROS ``map`` frame (x east, y north, yaw counter-clockwise, radians);
``vx``/``vy`` are body-frame velocities (x forward, y left). The world is flat: ``z`` is carried as it was
set (a teleport's z), with no gravity or elevation acting on it. Controls keep CARLA's semantics, where
``steer > 0`` turns RIGHT (CARLA is left-handed); :func:`step` therefore applies the road-wheel angle
``-steer * max_steer_angle`` in the right-handed frame, and :attr:`VehicleState.steer` holds that applied
angle (radians, positive = left).

Model (per step, explicit where stiff terms are absent and implicit where they are present, so that it is
stable at the bridge's ``dt = 0.05`` and at standstill):

* steering: target angle rate-limited by ``max_steer_rate``;
* longitudinal: engine force ``throttle * min(F_max, P_max / |v|)`` (constant force, then constant power),
  opposed by brake, hand brake (rear wheels locked), rolling resistance and aerodynamic drag. Resistive
  forces can only bring the car to rest, never push it backwards, so a braked car at standstill does not
  creep;
* lateral/yaw: linear tyres (cornering stiffness per axle) whose forces saturate at the axle's friction
  circle ``sqrt((mu Fz)^2 - Fx^2)``; integrated with backward Euler using the saturated (secant) stiffness;
* below ``kinematic_speed`` the lateral state follows the kinematic bicycle model (approached no faster
  than tyre friction allows), with a linear blend up to ``dynamic_speed`` (tyre slip models are singular
  at standstill);
* gearbox: CARLA's automatic box, as its status reports it (:func:`gear`); the gear selects the drive
  direction (reverse when it is negative, none in a manual neutral) but not the force, which follows a
  single-ratio power curve.

Pure Python floats and :mod:`math` on purpose: one step costs a few microseconds, numpy would cost more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from carla_rl_common.bridge import Control
from carla_rl_common.geometry import wrap_angle

GRAVITY = 9.81
AIR_DENSITY = 1.225


@dataclass(frozen=True)
class VehicleParams:
    """A mid-size sedan, close to CARLA's ``vehicle.tesla.model3`` (mass 1845 kg, wheelbase 2.875 m).

    ``max_steer_angle`` is the effective road-wheel angle of the bicycle model at full lock. CARLA's
    Model 3 reports 70 deg for its front wheels, but that is not the angle its car turns with; 33 deg gives
    the real car's turning circle (about 11.7 m kerb to kerb; the centre of mass then runs on a 4.7 m
    radius). :func:`vehicle_info` reports this effective angle, so that consumers converting between
    ``steer`` and an angle (e.g. ackermann controllers) get the mapping the simulator really applies.
    """

    mass: float = 1845.0  # kg
    wheelbase: float = 2.875  # m
    lf: float = 1.40  # centre of mass to front axle, m (lr = wheelbase - lf)
    track: float = 1.60  # m, distance between left and right wheels
    cog_height: float = 0.55  # m above ground (reported as centre of mass only)
    yaw_inertia: float = 3800.0  # kg m^2
    max_steer_angle: float = math.radians(33.0)  # effective road-wheel angle at steer = +-1, rad
    max_steer_rate: float = 4.0  # rad/s of road-wheel angle (full lock in ~0.15 s); inf disables
    max_drive_force: float = 7500.0  # N at the wheels (traction-limited launch)
    max_power: float = 130_000.0  # W at the wheels
    max_reverse_speed: float = 8.0  # m/s, no drive force beyond it in reverse
    max_brake_force: float = 20_000.0  # N, all four wheels (tyre friction limits it further)
    brake_front_share: float = 0.6  # fraction of the brake force on the front axle
    rolling_resistance: float = 0.012  # coefficient, force = c * m * g
    drag_coefficient: float = 0.28
    frontal_area: float = 2.22  # m^2
    cornering_stiffness_front: float = 140_000.0  # N/rad per axle
    cornering_stiffness_rear: float = 160_000.0  # N/rad per axle (stiffer rear: mild understeer)
    mu: float = 1.0  # tyre-road friction coefficient
    locked_wheel_grip: float = 0.1  # lateral grip fraction left to a sliding (locked) axle
    wheel_radius: float = 0.355  # m
    kinematic_speed: float = 1.0  # m/s, purely kinematic below
    dynamic_speed: float = 3.0  # m/s, purely dynamic above
    length: float = 4.7  # bounding box, m
    width: float = 1.9
    height: float = 1.5

    @property
    def lr(self) -> float:
        return self.wheelbase - self.lf

    @property
    def extent(self) -> tuple[float, float, float]:
        """Half sizes (x, y, z) of the bounding box, as CARLA's ``bounding_box.extent``."""
        return self.length / 2.0, self.width / 2.0, self.height / 2.0


@dataclass(slots=True)
class VehicleState:
    """Kinematic state of one vehicle; ``x, y`` is the centre of mass projected on the ground."""

    x: float = 0.0
    y: float = 0.0
    z: float = 0.0  # m, as last teleported to (the world is flat: nothing changes it)
    yaw: float = 0.0  # rad, counter-clockwise from east, wrapped to [-pi, pi)
    vx: float = 0.0  # m/s body-frame longitudinal (negative when reversing)
    vy: float = 0.0  # m/s body-frame lateral, positive to the left
    yaw_rate: float = 0.0  # rad/s, counter-clockwise positive
    ax: float = 0.0  # m/s^2 body-frame acceleration (what an IMU measures, without gravity)
    ay: float = 0.0
    ax_map: float = 0.0  # m/s^2 map-frame acceleration over the last step (CARLA's actor.get_acceleration())
    ay_map: float = 0.0
    steer: float = 0.0  # road-wheel angle actually applied, rad, positive = left
    gear: int = 0  # the gearbox's current gear (:func:`gear`): 0 at rest, 1..5 forward, -1 reverse
    reverse: bool = False  # gear < 0, as CARLA reports it

    @property
    def speed(self) -> float:
        """Magnitude of the velocity, m/s (vehicle_status.velocity, always >= 0)."""
        return math.hypot(self.vx, self.vy)

    @property
    def velocity_map(self) -> tuple[float, float]:
        """The velocity in the map frame, m/s (CARLA's actor.get_velocity(), converted to ROS)."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return self.vx * c - self.vy * s, self.vx * s + self.vy * c


def teleported(state: VehicleState, x: float, y: float, z: float, yaw: float) -> VehicleState:
    """``state`` moved to a new pose with its physics velocity kept, as CARLA's ``actor.set_transform`` does.

    CARLA keeps the body's world-frame linear and angular velocity, so a teleport that turns the car leaves
    it moving in the old direction (the body-frame velocity turns with it). Steering angle and gear stay."""
    vx_map, vy_map = state.velocity_map
    c, s = math.cos(yaw), math.sin(yaw)
    return VehicleState(
        x=x,
        y=y,
        z=z,
        yaw=wrap_angle(yaw),
        vx=vx_map * c + vy_map * s,
        vy=-vx_map * s + vy_map * c,
        yaw_rate=state.yaw_rate,
        steer=state.steer,
        gear=state.gear,
        reverse=state.reverse,
    )


def with_velocity(state: VehicleState, vx_map: float, vy_map: float, yaw_rate: float | None = None) -> VehicleState:
    """``state`` with a new map-frame velocity (m/s) and optionally yaw rate (rad/s, counter-clockwise), as
    CARLA's ``actor.set_target_velocity`` / ``set_target_angular_velocity`` set them: no dynamics involved."""
    c, s = math.cos(state.yaw), math.sin(state.yaw)
    return VehicleState(
        x=state.x,
        y=state.y,
        z=state.z,
        yaw=state.yaw,
        vx=vx_map * c + vy_map * s,
        vy=-vx_map * s + vy_map * c,
        yaw_rate=state.yaw_rate if yaw_rate is None else yaw_rate,
        steer=state.steer,
        gear=state.gear,
        reverse=state.reverse,
    )


# CARLA's ``VehicleControl`` (throttle/brake in [0, 1], steer in [-1, 1] with steer > 0 = turn right) is the
# contract's Control: one definition for the bridge messages, the env and the dynamics.
VehicleControl = Control


def _clean_unit(name: str, value: Any, low: float, problems: list[str]) -> float:
    """A finite float clamped to [low, 1]; non-numbers and NaN/inf become 0. Problems are appended."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        problems.append(f"{name}={value!r} is not a number, set to 0")
        return 0.0
    if not math.isfinite(v):
        problems.append(f"{name}={v} is not finite, set to 0")
        return 0.0
    if v < low or v > 1.0:
        clamped = min(max(v, low), 1.0)
        problems.append(f"{name}={v:g} outside [{low:g}, 1], clamped to {clamped:g}")
        return clamped
    return v


def sanitize_control(control: Any) -> tuple[VehicleControl, list[str]]:
    """Return a valid :class:`VehicleControl` and a description of every value that had to be fixed.

    Accepts anything with the control's attribute names (``VehicleControl``, ``carla_rl_common.bridge.Control``,
    a ``CarlaEgoVehicleControl`` message). Out-of-range values are clamped and NaN/inf replaced by 0, so that
    nothing non-finite can reach the vehicle state. Call it once per received command, not per step.
    """
    problems: list[str] = []
    throttle = _clean_unit("throttle", getattr(control, "throttle", 0.0), 0.0, problems)
    steer = _clean_unit("steer", getattr(control, "steer", 0.0), -1.0, problems)
    brake = _clean_unit("brake", getattr(control, "brake", 0.0), 0.0, problems)
    gear_value = getattr(control, "gear", 0)
    try:
        gear = int(gear_value)
    except (TypeError, ValueError, OverflowError):
        problems.append(f"gear={gear_value!r} is not an integer, set to 0")
        gear = 0
    clean = VehicleControl(
        throttle=throttle,
        steer=steer,
        brake=brake,
        hand_brake=bool(getattr(control, "hand_brake", False)),
        reverse=bool(getattr(control, "reverse", False)),
        gear=gear,
        manual_gear_shift=bool(getattr(control, "manual_gear_shift", False)),
    )
    return clean, problems


GEAR_UP_SPEEDS = (6.0, 12.0, 19.0, 27.0)  # m/s of forward speed where the automatic box is in the next gear


def gear(control: VehicleControl, vx: float) -> int:
    """The gearbox's current gear for ``control`` at body-frame forward speed ``vx`` (m/s), as CARLA reports it.

    CARLA (``DefaultMovementComponent::ProcessControl``) selects gear -1 when ``reverse`` is commanded, the
    commanded gear with ``manual_gear_shift``, else its automatic box's gear; then it overwrites the applied
    control's ``gear`` with the current gear and sets ``reverse = gear < 0``. The automatic schedule here:
    0 at standstill without throttle, else 1 and one more above each of :data:`GEAR_UP_SPEEDS` (1..5).
    """
    if control.reverse:
        return -1
    if control.manual_gear_shift:
        return control.gear
    if vx <= 0.0 and control.throttle == 0.0:
        return 0
    return 1 + sum(vx > s for s in GEAR_UP_SPEEDS)


def step(state: VehicleState, control: VehicleControl, params: VehicleParams, dt: float) -> VehicleState:
    """Advance one vehicle by ``dt`` seconds. ``control`` must come from :func:`sanitize_control`."""
    if not dt > 0.0:
        raise ValueError(f"dt must be positive, got {dt}")
    p = params
    m, lf, lr, wheelbase = p.mass, p.lf, p.lr, p.wheelbase
    mu = p.mu

    # steering (CARLA steer > 0 = right = negative yaw in the ROS frame), rate limited
    target = -control.steer * p.max_steer_angle
    max_change = p.max_steer_rate * dt
    delta = state.steer + min(max(target - state.steer, -max_change), max_change)

    # axle loads and longitudinal tyre forces
    fz_front = m * GRAVITY * lr / wheelbase
    fz_rear = m * GRAVITY * lf / wheelbase
    vx0, vy0, r0 = state.vx, state.vy, state.yaw_rate
    speed = abs(vx0)
    selected = gear(control, vx0)  # the gear the step drives in: its sign is the direction, 0 is neutral
    drive = control.throttle * min(p.max_drive_force, p.max_power / max(speed, 1.0), mu * fz_rear)
    if (selected < 0 and vx0 < -p.max_reverse_speed) or (selected == 0 and control.manual_gear_shift):
        drive = 0.0
    brake = min(control.brake * p.max_brake_force, mu * m * GRAVITY)
    brake_front = brake * p.brake_front_share
    rear_braking = brake - brake_front
    if control.hand_brake:
        rear_braking = mu * fz_rear  # locked rear wheels slide
        brake = brake_front + rear_braking
    front_long = brake_front
    rear_long = min(drive + rear_braking, mu * fz_rear)

    # lateral and yaw: dynamic bicycle with saturating linear tyres (backward Euler)
    w = min(max((vx0 - p.kinematic_speed) / (p.dynamic_speed - p.kinematic_speed), 0.0), 1.0)
    fy_front = 0.0
    vy_dyn, r_dyn = vy0, r0
    if w > 0.0:
        vx_d = max(vx0, p.kinematic_speed)
        cf, cr = p.cornering_stiffness_front, p.cornering_stiffness_rear
        cap_f = math.sqrt(max((mu * fz_front) ** 2 - front_long**2, (p.locked_wheel_grip * mu * fz_front) ** 2))
        cap_r = math.sqrt(max((mu * fz_rear) ** 2 - rear_long**2, (p.locked_wheel_grip * mu * fz_rear) ** 2))
        lin_f = abs(cf * (delta - (vy0 + lf * r0) / vx_d))
        lin_r = abs(cr * (vy0 - lr * r0) / vx_d)
        if lin_f > cap_f:
            cf *= cap_f / lin_f
        if lin_r > cap_r:
            cr *= cap_r / lin_r
        iz = p.yaw_inertia
        a11 = -(cf + cr) / (m * vx_d)
        a12 = (lr * cr - lf * cf) / (m * vx_d) - vx_d
        a21 = (lr * cr - lf * cf) / (iz * vx_d)
        a22 = -(lf * lf * cf + lr * lr * cr) / (iz * vx_d)
        rhs1 = vy0 + dt * cf * delta / m
        rhs2 = r0 + dt * lf * cf * delta / iz
        m11, m12, m21, m22 = 1.0 - dt * a11, -dt * a12, -dt * a21, 1.0 - dt * a22
        det = m11 * m22 - m12 * m21
        vy_dyn = (rhs1 * m22 - m12 * rhs2) / det
        r_dyn = (m11 * rhs2 - m21 * rhs1) / det
        fy_front = cf * (delta - (vy_dyn + lf * r_dyn) / vx_d)

    # longitudinal: propulsion, then resistive forces that can stop the car but never reverse it
    direction = -1.0 if selected < 0 else 1.0
    vx1 = vx0 + dt * (direction * drive / m + w * (vy0 * r0 - fy_front * math.sin(delta) / m))
    resist = (
        brake + p.rolling_resistance * m * GRAVITY + 0.5 * AIR_DENSITY * p.drag_coefficient * p.frontal_area * vx0 * vx0
    )
    dv_resist = dt * resist / m
    vx1 = 0.0 if abs(vx1) <= dv_resist else vx1 - math.copysign(dv_resist, vx1)

    # kinematic bicycle at the new speed, reached no faster than tyre friction allows (a car sliding
    # sideways, e.g. after a spin, keeps sliding), blended with the dynamic solution
    r_kin = vx1 * math.tan(delta) / wheelbase
    max_dvy = mu * GRAVITY * dt
    max_dr = mu * m * GRAVITY * max(lf, lr) / p.yaw_inertia * dt
    vy_kin = vy0 + min(max(r_kin * lr - vy0, -max_dvy), max_dvy)
    r_kin = r0 + min(max(r_kin - r0, -max_dr), max_dr)
    vy1 = w * vy_dyn + (1.0 - w) * vy_kin
    r1 = w * r_dyn + (1.0 - w) * r_kin

    # pose (midpoint heading), body-frame accelerations and the map-frame one: the change of the map-frame
    # velocity over the step, as CARLA differences an actor's velocity between frames
    yaw_mid = state.yaw + 0.5 * r1 * dt
    c, s = math.cos(yaw_mid), math.sin(yaw_mid)
    yaw1 = wrap_angle(state.yaw + r1 * dt)
    r_avg = 0.5 * (r0 + r1)
    c0, s0, c1, s1 = math.cos(state.yaw), math.sin(state.yaw), math.cos(yaw1), math.sin(yaw1)
    gear1 = gear(control, vx1)
    return VehicleState(
        x=state.x + (vx1 * c - vy1 * s) * dt,
        y=state.y + (vx1 * s + vy1 * c) * dt,
        z=state.z,
        yaw=yaw1,
        vx=vx1,
        vy=vy1,
        yaw_rate=r1,
        ax=(vx1 - vx0) / dt - r_avg * 0.5 * (vy0 + vy1),
        ay=(vy1 - vy0) / dt + r_avg * 0.5 * (vx0 + vx1),
        ax_map=((vx1 * c1 - vy1 * s1) - (vx0 * c0 - vy0 * s0)) / dt,
        ay_map=((vx1 * s1 + vy1 * c1) - (vx0 * s0 + vy0 * c0)) / dt,
        steer=delta,
        gear=gear1,
        reverse=gear1 < 0,
    )


def vehicle_info(params: VehicleParams) -> dict[str, Any]:
    """The physics fields of ``carla_msgs/CarlaEgoVehicleInfo`` for these parameters, as the bridge fills them.

    Units follow the bridge: ``max_steer_angle`` in radians; wheel ``radius`` in centimetres (the bridge
    forwards CARLA's ``WheelPhysicsControl.radius`` unconverted); torques in N m; positions in metres in the
    vehicle frame (x forward, y left, z up; origin at the centre of mass on the ground). Wheels are ordered
    front-left, front-right, rear-left, rear-right as in CARLA. Every scalar is non-zero except the rear
    wheels' ``max_steer_angle`` (they do not steer; CARLA reports 0 as well). Deviations from CARLA: the hand
    brake torque is reported on all four wheels (CARLA: rear only, front 0; the model locks the rear wheels
    only), so that "physics fields are populated" checks hold; the centre of mass is (0, 0, height) because
    the vehicle origin is the centre of mass. Engine-model fields the model does not have (``max_rpm``,
    ``moi``, damping rates, clutch) carry CARLA-like defaults.
    """
    p = params
    fz_rear = p.mass * GRAVITY * p.lf / p.wheelbase
    brake_front_wheel = p.max_brake_force * p.brake_front_share / 2.0 * p.wheel_radius
    brake_rear_wheel = p.max_brake_force * (1.0 - p.brake_front_share) / 2.0 * p.wheel_radius
    handbrake_wheel = p.mu * fz_rear / 2.0 * p.wheel_radius
    half_track = p.track / 2.0

    def wheel(x: float, y: float, steer: float, brake: float) -> dict[str, Any]:
        return {
            "tire_friction": p.mu,
            "damping_rate": 0.25,
            "max_steer_angle": steer,
            "radius": p.wheel_radius * 100.0,
            "max_brake_torque": brake,
            "max_handbrake_torque": handbrake_wheel,
            "position": (x, y, p.wheel_radius),
        }

    return {
        "wheels": [
            wheel(p.lf, half_track, p.max_steer_angle, brake_front_wheel),
            wheel(p.lf, -half_track, p.max_steer_angle, brake_front_wheel),
            wheel(-p.lr, half_track, 0.0, brake_rear_wheel),
            wheel(-p.lr, -half_track, 0.0, brake_rear_wheel),
        ],
        "max_rpm": 15000.0,
        "moi": 1.0,
        "damping_rate_full_throttle": 0.15,
        "damping_rate_zero_throttle_clutch_engaged": 2.0,
        "damping_rate_zero_throttle_clutch_disengaged": 0.35,
        "use_gear_autobox": True,
        "gear_switch_time": 0.5,
        "clutch_strength": 10.0,
        "mass": p.mass,
        "drag_coefficient": p.drag_coefficient,
        "center_of_mass": (0.0, 0.0, p.cog_height),
    }
