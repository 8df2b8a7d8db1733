"""The viz node over real DDS: simulator, env node and viz node as processes; markers and TF checked
against the Step messages the env node published for the same frames."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from carla_rl_msgs.msg import Step
from geometry_msgs.msg import TransformStamped
from nav_msgs.msg import Odometry, Path
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import Image
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import Marker, MarkerArray

from carla_rl_bringup.launcher import NodeSpec, ProcessGroup
from carla_rl_common import bridge
from carla_rl_common.bridge import BridgeTopics
from carla_rl_viz import markers
from carla_rl_viz.markers_node import tf_qos

TRAFFIC = 3
STEPS = 40
GOAL_SCALE = 50.0  # the env's default observation.goal_scale


def spin_for(executor, seconds: float, until=lambda: False) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not until():
        executor.spin_once(timeout_sec=0.05)


def by_ns(array: MarkerArray) -> dict[str, list[Marker]]:
    out: dict[str, list[Marker]] = {}
    for m in array.markers:
        out.setdefault(m.ns, []).append(m)
    return out


def test_markers_and_tf_match_the_steps(ros_node, tmp_path):
    t = BridgeTopics()
    qos, latched = bridge.qos_default(100), bridge.qos_latched()
    got: dict[str, list] = {"step": [], "markers": [], "tf": [], "tf_static": [], "bev": [], "waypoints": []}
    subs = (
        ("step", Step, t.step, qos),
        ("markers", MarkerArray, markers.STEP_MARKERS_TOPIC, qos),
        ("tf", TFMessage, markers.TF_TOPIC, tf_qos()),
        ("tf_static", TFMessage, markers.TF_STATIC_TOPIC, latched),
        ("bev", Image, markers.BEV_IMAGE_TOPIC, qos),
        ("waypoints", Path, t.waypoints, latched),
    )
    for kind, msg_type, topic, profile in subs:
        ros_node.create_subscription(msg_type, "/" + topic, lambda m, k=kind: got[k].append(m), profile)

    from carla_rl_env.gym_env import RosEnv

    with ProcessGroup(dict(os.environ), log=open(tmp_path / "nodes.log", "w")) as group:
        group.start(
            NodeSpec(
                "sim",
                "carla_rl_sim.node",
                "",
                {"traffic": TRAFFIC, "seed": 3, "synchronous_mode_wait_for_vehicle_control_command": True},
            )
        )
        group.start(NodeSpec("env", "carla_rl_env.node", "", {"seed": 3, "use_sim_time": True}))
        group.start(NodeSpec("viz", "carla_rl_viz.markers_node", "", {"use_sim_time": True}))
        env = RosEnv("", timeout=60, node=ros_node)
        executor = env.executor
        # the viz node drew the map before the episode starts (a late subscriber is tested below)
        early: list[MarkerArray] = []
        ros_node.create_subscription(MarkerArray, "/" + markers.MAP_MARKERS_TOPIC, early.append, latched)
        spin_for(executor, 30, lambda: bool(early))
        assert early, "the viz node published no map markers"
        env.reset(seed=3)
        for taken in range(1, STEPS + 1):
            _, _, terminated, truncated, _ = env.step(np.array([0.0, 0.5], np.float32))
            # paced to the viz node: it is outside the lockstep loop, and a loop that outruns it (a loaded
            # machine) makes it skip steps by design (keep-last queues); here every step must be drawn.
            # (RosEnv takes its Steps without the executor: ours arrive while we spin here.)
            spin_for(executor, 10, lambda n=taken: len(got["step"]) >= n and len(got["markers"]) >= len(got["step"]))
            if terminated or truncated:
                break
        spin_for(executor, 3, lambda: len(got["markers"]) >= len(got["step"]) and got["tf_static"])

        # static map markers reach a subscriber that joins late (TRANSIENT_LOCAL)
        late: list[MarkerArray] = []
        ros_node.create_subscription(MarkerArray, "/" + markers.MAP_MARKERS_TOPIC, late.append, latched)
        spin_for(executor, 10, lambda: bool(late))
        env.close()

    steps = {bridge.stamp_to_ns(s.header.stamp): s for s in got["step"]}
    assert len(steps) >= 10, f"only {len(steps)} steps observed"
    per_step = {}
    for array in got["markers"]:
        stamped = [m for m in array.markers if m.action == Marker.ADD]
        per_step[bridge.stamp_to_ns(stamped[0].header.stamp)] = array
    assert set(steps) <= set(per_step), "a step without its marker array"

    route_xy = np.array([(p.pose.position.x, p.pose.position.y) for p in got["waypoints"][-1].poses])
    for stamp, step in steps.items():
        array = per_step[stamp]
        assert array.markers[0].action == Marker.DELETEALL
        ns = by_ns(array)
        x, y, yaw = bridge.pose_to_xyyaw(step.ego_pose)
        ego = ns[markers.NS_EGO][0]
        assert (ego.pose.position.x, ego.pose.position.y) == pytest.approx((x, y), abs=1e-9)
        q = ego.pose.orientation
        assert bridge.quaternion_to_yaw(q.x, q.y, q.z, q.w) == pytest.approx(yaw, abs=1e-6)
        assert ego.scale.x > 3.0 and ego.scale.y > 1.5  # the ego's box from /carla/markers
        assert len(ns[markers.NS_TRAFFIC]) == TRAFFIC
        # the route starts at the ego and follows the planned route to its end, where the goal is
        route = np.array([(p.x, p.y) for p in ns[markers.NS_ROUTE][0].points])
        assert route[0] == pytest.approx((x, y))
        assert route[-1] == pytest.approx(route_xy[-1])
        assert all(np.isclose(route_xy, p).all(axis=1).any() for p in route[1:])
        goal = ns[markers.NS_GOAL][0].pose.position
        assert (goal.x, goal.y) == pytest.approx(tuple(route_xy[-1]))
        # ... and it is the goal the agent observed: the step's goal vector is that point in the ego frame
        gx, gy = markers.goal_in_ego((goal.x, goal.y), step)
        assert np.asarray(step.goal) == pytest.approx(np.array([gx, gy]) / GOAL_SCALE, abs=1e-4)
        text = ns[markers.NS_TEXT][0].text
        assert f"step {step.step}" in text and f"{step.speed * 3.6:5.1f} km/h" in text
        assert f"steer {step.control.steer:+.2f}" in text and f"reward {step.reward:+.3f}" in text

    # TF: map -> ego_vehicle at every step's stamp, at the step's pose. config/objects.json spawns
    # sensor.pseudo.tf, so the simulator publishes it, as the real bridge does (tf_sensor.py), and every sensor's
    # mount with its data (sensor.py); the viz node's auto mode sees that and stays out of TF.
    ego_tf: dict[int, TransformStamped] = {
        bridge.stamp_to_ns(tr.header.stamp): tr
        for msg in got["tf"]
        for tr in msg.transforms
        if tr.child_frame_id == "ego_vehicle"
    }
    covered = [s for s in steps if s in ego_tf]
    assert len(covered) >= len(steps) - 1
    for stamp in covered:
        tr, step = ego_tf[stamp], steps[stamp]
        assert tr.header.frame_id == bridge.MAP_FRAME
        assert (tr.transform.translation.x, tr.transform.translation.y) == pytest.approx(
            (step.ego_pose.position.x, step.ego_pose.position.y)
        )
    assert not got["tf_static"], "the viz node published TF although the simulator does"
    mounts = {tr.child_frame_id: tr for msg in got["tf"] for tr in msg.transforms}
    cam = mounts["ego_vehicle/rgb_front"]
    assert cam.header.frame_id == "ego_vehicle"
    assert (cam.transform.translation.x, cam.transform.translation.y, cam.transform.translation.z) == (2.0, 0.0, 2.0)
    assert {"ego_vehicle/imu", "ego_vehicle/gnss"} <= set(mounts)
    assert "ego_vehicle/odometry" not in mounts  # pseudo sensors have no frame

    # the colour BEV: ego (white) at the centre column, a third of the height above the bottom
    assert got["bev"], "no BEV image although this test subscribed"
    bev = bridge.image_to_numpy(got["bev"][-1])
    assert got["bev"][-1].encoding == "rgb8" and bev.shape == (192, 192, 3)
    assert tuple(bev[192 - 64, 96]) == (255, 255, 255)

    assert late, "no map markers for a subscriber that joined late"
    kinds = by_ns(late[-1])
    assert {markers.NS_ROAD, markers.NS_SOLID, markers.NS_BROKEN} <= set(kinds)
    assert len(kinds[markers.NS_ROAD][0].points) > 1000


def test_auto_tf_leaves_tf_to_the_bridge(ros_node, tmp_path):
    """When another node (the CARLA bridge's sensor.pseudo.tf) publishes the ego's transform, stay quiet."""
    t = BridgeTopics()
    pub_odom = ros_node.create_publisher(Odometry, "/" + t.odometry, bridge.qos_default())
    pub_tf = ros_node.create_publisher(TFMessage, "/tf", tf_qos())
    seen: list[TransformStamped] = []
    ros_node.create_subscription(TFMessage, "/tf", lambda m: seen.extend(m.transforms), tf_qos())
    executor = SingleThreadedExecutor()
    executor.add_node(ros_node)
    with ProcessGroup(dict(os.environ), log=open(tmp_path / "nodes.log", "w")) as group:
        group.start(NodeSpec("viz", "carla_rl_viz.markers_node", "", {}))
        spin_for(executor, 20, lambda: pub_odom.get_subscription_count() > 0 and pub_tf.get_subscription_count() > 1)
        assert pub_odom.get_subscription_count() > 0, (tmp_path / "nodes.log").read_text()
        for i in range(30):  # the bridge: its TF and odometry every tick
            stamp = bridge.sim_time_msg(i * 0.05)
            bridge_tf = markers.transform("map", "ego_vehicle", 1.0, 1.0, 0.0, (0.0, 0.0, 0.0, 1.0), stamp)
            pub_tf.publish(TFMessage(transforms=[bridge_tf]))
            odom = Odometry(child_frame_id="ego_vehicle")
            odom.header.stamp, odom.header.frame_id = stamp, "map"
            odom.pose.pose = bridge.pose_msg(50.0, 50.0, 0.0)
            pub_odom.publish(odom)
            spin_for(executor, 0.05)
        spin_for(executor, 1.0)
    ours = [tr for tr in seen if tr.transform.translation.x == 50.0]
    assert len(seen) >= 20 and not ours, f"the viz node published {len(ours)} ego transforms beside the bridge's"
