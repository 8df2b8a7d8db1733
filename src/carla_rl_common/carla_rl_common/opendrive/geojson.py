"""GeoJSON export of the driving lanes (map frame coordinates, not WGS84)."""

from __future__ import annotations

from typing import Any

from .types import Lane


def lanes_to_geojson(lanes: list[Lane]) -> dict[str, Any]:
    """A FeatureCollection with one LineString per lane, centreline in driving direction."""
    return {"type": "FeatureCollection", "features": [_feature(lane) for lane in lanes]}


def _feature(lane: Lane) -> dict[str, Any]:
    return {
        "type": "Feature",
        "geometry": {"type": "LineString", "coordinates": lane.centerline.round(3).tolist()},
        "properties": {
            "key": str(lane.key),
            "road": lane.key.road,
            "section": lane.key.section,
            "lane": lane.key.lane,
            "junction": lane.junction,
            "successors": [str(key) for key in lane.successors],
        },
    }
