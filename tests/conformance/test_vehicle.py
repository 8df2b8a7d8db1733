"""An ego vehicle's state as the real bridge reports it: applied control, acceleration, speedometer, teleports."""

from __future__ import annotations

import math

import pytest
from conformance_support import objects, spawn_point, vehicle, yaw_of
from geometry_msgs.msg import Pose, Twist
from nav_msgs.msg import Odometry
from std_msgs.msg import Float32

from carla_rl_common import bridge

pytestmark = pytest.mark.slow


@pytest.fixture
def ego(start_sim, probe, network):
    """One ego on a lane heading along the map's y axis, every sensor of config/objects.json."""
    x, y, yaw, _ = spawn_point(network)
    start_sim(objects(vehicle(spawn=(x, y, yaw))))
    probe.wait_for_sim()
    return probe


def test_applied_control_reports_the_gearbox_gear(ego):
    """ros-bridge ego_vehicle.py copies ``actor.get_control()``; CARLA (CarlaWheeledVehicle.cpp
    FlushVehicleControl, the automatic box of DefaultMovementComponent) puts the current gear in it and sets
    ``reverse = gear < 0``. The commanded gear (0 here) never comes back; throttle/steer/brake/hand_brake do."""
    for _ in range(40):
        status = ego.step(throttle=0.8, steer=0.1)
    c = status.control
    assert c.gear >= 1 and not c.reverse, "driving forward in gear"
    assert (c.throttle, c.steer, c.brake, c.hand_brake) == pytest.approx((0.8, 0.1, 0.0, False))
    for _ in range(80):  # brake to a stop, then back up
        status = ego.step(brake=1.0)
        if status.velocity < 0.05:
            break
    for _ in range(40):
        status = ego.step(throttle=0.5, reverse=True)
    assert status.control.gear == -1 and status.control.reverse


def test_acceleration_is_in_the_map_frame(ego):
    """ros-bridge ego_vehicle.py sends ``actor.get_acceleration()`` (CARLA's world frame) through
    carla_common/transforms.py carla_acceleration_to_ros_accel (x, -y, z): the map frame, not the body frame.
    The car heads along y here, so a straight launch accelerates along the map's y."""
    for _ in range(10):
        status = ego.step(throttle=1.0)
    yaw, a = yaw_of(status), status.acceleration.linear
    longitudinal = a.x * math.cos(yaw) + a.y * math.sin(yaw)
    lateral = -a.x * math.sin(yaw) + a.y * math.cos(yaw)
    assert longitudinal > 1.0 and abs(lateral) < 0.1 * longitudinal
    assert abs(a.y) > abs(a.x), "body-frame acceleration (along x) where the map frame has it along y"


def test_speedometer_is_the_signed_forward_speed(ego):
    """ros-bridge speedometer_sensor.py: the velocity projected on the heading, negative when backing up;
    vehicle_status.velocity (ego_vehicle.py) is the absolute speed."""
    speedometer = ego.subscribe(Float32, "/carla/ego_vehicle/speedometer")
    for _ in range(40):
        status = ego.step(throttle=0.5, reverse=True)
    assert ego.spin_until(lambda: speedometer and speedometer[-1].data < -0.5)
    assert speedometer[-1].data == pytest.approx(-status.velocity, abs=0.05)


def test_set_transform_honours_z_and_keeps_the_velocity(ego, network):
    """ros-bridge actor_control.py on_pose calls CARLA's ``actor.set_transform(pose)``: the pose's z is where the
    car goes (towns have elevation) and the physics velocity stays (a reset must stop the car itself)."""
    odometry = ego.subscribe(Odometry, "/carla/ego_vehicle/odometry")
    for _ in range(30):
        status = ego.step(throttle=1.0)
    speed = status.velocity
    assert speed > 3.0
    # further down the same straight lane, 4.5 m up
    x0, y0, yaw, key = spawn_point(network)
    x, y, _, _ = next(p for p in network.spawn_points() if p[3] == key and math.hypot(p[0] - x0, p[1] - y0) > 40)
    ego.publish(Pose, "/carla/ego_vehicle/control/set_transform", bridge.pose_msg(x, y, yaw, z=4.5))
    ego.spin(0.2)
    status = ego.step()  # coasting: the teleport applies at this tick
    ego.spin_until(
        lambda: odometry and bridge.stamp_to_ns(odometry[-1].header.stamp) == bridge.stamp_to_ns(status.header.stamp)
    )
    pose = odometry[-1].pose.pose
    assert (pose.position.x, pose.position.y, pose.position.z) == pytest.approx((x, y, 4.5), abs=0.5)
    assert yaw_of(status) == pytest.approx(yaw, abs=0.05)
    assert status.velocity == pytest.approx(speed, rel=0.2), "set_transform stopped the car"


def test_set_target_velocity_sets_the_velocity(ego):
    """ros-bridge actor_control.py on_twist: ``control/set_target_velocity`` (geometry_msgs/Twist) turns the
    linear velocity from the vehicle frame into the world and calls ``set_target_velocity``; zero stops the car."""
    odometry = ego.subscribe(Odometry, "/carla/ego_vehicle/odometry")
    ego.step()
    twist = Twist()
    twist.linear.x = 6.0
    ego.publish(Twist, "/carla/ego_vehicle/control/set_target_velocity", twist)
    ego.spin(0.2)
    status = ego.step()
    assert status.velocity == pytest.approx(6.0, abs=0.5)
    ego.spin_until(lambda: odometry and odometry[-1].header.stamp == status.header.stamp)
    assert odometry[-1].twist.twist.linear.x == pytest.approx(6.0, abs=0.5)  # forward: along the heading
    ego.publish(Twist, "/carla/ego_vehicle/control/set_target_velocity", Twist())
    ego.spin(0.2)
    assert ego.step(brake=0.0).velocity < 0.3


def test_set_target_velocity_angular_z_is_carla_s_yaw_rate(ego):
    """ros-bridge actor_control.py on_twist passes ``degrees(angular.z)`` to ``set_target_angular_velocity``
    without flipping its sign, and CARLA's yaw grows clockwise seen from above (left-handed frame), so a
    positive ``angular.z`` turns the car clockwise: its ROS yaw falls."""
    odometry = ego.subscribe(Odometry, "/carla/ego_vehicle/odometry")
    before = ego.step()
    twist = Twist()
    twist.linear.x = 5.0
    twist.angular.z = 1.0
    ego.publish(Twist, "/carla/ego_vehicle/control/set_target_velocity", twist)
    ego.spin(0.2)
    status = ego.step()
    ego.spin_until(lambda: odometry and odometry[-1].header.stamp == status.header.stamp)
    turned = math.remainder(yaw_of(status) - yaw_of(before), math.tau)
    assert turned < -0.01, f"yaw changed by {turned:+.3f} rad: a positive angular.z must turn clockwise"
    assert odometry[-1].twist.twist.angular.z < 0.0
