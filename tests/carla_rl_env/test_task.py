"""DrivingTask observations and episode ends against hand-computed values on RLTown01."""
from __future__ import annotations

import math

import numpy as np
import pytest

from carla_rl_common.bridge import Control
from carla_rl_common.opendrive import RoadNetwork
from carla_rl_common.opendrive.types import RoadOption, RouteWaypoint
from carla_rl_env.settings import load_env_config
from carla_rl_env.task import MEASUREMENT_NAMES, MEASUREMENT_SCALES, DrivingTask, Frame, preprocess_image
from carla_rl_sim.towns import town_path


@pytest.fixture(scope="module")
def network():
    return RoadNetwork.from_file(town_path("RLTown01"))


def straight_route(network, length=60.0):
    """A route along one long straight lane (no junction), from 5 m in."""
    lane = next(l for l in network.driving_lanes() if l.junction < 0 and l.length > length + 10
                and np.ptp(np.unwrap(l.headings)) < 1e-6)
    s = np.arange(5.0, 5.0 + length + 0.1, 2.0)
    pts = [network.lane_point(lane.key, v) for v in s]
    return lane, [RouteWaypoint(x, y, yaw, lane.key, RoadOption.LANEFOLLOW) for x, y, yaw in pts]


def frame(x, y, yaw, speed=0.0, control=Control(), **kw) -> Frame:
    return Frame(stamp_ns=0, frame=0, x=x, y=y, yaw=yaw, speed=speed, acceleration=0.0, control=control, **kw)


def test_measurements_and_goal_vector(network):
    cfg = load_env_config()["env"]
    task = DrivingTask(cfg, network, 0.05)
    lane, route = straight_route(network)
    start, goal = route[0], route[-1]
    left = (-math.sin(start.yaw), math.cos(start.yaw))
    # 0.5 m left of the route, heading 0.1 rad to the left of it, 4 m/s
    f = frame(start.x + 0.5 * left[0], start.y + 0.5 * left[1], start.yaw + 0.1, speed=4.0,
              control=Control(throttle=0.3, steer=-0.2))
    obs = task.reset(route, f)
    m = dict(zip(MEASUREMENT_NAMES, obs["measurements"]))
    assert m["speed"] == pytest.approx(4.0 / MEASUREMENT_SCALES["speed"])
    assert m["lateral_offset"] == pytest.approx(0.5 / MEASUREMENT_SCALES["lateral_offset"], abs=1e-6)
    assert m["heading_error"] == pytest.approx(0.1 / math.pi, abs=1e-6)
    assert (m["throttle"], m["steer"]) == pytest.approx((0.3, -0.2))
    assert m["command_lanefollow"] == 1.0 and sum(v for k, v in m.items() if k.startswith("command_")) == 1.0
    assert m["goal_distance"] == pytest.approx(60.0 / MEASUREMENT_SCALES["goal_distance"], abs=0.01)
    assert m["speed_limit"] == pytest.approx(lane.speed_limit / MEASUREMENT_SCALES["speed_limit"])
    # the goal 60 m straight ahead along the lane, seen from a car turned 0.1 rad left and 0.5 m left of it
    dx, dy = goal.x - f.x, goal.y - f.y
    gx = math.cos(f.yaw) * dx + math.sin(f.yaw) * dy
    gy = -math.sin(f.yaw) * dx + math.cos(f.yaw) * dy
    scale = cfg["observation"]["goal_scale"]
    assert obs["goal"] == pytest.approx([gx / scale, gy / scale], abs=1e-5)
    assert gx > 59 and gy < 0  # ahead, and to the right of a car pointing left of the route


def test_progress_reward_goal_and_frame_stack(network):
    cfg = load_env_config([], {"env": {"observation": {"frame_stack": 3},
                                       "reward": {"terms": {"route_progress": 1.0, "goal_bonus": 10.0}}}})["env"]
    task = DrivingTask(cfg, network, 0.05)
    _, route = straight_route(network, 20.0)
    start = route[0]
    obs = task.reset(route, frame(start.x, start.y, start.yaw))
    assert obs["measurements"].shape == (3 * len(MEASUREMENT_NAMES),)
    c, s = math.cos(start.yaw), math.sin(start.yaw)
    tr = task.step(frame(start.x + 2.0 * c, start.y + 2.0 * s, start.yaw, speed=5.0))
    assert tr.reward_terms["route_progress"] == pytest.approx(2.0, abs=1e-6)
    # the stack: oldest first, the newest frame last
    n = len(MEASUREMENT_NAMES)
    speed = MEASUREMENT_NAMES.index("speed")
    assert tr.observation["measurements"][speed] == 0.0 and tr.observation["measurements"][2 * n + speed] == 0.5
    tr = task.step(frame(start.x + 18.0 * c, start.y + 18.0 * s, start.yaw, speed=5.0))
    assert tr.terminated and tr.reason == "goal_reached" and task.stats.success
    assert tr.reward_terms["goal_bonus"] == 10.0


@pytest.mark.parametrize("reason,make", [
    ("collision", lambda st: frame(st.x, st.y, st.yaw, collisions=[(1001, 5000.0)])),
    ("route_deviation", lambda st: frame(st.x + 50.0, st.y + 50.0, st.yaw)),
    ("wrong_way", lambda st: frame(st.x, st.y, st.yaw + math.pi, speed=3.0)),
])
def test_episode_ends(network, reason, make):
    cfg = load_env_config([], {"env": {"episode": {"terminate_on_off_road": False}}})["env"]
    task = DrivingTask(cfg, network, 0.05)
    _, route = straight_route(network)
    task.reset(route, frame(route[0].x, route[0].y, route[0].yaw))
    tr = task.step(make(route[0]))
    assert tr.terminated and not tr.truncated and tr.reason == reason


def test_stuck_and_time_limit_truncate(network):
    cfg = load_env_config([], {"env": {"episode": {"stuck_seconds": 0.5}}})["env"]
    task = DrivingTask(cfg, network, 0.05)
    _, route = straight_route(network)
    st = route[0]
    task.reset(route, frame(st.x, st.y, st.yaw))
    trs = [task.step(frame(st.x, st.y, st.yaw)) for _ in range(10)]
    assert trs[-1].truncated and trs[-1].reason == "stuck" and not any(t.truncated for t in trs[:-1])
    # time limit: route length / min average speed + margin
    assert task.time_limit == pytest.approx(task.route.length / 2.0 + 10.0)


def test_camera_preprocessing():
    image = np.zeros((60, 80, 4), np.uint8)
    image[:30, :, 2] = 255  # red top half (BGRA)
    out = preprocess_image(image, {"width": 16, "height": 12, "crop": [0, 30, 0, 0]})
    assert out.shape == (12, 16, 3) and (out[..., 2] == 255).all() and (out[..., :2] == 0).all()
    gray = preprocess_image(image, {"width": 8, "height": 6, "grayscale": True})
    assert gray.shape == (6, 8, 1) and gray[0, 0, 0] > 0 and gray[-1, 0, 0] == 0


def test_bev_observation(network):
    cfg = load_env_config([], {"env": {"observation": {"bev": True, "bev_size": 64}}})["env"]
    task = DrivingTask(cfg, network, 0.05)
    _, route = straight_route(network)
    st = route[0]
    obs = task.reset(route, frame(st.x, st.y, st.yaw, vehicles=np.array([[st.x + 10 * math.cos(st.yaw),
                                                                          st.y + 10 * math.sin(st.yaw), st.yaw,
                                                                          4.5, 1.9, 1.5]])))
    bev = obs["bev"]
    assert bev.shape == (64, 64, 6) and task.observation_space["bev"].shape == bev.shape
    road, route_ch, ego, vehicles = bev[..., 0], bev[..., 3], bev[..., 4], bev[..., 5]
    assert ego.any() and road[ego > 0].all()  # the ego stands on the road
    assert route_ch.any() and vehicles.any()
    rows = np.nonzero(vehicles)[0]
    assert rows.max() < np.nonzero(ego)[0].min()  # the car 10 m ahead is drawn above the ego (ego faces up)
