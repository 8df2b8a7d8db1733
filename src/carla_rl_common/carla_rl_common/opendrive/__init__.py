"""OpenDRIVE road network: parsing, lane graph, localisation and routing (no ROS dependency)."""

from .errors import NoRouteError, OpenDriveError
from .network import RoadNetwork
from .types import Junction, Lane, LaneKey, LaneLocation, RoadMark, RoadOption, RouteWaypoint, Signal

__all__ = [
    "Junction",
    "Lane",
    "LaneKey",
    "LaneLocation",
    "NoRouteError",
    "OpenDriveError",
    "RoadMark",
    "RoadNetwork",
    "RoadOption",
    "RouteWaypoint",
    "Signal",
]
