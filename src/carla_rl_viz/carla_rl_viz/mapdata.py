"""The town as the viewers draw it: lane outlines from the OpenDRIVE text the bridge publishes on world_info.

Kept free of ROS so the browser view, the Foxglove stream and their tests share one reading of the map.
Coordinates are the ROS ``map`` frame (= OpenDRIVE inertial frame), metres, rounded to decimetres (a view needs
no more).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from carla_rl_common.opendrive import RoadNetwork

DRAWN_LANE_TYPES = ("driving", "sidewalk", "shoulder", "parking", "biking")
OUTLINE_SPACING = 2.0  # metres between kept boundary samples (lanes are sampled at 0.5 m; a view needs less)


def decimate(points: np.ndarray, spacing: float = OUTLINE_SPACING) -> np.ndarray:
    """Every sample about ``spacing`` metres apart along the polyline, first and last kept."""
    if len(points) <= 2:
        return points
    step = np.linalg.norm(np.diff(points, axis=0), axis=1)
    along = np.concatenate([[0.0], np.cumsum(step)])
    keep = np.unique(np.searchsorted(along, np.arange(0.0, along[-1], spacing)))
    keep = np.append(keep[keep < len(points) - 1], len(points) - 1)
    return points[keep]


def lane_outline(lane: Any, spacing: float = OUTLINE_SPACING) -> np.ndarray:
    """Closed polygon of one lane: its left boundary forward, its right boundary back."""
    return np.concatenate([decimate(lane.left_boundary, spacing), decimate(lane.right_boundary, spacing)[::-1]])


def map_geometry(network: RoadNetwork, spacing: float = OUTLINE_SPACING) -> dict[str, Any]:
    """JSON-ready map: name, bounds and one flat ``[x0, y0, x1, y1, ...]`` polygon per drawn lane.

    Flat lists keep the JSON small (a town is sent once per browser connection); ``kind`` is the lane type
    and ``junction`` tells lanes inside junctions, which overlap, apart.
    """
    lanes = []
    for lane in network.lanes.values():
        if lane.type not in DRAWN_LANE_TYPES or len(lane.left_boundary) < 2:
            continue
        outline = lane_outline(lane, spacing)
        lanes.append(
            {"kind": lane.type, "junction": lane.junction >= 0, "points": np.round(outline, 1).reshape(-1).tolist()}
        )
    # driving lanes last, so sidewalks never paint over the road
    lanes.sort(key=lambda item: item["kind"] == "driving")
    xmin, ymin, xmax, ymax = network.bounds
    return {"name": network.name, "bounds": [round(float(v), 2) for v in (xmin, ymin, xmax, ymax)], "lanes": lanes}


def map_from_opendrive(text: str, source: str) -> dict[str, Any]:
    """Parse OpenDRIVE text (as world_info carries it) into :func:`map_geometry`; ValueError names ``source``."""
    return map_geometry(RoadNetwork.from_string(text, source=source))
