"""The road surface a car drives on without a contact, on CARLA's own Town01 and Town02 (``../shared``).

CARLA paves a junction whole and builds shoulders as asphalt; the kerbs are the sidewalks. The OpenDRIVE file
lists only lanes, so the points here come from the map itself: asphalt between a junction's connector lanes
(inside the junction's outline, on no lane), shoulders, and sidewalks. Each is checked on the simulator's
raster and end to end: an ego teleported there and rolled forward reports a collision exactly on a kerb.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from carla_rl_common.objects import parse_objects
from carla_rl_common.opendrive import RoadNetwork
from carla_rl_sim.core import Simulator

EGO = {"objects": [{"type": "vehicle.tesla.model3", "id": "ego_vehicle", "sensors": []}]}


def _inside(polygon: np.ndarray, point: np.ndarray, margin: float = 0.0) -> bool:
    return cv2.pointPolygonTest(polygon.astype(np.float32), (float(point[0]), float(point[1])), True) >= margin


@pytest.fixture(scope="module", params=["Town01", "Town02"])
def sim(request, shared_maps) -> Simulator:
    network = RoadNetwork.from_file(shared_maps / f"{request.param}.xodr")
    return Simulator(network, parse_objects(EGO, "test", embedded=True), 0.05, 0, 0)


def _uncovered_junction_points(sim: Simulator, ppm: float = 20.0) -> list[np.ndarray]:
    """Points inside a junction's outline (0.3 m in) that no lane of any type covers, 0.1 m clear of every lane
    (asphalt in CARLA): a 20 px/m grid of each junction's box, lanes filled, eroded by two pixels."""
    network = sim.network
    lanes = [lane.polygon for lane in network.lanes.values() if len(lane.left_boundary) >= 2]
    points = []
    for hull in network.junction_surfaces.values():
        origin = hull.min(axis=0) - 1.0
        w, h = (np.ceil((hull.max(axis=0) + 1.0 - origin) * ppm)).astype(int)
        covered = np.zeros((h, w), np.uint8)
        for poly in lanes:
            cv2.fillPoly(covered, [np.round((poly - origin) * ppm).astype(np.int32)], 1)
        inside = np.zeros_like(covered)
        cv2.fillPoly(inside, [np.round((hull - origin) * ppm).astype(np.int32)], 1)
        inside = cv2.erode(inside, np.ones((13, 13), np.uint8))  # 0.3 m in
        free = (inside == 1) & (cv2.dilate(covered, np.ones((5, 5), np.uint8)) == 0)
        rows, cols = np.nonzero(free)
        points.extend(np.column_stack([cols, rows]) / ppm + origin)
    return points


def _lane_points(sim: Simulator, lane_type: str) -> list[np.ndarray]:
    """Centreline points of every lane of a type, 1 m from its ends."""
    out = []
    for lane in sim.network.lanes.values():
        if lane.type == lane_type and len(lane.centerline) >= 5 and lane.length > 3.0:
            keep = (lane.s > 1.0) & (lane.s < lane.length - 1.0)
            out.extend(lane.centerline[keep][::4])
    return out


def test_junction_asphalt_between_the_lanes_is_drivable(sim):
    points = _uncovered_junction_points(sim)
    assert len(points) > 100, "the junctions of this town leave asphalt uncovered by lanes"
    values = sim.lane_raster.lookup(np.array(points))
    assert not (values == 0).any(), "junction asphalt drawn as a kerb"
    assert (values == sim.lane_raster.SURFACE).mean() > 0.9  # the rest: lane pixels at the 5 px/m raster's edges


def test_shoulders_are_drivable_and_sidewalks_are_kerbs(sim):
    shoulders, sidewalks = _lane_points(sim, "shoulder"), _lane_points(sim, "sidewalk")
    assert shoulders and sidewalks
    assert (sim.lane_raster.lookup(np.array(shoulders)) != 0).all()  # 0.3 m wide here: partly lane pixels at 5 px/m
    assert (sim.lane_raster.lookup(np.array(sidewalks)) == 0).mean() > 0.97


def _collides_at(sim: Simulator, point: np.ndarray, yaw: float) -> bool:
    """Teleport the (small enough) ego there, stopped, tick; a contact shows as a static collision."""
    sim.set_transform("ego_vehicle", float(point[0]), float(point[1]), yaw)
    sim.set_target_velocity("ego_vehicle", 0.0, 0.0, yaw_rate=0.0)
    sim.tick()
    return any(other == 0 for other, _ in sim.egos["ego_vehicle"].collisions) or 0 in sim.egos["ego_vehicle"].in_contact


def test_an_ego_over_junction_asphalt_has_no_contact_and_one_on_a_sidewalk_has(sim):
    """Poses whose car corners are all inside a junction's outline and off every kerb, with at least one corner
    on asphalt no lane covers: CARLA reports no collision there, and neither may we."""
    from carla_rl_common.geometry import box_corners

    network = sim.network
    kerbs = [lane.polygon for lane in network.lanes.values() if lane.type == "sidewalk"]
    lanes = [lane.polygon for lane in network.lanes.values() if len(lane.left_boundary) >= 2]
    poses = []
    for p in _uncovered_junction_points(sim)[::25]:
        location = network.locate(*p)
        yaw = network.lane_point(location.key, location.s)[2]
        corners = box_corners(np.array((p[0], p[1], yaw, *sim.egos["ego_vehicle"].extent)))
        hull = next(h for h in network.junction_surfaces.values() if _inside(h, p))
        on_asphalt = all(_inside(hull, c, 0.3) for c in corners) and not any(
            _inside(k, c, -0.3) for k in kerbs for c in corners
        )
        if on_asphalt and any(not any(_inside(poly, c) for poly in lanes) for c in corners):
            poses.append((p, yaw))
    assert len(poses) >= 5
    for p, yaw in poses:
        sim.egos["ego_vehicle"].in_contact.clear()
        assert not _collides_at(sim, p, yaw), f"a static collision on junction asphalt at {p.round(1)}"
    sidewalk = _lane_points(sim, "sidewalk")[len(_lane_points(sim, "sidewalk")) // 2]
    sim.egos["ego_vehicle"].in_contact.clear()
    assert _collides_at(sim, sidewalk, 0.0)
