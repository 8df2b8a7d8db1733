"""Each reward term against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from carla_rl_common import bridge
from carla_rl_common.config import ConfigError
from carla_rl_common.opendrive.types import RoadOption, RouteWaypoint
from carla_rl_env import rewards as R
from carla_rl_env.route import LEAD_HORIZON, RouteTracker
from carla_rl_env.settings import ENV_SCHEMA, load_env_config


def ctx(**kw) -> R.StepContext:
    base = dict(
        dt=0.05,
        speed=5.0,
        speed_prev=4.0,
        target_speed=8.0,
        remaining=100.0,
        remaining_prev=100.4,
        lateral_offset=0.5,
        heading_error=0.2,
        steer=0.1,
        steer_prev=-0.1,
        collision_impulse=0.0,
        collision_damage=0.0,
        collision_damage_prev=0.0,
        lane_invasion_cost=0.0,
        off_road=0.0,
        off_road_prev=0.0,
        opposite_lane=0.0,
        opposite_lane_prev=0.0,
        goal_reached=False,
    )
    base.update(kw)
    return R.StepContext(**base)


def test_route_progress():
    assert R.route_progress(ctx()) == pytest.approx(0.4)


def test_speed_tracking():
    assert R.speed_tracking(ctx(speed=8.0)) == pytest.approx(1.0)
    assert R.speed_tracking(ctx(speed=6.0)) == pytest.approx(0.75)
    assert R.speed_tracking(ctx(speed=0.0)) == pytest.approx(0.0)
    assert R.speed_tracking(ctx(speed=20.0)) == pytest.approx(0.0)


def test_lane_centering_and_heading():
    assert R.lane_centering(ctx(lateral_offset=-0.5)) == pytest.approx(-0.5)
    assert R.lane_centering(ctx(lateral_offset=5.0)) == pytest.approx(-2.0)  # capped
    assert R.heading_alignment(ctx(heading_error=math.pi / 3)) == pytest.approx(-0.5)


def test_collision_scaled_by_impulse():
    assert R.collision(ctx()) == 0.0
    assert R.collision(ctx(collision_impulse=2000.0)) == pytest.approx(-3.0)


def test_lane_invasion_by_marking_type():
    # The codes are carla.LaneMarkingType values, as the bridge forwards them (ros-bridge
    # carla_ros_bridge/src/carla_ros_bridge/lane_invasion_sensor.py; LibCarla road/element/LaneMarking.h).
    costs = R.LaneMarkingCosts(load_env_config()["env"]["reward"])
    assert R.lane_invasion(ctx(lane_invasion_cost=costs((bridge.LANE_MARKING_SOLID,)))) == pytest.approx(-1.0)
    assert costs((bridge.LANE_MARKING_BROKEN, bridge.LANE_MARKING_OTHER)) == pytest.approx(0.4)
    broken = costs((bridge.LANE_MARKING_BROKEN,))
    for harder in (bridge.LANE_MARKING_SOLID, bridge.LANE_MARKING_SOLID_SOLID, bridge.LANE_MARKING_CURB):
        assert costs((harder,)) > broken
    assert costs((bridge.LANE_MARKING_GRASS,)) > costs((bridge.LANE_MARKING_SOLID,))
    assert costs((bridge.LANE_MARKING_NONE,)) == 0.0
    assert costs((42,)) == costs((bridge.LANE_MARKING_OTHER,))  # a code CARLA does not define: as other


def test_lane_marking_costs_are_configured_by_name():
    assert set(ENV_SCHEMA["reward"]["lane_marking_costs"]) == set(bridge.LANE_MARKING_TYPES)  # every type named
    config = load_env_config([], {"env": {"reward": {"lane_marking_costs": {"curb": 5.0}}}})
    costs = R.LaneMarkingCosts(config["env"]["reward"])
    assert costs((bridge.LANE_MARKING_CURB, bridge.LANE_MARKING_SOLID)) == pytest.approx(6.0)
    with pytest.raises(ConfigError, match="lane_marking_costs.kerb"):
        load_env_config([], {"env": {"reward": {"lane_marking_costs": {"kerb": 5.0}}}})


def test_other_terms():
    assert R.off_road(ctx(off_road=0.25)) == pytest.approx(-0.25)
    assert R.steering_smoothness(ctx()) == pytest.approx(-0.2)
    assert R.goal_bonus(ctx(goal_reached=True)) == 1.0 and R.goal_bonus(ctx()) == 0.0
    assert R.time_penalty(ctx()) == -1.0


def test_carla_paper_reward():
    # d: 100.4 m -> 100 m = 0.0004 km; v: 4 -> 5 m/s = 14.4 -> 18 km/h; c: +500; s: 0 -> 0.2; o: 0.1 -> 0
    c = ctx(
        collision_damage=1500.0,
        collision_damage_prev=1000.0,
        off_road=0.2,
        off_road_prev=0.0,
        opposite_lane=0.0,
        opposite_lane_prev=0.1,
    )
    expected = 1000 * 0.0004 + 0.05 * 3.6 - 0.00002 * 500 - 2 * 0.2 - 2 * (-0.1)
    assert R.carla_paper(c) == pytest.approx(expected)


def test_weighted_sum():
    reward = R.Reward({"route_progress": 2.0, "time_penalty": 0.5})
    values = reward(ctx())
    assert reward.names == ("route_progress", "time_penalty")
    assert values == pytest.approx([0.8, -0.5])


def test_footprint_points_cover_the_box():
    pts = R.footprint_points(10.0, 5.0, math.pi / 2, length=4.0, width=2.0)
    assert pts.shape == (15, 2)
    assert pts[:, 0].min() == pytest.approx(9.0) and pts[:, 0].max() == pytest.approx(11.0)
    assert pts[:, 1].min() == pytest.approx(3.0) and pts[:, 1].max() == pytest.approx(7.0)


class HalfRoad:
    """A stand-in network: driving lanes where y < 0 (heading +x) and 0 <= y < 3.5 (heading -x)."""

    def locate_many(self, xy, yaw):
        on_road = xy[:, 1] < 3.5
        lane_heading = np.where(xy[:, 1] < 0, 0.0, math.pi)
        err = (yaw - lane_heading + math.pi) % (2 * math.pi) - math.pi
        return {"on_road": on_road, "heading_error": err}


def test_footprint_fractions():
    # heading +x just right of the centre line: the footprint's rows at y = -1, 0, +1 (left row opposite)
    off, opposite = R.footprint_fractions(HalfRoad(), 0.0, -0.0001, 0.0, 4.0, 2.0)
    assert (off, opposite) == (0.0, pytest.approx(1 / 3))
    # centred on the road edge: rows at y = 2.5 (on the road), 3.5 and 4.5 (off it)
    off, opposite = R.footprint_fractions(HalfRoad(), 0.0, 3.5, 0.0, 4.0, 2.0)
    assert (off, opposite) == (pytest.approx(2 / 3), pytest.approx(1 / 3))


def test_target_speed_caps():
    """reward.target_speed, capped by the speed limit, the curves ahead and the stop behind the lead vehicle."""
    xy = [(float(x), 0.0) for x in range(0, 100, 2)]  # a straight road: no curve cap
    route = RouteTracker([RouteWaypoint(x, y, 0.0, (0, 0, -1), RoadOption.LANEFOLLOW) for x, y in xy])
    plain = R.TargetSpeed({"target_speed": 8.0})
    assert plain(route, 0.0, LEAD_HORIZON) == 8.0 and plain(route, 5.0, LEAD_HORIZON) == 5.0
    assert plain(route, 0.0, 3.0) == 8.0  # no lead_gap configured: the lead vehicle does not count
    lead = R.TargetSpeed({"target_speed": 8.0, "lead_gap": 6.0, "deceleration": 2.0})
    assert lead(route, 0.0, 10.0) == pytest.approx(math.sqrt(2.0 * 2.0 * 4.0))  # stop 6 m behind it
    assert lead(route, 0.0, 5.0) == 0.0 and lead(route, 0.0, LEAD_HORIZON) == 8.0
    curve = R.TargetSpeed({"target_speed": 8.0, "curve_lateral_acceleration": 2.0})
    assert curve(route, 0.0, LEAD_HORIZON) == 8.0  # the straight's curve speed is unbounded
    arc = [(20.0 * math.sin(t), 20.0 * (1 - math.cos(t))) for t in np.arange(0.0, 1.5, 0.1)]  # radius 20 m
    bend = RouteTracker([RouteWaypoint(x, y, 0.0, (0, 0, -1), RoadOption.LANEFOLLOW) for x, y in arc])
    assert curve(bend, 0.0, LEAD_HORIZON) == pytest.approx(math.sqrt(2.0 * 20.0), rel=0.05)
