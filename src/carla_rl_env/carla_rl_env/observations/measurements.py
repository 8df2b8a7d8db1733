"""The measurement vector: the car's state, its situation on the route, the lead and the nearby vehicles.

:class:`MeasurementLayout` is the single description of the vector's entries for an ``env.observation``
config: their names (as the step message carries them), scales and blocks. The agents read it (hindsight
relabelling's route and goal-distance entries, ``carla_rl_agents.models``) instead of re-deriving offsets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from gymnasium import spaces

from carla_rl_common.geometry import world_to_ego, wrap_angle
from carla_rl_env.observations.base import ObservationContext, ObservationPart
from carla_rl_env.observations.nearby import NearbyVehicles, nearby_names
from carla_rl_env.route import COMMANDS

if TYPE_CHECKING:
    from carla_rl_env.task import Frame

#: The fixed block, first in every vector (configs that predate the other blocks get only these).
MEASUREMENT_NAMES = (
    "speed",
    "acceleration",
    "steer",
    "throttle",
    "brake",
    "lateral_offset",
    "heading_error",
    "junction_distance",
    *(f"command_{c.name.lower()}" for c in COMMANDS),
    "goal_distance",
    "speed_limit",
)
#: Scales that bring each measurement to roughly [-1, 1] for learning (others: 1); the vector holds scaled values.
MEASUREMENT_SCALES = {
    "speed": 10.0,
    "acceleration": 10.0,
    "lateral_offset": 2.0,
    "heading_error": math.pi,
    "junction_distance": 50.0,
    "goal_distance": 250.0,
    "speed_limit": 10.0,
    "target_speed": 10.0,
    "lead_distance": 40.0,
    "lead_closing_speed": 10.0,
}
#: Measurements that describe the route to the goal (and so change with the goal), besides the route points
#: ``route_{x,y}_<d>m``: hindsight relabelling (carla_rl_agents.algos.OnPolicyHER) zeroes them, and relabels
#: goal_distance, in relabelled observations.
ROUTE_MEASUREMENTS = (
    "lateral_offset",
    "heading_error",
    "junction_distance",
    "target_speed",
    *(f"command_{c.name.lower()}" for c in COMMANDS),
)
ROUTE_POINT_SCALE = 30.0  # m: ego-frame route points ahead are divided by this


def fixed_measurement_names(keep: list[str]) -> tuple[str, ...]:
    """The fixed block's names that ``env.observation.fixed_measurements`` keeps (empty: all), in the block's
    order; ``command`` stands for the command one-hot's entries.

    :raises ValueError: naming an unknown entry
    """
    if not keep:
        return MEASUREMENT_NAMES
    commands = tuple(n for n in MEASUREMENT_NAMES if n.startswith("command_"))
    known = [n for n in MEASUREMENT_NAMES if n not in commands] + ["command"]
    unknown = [n for n in keep if n not in known]
    if unknown:
        raise ValueError(f"unknown fixed measurement(s) {', '.join(map(repr, unknown))} (known: {', '.join(known)})")
    return tuple(n for n in MEASUREMENT_NAMES if n in keep or (n in commands and "command" in keep))


class MeasurementLayout:
    """Names and positions of one frame's measurement vector for an ``env.observation`` config.

    Blocks, in this order (each addition comes last, so a policy can be warm-started by zero-padding its
    first layer, and configs without a key, such as saved checkpoints', keep their vector):

    - ``fixed``: ``MEASUREMENT_NAMES``, or the subset ``fixed_measurements`` keeps;
    - ``route_lookahead``: ``target_speed`` and ``route_{x,y}_<d>m`` for each ``route_lookahead`` distance;
    - ``lead_vehicle``: ``lead_distance``, ``lead_closing_speed``;
    - ``nearby_vehicles``: ``nearby_<i>_<feature>`` (``NEARBY_FEATURES``) per slot.

    An absent block is an empty slice.
    """

    def __init__(self, observation: Mapping[str, Any]):
        self.lookahead = tuple(float(d) for d in observation.get("route_lookahead") or [])
        blocks: dict[str, tuple[str, ...]] = {
            "fixed": fixed_measurement_names(observation.get("fixed_measurements") or []),
            "route_lookahead": (),
            "lead_vehicle": (),
        }
        if self.lookahead:
            blocks["route_lookahead"] = (
                "target_speed",
                *(f"route_{axis}_{d:g}m" for d in self.lookahead for axis in "xy"),
            )
        if observation.get("lead_vehicle", False):
            blocks["lead_vehicle"] = ("lead_distance", "lead_closing_speed")
        self.nearby_count = int(observation.get("nearby_vehicles", 0) or 0)
        blocks["nearby_vehicles"] = nearby_names(self.nearby_count)
        self.names: tuple[str, ...] = ()
        self._blocks: dict[str, slice] = {}
        for block, names in blocks.items():
            self._blocks[block] = slice(len(self.names), len(self.names) + len(names))
            self.names += names
        self._index = {n: i for i, n in enumerate(self.names)}

    @property
    def size(self) -> int:
        """Entries of one frame (the vector holds ``frame_stack`` frames, oldest first)."""
        return len(self.names)

    def index(self, name: str) -> int:
        """Position of measurement ``name`` in one frame."""
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"no measurement {name!r} in this layout (known: {', '.join(self.names)})") from None

    def slice(self, block: str) -> slice:
        """Positions of a block (``fixed``, ``route_lookahead``, ``lead_vehicle``, ``nearby_vehicles``)."""
        return self._blocks[block]

    @staticmethod
    def scale(name: str) -> float:
        """Metres (or the measurement's unit) per unit of the stored value of ``name``."""
        return MEASUREMENT_SCALES.get(name, 1.0)

    @property
    def route_indices(self) -> tuple[int, ...]:
        """Entries that describe the route to the goal (``ROUTE_MEASUREMENTS`` and the route points ahead)."""
        return tuple(i for i, n in enumerate(self.names) if n in ROUTE_MEASUREMENTS or n.startswith("route_"))


class MeasurementObservation(ObservationPart):
    """The ``measurements`` float32 vector of :class:`MeasurementLayout`'s entries, scaled."""

    key = "measurements"

    def __init__(self, layout: MeasurementLayout, nearby_radius: float):
        self.layout = layout
        self.nearby = NearbyVehicles(layout.nearby_count, nearby_radius)

    @property
    def space(self) -> spaces.Box:
        return spaces.Box(-np.inf, np.inf, (self.layout.size,), np.float32)

    def observe(self, frame: Frame, context: ObservationContext) -> np.ndarray:
        r = context.route
        values = {
            "speed": frame.speed,
            "acceleration": frame.acceleration,
            "steer": frame.control.steer,
            "throttle": frame.control.throttle,
            "brake": frame.control.brake,
            "lateral_offset": r.lateral_offset(frame.x, frame.y),
            "heading_error": wrap_angle(frame.yaw - r.heading()),
            "junction_distance": r.distance_to_junction(context.in_junction),
            "goal_distance": r.remaining,
            "speed_limit": context.speed_limit,
        }
        lookahead = self.layout.lookahead
        if lookahead:
            values["target_speed"] = context.target_speed
            points = world_to_ego(r.points_ahead(lookahead), frame.x, frame.y, frame.yaw)
            for d, (px, py) in zip(lookahead, points):
                values[f"route_x_{d:g}m"], values[f"route_y_{d:g}m"] = px / ROUTE_POINT_SCALE, py / ROUTE_POINT_SCALE
        values["lead_distance"], values["lead_closing_speed"] = context.lead
        one_hot = r.command_one_hot()
        for i, c in enumerate(COMMANDS):
            values[f"command_{c.name.lower()}"] = one_hot[i]
        named = self.layout.names[: self.layout.slice("nearby_vehicles").start]
        out = np.array([values[n] / self.layout.scale(n) for n in named], np.float32)
        if self.nearby.count:
            out = np.concatenate([out, self.nearby.observe(frame).ravel()])
        return out
