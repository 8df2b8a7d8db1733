"""DrivingTask observations and episode ends against hand-computed values on RLTown01."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from carla_rl_agents.settings import load_run_config
from carla_rl_common.bridge import Control
from carla_rl_common.config import ConfigError
from carla_rl_common.opendrive import RoadNetwork
from carla_rl_common.opendrive.types import RoadOption, RouteWaypoint
from carla_rl_common.towns import town_path
from carla_rl_env.observations.images import preprocess_image
from carla_rl_env.observations.measurements import MEASUREMENT_NAMES, MEASUREMENT_SCALES, MeasurementLayout
from carla_rl_env.observations.nearby import NEARBY_FEATURES
from carla_rl_env.settings import ENV_SCHEMA, load_env_config
from carla_rl_env.task import DrivingTask, Frame
from carla_rl_env.termination import Termination

CONFIG = Path(__file__).resolve().parents[2] / "config"


@pytest.fixture(scope="module")
def network():
    return RoadNetwork.from_file(town_path("RLTown01"))


def straight_route(network, length=60.0):
    """A route along one long straight lane (no junction), from 5 m in."""
    lane = next(
        lane
        for lane in network.driving_lanes()
        if lane.junction < 0 and lane.length > length + 10 and np.ptp(np.unwrap(lane.headings)) < 1e-6
    )
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
    f = frame(
        start.x + 0.5 * left[0],
        start.y + 0.5 * left[1],
        start.yaw + 0.1,
        speed=4.0,
        control=Control(throttle=0.3, steer=-0.2),
    )
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
    cfg = load_env_config(
        [],
        {"env": {"observation": {"frame_stack": 3}, "reward": {"terms": {"route_progress": 1.0, "goal_bonus": 10.0}}}},
    )["env"]
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


@pytest.mark.parametrize(
    "reason,make",
    [
        ("collision", lambda st: frame(st.x, st.y, st.yaw, collisions=[(1001, 5000.0)])),
        ("route_deviation", lambda st: frame(st.x + 50.0, st.y + 50.0, st.yaw)),
        ("wrong_way", lambda st: frame(st.x, st.y, st.yaw + math.pi, speed=3.0)),
    ],
)
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
    assert task.termination.time_limit == pytest.approx(task.route.length / 2.0 + 10.0)


def test_termination_rules_and_their_order():
    """Termination before truncation, and within each the first rule that holds names the reason."""
    episode = {**ENV_SCHEMA["episode"], "max_episode_steps": 3}
    end = Termination(episode, 0.5)
    end.reset(route_length=10.0)
    assert end.time_limit == 10.0 / 2.0 + 10.0
    on_route, off_route = SimpleNamespace(remaining=50.0, deviation=0.0), SimpleNamespace(remaining=2.0, deviation=9.0)
    crash = frame(0.0, 0.0, 0.0, speed=2.0, collisions=[(7, 10.0)])
    assert end.goal_reached(off_route) and not end.goal_reached(on_route)
    assert end.step(crash, off_route, 0.9, math.pi, True, 1) == (True, False, "goal_reached")
    assert end.step(crash, off_route, 0.9, math.pi, False, 1).reason == "collision"
    driving = frame(0.0, 0.0, 0.0, speed=2.0)
    assert end.step(driving, off_route, 0.5, math.pi, False, 1).reason == "off_road"
    assert end.step(driving, off_route, 0.4, math.pi, False, 1).reason == "route_deviation"
    assert end.step(driving, on_route, 0.4, math.pi, False, 1).reason == "wrong_way"
    assert end.step(driving, on_route, 0.0, 0.0, False, 2) == (False, False, "")
    assert end.step(driving, on_route, 0.0, 0.0, False, 3) == (False, True, "max_episode_steps")
    assert end.elapsed == pytest.approx(3.5) and end.stuck_time == 0.0
    for speed, reason in ((0.0, "stuck"), (2.0, "time_limit")):  # 10 s standing still; 12 s for 4 m of route
        end.reset(route_length=4.0)
        ends = [end.step(frame(0.0, 0.0, 0.0, speed=speed), on_route, 0.0, 0.0, False, 1).reason for _ in range(24)]
        first = 20 if reason == "stuck" else 24
        assert ends[:first] == [""] * (first - 1) + [reason], reason


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
    obs = task.reset(
        route,
        frame(
            st.x,
            st.y,
            st.yaw,
            vehicles=np.array([[st.x + 10 * math.cos(st.yaw), st.y + 10 * math.sin(st.yaw), st.yaw, 4.5, 1.9, 1.5]]),
        ),
    )
    bev = obs["bev"]
    assert bev.shape == (64, 64, 6) and task.observation_space["bev"].shape == bev.shape
    road, route_ch, ego, vehicles = bev[..., 0], bev[..., 3], bev[..., 4], bev[..., 5]
    assert ego.any() and road[ego > 0].all()  # the ego stands on the road
    assert route_ch.any() and vehicles.any()
    rows = np.nonzero(vehicles)[0]
    assert rows.max() < np.nonzero(ego)[0].min()  # the car 10 m ahead is drawn above the ego (ego faces up)


def nearby_task(network, k: int, radius: float = 30.0):
    cfg = load_env_config([], {"env": {"observation": {"nearby_vehicles": k, "nearby_radius": radius}}})["env"]
    return DrivingTask(cfg, network, 0.05)


def placed(st, forward: float, left: float, yaw: float = 0.0, speed: float = 0.0):
    """A vehicle box (and its world velocity) ``forward`` m ahead and ``left`` m left of pose ``st``, heading
    ``yaw`` rad left of it and driving at ``speed`` along its heading."""
    c, s = math.cos(st.yaw), math.sin(st.yaw)
    heading = st.yaw + yaw
    box = [st.x + forward * c - left * s, st.y + forward * s + left * c, heading, 4.5, 1.9, 1.5]
    return box, [speed * math.cos(heading), speed * math.sin(heading)]


def test_nearby_vehicles_in_ego_frame(network):
    _, route = straight_route(network)
    st = route[0]
    cars = [
        placed(st, 10.0, 0.0, speed=7.0),  # ahead, same way, 2 m/s faster than the ego
        placed(st, 0.0, 5.0, yaw=math.pi / 2, speed=3.0),  # left, crossing from right to left
        placed(st, -20.0, 0.0, yaw=math.pi),  # behind, parked the other way
        placed(st, 40.0, 0.0, speed=8.0),  # beyond the radius
        placed(st, 25.0, -25.0),
    ]  # 35 m away diagonally: beyond the radius too
    boxes, velocities = np.array([b for b, _ in cars]), np.array([v for _, v in cars])
    task = nearby_task(network, 5)
    obs = task.reset(route, frame(st.x, st.y, st.yaw, speed=5.0, vehicles=boxes, vehicle_velocities=velocities))
    names = task.measurement_names
    assert len(names) == obs["measurements"].shape[0] == task.observation_space["measurements"].shape[0]
    m = dict(zip(names, obs["measurements"]))
    slots = np.array([[m[f"nearby_{i}_{f}"] for f in NEARBY_FEATURES] for i in range(5)])
    np.testing.assert_allclose(
        slots,
        task.nearby_vehicles(frame(st.x, st.y, st.yaw, speed=5.0, vehicles=boxes, vehicle_velocities=velocities)),
        atol=0,
    )
    # nearest first: left (5 m), ahead (10 m), behind (20 m); two empty slots
    np.testing.assert_allclose(
        slots,
        [
            [0.0, 5 / 30, -5 / 10, 3 / 10, 0.0, 1.0, 1.0],  # ego-frame velocity (0, 3) minus the ego's (5, 0)
            [10 / 30, 0.0, 2 / 10, 0.0, 1.0, 0.0, 1.0],
            [-20 / 30, 0.0, -5 / 10, 0.0, -1.0, 0.0, 1.0],
            [0.0] * 7,
            [0.0] * 7,
        ],
        atol=1e-6,
    )
    # fewer slots than vehicles in range: the nearest ones
    two = nearby_task(network, 2)
    obs2 = two.reset(route, frame(st.x, st.y, st.yaw, speed=5.0, vehicles=boxes, vehicle_velocities=velocities))
    np.testing.assert_allclose(obs2["measurements"][-14:], slots[:2].ravel(), atol=1e-6)
    # a frame without velocities: the others count as standing still; the rest of the vector is unchanged
    still = task.reset(route, frame(st.x, st.y, st.yaw, speed=5.0, vehicles=boxes))["measurements"]
    np.testing.assert_allclose(still[-35:].reshape(5, 7)[:3, 2:4], [[-0.5, 0.0]] * 3, atol=1e-6)
    np.testing.assert_array_equal(still[:-35], obs["measurements"][:-35])
    # no vehicle in range: all slots zero
    empty = task.reset(route, frame(st.x, st.y, st.yaw, speed=5.0, vehicles=boxes[3:]))["measurements"]
    assert not empty[-35:].any()


def test_nearby_vehicles_follow_the_ego_frame(network):
    """Turned 90 degrees left, a car that was ahead is on the right, and its heading 90 degrees to the right."""
    _, route = straight_route(network)
    st = route[0]
    box, velocity = placed(st, 10.0, 0.0, speed=4.0)
    task = nearby_task(network, 1, radius=20.0)
    task.reset(route, frame(st.x, st.y, st.yaw))
    slot = task.nearby_vehicles(
        frame(
            st.x,
            st.y,
            st.yaw + math.pi / 2,
            speed=1.0,
            vehicles=np.array([box]),
            vehicle_velocities=np.array([velocity]),
        )
    )
    # ego velocity (1, 0) in its own frame; the car's (0, -4)
    np.testing.assert_allclose(slot, [[0.0, -10 / 20, -1 / 10, -4 / 10, 0.0, -1.0, 1.0]], atol=1e-6)


def test_nearby_measurement_names_are_appended():
    base = load_run_config([CONFIG / "base.yaml"], {"env": {"observation": {"nearby_vehicles": 4}}})
    base = base["env"]["observation"]
    names = MeasurementLayout(base).names
    k = base["nearby_vehicles"]
    assert k == 4 and len(names) == len(set(names))
    without = MeasurementLayout({**base, "nearby_vehicles": 0}).names
    assert names[: len(without)] == without and without[-1] == "lead_closing_speed"
    assert names[len(without) :] == tuple(f"nearby_{i}_{f}" for i in range(k) for f in NEARBY_FEATURES)
    assert len(names) == 27 + 7 * k  # base.yaml: 16 fixed, 9 route, 2 lead; then 7 per nearby vehicle
    # a config without the keys (a saved checkpoint's) keeps its vector
    assert MeasurementLayout({}).names == MEASUREMENT_NAMES
    assert load_env_config()["env"]["observation"]["nearby_vehicles"] == 0


def test_measurement_layout_names_blocks_and_route_entries():
    observation = load_run_config([CONFIG / "base.yaml"], {"env": {"observation": {"nearby_vehicles": 2}}})
    layout = MeasurementLayout(observation["env"]["observation"])
    names = layout.names
    assert layout.size == len(names) and all(names[layout.index(n)] == n for n in names)
    blocks = ("fixed", "route_lookahead", "lead_vehicle", "nearby_vehicles")
    assert layout.slice(blocks[0]) == slice(0, len(MEASUREMENT_NAMES))
    assert sum((names[layout.slice(b)] for b in blocks), ()) == names  # the blocks tile the vector, in order
    assert names[layout.slice("route_lookahead")][:3] == ("target_speed", "route_x_5m", "route_y_5m")
    assert names[layout.slice("lead_vehicle")] == ("lead_distance", "lead_closing_speed")
    nearby = names[layout.slice("nearby_vehicles")]
    assert nearby[0] == "nearby_0_x" and len(nearby) == 14
    route = {names[i] for i in layout.route_indices}
    assert route == {n for n in names if n.startswith(("route_", "command_"))} | {
        "lateral_offset",
        "heading_error",
        "junction_distance",
        "target_speed",
    }
    assert layout.scale("goal_distance") == MEASUREMENT_SCALES["goal_distance"] and layout.scale("steer") == 1.0
    old = MeasurementLayout({})  # a config without the later keys: the fixed block only, the rest empty
    assert old.names == MEASUREMENT_NAMES and old.slice("nearby_vehicles") == slice(16, 16)
    with pytest.raises(KeyError, match="no measurement 'lead_distance'"):
        old.index("lead_distance")


def test_nearby_vector_length_matches_names_with_frame_stack(network):
    cfg = load_run_config([CONFIG / "base.yaml"], {"env": {"observation": {"frame_stack": 2, "nearby_vehicles": 4}}})[
        "env"
    ]
    task = DrivingTask(cfg, network, 0.05)
    _, route = straight_route(network)
    st = route[0]
    box, velocity = placed(st, 8.0, 0.0, speed=3.0)
    obs = task.reset(
        route, frame(st.x, st.y, st.yaw, vehicles=np.array([box]), vehicle_velocities=np.array([velocity]))
    )
    n = len(task.measurement_names)
    assert obs["measurements"].shape == (2 * n,) == task.observation_space["measurements"].shape
    m = dict(zip(task.measurement_names, obs["measurements"][n:]))
    assert m["nearby_0_present"] == 1.0 and m["nearby_0_x"] == pytest.approx(8.0 / 30.0)
    assert m["nearby_1_present"] == 0.0


RANGE_ERRORS = [
    ("nearby_vehicles", -1, r"allowed \[0, 64\]"),
    ("nearby_radius", 0.0, r"allowed \(0, 1000000\] m"),
    ("nearby_radius", -5, r"allowed \(0, 1000000\] m"),
    ("nearby_radius", float("inf"), r"finite number in \(0, 1000000\] m"),
    ("nearby_radius", float("nan"), r"finite number in \(0, 1000000\] m"),
]
TYPE_ERRORS = [
    ("nearby_vehicles", 2.5, "expected int"),
    ("nearby_vehicles", True, "expected int"),
    ("nearby_radius", "far", "expected float"),
]


@pytest.mark.parametrize("key,value,problem", RANGE_ERRORS + TYPE_ERRORS)
def test_nearby_config_errors_name_file_and_key(tmp_path, key, value, problem):
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"env": {"observation": {"nearby_vehicles": 3, "nearby_radius": 25.0}}}))
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({"env": {"observation": {"frame_stack": 1}}}))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"env": {"observation": {key: value}}}))
    for paths in ([bad], [good, bad], [bad, other]):
        with pytest.raises(ConfigError, match=problem) as err:
            load_env_config(paths)
        assert (err.value.source, err.value.key) == (str(bad), f"env.observation.{key}")
    with pytest.raises(ConfigError, match=problem) as err:
        load_env_config([good], {"env": {"observation": {key: value}}})
    assert (err.value.source, err.value.key) == ("<command line>", f"env.observation.{key}")


@pytest.mark.parametrize("key,value,problem", RANGE_ERRORS)
def test_nearby_range_checked_where_the_task_is_built(tmp_path, network, key, value, problem):
    """The run config's loader checks the ranges (test_nearby_config_errors_name_file_and_key); the task checks
    them again for a config built in code, naming the source it is given."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"env": {"observation": {key: value}}}))
    with pytest.raises(ConfigError, match=problem):
        load_run_config([bad])
    env = load_run_config([])["env"]
    env["observation"][key] = value
    with pytest.raises(ConfigError, match=problem) as err:
        DrivingTask(env, network, 0.05, source="run.yaml")
    assert (err.value.source, err.value.key) == ("run.yaml", f"env.observation.{key}")
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"env": {"observation": {key: ENV_SCHEMA["observation"][key]}}}))
    DrivingTask(load_env_config([good])["env"], network, 0.05)


def test_lead_vehicle_gap_and_closing_speed(network):
    """The gap is bumper to bumper along the route to a car in the route's corridor; its change is the closing
    speed. A car beside the corridor or behind the ego is no lead vehicle."""
    cfg = load_env_config([], {"env": {"observation": {"lead_vehicle": True}}})["env"]
    task = DrivingTask(cfg, network, 0.05, vehicle_extent=(4.0, 1.8))
    _, route = straight_route(network)
    st = route[0]
    beside, behind = placed(st, 10.0, 3.0)[0], placed(st, -10.0, 0.0)[0]
    ahead = lambda d: np.array([placed(st, d, 0.5)[0], beside, behind])  # noqa: E731
    obs = task.reset(route, frame(st.x, st.y, st.yaw, vehicles=ahead(20.0)))
    m = dict(zip(task.measurement_names, obs["measurements"]))
    gap = 20.0 - (4.5 + 4.0) / 2.0
    assert m["lead_distance"] * MEASUREMENT_SCALES["lead_distance"] == pytest.approx(gap, abs=1e-4)
    assert m["lead_closing_speed"] == 0.0  # no earlier gap to difference
    tr = task.step(frame(st.x, st.y, st.yaw, vehicles=ahead(18.0)))  # along the route's 2 m spaced points
    m = dict(zip(task.measurement_names, tr.observation["measurements"]))
    assert m["lead_closing_speed"] * MEASUREMENT_SCALES["lead_closing_speed"] == pytest.approx(2.0 / 0.05, abs=1e-3)
    none = task.step(frame(st.x, st.y, st.yaw, vehicles=np.array([beside, behind])))
    m = dict(zip(task.measurement_names, none.observation["measurements"]))
    assert (m["lead_distance"], m["lead_closing_speed"]) == (1.0, 0.0)  # the horizon, 40 m / 40
