"""The bird's-eye view: CARLA-Roach style masks rendered by the env itself from the map, the route and the
other vehicles (so it works against real CARLA, whose bridge sends no BEV)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from gymnasium import spaces

from carla_rl_common.bev import BevRenderer
from carla_rl_env.observations.base import ObservationContext, ObservationPart

if TYPE_CHECKING:
    from carla_rl_common.opendrive import RoadNetwork
    from carla_rl_env.task import Frame

#: Channels of the BEV observation, as :class:`~carla_rl_common.bev.BevRenderer` draws them by default.
BEV_CHANNELS = ("road", "marking_solid", "marking_broken", "route", "ego", "vehicles")


class BevObservation(ObservationPart):
    """``(bev_size, bev_size, len(BEV_CHANNELS))`` uint8 masks (0/255), the ego facing up a quarter of the
    view above the bottom edge. Without a ``network`` the part has its space only (a spec query before the
    map arrived)."""

    key = "bev"

    def __init__(self, observation: dict[str, Any], network: RoadNetwork | None, ego_extent: tuple[float, float]):
        self.size = int(observation["bev_size"])
        self.ego_extent = ego_extent
        self.renderer = (
            None
            if network is None
            else BevRenderer(
                network.lanes,
                size=self.size,
                pixels_per_meter=float(observation["bev_pixels_per_meter"]),
                ego_offset=self.size // 4,
            )
        )

    @property
    def space(self) -> spaces.Box:
        return spaces.Box(0, 255, (self.size, self.size, len(BEV_CHANNELS)), np.uint8)

    def reset(self) -> None:
        if self.renderer is not None:
            self.renderer.reset()

    def observe(self, frame: Frame, context: ObservationContext) -> np.ndarray:
        route = context.route
        raster = self.renderer.render(
            (frame.x, frame.y, frame.yaw), self.ego_extent, frame.vehicles, route.xy[route.index :]
        )
        return np.ascontiguousarray(raster.transpose(1, 2, 0))
