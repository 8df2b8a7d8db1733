"""OpenDRIVE XML -> plain specification objects, one method per element kind.

The parser only reads and validates; sampling lanes and linking them is :mod:`.builder`'s job.
Elements that do not change the 2D lane geometry (objects, userData, ...) are skipped, except the
reference line's ``<elevationProfile>`` (the lanes' z); lateral profiles (superelevation, shape) are skipped too.
Elements that would change the 2D geometry but are not supported raise :class:`OpenDriveError`.

Sizes are bounded (the limits below, far above any real town: CARLA's Town01, 02, 04 and 06 have roads of
at most 585 m, coordinates within 671 m of the origin and at most 13 lanes per section), so a hostile file
such as a 535-byte road of ``length="1e7"`` fails here, naming the file, line, road and attribute, instead of
sampling 10,000 km; the builder also bounds the total number of samples (:data:`.builder.MAX_SAMPLES`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import OpenDriveError
from .geometry import Arc, CubicSeries, Geometry, Line, ParametricCubic, PlanView, Spiral
from .types import Junction, RoadMark, Signal
from .xmltree import Element, parse_xml

_SPEED_UNITS = {"m/s": 1.0, "km/h": 1.0 / 3.6, "mph": 0.44704}
_MIN_GEOMETRY_LENGTH = 1e-9

MAX_TEXT_CHARS = 256 << 20  # an .xodr's size (CARLA's Town04: 3.4 MB)
MAX_LENGTH = 1e5  # m: a road's or a geometry's length (100 km)
MAX_MAGNITUDE = 1e6  # any other number: coordinates and s (1000 km), polynomial coefficients, curvatures
MAX_LANE_ID = 100  # |lane id|: at most 100 lanes on each side of a section


@dataclass(frozen=True)
class RoadLink:
    """``<predecessor>``/``<successor>`` of a road: another road (with contact point) or a junction."""

    element_type: str  # "road" or "junction"
    element_id: str
    contact_point: str  # "start" or "end"; "" for junctions


@dataclass
class LaneSpec:
    """One ``<lane>`` of a section; link ids name lanes of the previous/next section or road."""

    id: int
    type: str
    width: CubicSeries  # records start at sOffset from the section start
    road_mark: RoadMark  # on the lane's outer border
    predecessors: list[int]
    successors: list[int]
    speed: float | None  # m/s, from the lane's own <speed>


@dataclass
class SectionSpec:
    """One ``<laneSection>``, starting at road ``s``."""

    s: float
    lanes: dict[int, LaneSpec]  # without the centre lane
    center_mark: RoadMark  # the centre lane's mark: border between lanes 1 and -1


@dataclass
class RoadSpec:
    """One ``<road>``: reference line, lane offset, lane sections, links and signals."""

    id: str
    name: str
    length: float
    junction: int
    rule: str  # "RHT" or "LHT"
    predecessor: RoadLink | None
    successor: RoadLink | None
    speeds: list[tuple[float, float]]  # (s, m/s) per <type>; 0 where none is given
    plan_view: PlanView
    lane_offset: CubicSeries
    sections: list[SectionSpec]
    signals: list[Signal] = field(default_factory=list)
    elevation: CubicSeries = field(default_factory=CubicSeries.zero)  # z of the reference line, by road s
    line: int = 0  # of the <road> element, for error messages

    def section_end(self, index: int) -> float:
        """Road ``s`` where section ``index`` ends."""
        return self.sections[index + 1].s if index + 1 < len(self.sections) else self.length


@dataclass(frozen=True)
class Connection:
    """One junction ``<connection>``: lanes of the incoming road into lanes of a connecting road."""

    incoming_road: str
    connecting_road: str
    contact_point: str
    lane_links: tuple[tuple[int, int], ...]  # (incoming lane, connecting lane)


@dataclass
class Document:
    """Everything read from one OpenDRIVE file."""

    name: str
    geo_reference: str
    source: str  # the file, as error messages name it
    line: int  # of the <OpenDRIVE> element
    roads: dict[str, RoadSpec]
    junctions: dict[int, Junction]
    connections: dict[int, list[Connection]]


def parse_opendrive(text: str, source: str) -> Document:
    """Parse OpenDRIVE ``text``; ``source`` names the file in error messages."""
    if len(text) > MAX_TEXT_CHARS:
        raise OpenDriveError(f"{source}:1: <OpenDRIVE>: {len(text)} characters, over the limit of {MAX_TEXT_CHARS}")
    return _Parser(source).document(parse_xml(text, source))


class _Parser:
    """Reads one document; ``source`` (a file name) prefixes every error message."""

    def __init__(self, source: str) -> None:
        self.source = source

    # -- error reporting and attribute access -------------------------------------------------

    def error(self, element: Element, where: str, message: str) -> OpenDriveError:
        location = f" in {where}" if where else ""
        return OpenDriveError(f"{self.source}:{element.line}: <{element.tag}>{location}: {message}")

    def text_attr(self, element: Element, name: str, where: str, default: str | None = None) -> str:
        value = element.attrib.get(name, default)
        if value is None:
            raise self.error(element, where, f"missing attribute '{name}'")
        return value

    def float_attr(self, element: Element, name: str, where: str, default: float | None = None) -> float:
        raw = element.attrib.get(name)
        if raw is None:
            if default is None:
                raise self.error(element, where, f"missing attribute '{name}'")
            return default
        try:
            value = float(raw)
        except ValueError:
            raise self.error(element, where, f"attribute {name}={raw[:40]!r} is not a number") from None
        if not np.isfinite(value):
            raise self.error(element, where, f"attribute {name}={raw!r} is not finite")
        limit = MAX_LENGTH if name == "length" else MAX_MAGNITUDE
        if abs(value) > limit:
            raise self.error(element, where, f"attribute {name}={raw[:40]!r} is over the reader's limit of {limit:g}")
        return value

    def int_attr(self, element: Element, name: str, where: str, default: int | None = None) -> int:
        raw = element.attrib.get(name)
        if raw is None:
            if default is None:
                raise self.error(element, where, f"missing attribute '{name}'")
            return default
        try:
            value = int(raw)  # over 4300 digits: a ValueError too (Python's limit)
        except ValueError:
            raise self.error(element, where, f"attribute {name}={raw[:40]!r} is not an integer") from None
        if abs(value) > MAX_MAGNITUDE:
            raise self.error(
                element, where, f"attribute {name}={raw[:40]!r} is over the reader's limit of {MAX_MAGNITUDE:g}"
            )
        return value

    def cubic(self, element: Element, where: str) -> tuple[float, float, float, float]:
        return tuple(self.float_attr(element, k, where, 0.0) for k in "abcd")  # type: ignore[return-value]

    def speed(self, element: Element, where: str) -> float:
        """``<speed max unit>`` in m/s; 0 for "no limit"/"undefined"."""
        unit = element.attrib.get("unit", "m/s")
        if unit not in _SPEED_UNITS:
            raise self.error(element, where, f"unknown speed unit {unit!r}")
        raw = element.attrib.get("max", "")
        try:
            return float(raw) * _SPEED_UNITS[unit]
        except ValueError:
            return 0.0

    # -- elements ------------------------------------------------------------------------------

    def document(self, root: Element) -> Document:
        if root.tag != "OpenDRIVE":
            raise self.error(root, "", "root element must be <OpenDRIVE>")
        header = root.find("header")
        name = header.attrib.get("name", "") if header is not None else ""
        geo = header.find("geoReference") if header is not None else None
        rule = self.rule(header, "header", "RHT") if header is not None else "RHT"
        roads: dict[str, RoadSpec] = {}
        for element in root.findall("road"):
            road = self.road(element, rule)
            if road.id in roads:
                raise self.error(element, f"road {road.id}", "duplicate road id")
            roads[road.id] = road
        junctions: dict[int, Junction] = {}
        connections: dict[int, list[Connection]] = {}
        for element in root.findall("junction"):
            junction, links = self.junction(element)
            junctions[junction.id] = junction
            connections[junction.id] = links
        return Document(
            name, geo.text if geo is not None else "", self.source, root.line, roads, junctions, connections
        )

    def rule(self, element: Element, where: str, default: str) -> str:
        rule = element.attrib.get("rule", default)
        if rule not in ("RHT", "LHT"):
            raise self.error(element, where, f"traffic rule {rule!r} is neither RHT nor LHT")
        return rule

    def road(self, element: Element, default_rule: str) -> RoadSpec:
        road_id = self.text_attr(element, "id", "")
        where = f"road {road_id}"
        plan_view = self.plan_view(self.child(element, "planView", where), where)
        lanes = self.child(element, "lanes", where)
        link = element.find("link")
        road = RoadSpec(
            id=road_id,
            name=element.attrib.get("name", ""),
            length=self.float_attr(element, "length", where),
            junction=self.int_attr(element, "junction", where, -1),
            rule=self.rule(element, where, default_rule),
            predecessor=self.road_link(link.find("predecessor"), where) if link is not None else None,
            successor=self.road_link(link.find("successor"), where) if link is not None else None,
            speeds=[self.road_type(t, where) for t in element.findall("type")],
            plan_view=plan_view,
            lane_offset=self.lane_offsets(lanes, where),
            sections=self.lane_sections(lanes, where),
            elevation=self.elevation_profile(element.find("elevationProfile"), where),
            line=element.line,
        )
        signals = element.find("signals")
        if signals is not None:
            road.signals = [self.signal(s, road) for s in signals.findall("signal")]
        return road

    def child(self, element: Element, tag: str, where: str) -> Element:
        found = element.find(tag)
        if found is None:
            raise self.error(element, where, f"missing <{tag}>")
        return found

    def road_link(self, element: Element | None, where: str) -> RoadLink | None:
        if element is None:
            return None
        kind = element.attrib.get("elementType", "road")
        if kind not in ("road", "junction"):
            raise self.error(element, where, f"unsupported elementType {kind!r}")
        contact = element.attrib.get("contactPoint", "" if kind == "junction" else "start")
        if kind == "road" and contact not in ("start", "end"):
            raise self.error(element, where, f"contactPoint {contact!r} is neither start nor end")
        return RoadLink(kind, self.text_attr(element, "elementId", where), contact)

    def road_type(self, element: Element, where: str) -> tuple[float, float]:
        speed = element.find("speed")
        return self.float_attr(element, "s", where, 0.0), self.speed(speed, where) if speed is not None else 0.0

    def plan_view(self, element: Element, where: str) -> PlanView:
        geometries = [self.geometry(g, where) for g in element.findall("geometry")]
        if not geometries:
            raise self.error(element, where, "no <geometry>")
        kept = [g for g in geometries if g.length > _MIN_GEOMETRY_LENGTH]
        return PlanView(kept or geometries[:1])

    def geometry(self, element: Element, where: str) -> Geometry:
        pose = tuple(self.float_attr(element, k, where) for k in ("s", "x", "y", "hdg", "length"))
        if pose[4] < 0:
            raise self.error(element, where, "negative length")
        shapes = [c for c in element.children if c.tag != "userData"]
        if not shapes:
            raise self.error(element, where, "no shape (line, arc, spiral, poly3, paramPoly3)")
        build = {
            "line": self.line,
            "arc": self.arc,
            "spiral": self.spiral,
            "poly3": self.poly3,
            "paramPoly3": self.param_poly3,
        }.get(shapes[0].tag)
        if build is None:
            raise self.error(shapes[0], where, f"unsupported geometry <{shapes[0].tag}>")
        if pose[4] <= _MIN_GEOMETRY_LENGTH:
            return Line(*pose)  # dropped by plan_view(); its shape cannot matter
        return build(shapes[0], pose, where)

    def line(self, element: Element, pose: tuple[float, ...], where: str) -> Geometry:
        return Line(*pose)

    def arc(self, element: Element, pose: tuple[float, ...], where: str) -> Geometry:
        return Arc(*pose, self.float_attr(element, "curvature", where))

    def spiral(self, element: Element, pose: tuple[float, ...], where: str) -> Geometry:
        return Spiral(*pose, self.float_attr(element, "curvStart", where), self.float_attr(element, "curvEnd", where))

    def poly3(self, element: Element, pose: tuple[float, ...], where: str) -> Geometry:
        return self.parametric(element, pose, (0.0, 1.0, 0.0, 0.0), self.cubic(element, where), None, where)

    def param_poly3(self, element: Element, pose: tuple[float, ...], where: str) -> Geometry:
        p_range = element.attrib.get("pRange", "normalized")
        if p_range not in ("normalized", "arcLength"):
            raise self.error(element, where, f"unsupported pRange {p_range!r}")
        u = tuple(self.float_attr(element, k, where, 0.0) for k in ("aU", "bU", "cU", "dU"))
        v = tuple(self.float_attr(element, k, where, 0.0) for k in ("aV", "bV", "cV", "dV"))
        return self.parametric(element, pose, u, v, 1.0 if p_range == "normalized" else pose[4], where)

    def parametric(
        self, element: Element, pose: tuple[float, ...], u: tuple, v: tuple, p_end: float | None, where: str
    ) -> Geometry:
        try:
            return ParametricCubic(*pose, u, v, p_end)  # type: ignore[arg-type]
        except ValueError:  # the arc-length table is not increasing: the curve does not move
            raise self.error(element, where, "degenerate curve (zero arc length)") from None

    def elevation_profile(self, element: Element | None, where: str) -> CubicSeries:
        """``<elevationProfile>``: ``<elevation s a b c d>`` records, z by road ``s`` (0 without any)."""
        records = element.findall("elevation") if element is not None else []
        if not records:
            return CubicSeries.zero()
        return CubicSeries(
            [self.float_attr(e, "s", where, 0.0) for e in records], [self.cubic(e, where) for e in records]
        )

    def lane_offsets(self, lanes: Element, where: str) -> CubicSeries:
        records = lanes.findall("laneOffset")
        if not records:
            return CubicSeries.zero()
        return CubicSeries(
            [self.float_attr(r, "s", where, 0.0) for r in records], [self.cubic(r, where) for r in records]
        )

    def lane_sections(self, lanes: Element, where: str) -> list[SectionSpec]:
        sections = [self.lane_section(s, where) for s in lanes.findall("laneSection")]
        if not sections:
            raise self.error(lanes, where, "no <laneSection>")
        return sorted(sections, key=lambda section: section.s)

    def lane_section(self, element: Element, where: str) -> SectionSpec:
        lanes: dict[int, LaneSpec] = {}
        center_mark = RoadMark()
        for side in ("left", "right", "center"):
            group = element.find(side)
            for lane_element in group.findall("lane") if group is not None else []:
                lane = self.lane(lane_element, where)
                if lane.id == 0:
                    center_mark = lane.road_mark
                else:
                    lanes[lane.id] = lane
        return SectionSpec(self.float_attr(element, "s", where, 0.0), lanes, center_mark)

    def lane(self, element: Element, road_where: str) -> LaneSpec:
        lane_id = self.int_attr(element, "id", road_where)
        if abs(lane_id) > MAX_LANE_ID:
            raise self.error(
                element, road_where, f"attribute id={lane_id} is over the reader's limit of {MAX_LANE_ID} lanes a side"
            )
        where = f"{road_where} lane {lane_id}"
        link = element.find("link")
        speed = element.find("speed")
        return LaneSpec(
            id=lane_id,
            type=element.attrib.get("type", "none"),
            width=self.lane_width(element, lane_id, where),
            road_mark=self.road_mark(element.findall("roadMark"), where),
            predecessors=[self.int_attr(p, "id", where) for p in link.findall("predecessor")]
            if link is not None
            else [],
            successors=[self.int_attr(s, "id", where) for s in link.findall("successor")] if link is not None else [],
            speed=self.speed(speed, where) if speed is not None else None,
        )

    def lane_width(self, element: Element, lane_id: int, where: str) -> CubicSeries:
        records = element.findall("width")
        if not records:
            border = element.find("border")
            if border is not None and lane_id != 0:
                raise self.error(border, where, "unsupported lane <border> (only <width> is supported)")
            return CubicSeries.zero()
        return CubicSeries(
            [self.float_attr(r, "sOffset", where, 0.0) for r in records], [self.cubic(r, where) for r in records]
        )

    def road_mark(self, records: list[Element], where: str) -> RoadMark:
        """The lane's first ``<roadMark>`` record (marks rarely change within a section)."""
        if not records:
            return RoadMark()
        first = min(records, key=lambda r: self.float_attr(r, "sOffset", where, 0.0))
        return RoadMark(
            type=first.attrib.get("type", "none"),
            color=first.attrib.get("color", "standard"),
            width=self.float_attr(first, "width", where, RoadMark.width),
        )

    def signal(self, element: Element, road: RoadSpec) -> Signal:
        where = f"road {road.id}"
        s = self.float_attr(element, "s", where)
        t = self.float_attr(element, "t", where)
        x, y, hdg, _ = road.plan_view.evaluate(np.array([s]))
        yaw = float(hdg[0]) + self.float_attr(element, "hOffset", where, 0.0)
        if element.attrib.get("orientation", "+") == "-":  # valid for traffic against the s direction
            yaw += np.pi
        return Signal(
            id=self.text_attr(element, "id", where),
            road=road.id,
            s=s,
            t=t,
            type=element.attrib.get("type", ""),
            subtype=element.attrib.get("subtype", ""),
            name=element.attrib.get("name", ""),
            x=float(x[0] - t * np.sin(hdg[0])),
            y=float(y[0] + t * np.cos(hdg[0])),
            yaw=float(np.arctan2(np.sin(yaw), np.cos(yaw))),
        )

    def junction(self, element: Element) -> tuple[Junction, list[Connection]]:
        junction_id = self.int_attr(element, "id", "")
        where = f"junction {junction_id}"
        connections = [self.connection(c, where) for c in element.findall("connection")]
        summary = tuple((c.incoming_road, c.connecting_road, c.contact_point) for c in connections)
        return Junction(junction_id, element.attrib.get("name", ""), summary), connections

    def connection(self, element: Element, where: str) -> Connection:
        contact = self.text_attr(element, "contactPoint", where, "start")
        if contact not in ("start", "end"):
            raise self.error(element, where, f"contactPoint {contact!r} is neither start nor end")
        links = tuple(
            (self.int_attr(link, "from", where), self.int_attr(link, "to", where))
            for link in element.findall("laneLink")
        )
        return Connection(
            incoming_road=self.text_attr(element, "incomingRoad", where),
            connecting_road=self.text_attr(element, "connectingRoad", where),
            contact_point=contact,
            lane_links=links,
        )
