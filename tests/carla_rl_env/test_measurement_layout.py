"""``env.observation.fixed_measurements``: the camera agent's vector holds the speed and the route command only."""

from __future__ import annotations

import pytest

from carla_rl_env.observations.measurements import MEASUREMENT_NAMES, MeasurementLayout


def test_all_fixed_measurements_by_default():
    assert MeasurementLayout({}).names == MEASUREMENT_NAMES


def test_speed_and_command_only():
    layout = MeasurementLayout({"fixed_measurements": ["command", "speed"], "lead_vehicle": False})
    commands = tuple(n for n in MEASUREMENT_NAMES if n.startswith("command_"))
    assert layout.names == ("speed", *commands)  # the block's order, not the config's
    assert "lateral_offset" not in layout.names and "goal_distance" not in layout.names


def test_an_unknown_name_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="'heading'.*known: speed"):
        MeasurementLayout({"fixed_measurements": ["speed", "heading"]})
