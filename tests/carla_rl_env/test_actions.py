from __future__ import annotations

import numpy as np
import pytest

from carla_rl_common.config import ConfigError
from carla_rl_env.actions import CARLA_ORIGINAL_TABLE, ActionMapper


def mapper(**kw):
    cfg = {
        "type": "continuous",
        "combined_throttle_brake": True,
        "table": "carla-original",
        "throttle_cutoff_kmh": 30.0,
    }
    cfg.update(kw)
    return ActionMapper(cfg)


def test_continuous_combined():
    m = mapper()
    assert m.space.shape == (2,)
    c = m.to_control(np.array([0.3, 0.5]))
    assert (c.steer, c.throttle, c.brake) == pytest.approx((0.3, 0.5, 0.0))
    c = m.to_control(np.array([-2.0, -0.7]))  # out of range is clipped
    assert (c.steer, c.throttle, c.brake) == pytest.approx((-1.0, 0.0, 0.7))
    c = m.to_control(np.array([np.nan, 0.2]))
    assert c.steer == 0.0


def test_continuous_separate():
    m = mapper(combined_throttle_brake=False)
    c = m.to_control(np.array([0.1, 0.6, 0.2]))
    assert (c.steer, c.throttle, c.brake) == pytest.approx((0.1, 0.6, 0.2))
    assert m.from_control(c) == pytest.approx([0.1, 0.6, 0.2])


def test_carla_original_table_and_cutoff():
    m = mapper(type="discrete")
    assert m.space.n == 13 == len(CARLA_ORIGINAL_TABLE)
    full_throttle = CARLA_ORIGINAL_TABLE.index((1.0, 0.0))
    assert m.to_control(full_throttle, speed=20 / 3.6).throttle == 1.0
    assert m.to_control(full_throttle, speed=31 / 3.6).throttle == 0.0  # the paper's 30 km/h cut-off
    brake = CARLA_ORIGINAL_TABLE.index((-1.0, 0.0))
    c = m.to_control(brake)
    assert (c.throttle, c.brake) == (0.0, 1.0)
    left = CARLA_ORIGINAL_TABLE.index((0.0, -0.5))
    assert m.from_control(m.to_control(left)) == left


def test_bad_action_config():
    with pytest.raises(ConfigError, match="env.action.type"):
        mapper(type="joystick")
    with pytest.raises(ConfigError, match="env.action.table"):
        mapper(type="discrete", table="nope")
