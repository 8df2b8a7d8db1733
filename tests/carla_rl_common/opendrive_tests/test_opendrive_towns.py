"""The shared CARLA towns: load time, lane-link continuity, spawn points, GeoJSON export."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from carla_rl_common.opendrive import RoadNetwork

TOWNS = ("Town01", "Town02", "Town04", "Town06")


@pytest.mark.parametrize("name", TOWNS)
def test_lane_links_are_continuous(town, name: str) -> None:
    continuous, links, failures = town(name).continuity_report(tol_m=0.10, tol_deg=3.0)
    assert links > 100
    assert continuous / links >= 0.99, failures[:10]


def test_town01_loads_fast(shared_maps) -> None:
    start = time.perf_counter()
    net = RoadNetwork.from_file(shared_maps / "Town01.xodr")
    assert time.perf_counter() - start < 2.0
    assert net.name == "Town01" and len(net.junctions) == 12 and len(net.signals) > 0
    assert all(lane.successors and lane.predecessors for lane in net.driving_lanes())


@pytest.mark.parametrize("name", TOWNS)
def test_spawn_points_are_on_road_outside_junctions(town, name: str) -> None:
    net = town(name)
    spawns = net.spawn_points(spacing=20.0, min_dist_to_junction=5.0)
    assert len(spawns) > 50
    assert all(net.lanes[key].junction < 0 for *_, key in spawns)
    xy = np.array([s[:2] for s in spawns])
    assert net.on_road_mask(xy).all()
    located = net.locate_many(xy, np.array([s[2] for s in spawns]))
    assert np.abs(located["heading_error"]).max() < 1e-6


def test_geojson_of_town01(town) -> None:
    net = town("Town01")
    collection = json.loads(json.dumps(net.to_geojson()))
    assert collection["type"] == "FeatureCollection"
    features = collection["features"]
    assert len(features) == len(net.driving_lanes())
    by_key = {str(lane.key): lane for lane in net.driving_lanes()}
    for feature in features:
        properties = feature["properties"]
        lane = by_key[properties["key"]]
        assert feature["geometry"]["type"] == "LineString"
        assert feature["geometry"]["coordinates"][0] == pytest.approx(lane.centerline[0].tolist(), abs=1e-3)
        assert feature["geometry"]["coordinates"][-1] == pytest.approx(lane.centerline[-1].tolist(), abs=1e-3)
        assert (properties["road"], properties["section"], properties["lane"]) == tuple(lane.key)
        assert properties["junction"] == lane.junction
        assert properties["successors"] == [str(k) for k in lane.successors] and properties["successors"]
    assert {f["properties"]["junction"] for f in features} >= {-1, *net.junctions}
