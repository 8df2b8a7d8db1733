"""Tests of the shipped towns (RLTown01, RLTown02) and of :mod:`carla_rl_common.towns`.

The .xodr files are checked with a small evaluator written here, independent of the
generator (``tools/towns/generate.py``): it parses the XML with ``xml.etree``, evaluates line / arc /
spiral / paramPoly3 reference lines (clothoids by Gauss-Legendre quadrature) and lane offsets, and then checks

* plan views are continuous (every geometry ends where the next one starts);
* every lane link (road to road) and every junction ``laneLink`` joins lane centres within
  0.10 m and 3 degrees (in the right direction) and with equal widths, and links are mutual;
* junctions offer every movement (every incoming road reaches every other arm, no U-turns);
* lanes never reach past a curve's centre (offset < radius of curvature);
* the driving lane graph is strongly connected (RLTown01 by links alone, RLTown02 also
  using lane changes across broken lines) and has no dead ends;
* the files stay < 1 MB and the project's own parser loads and routes them.

That they match fresh generator output byte for byte is checked in ``tests/tools/test_generate_towns.py``.
"""

from __future__ import annotations

import math
import random
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from carla_rl_common.geometry import wrap_angle
from carla_rl_common.opendrive import RoadNetwork
from carla_rl_common.towns import DEFAULT_TOWN, TOWNS, UnknownTownError, town_path

POS_TOL = 0.10  # m
ANGLE_TOL = math.radians(3.0)
WIDTH_TOL = 1e-6
_GL_X, _GL_W = np.polynomial.legendre.leggauss(48)

# --------------------------------------------------------------------------------------------
# A compact, independent OpenDRIVE reader
# --------------------------------------------------------------------------------------------


@dataclass
class Geo:
    s: float
    x: float
    y: float
    hdg: float
    length: float
    kind: str
    attrs: dict[str, str]


@dataclass
class LaneRec:
    id: int
    type: str
    widths: list[tuple[float, float, float, float, float]]
    pred: int | None
    succ: int | None
    mark_type: str
    mark_color: str


@dataclass
class Section:
    s: float
    lanes: dict[int, LaneRec]


@dataclass
class RoadRec:
    id: str
    length: float
    junction: str
    pred: tuple[str, str, str | None] | None
    succ: tuple[str, str, str | None] | None
    geos: list[Geo]
    offsets: list[tuple[float, float, float, float, float]]
    sections: list[Section]
    speeds: list[float]
    center_mark: tuple[str, str]


@dataclass
class Net:
    root: ET.Element
    roads: dict[str, RoadRec]
    # junction id -> [(incoming, connecting, contactPoint, [(from, to), ...])]
    junctions: dict[str, list[tuple[str, str, str, list[tuple[int, int]]]]]


def _f(el: ET.Element, name: str, default: float = 0.0) -> float:
    return float(el.get(name, default))


def _poly(el: ET.Element, s_name: str) -> tuple[float, float, float, float, float]:
    return (_f(el, s_name), _f(el, "a"), _f(el, "b"), _f(el, "c"), _f(el, "d"))


def _link(el: ET.Element | None) -> tuple[str, str, str | None] | None:
    if el is None:
        return None
    return (el.get("elementType", "road"), el.get("elementId", ""), el.get("contactPoint"))


def parse(path: Path) -> Net:
    root = ET.parse(path).getroot()
    roads: dict[str, RoadRec] = {}
    for r in root.findall("road"):
        geos = []
        for g in r.find("planView").findall("geometry"):
            shape = next(iter(g))
            numbers = (_f(g, "s"), _f(g, "x"), _f(g, "y"), _f(g, "hdg"), _f(g, "length"))
            geos.append(Geo(*numbers, shape.tag, dict(shape.attrib)))
        lanes_el = r.find("lanes")
        sections = []
        for sec in lanes_el.findall("laneSection"):
            lanes = {}
            for lane in sec.iter("lane"):
                lid = int(lane.get("id"))
                link = lane.find("link")
                pred = link.find("predecessor") if link is not None else None
                succ = link.find("successor") if link is not None else None
                mark = lane.find("roadMark")
                lanes[lid] = LaneRec(
                    lid,
                    lane.get("type"),
                    [_poly(w, "sOffset") for w in lane.findall("width")],
                    int(pred.get("id")) if pred is not None else None,
                    int(succ.get("id")) if succ is not None else None,
                    mark.get("type") if mark is not None else "none",
                    mark.get("color", "standard") if mark is not None else "standard",
                )
            sections.append(Section(_f(sec, "s"), lanes))
        link = r.find("link")
        roads[r.get("id")] = RoadRec(
            r.get("id"),
            _f(r, "length"),
            r.get("junction"),
            _link(link.find("predecessor")) if link is not None else None,
            _link(link.find("successor")) if link is not None else None,
            geos,
            [_poly(o, "s") for o in lanes_el.findall("laneOffset")],
            sections,
            [_f(sp, "max") for sp in r.iter("speed")],
            (sections[0].lanes[0].mark_type, sections[0].lanes[0].mark_color),
        )
    junctions = {}
    for j in root.findall("junction"):
        junctions[j.get("id")] = [
            (
                c.get("incomingRoad"),
                c.get("connectingRoad"),
                c.get("contactPoint"),
                [(int(ll.get("from")), int(ll.get("to"))) for ll in c.findall("laneLink")],
            )
            for c in j.findall("connection")
        ]
    return Net(root, roads, junctions)


@cache
def net_of(name: str) -> Net:
    return parse(TOWNS[name])


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def _geo_at(road: RoadRec, s: float) -> Geo:
    geo = road.geos[0]
    for g in road.geos:
        if g.s <= s + 1e-9:
            geo = g
    return geo


def geo_pose(g: Geo, ds: float) -> tuple[float, float, float]:
    """Pose ``ds`` along one geometry record."""
    if g.kind == "line":
        return g.x + ds * math.cos(g.hdg), g.y + ds * math.sin(g.hdg), g.hdg
    if g.kind == "arc":
        k = float(g.attrs["curvature"])
        if abs(k) < 1e-14:
            return g.x + ds * math.cos(g.hdg), g.y + ds * math.sin(g.hdg), g.hdg
        h = g.hdg + k * ds
        return g.x + (math.sin(h) - math.sin(g.hdg)) / k, g.y - (math.cos(h) - math.cos(g.hdg)) / k, h
    if g.kind == "spiral":
        k0, k1 = float(g.attrs["curvStart"]), float(g.attrs["curvEnd"])
        rate = (k1 - k0) / g.length
        u = 0.5 * ds * (_GL_X + 1.0)
        theta = g.hdg + k0 * u + 0.5 * rate * u * u
        half = 0.5 * ds
        return (
            g.x + half * float(np.dot(_GL_W, np.cos(theta))),
            g.y + half * float(np.dot(_GL_W, np.sin(theta))),
            g.hdg + k0 * ds + 0.5 * rate * ds * ds,
        )
    if g.kind == "paramPoly3":
        c = {k: float(v) for k, v in g.attrs.items() if k != "pRange"}
        p = ds / g.length if g.attrs.get("pRange", "arcLength") == "normalized" else ds
        u = c["aU"] + c["bU"] * p + c["cU"] * p**2 + c["dU"] * p**3
        v = c["aV"] + c["bV"] * p + c["cV"] * p**2 + c["dV"] * p**3
        du = c["bU"] + 2 * c["cU"] * p + 3 * c["dU"] * p**2
        dv = c["bV"] + 2 * c["cV"] * p + 3 * c["dV"] * p**2
        ch, sh = math.cos(g.hdg), math.sin(g.hdg)
        return g.x + u * ch - v * sh, g.y + u * sh + v * ch, g.hdg + math.atan2(dv, du)
    raise AssertionError(f"unsupported geometry {g.kind}")


def geo_curvature(g: Geo, ds: float) -> float:
    if g.kind == "line":
        return 0.0
    if g.kind == "arc":
        return float(g.attrs["curvature"])
    if g.kind == "spiral":
        k0, k1 = float(g.attrs["curvStart"]), float(g.attrs["curvEnd"])
        return k0 + (k1 - k0) * ds / g.length
    c = {k: float(v) for k, v in g.attrs.items() if k != "pRange"}
    normalized = g.attrs.get("pRange", "arcLength") == "normalized"
    p = ds / g.length if normalized else ds
    du = c["bU"] + 2 * c["cU"] * p + 3 * c["dU"] * p**2
    dv = c["bV"] + 2 * c["cV"] * p + 3 * c["dV"] * p**2
    ddu = 2 * c["cU"] + 6 * c["dU"] * p
    ddv = 2 * c["cV"] + 6 * c["dV"] * p
    return (du * ddv - dv * ddu) / (du * du + dv * dv) ** 1.5


def ref_pose(road: RoadRec, s: float) -> tuple[float, float, float]:
    g = _geo_at(road, s)
    return geo_pose(g, min(max(s - g.s, 0.0), g.length))


def _eval_poly(polys: list[tuple[float, float, float, float, float]], s: float) -> float:
    chosen = None
    for p in polys:
        if p[0] <= s + 1e-9:
            chosen = p
    if chosen is None:
        return 0.0
    d = s - chosen[0]
    return chosen[1] + chosen[2] * d + chosen[3] * d * d + chosen[4] * d**3


def section_index(road: RoadRec, end: str) -> int:
    return 0 if end == "start" else len(road.sections) - 1


def lane_width(road: RoadRec, sec: int, lane_id: int, s: float) -> float:
    section = road.sections[sec]
    return _eval_poly(section.lanes[lane_id].widths, s - section.s)


def lane_t(road: RoadRec, sec: int, lane_id: int, s: float) -> float:
    """Lateral offset of a lane's centre from the reference line."""
    sign = 1 if lane_id > 0 else -1
    inner = sum(lane_width(road, sec, sign * k, s) for k in range(1, abs(lane_id)))
    return _eval_poly(road.offsets, s) + sign * (inner + 0.5 * lane_width(road, sec, lane_id, s))


def lane_point(road: RoadRec, sec: int, lane_id: int, s: float) -> tuple[float, float]:
    x, y, h = ref_pose(road, s)
    t = lane_t(road, sec, lane_id, s)
    return x - t * math.sin(h), y + t * math.cos(h)


def _eval_poly_slope(polys: list[tuple[float, float, float, float, float]], s: float) -> float:
    chosen = None
    for p in polys:
        if p[0] <= s + 1e-9:
            chosen = p
    if chosen is None:
        return 0.0
    d = s - chosen[0]
    return chosen[2] + 2 * chosen[3] * d + 3 * chosen[4] * d * d


def lane_heading(road: RoadRec, sec: int, lane_id: int, s: float) -> float:
    """Heading of a lane centre in the reference line's direction: the reference heading
    turned by ``atan2(dt/ds, 1 - curvature * t)`` for the lateral offset ``t(s)``."""
    section = road.sections[sec]
    sign = 1 if lane_id > 0 else -1
    slope = _eval_poly_slope(road.offsets, s) + sign * (
        sum(_eval_poly_slope(section.lanes[sign * k].widths, s - section.s) for k in range(1, abs(lane_id)))
        + 0.5 * _eval_poly_slope(section.lanes[lane_id].widths, s - section.s)
    )
    g = _geo_at(road, s)
    ds = min(max(s - g.s, 0.0), g.length)
    return geo_pose(g, ds)[2] + math.atan2(slope, 1.0 - geo_curvature(g, ds) * lane_t(road, sec, lane_id, s))


@dataclass(frozen=True)
class LinkCheck:
    what: str
    distance: float
    angle: float
    width_diff: float

    @property
    def ok(self) -> bool:
        return self.distance <= POS_TOL and self.angle <= ANGLE_TOL and self.width_diff <= WIDTH_TOL


def check_pair(a: RoadRec, la: int, end_a: str, b: RoadRec, lb: int, end_b: str, what: str) -> LinkCheck:
    """Compare lane ``la`` at ``end_a`` of ``a`` with lane ``lb`` at ``end_b`` of ``b``.

    When the roads continue each other (end -> start) their lanes must point the same way,
    when they meet head to head the opposite way; either way a driver following the link
    sees one continuous lane.
    """
    sa, sb = (0.0 if end_a == "start" else a.length), (0.0 if end_b == "start" else b.length)
    ia, ib = section_index(a, end_a), section_index(b, end_b)
    if la not in a.sections[ia].lanes or lb not in b.sections[ib].lanes:
        return LinkCheck(what + " (missing lane)", math.inf, math.inf, math.inf)
    pa, pb = lane_point(a, ia, la, sa), lane_point(b, ib, lb, sb)
    ha, hb = lane_heading(a, ia, la, sa), lane_heading(b, ib, lb, sb)
    if end_a == end_b:
        hb += math.pi
    return LinkCheck(
        what,
        math.hypot(pa[0] - pb[0], pa[1] - pb[1]),
        abs(wrap_angle(ha - hb)),
        abs(lane_width(a, ia, la, sa) - lane_width(b, ib, lb, sb)),
    )


def _junction_end(road: RoadRec, junction: str) -> str:
    if road.succ and road.succ[0] == "junction" and road.succ[1] == junction:
        return "end"
    assert road.pred and road.pred[0] == "junction" and road.pred[1] == junction, (road.id, junction)
    return "start"


def link_checks(net: Net) -> list[LinkCheck]:
    """Every lane link between roads and every junction laneLink, evaluated."""
    checks = []
    for road in net.roads.values():
        for end, link in (("start", road.pred), ("end", road.succ)):
            if link is None or link[0] != "road":
                continue
            other = net.roads[link[1]]
            for lane in road.sections[section_index(road, end)].lanes.values():
                target = lane.pred if end == "start" else lane.succ
                if target is not None:
                    what = f"road {road.id} lane {lane.id} {end} -> road {other.id} lane {target} {link[2]}"
                    checks.append(check_pair(road, lane.id, end, other, target, link[2], what))
    for jid, connections in net.junctions.items():
        for incoming, connecting, contact, lane_links in connections:
            inc, con = net.roads[incoming], net.roads[connecting]
            end = _junction_end(inc, jid)
            for frm, to in lane_links:
                what = f"junction {jid}: road {incoming} lane {frm} -> road {connecting} lane {to}"
                checks.append(check_pair(inc, frm, end, con, to, contact, what))
    return checks


def junction_arms(net: Net, jid: str) -> list[RoadRec]:
    """The (non-junction) roads with an end at junction ``jid``."""
    return [
        r
        for r in net.roads.values()
        if r.junction == "-1" and any(link and link[:2] == ("junction", jid) for link in (r.pred, r.succ))
    ]


def plan_view_gaps(road: RoadRec) -> tuple[float, float, float]:
    """(max position gap, max heading gap, |sum of lengths - road length|) of a plan view."""
    gap = ang = 0.0
    for g, nxt in zip(road.geos, road.geos[1:]):
        x, y, h = geo_pose(g, g.length)
        gap = max(gap, math.hypot(x - nxt.x, y - nxt.y), abs(g.s + g.length - nxt.s))
        ang = max(ang, abs(wrap_angle(h - nxt.hdg)))
    return gap, ang, abs(sum(g.length for g in road.geos) - road.length)


# --------------------------------------------------------------------------------------------
# Driving lane graph
# --------------------------------------------------------------------------------------------

Node = tuple[str, int, int]


def driving_graph(net: Net, lane_changes: bool) -> dict[Node, set[Node]]:
    """Driving lanes and where a vehicle can go next, following its driving direction.

    Right lanes (negative ids) drive along the reference line and leave at the road end,
    left lanes leave at the start. With ``lane_changes``, moving to an adjacent same-direction
    driving lane across a broken line is an edge too.
    """
    graph: dict[Node, set[Node]] = {}
    for road in net.roads.values():
        last = len(road.sections) - 1
        for si, sec in enumerate(road.sections):
            for lane in sec.lanes.values():
                if lane.type != "driving":
                    continue
                node = (road.id, si, lane.id)
                out = graph.setdefault(node, set())
                forward = lane.id < 0
                target = lane.succ if forward else lane.pred
                if forward and si < last:
                    if target is not None:
                        out.add((road.id, si + 1, target))
                elif not forward and si > 0:
                    if target is not None:
                        out.add((road.id, si - 1, target))
                else:
                    end = "end" if forward else "start"
                    link = road.succ if forward else road.pred
                    if link is None:
                        continue
                    if link[0] == "road" and target is not None:
                        other = net.roads[link[1]]
                        # entering at the other road's start means driving along it (negative id)
                        assert (target < 0) == (link[2] == "start"), f"against traffic: {node} -> {link} {target}"
                        out.add((other.id, section_index(other, link[2]), target))
                    elif link[0] == "junction":
                        for incoming, connecting, contact, lane_links in net.junctions[link[1]]:
                            if incoming != road.id or _junction_end(road, link[1]) != end:
                                continue
                            con = net.roads[connecting]
                            for frm, to in lane_links:
                                if frm == lane.id:
                                    assert (to < 0) == (contact == "start"), (node, connecting, to)
                                    out.add((connecting, section_index(con, contact), to))
                if lane_changes:
                    for nb in (lane.id - 1, lane.id + 1):
                        same_side = nb != 0 and (nb > 0) == (lane.id > 0)
                        if not same_side or nb not in sec.lanes or sec.lanes[nb].type != "driving":
                            continue
                        inner = sec.lanes[min(lane.id, nb, key=abs)]  # its roadMark is the shared line
                        if "broken" in inner.mark_type:
                            out.add((road.id, si, nb))
    return graph


def reachable(graph: dict[Node, set[Node]], start: Node) -> set[Node]:
    seen = {start}
    todo = deque([start])
    while todo:
        for nxt in graph.get(todo.popleft(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def largest_scc_fraction(graph: dict[Node, set[Node]]) -> float:
    """Fraction of nodes that are in the same strongly connected component as the first one
    (1.0 means strongly connected)."""
    nodes = sorted(graph)
    reverse: dict[Node, set[Node]] = {n: set() for n in nodes}
    for n, outs in graph.items():
        for m in outs:
            reverse.setdefault(m, set()).add(n)
    start = nodes[0]
    both = reachable(graph, start) & reachable(reverse, start)
    return len(both) / len(nodes)


# --------------------------------------------------------------------------------------------
# Summary (also handy from a shell: the figures quoted in reports)
# --------------------------------------------------------------------------------------------


def summary(name: str) -> dict[str, float]:
    net = net_of(name)
    checks = link_checks(net)
    gaps = [plan_view_gaps(r) for r in net.roads.values()]
    return {
        "roads": len(net.roads),
        "connecting_roads": sum(r.junction != "-1" for r in net.roads.values()),
        "junctions": len(net.junctions),
        "driving_lanes": len(driving_graph(net, False)),
        "links_checked": len(checks),
        "links_ok_fraction": sum(c.ok for c in checks) / len(checks),
        "max_link_distance_m": max(c.distance for c in checks),
        "max_link_angle_deg": math.degrees(max(c.angle for c in checks)),
        "max_planview_gap_m": max(g[0] for g in gaps),
        "scc_links_only": largest_scc_fraction(driving_graph(net, False)),
        "scc_with_lane_changes": largest_scc_fraction(driving_graph(net, True)),
        "size_bytes": TOWNS[name].stat().st_size,
    }


# --------------------------------------------------------------------------------------------
# Tests: API
# --------------------------------------------------------------------------------------------


def test_api_names_and_default() -> None:
    assert DEFAULT_TOWN == "RLTown01"
    assert set(TOWNS) == {"RLTown01", "RLTown02"}
    for name, path in TOWNS.items():
        assert path.is_file(), path
        assert town_path(name) == path
        assert town_path(name.lower()) == path


def test_api_accepts_any_xodr_path(tmp_path: Path) -> None:
    own = tmp_path / "Mine.xodr"
    own.write_text("<OpenDRIVE/>")
    assert town_path(own) == own
    assert town_path(str(own)) == own
    assert town_path(TOWNS["RLTown02"]) == TOWNS["RLTown02"]


@pytest.mark.parametrize("bad", ["Town01", "RLTown03", "", "/nonexistent/map.xodr", "notes.txt"])
def test_api_unknown_lists_known_names(bad: str) -> None:
    with pytest.raises(UnknownTownError) as info:
        town_path(bad)
    assert "RLTown01" in str(info.value) and "RLTown02" in str(info.value)
    assert isinstance(info.value, ValueError)


# --------------------------------------------------------------------------------------------
# Tests: files
# --------------------------------------------------------------------------------------------

ALL = sorted(TOWNS)


@pytest.mark.parametrize("name", ALL)
def test_file_is_small(name: str) -> None:
    assert TOWNS[name].stat().st_size < 1_000_000


@pytest.mark.parametrize("name", ALL)
def test_header_and_georeference(name: str) -> None:
    header = net_of(name).root.find("header")
    assert header.get("revMajor") == "1" and header.get("name") == name
    geo = header.find("geoReference").text
    assert "+proj=tmerc" in geo and "+lat_0=49" in geo and "+lon_0=8" in geo
    assert _f(header, "north") > _f(header, "south") and _f(header, "east") > _f(header, "west")


@pytest.mark.parametrize("name", ALL)
def test_plan_views_are_continuous(name: str) -> None:
    for road in net_of(name).roads.values():
        gap, ang, length_err = plan_view_gaps(road)
        assert gap < 1e-6 and ang < 1e-6 and length_err < 1e-6, (road.id, gap, ang, length_err)


@pytest.mark.parametrize("name", ALL)
def test_every_link_is_continuous(name: str) -> None:
    checks = link_checks(net_of(name))
    assert len(checks) > 100
    bad = [c for c in checks if not c.ok]
    assert not bad, bad[:5]


@pytest.mark.parametrize("name", ALL)
def test_links_are_well_formed(name: str) -> None:
    """Lane links are mutual, join lanes of the same type, and connecting roads agree with
    their junction's connections."""
    net = net_of(name)
    for road in net.roads.values():
        for end, link in (("start", road.pred), ("end", road.succ)):
            assert link is not None, f"road {road.id} has no {end} link"
            if link[0] == "junction":
                assert link[2] is None and link[1] in net.junctions
                continue
            assert link[2] in ("start", "end"), f"road {road.id} {end} link without contactPoint"
            other = net.roads[link[1]]
            back = other.pred if link[2] == "start" else other.succ
            # connecting road <-> incoming road: the incoming road links to the junction
            if (road.junction == "-1" or other.junction == "-1") and back[0] == "junction":
                assert back[1] in (road.junction, other.junction)
                continue
            assert back == ("road", road.id, end), (road.id, end, back)
            for lane in road.sections[section_index(road, end)].lanes.values():
                target = lane.pred if end == "start" else lane.succ
                if target is None:
                    continue
                other_lane = other.sections[section_index(other, link[2])].lanes[target]
                assert other_lane.type == lane.type
                if other.junction == "-1" and road.junction == "-1":
                    assert (other_lane.pred if link[2] == "start" else other_lane.succ) == lane.id
    for jid, connections in net.junctions.items():
        connecting_ids = {c for _, c, _, _ in connections}
        members = {r.id for r in net.roads.values() if r.junction == jid}
        assert connecting_ids == members, jid
        for incoming, connecting, contact, lane_links in connections:
            con = net.roads[connecting]
            link = con.pred if contact == "start" else con.succ
            assert link[:2] == ("road", incoming), (jid, connecting)
            assert lane_links
            for frm, to in lane_links:
                lane = con.sections[section_index(con, contact)].lanes[to]
                assert (lane.pred if contact == "start" else lane.succ) == frm
                assert net.roads[incoming].sections[0].lanes[frm].type == lane.type


@pytest.mark.parametrize("name", ALL)
def test_junctions_offer_every_movement(name: str) -> None:
    net = net_of(name)
    for jid, connections in net.junctions.items():
        arms = {r.id for r in junction_arms(net, jid)}
        assert len(arms) >= 3
        served = set()
        for incoming, connecting, contact, _ in connections:
            con = net.roads[connecting]
            out = con.succ if contact == "start" else con.pred
            served.add((incoming, out[1]))
        expected = {(a, b) for a in arms for b in arms if a != b}
        assert served == expected, (jid, expected - served)


@pytest.mark.parametrize("name", ALL)
def test_lanes_stay_inside_curves(name: str) -> None:
    """No lane border reaches past a curve's centre (would fold the lane over itself)."""
    for road in net_of(name).roads.values():
        sec = road.sections[0].lanes
        left = sum(_eval_poly(lane.widths, 0.0) for lane in sec.values() if lane.id > 0)
        right = sum(_eval_poly(lane.widths, 0.0) for lane in sec.values() if lane.id < 0)
        for g in road.geos:
            for i in range(int(g.length / 0.5) + 2):
                k = geo_curvature(g, min(i * 0.5, g.length))
                assert k * left < 0.9 and -k * right < 0.9, (road.id, k, left, right)


@pytest.mark.parametrize("name", ALL)
def test_driving_lanes_have_no_dead_ends(name: str) -> None:
    graph = driving_graph(net_of(name), lane_changes=False)
    preds = {m for outs in graph.values() for m in outs}
    for node, outs in graph.items():
        assert outs, f"dead end {node}"
        assert node in preds, f"unreachable start {node}"
        assert all(m in graph for m in outs), f"{node} leads to a non-driving lane"


def test_rltown01_strongly_connected_by_links() -> None:
    assert largest_scc_fraction(driving_graph(net_of("RLTown01"), lane_changes=False)) == 1.0


@pytest.mark.parametrize("name", ALL)
def test_strongly_connected_with_lane_changes(name: str) -> None:
    assert largest_scc_fraction(driving_graph(net_of(name), lane_changes=True)) == 1.0


# --------------------------------------------------------------------------------------------
# Tests: content (what each town is meant to offer)
# --------------------------------------------------------------------------------------------


def _arm_counts(net: Net) -> list[int]:
    return sorted(len(junction_arms(net, jid)) for jid in net.junctions)


def test_rltown01_content() -> None:
    net = net_of("RLTown01")
    header = net.root.find("header")
    assert 380 < _f(header, "east") - _f(header, "west") < 450
    assert 350 < _f(header, "north") - _f(header, "south") < 450
    assert _arm_counts(net) == [3] * 8 + [4] * 4
    kinds = {g.kind for r in net.roads.values() for g in r.geos}
    assert {"line", "arc", "spiral", "paramPoly3"} <= kinds
    junction_kinds = {g.kind for r in net.roads.values() if r.junction != "-1" for g in r.geos}
    assert {"spiral", "paramPoly3", "arc"} <= junction_kinds
    normal = [r for r in net.roads.values() if r.junction == "-1"]
    assert {sp for r in normal for sp in r.speeds} == {30.0, 50.0}
    assert {r.center_mark for r in normal} == {("solid", "yellow"), ("broken", "white")}
    for road in normal:
        lanes = road.sections[0].lanes
        assert [lanes[i].type for i in (1, 2, 3)] == ["driving", "shoulder", "sidewalk"]
        assert [lanes[-i].type for i in (1, 2, 3)] == ["driving", "shoulder", "sidewalk"]
        assert _eval_poly(lanes[-1].widths, 0) == 3.5 and 2.0 <= _eval_poly(lanes[-3].widths, 0) <= 3.0
        assert lanes[-1].mark_type == "solid" and lanes[-1].mark_color == "white"
    # road-to-road links (corner roads), some of them head to head
    contacts = {link[2] for r in normal for link in (r.pred, r.succ) if link[0] == "road"}
    assert contacts == {"start", "end"}


def test_rltown02_content() -> None:
    net = net_of("RLTown02")
    normal = [r for r in net.roads.values() if r.junction == "-1"]
    per_direction = {
        r.id: sum(lane.type == "driving" and i < 0 for i, lane in r.sections[0].lanes.items()) for r in normal
    }
    assert max(per_direction.values()) == 3 and 2 in per_direction.values() and 1 in per_direction.values()
    multi = [r for r in normal if per_direction[r.id] >= 2]
    assert max(r.length for r in multi) > 250
    for road in multi:
        lanes = road.sections[0].lanes
        n = per_direction[road.id]
        for side in (1, -1):
            assert [lanes[side * k].mark_type for k in range(1, n)] == ["broken"] * (n - 1)
            assert lanes[side * n].mark_type == "solid"
        assert road.center_mark == ("solid solid", "yellow")
    # multi-lane roads meet two-lane roads (one lane per direction) at several junctions
    mixed = 0
    for jid in net.junctions:
        arms = junction_arms(net, jid)
        widths = {per_direction[r.id] for r in arms}
        mixed += 1 in widths and max(widths) >= 2
    assert mixed >= 4
    kinds = {g.kind for r in net.roads.values() for g in r.geos}
    assert {"line", "arc", "spiral", "paramPoly3"} <= kinds


# --------------------------------------------------------------------------------------------
# Tests: the project's full OpenDRIVE parser on our towns
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_road_network_loads_town(name: str) -> None:
    """The project's parser sees continuous links and can route between random spawn points."""
    network = RoadNetwork.from_file(town_path(name))
    continuous, links, failures = network.continuity_report()
    assert links > 100
    assert continuous / links >= 0.99, failures[:5]
    spawns = network.spawn_points()
    assert len(spawns) >= 20
    rng = random.Random(7)
    for _ in range(20):
        (sx, sy, syaw, _), (gx, gy, _, _) = rng.sample(spawns, 2)
        assert network.route((sx, sy, syaw), (gx, gy)), ((sx, sy), (gx, gy))
