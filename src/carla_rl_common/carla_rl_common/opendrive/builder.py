"""Parsed OpenDRIVE -> sampled :class:`Lane` objects linked into a lane graph.

Lanes are sampled per lane section on one shared grid of road ``s`` (uniform spacing plus every
geometry, lane-offset and width-record boundary), so neighbouring lanes share sample stations
and borders are exact at geometry endpoints. Links are collected as undirected *contacts*
between lane ends and then oriented by each lane's driving direction, which treats lane links,
road links and junction connections the same way.

The number of samples is bounded before any is built (:data:`MAX_SAMPLES`; CARLA's Town04 needs 0.12
million), and every sampled point must lie within the parser's coordinate limit, so no file, however
crafted, makes the reader allocate more than a few hundred MB. A map without a driving lane is an error:
nothing could drive on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from .errors import OpenDriveError
from .parser import MAX_MAGNITUDE, Document, LaneSpec, RoadLink, RoadSpec, SectionSpec
from .types import Lane, LaneKey, RoadMark

_MIN_STEP = 1e-6  # sample stations closer than this are merged
MAX_SAMPLES = 4_000_000  # lane samples of a whole map (each lane's stations, summed): ~1.6 GB at most


@dataclass(frozen=True)
class _Contact:
    """Lane ``a``'s end ``end_a`` ("start"/"end" in road ``s``) touches lane ``b``'s end ``end_b``."""

    a: LaneKey
    end_a: str
    b: LaneKey
    end_b: str


def build_lanes(document: Document, spacing: float) -> dict[LaneKey, Lane]:
    """Sample every lane of every section and link successors/predecessors in driving direction.

    :raises OpenDriveError: more than :data:`MAX_SAMPLES` samples, a point beyond the coordinate limit, or
        no driving lane at all
    """
    check_document(document, spacing)
    lanes: dict[LaneKey, Lane] = {}
    forward: dict[LaneKey, bool] = {}
    for road in document.roads.values():
        for index, section in enumerate(road.sections):
            for lane, is_forward in _section_lanes(road, index, section, spacing):
                _check_extent(document, road, lane)
                lanes[lane.key] = lane
                forward[lane.key] = is_forward
    for contact in _contacts(document):
        _orient(contact, lanes, forward)
    return lanes


def check_document(document: Document, spacing: float) -> None:
    """What a parsed map must satisfy before it is sampled (cheap: a command line checks a map with it
    before starting the processes that build it): some lane is a driving lane, and the samples are within
    :data:`MAX_SAMPLES`."""
    specs = [lane for road in document.roads.values() for section in road.sections for lane in section.lanes.values()]
    if not any(lane.type == "driving" for lane in specs):
        raise OpenDriveError(
            f"{document.source}:{document.line}: <OpenDRIVE>: no drivable road ({len(document.roads)} roads, "
            f"{len(specs)} lanes, none of type driving)"
        )
    _check_sample_count(document, spacing)


def _check_sample_count(document: Document, spacing: float) -> None:
    """Count the samples :func:`build_lanes` would make (stations of each section times its lanes plus the
    reference line) and refuse the map before sampling when they exceed :data:`MAX_SAMPLES`."""
    total = 0
    for road in document.roads.values():
        for index, section in enumerate(road.sections):
            stations = max(road.section_end(index) - section.s, 0.0) / spacing + 2
            total += int(stations + len(road.plan_view.breakpoints)) * (len(section.lanes) + 1)
        if total > MAX_SAMPLES:
            raise OpenDriveError(
                f"{document.source}:{road.line}: <road> in road {road.id}: attribute length={road.length:g} "
                f"(m, {max(len(s.lanes) for s in road.sections)} lanes) brings the map over the reader's limit "
                f"of {MAX_SAMPLES} lane samples"
            )


def _check_extent(document: Document, road: RoadSpec, lane: Lane) -> None:
    """Every sampled point finite and within the parser's coordinate limit (a lane width or offset
    polynomial can reach far beyond its coefficients), so later grids over the map stay small."""
    for points in (lane.left_boundary, lane.right_boundary):
        if not np.all(np.abs(points) <= MAX_MAGNITUDE):  # also False for NaN
            raise OpenDriveError(
                f"{document.source}:{road.line}: <road> in road {road.id} lane {lane.key.lane}: its lanes reach "
                f"beyond the reader's coordinate limit of {MAX_MAGNITUDE:g} m (check the width and laneOffset records)"
            )


def _drives_forward(lane_id: int, rule: str) -> bool:
    """Whether a lane runs along the reference line: right lanes in RHT, left lanes in LHT."""
    return (lane_id < 0) == (rule == "RHT")


# -- sampling ------------------------------------------------------------------------------------


def _stations(road: RoadSpec, section: SectionSpec, s0: float, s1: float, spacing: float) -> np.ndarray:
    """Road ``s`` sample stations of a section: uniform plus every polynomial/geometry boundary."""
    n = max(1, int(np.ceil((s1 - s0) / spacing)))
    breaks = [road.plan_view.breakpoints, road.lane_offset.starts]
    breaks += [s0 + lane.width.starts for lane in section.lanes.values()]
    candidates = np.concatenate([np.linspace(s0, s1, n + 1), *breaks])
    inside = np.unique(candidates[(candidates > s0 + _MIN_STEP) & (candidates < s1 - _MIN_STEP)])
    keep = np.concatenate([[True], np.diff(inside) > _MIN_STEP]) if len(inside) else np.zeros(0, bool)
    return np.concatenate([[s0], inside[keep], [s1]])


def _section_lanes(road: RoadSpec, index: int, section: SectionSpec, spacing: float) -> Iterator[tuple[Lane, bool]]:
    """Lanes of one section, walking outwards on each side from the (offset) centre lane."""
    s0, s1 = section.s, road.section_end(index)
    s = _stations(road, section, s0, s1, spacing)
    x, y, hdg, curvature = _up_to_end(road.plan_view.evaluate, s)
    z, _ = _up_to_end(road.elevation, s)
    reference = _Reference(np.stack([x, y], axis=1), hdg, curvature, z)
    offset, d_offset = _up_to_end(road.lane_offset, s)
    speed = _road_speed(road, s0)
    for side in (1, -1):
        inner, d_inner = offset, d_offset
        inner_mark = section.center_mark
        for lane_id in sorted((i for i in section.lanes if i * side > 0), key=abs):
            spec = section.lanes[lane_id]
            width, d_width = _up_to_end(spec.width, s - s0)
            d_width = np.where(width > 0, d_width, 0.0)
            width = np.maximum(width, 0.0)
            outer, d_outer = inner + side * width, d_inner + side * d_width
            # Only driving lanes are turned to their driving direction (see Lane's docstring).
            is_forward = spec.type != "driving" or _drives_forward(lane_id, road.rule)
            lane = _make_lane(
                LaneKey(road.id, index, lane_id),
                spec,
                road,
                reference,
                (inner, d_inner, inner_mark),
                (outer, d_outer, spec.road_mark),
                is_forward,
            )
            lane.speed_limit = spec.speed if spec.speed is not None else speed
            lane.left_neighbor, lane.right_neighbor = _neighbors(lane_id, section, is_forward, road.id, index)
            yield lane, is_forward
            inner, d_inner, inner_mark = outer, d_outer, spec.road_mark


def _up_to_end(function: Callable[..., tuple[np.ndarray, ...]], s: np.ndarray) -> tuple[np.ndarray, ...]:
    """Evaluate a piecewise function on stations, using the closing piece at the last station."""
    opening = function(s[:-1])
    closing = function(s[-1:], closing=True)
    return tuple(np.concatenate([a, b]) for a, b in zip(opening, closing, strict=True))


@dataclass(frozen=True)
class _Reference:
    """Reference line sampled at a section's stations."""

    xy: np.ndarray
    hdg: np.ndarray
    curvature: np.ndarray
    z: np.ndarray  # elevation (the lanes share it: superelevation is not modelled)

    def offset(self, t: np.ndarray) -> np.ndarray:
        """Points at lateral offset ``t`` (positive to the left of the reference direction)."""
        normal = np.stack([-np.sin(self.hdg), np.cos(self.hdg)], axis=1)
        return self.xy + t[:, None] * normal

    def offset_heading(self, t: np.ndarray, dt: np.ndarray) -> np.ndarray:
        """Tangent direction of the offset curve ``r(s) + t(s) n(s)``: ``T (1 - k t) + t' n``."""
        return self.hdg + np.arctan2(dt, 1.0 - self.curvature * t)


def _make_lane(
    key: LaneKey,
    spec: LaneSpec,
    road: RoadSpec,
    reference: _Reference,
    inner: tuple[np.ndarray, np.ndarray, RoadMark],
    outer: tuple[np.ndarray, np.ndarray, RoadMark],
    is_forward: bool,
) -> Lane:
    """One lane between its inner and outer border ``(t, dt/ds, mark)``, in driving direction."""
    t_center = (inner[0] + outer[0]) / 2
    center = reference.offset(t_center)
    headings = reference.offset_heading(t_center, (inner[1] + outer[1]) / 2)
    # "high" is the border with the larger t, i.e. the left one when looking along the reference.
    high, low = (outer, inner) if key.lane > 0 else (inner, outer)
    left, right = reference.offset(high[0]), reference.offset(low[0])
    left_mark, right_mark = high[2], low[2]
    widths = np.abs(outer[0] - inner[0])
    elevation = reference.z
    if not is_forward:
        center, headings, widths, elevation = center[::-1], headings[::-1] + np.pi, widths[::-1], elevation[::-1]
        left, right = right[::-1], left[::-1]
        left_mark, right_mark = right_mark, left_mark
    steps = np.hypot(*np.diff(center, axis=0).T)
    return Lane(
        key=key,
        type=spec.type,
        junction=road.junction,
        centerline=np.ascontiguousarray(center),
        headings=np.arctan2(np.sin(headings), np.cos(headings)),
        s=np.concatenate([[0.0], np.cumsum(steps)]),
        left_boundary=np.ascontiguousarray(left),
        right_boundary=np.ascontiguousarray(right),
        widths=np.ascontiguousarray(widths),
        left_mark=left_mark,
        right_mark=right_mark,
        elevation=np.ascontiguousarray(elevation),
    )


def _road_speed(road: RoadSpec, s: float) -> float:
    """Speed limit of the road's last ``<type>`` record that starts at or before ``s``."""
    current = 0.0
    for start, speed in sorted(road.speeds):
        if start <= s + _MIN_STEP:
            current = speed
    return current


def _neighbors(
    lane_id: int, section: SectionSpec, is_forward: bool, road: str, index: int
) -> tuple[LaneKey | None, LaneKey | None]:
    """(left, right) adjacent lanes in driving direction; id 0 (centre) is skipped."""
    higher = lane_id + 1 if lane_id != -1 else 1
    lower = lane_id - 1 if lane_id != 1 else -1
    high = LaneKey(road, index, higher) if higher in section.lanes else None
    low = LaneKey(road, index, lower) if lower in section.lanes else None
    return (high, low) if is_forward else (low, high)


# -- linking -------------------------------------------------------------------------------------


def _contacts(document: Document) -> Iterator[_Contact]:
    """Every lane-end contact stated by lane links, road links and junction connections."""
    for road in document.roads.values():
        yield from _road_contacts(document, road)
    for junction_id, connections in document.connections.items():
        for connection in connections:
            incoming = document.roads.get(connection.incoming_road)
            connecting = document.roads.get(connection.connecting_road)
            if incoming is None or connecting is None:
                continue  # dangling reference: nothing to link
            end = _end_at_junction(incoming, junction_id, connecting, connection.contact_point)
            contact = connection.contact_point
            for lane_from, lane_to in connection.lane_links:
                yield _Contact(
                    LaneKey(incoming.id, _section_at(incoming, end), lane_from),
                    end,
                    LaneKey(connecting.id, _section_at(connecting, contact), lane_to),
                    contact,
                )


def _road_contacts(document: Document, road: RoadSpec) -> Iterator[_Contact]:
    """Contacts from ``<lane><link>``: across sections, or across roads at the road's ends."""
    last = len(road.sections) - 1
    for index, section in enumerate(road.sections):
        for lane in section.lanes.values():
            key = LaneKey(road.id, index, lane.id)
            for successor in lane.successors:
                if index < last:
                    yield _Contact(key, "end", LaneKey(road.id, index + 1, successor), "start")
                elif (other := _linked_road(document, road.successor)) is not None:
                    contact = road.successor.contact_point  # type: ignore[union-attr]
                    yield _Contact(key, "end", LaneKey(other.id, _section_at(other, contact), successor), contact)
            for predecessor in lane.predecessors:
                if index > 0:
                    yield _Contact(key, "start", LaneKey(road.id, index - 1, predecessor), "end")
                elif (other := _linked_road(document, road.predecessor)) is not None:
                    contact = road.predecessor.contact_point  # type: ignore[union-attr]
                    yield _Contact(key, "start", LaneKey(other.id, _section_at(other, contact), predecessor), contact)


def _linked_road(document: Document, link: RoadLink | None) -> RoadSpec | None:
    """The road a road link points to; junction links are resolved through connections."""
    if link is None or link.element_type != "road":
        return None
    return document.roads.get(link.element_id)


def _section_at(road: RoadSpec, end: str) -> int:
    return 0 if end == "start" else len(road.sections) - 1


def _end_at_junction(incoming: RoadSpec, junction_id: int, connecting: RoadSpec, contact: str) -> str:
    """Which end of ``incoming`` touches the junction: from its road links, else the nearer end."""
    ends = [
        end
        for end, link in (("start", incoming.predecessor), ("end", incoming.successor))
        if link is not None and link.element_type == "junction" and link.element_id == str(junction_id)
    ]
    if len(ends) == 1:
        return ends[0]
    target = _road_end_point(connecting, contact)
    return min(("start", "end"), key=lambda end: float(np.hypot(*(_road_end_point(incoming, end) - target))))


def _road_end_point(road: RoadSpec, end: str) -> np.ndarray:
    x, y, _, _ = road.plan_view.evaluate(np.array([0.0 if end == "start" else road.length]))
    return np.array([x[0], y[0]])


def _orient(contact: _Contact, lanes: dict[LaneKey, Lane], forward: dict[LaneKey, bool]) -> None:
    """Add the driving-direction edge a contact implies; contacts between two exits are ignored."""
    if contact.a not in lanes or contact.b not in lanes:
        return

    def exit_end(key: LaneKey) -> str:
        return "end" if forward[key] else "start"

    if exit_end(contact.a) == contact.end_a and exit_end(contact.b) != contact.end_b:
        _add_edge(lanes[contact.a], lanes[contact.b])
    elif exit_end(contact.b) == contact.end_b and exit_end(contact.a) != contact.end_a:
        _add_edge(lanes[contact.b], lanes[contact.a])


def _add_edge(source: Lane, target: Lane) -> None:
    if target.key not in source.successors:
        source.successors.append(target.key)
    if source.key not in target.predecessors:
        target.predecessors.append(source.key)
