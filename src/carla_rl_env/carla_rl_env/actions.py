"""Action spaces and their mapping to CARLA vehicle controls.

Agents act in a gymnasium space and publish the resulting :class:`~carla_rl_common.bridge.Control` as a
``CarlaEgoVehicleControl``. Three kinds, chosen in config (``env.action``):

* ``continuous`` with ``combined_throttle_brake: true``: Box([-1, -1], [1, 1]) = (steer, acceleration);
  positive acceleration is throttle, negative is brake.
* ``continuous`` with ``combined_throttle_brake: false``: Box([-1, 0, 0], [1, 1, 1]) = (steer, throttle, brake).
* ``discrete``: an index into a table of (throttle-or-brake, steer) pairs, e.g. ``carla-original``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from carla_rl_common.bridge import Control
from carla_rl_common.config import ConfigError

# The 13 discrete actions of the seed project's `carla-original` table (after the CARLA paper's A3C agent,
# Dosovitskiy et al. 2017): (throttle-or-brake, steer); a negative first value brakes. Throttle is cut above
# 30 km/h, as the seed did.
CARLA_ORIGINAL_TABLE: tuple[tuple[float, float], ...] = (
    (0.0, 0.0),
    (-1.0, 0.0),
    (-0.5, 0.0),
    (-0.25, 0.0),
    (0.25, 0.0),
    (0.5, 0.0),
    (1.0, 0.0),
    (0.0, -1.0),
    (0.0, -0.5),
    (0.0, -0.25),
    (0.0, 0.25),
    (0.0, 0.5),
    (0.0, 1.0),
)
DISCRETE_TABLES = {"carla-original": CARLA_ORIGINAL_TABLE}
ACTION_TYPES = ("continuous", "discrete")


class ActionMapper:
    """Maps actions of the configured space to controls (and back, for logging and offline evaluation)."""

    def __init__(self, config: dict[str, Any], source: str = "<config>"):
        self.kind = config["type"]
        if self.kind not in ACTION_TYPES:
            raise ConfigError(source, "env.action.type", f"unknown {self.kind!r} (known: {', '.join(ACTION_TYPES)})")
        self.combined = bool(config["combined_throttle_brake"])
        # The CARLA paper's agent could not throttle above 30 km/h: its speed was capped by the action mapping.
        self.throttle_cutoff = float(config["throttle_cutoff_kmh"]) / 3.6
        self.table: tuple[tuple[float, float], ...] = ()
        if self.kind == "discrete":
            name = config["table"]
            if name not in DISCRETE_TABLES:
                raise ConfigError(
                    source, "env.action.table", f"unknown table {name!r} (known: {', '.join(DISCRETE_TABLES)})"
                )
            self.table = DISCRETE_TABLES[name]

    @property
    def space(self) -> spaces.Space:
        if self.kind == "discrete":
            return spaces.Discrete(len(self.table))
        if self.combined:
            return spaces.Box(np.array([-1.0, -1.0], np.float32), np.array([1.0, 1.0], np.float32))
        return spaces.Box(np.array([-1.0, 0.0, 0.0], np.float32), np.array([1.0, 1.0, 1.0], np.float32))

    def to_control(self, action: Any, speed: float = 0.0) -> Control:
        """The control for ``action``; ``speed`` (m/s) applies the discrete table's throttle cut-off."""
        if self.kind == "discrete":
            accel, steer = self.table[int(np.asarray(action).reshape(()))]
            throttle, brake = max(accel, 0.0), max(-accel, 0.0)
            if self.throttle_cutoff > 0 and speed > self.throttle_cutoff:
                throttle = 0.0
            return Control(throttle=throttle, steer=steer, brake=brake)
        a = np.clip(np.nan_to_num(np.asarray(action, dtype=np.float64).reshape(-1)), self.space.low, self.space.high)
        if self.combined:
            return Control(throttle=float(max(a[1], 0.0)), steer=float(a[0]), brake=float(max(-a[1], 0.0)))
        return Control(throttle=float(a[1]), steer=float(a[0]), brake=float(a[2]))

    def from_control(self, control: Control) -> np.ndarray | int:
        """The action closest to a recorded control (offline evaluation compares actions in this space)."""
        if self.kind == "discrete":
            accel = control.throttle - control.brake
            costs = [(accel - a) ** 2 + (control.steer - s) ** 2 for a, s in self.table]
            return int(np.argmin(costs))
        if self.combined:
            return np.array([control.steer, control.throttle - control.brake], np.float32)
        return np.array([control.steer, control.throttle, control.brake], np.float32)
