"""The pure conversions of carla_rl_viz.markers: map markers, route cursor, per-step markers, TF."""

from __future__ import annotations

import math

import numpy as np
import pytest
from carla_rl_msgs.msg import Step
from visualization_msgs.msg import Marker, MarkerArray

from carla_rl_common import bridge
from carla_rl_common.objects import load_objects, parse_objects
from carla_rl_common.opendrive import RoadNetwork
from carla_rl_common.paths import default_objects_file
from carla_rl_common.towns import town_path
from carla_rl_viz import markers


@pytest.fixture(scope="module")
def network() -> RoadNetwork:
    return RoadNetwork.from_file(town_path("RLTown01"))


def test_map_markers_cover_every_driving_lane(network):
    array = markers.map_markers(network.lanes.values())
    kinds = {m.ns: m for m in array.markers}
    assert set(kinds) == {markers.NS_ROAD, markers.NS_SOLID, markers.NS_BROKEN, markers.NS_EDGE}
    road = kinds[markers.NS_ROAD]
    assert road.type == Marker.TRIANGLE_LIST and len(road.points) % 3 == 0
    for ns in (markers.NS_SOLID, markers.NS_BROKEN, markers.NS_EDGE):
        assert kinds[ns].type == Marker.LINE_LIST and len(kinds[ns].points) % 2 == 0
    # every driving lane's boundary ends are vertices of the boundary lines (decimation keeps the ends)
    line_xy = np.array(
        [(p.x, p.y) for ns in (markers.NS_SOLID, markers.NS_BROKEN, markers.NS_EDGE) for p in kinds[ns].points]
    )
    for lane in network.driving_lanes()[:40]:
        for end in (lane.left_boundary[0], lane.left_boundary[-1], lane.right_boundary[-1]):
            assert np.hypot(*(line_xy - end).T).min() < 1e-6
    # the road triangles lie on the road: their centroids are on a driving lane
    tri = np.array([(p.x, p.y) for p in road.points]).reshape(-1, 3, 2).mean(axis=1)
    sample = tri[:: max(1, len(tri) // 300)]
    assert network.on_road_mask(sample).mean() > 0.97


def test_route_cursor_moves_forward_only():
    xy = np.stack([np.arange(0, 100, 2.0), np.zeros(50)], axis=1)
    loop = np.concatenate([xy, xy[::-1][1:] + [0, 0.5]])  # out and back: the way back passes the start again
    cursor = markers.RouteCursor(loop, window=10)
    assert cursor.goal == pytest.approx((0.0, 0.5))
    for x in np.arange(0, 98.5, 1.0):
        remaining = cursor.advance(x, 0.0)
    assert cursor.index == 49 and remaining[0].x == 98.0  # the ego first, then the route after it
    # coming back past the start: the cursor stays on the way back, never jumps to the start
    for x in np.arange(96, 0, -2.0):
        remaining = cursor.advance(x, 0.5)
    assert cursor.index > 90 and len(remaining) == len(loop) - cursor.index


def step_msg() -> Step:
    step = Step(
        episode=2,
        step=7,
        speed=5.0,
        reward=0.25,
        reward_term_names=["progress", "collision"],
        reward_terms=[0.3, -0.05],
        termination_reason="",
    )
    step.header.stamp = bridge.sim_time_msg(12.35)
    step.ego_pose = bridge.pose_msg(10.0, -4.0, math.radians(30))
    step.control.throttle, step.control.steer = 0.5, -0.25
    return step


def test_step_markers():
    step = step_msg()
    traffic = MarkerArray(
        markers=[
            Marker(id=3, type=Marker.CUBE, action=Marker.ADD),
            Marker(id=9, type=Marker.CUBE, action=Marker.ADD),  # the ego
            Marker(id=4, type=Marker.ARROW, action=Marker.ADD),
        ]
    )
    traffic.markers[0].pose = bridge.pose_msg(30.0, 1.0, 1.0, z=0.75)
    traffic.markers[0].scale.x, traffic.markers[0].scale.y, traffic.markers[0].scale.z = 4.0, 2.0, 1.5
    boxes = markers.traffic_boxes(traffic, ego_id=9)
    assert [m.id for m in boxes] == [3]
    cursor = markers.RouteCursor(np.array([[10.0, -4.0], [20.0, -4.0], [30.0, -4.0]]))
    array = markers.step_markers(step, cursor.advance(10.0, -4.0), cursor.goal, boxes)
    assert array.markers[0].action == Marker.DELETEALL
    by_ns = {m.ns: m for m in array.markers[1:]}
    assert set(by_ns) == {markers.NS_ROUTE, markers.NS_GOAL, markers.NS_EGO, markers.NS_TRAFFIC, markers.NS_TEXT}
    assert all(m.header.stamp == step.header.stamp and m.header.frame_id == "map" for m in array.markers[1:])
    ego = by_ns[markers.NS_EGO]
    assert (ego.pose.position.x, ego.pose.position.y) == (10.0, -4.0)
    assert bridge.pose_to_xyyaw(ego.pose)[2] == pytest.approx(math.radians(30))
    assert ego.scale.z == pytest.approx(markers.DEFAULT_EGO_SIZE[2]) and ego.pose.position.z == pytest.approx(
        ego.scale.z / 2
    )
    t = by_ns[markers.NS_TRAFFIC]
    assert (t.pose.position.x, t.scale.x) == (30.0, 4.0) and bridge.pose_to_xyyaw(t.pose)[2] == pytest.approx(1.0)
    assert (by_ns[markers.NS_GOAL].pose.position.x, by_ns[markers.NS_GOAL].pose.position.y) == (30.0, -4.0)
    assert [p.x for p in by_ns[markers.NS_ROUTE].points] == [10.0, 20.0, 30.0]
    text = by_ns[markers.NS_TEXT].text
    for part in (
        "episode 2  step 7",
        "18.0 km/h",
        "throttle 0.50",
        "steer -0.25",
        "reward +0.250",
        "progress +0.300",
        "collision -0.050",
    ):
        assert part in text
    gx, gy = markers.goal_in_ego((30.0, -4.0), step)
    assert (gx, gy) == pytest.approx((20 * math.cos(math.radians(30)), -20 * math.sin(math.radians(30))))


def test_transforms():
    odom_pose = bridge.pose_msg(3.0, 4.0, 0.5)
    from nav_msgs.msg import Odometry

    odom = Odometry(child_frame_id="ego_vehicle")
    odom.header.frame_id, odom.header.stamp, odom.pose.pose = "map", bridge.sim_time_msg(1.5), odom_pose
    tf = markers.ego_transform(odom)
    assert (tf.header.frame_id, tf.child_frame_id) == ("map", "ego_vehicle")
    assert (tf.transform.translation.x, tf.transform.translation.y, tf.header.stamp.sec) == (3.0, 4.0, 1)
    vehicle = load_objects(default_objects_file()).vehicle("ego_vehicle")
    frames = {t.child_frame_id: t for t in markers.sensor_transforms(vehicle)}
    assert set(frames) == {
        "ego_vehicle/rgb_front",
        "ego_vehicle/collision",
        "ego_vehicle/lane_invasion",
        "ego_vehicle/imu",
        "ego_vehicle/gnss",
    }  # no frames for pseudo sensors
    # a mount with roll/pitch/yaw (degrees in the file, ROS convention) becomes the same rotation
    spec = parse_objects(
        {
            "objects": [
                {
                    "type": "vehicle.tesla.model3",
                    "id": "hero",
                    "sensors": [
                        {
                            "type": "sensor.camera.rgb",
                            "id": "cam",
                            "spawn_point": {"x": 1.0, "y": -0.5, "z": 1.6, "roll": 0.0, "pitch": 10.0, "yaw": 90.0},
                        }
                    ],
                }
            ]
        }
    ).vehicle("hero")
    (cam,) = markers.sensor_transforms(spec)
    assert (cam.header.frame_id, cam.child_frame_id) == ("hero", "hero/cam")
    r = cam.transform.rotation
    roll, pitch, yaw = bridge.quaternion_to_rpy(r.x, r.y, r.z, r.w)
    assert (roll, pitch, yaw) == pytest.approx((0.0, math.radians(10), math.radians(90)))
