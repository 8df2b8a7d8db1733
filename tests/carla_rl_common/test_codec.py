"""The codec: Step <-> observation, EpisodeSummary <-> record (the drive JSON keys), values as sent."""

from __future__ import annotations

import numpy as np
from carla_rl_msgs.msg import EpisodeSummary, Step

from carla_rl_common import codec
from carla_rl_common.bridge import Control

RECORD_KEYS = [
    "env_id",
    "episode",
    "scenario_id",
    "seed",
    "length",
    "return",
    "success",
    "route_completion",
    "collisions",
    "lane_invasions",
    "distance",
    "mean_speed",
    "termination_reason",
    "reward_terms",
]


def test_observation_round_trips_through_a_step():
    observation = {
        "rgb_front": np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3),
        "bev": np.ones((4, 4, 5), np.uint8),
        "measurements": np.array([0.1, 0.2], np.float32),
        "goal": np.array([3.0, -1.5], np.float32),
    }
    msg = codec.put_observation(Step(), observation, ["speed", "steer"])
    assert [i.encoding for i in msg.images] == ["bgr8", "8UC5"] and list(msg.measurement_names) == ["speed", "steer"]
    back = codec.step_observation(msg)
    assert back.keys() == observation.keys()
    for key, value in observation.items():
        np.testing.assert_array_equal(back[key], value)
        assert back[key].dtype == value.dtype


def test_summary_record_round_trips_with_the_drive_keys():
    record = {
        "env_id": "env_1",
        "episode": 3,
        "scenario_id": "s7",
        "seed": 11,
        "length": 120,
        "return": 4.5,
        "success": True,
        "route_completion": 0.75,
        "collisions": 1,
        "lane_invasions": 2,
        "distance": 80.5,
        "mean_speed": 6.25,
        "termination_reason": "goal_reached",
        "reward_terms": {"a": 1.5, "b": -0.5},
    }
    back = codec.summary_record(codec.summary_msg(record, EpisodeSummary()))
    assert list(back) == RECORD_KEYS and back == record


def test_control_as_sent_rounds_to_float32():
    sent = codec.control_as_sent(Control(throttle=0.1, steer=-1 / 3, brake=0.0, gear=1))
    assert sent.throttle == float(np.float32(0.1)) and sent.steer == float(np.float32(-1 / 3)) and sent.gear == 1
    assert codec.control_as_sent(sent) == sent
