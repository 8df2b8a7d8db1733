"""Benchmark suites in the style of the CoRL 2017 CARLA benchmark (Dosovitskiy et al., "CARLA: An Open
Urban Driving Simulator"), generated from a town's road network.

Four kinds of suite, each a YAML file that :func:`carla_rl_env.scenarios.load_suite` reads:

``straight``
    The goal lies straight ahead: the route turns at no junction (it may cross junctions
    straight on), changes no lane and follows no corner road; 60-200 m.
``one_turn``
    Exactly one junction traversal turns (LEFT or RIGHT); any other junction is crossed
    straight on; no lane change and no corner road; 60-250 m.
``navigation``
    Any route of at least 150 m: several turns, corners and lane changes allowed.
``navigation_dynamic``
    Navigation episodes (drawn with another random stream) with traffic: 4 vehicles per km of
    driving lane outside junctions (20 on RLTown01, 43 on RLTown02, 20 on CARLA's Town01).

Turns are counted from the planner's road options: a *junction traversal* is a maximal run of
route waypoints on lanes with ``junction >= 0``, and its option (LEFT/RIGHT/STRAIGHT) is the
planner's label of that run. A *corner* is a stretch outside junctions along which the heading
strays from the stretch's first heading by 35 degrees or more (the planner's turn threshold):
CARLA-style towns have rounded corner roads that turn 90 degrees without a junction, and a
"straight" episode around such a corner would not be straight.

Starts and goals are spawn points (:meth:`RoadNetwork.spawn_points`), drawn with a numpy
Generator seeded by ``(seed, kind)``, so a suite is a pure function of the map and its arguments.
Within a suite no two episodes share a start, nor two a goal. Numbers are rounded to 3 decimals, and
every route is classified as re-planned from the rounded numbers, exactly as the file is read.

Regenerate the committed suites (byte-identical output) with::

    python -m carla_rl_env.suites --town RLTown01   # writes config/suites/RLTown01/<kind>.yaml
    python -m carla_rl_env.suites --town RLTown02 --check
"""

from __future__ import annotations

import argparse
import heapq
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from carla_rl_common.geometry import wrap_angle
from carla_rl_common.opendrive import Lane, LaneKey, NoRouteError, RoadNetwork, RoadOption, RouteWaypoint
from carla_rl_common.opendrive.routing import TURN_THRESHOLD
from carla_rl_common.paths import CONFIG_DIR
from carla_rl_common.towns import DEFAULT_TOWN, TOWNS, town_path

KINDS = ("straight", "one_turn", "navigation", "navigation_dynamic")
"""Suite kinds, in the order of the CoRL 2017 benchmark's tasks."""

LENGTHS: dict[str, tuple[float, float | None]] = {
    "straight": (60.0, 200.0),
    "one_turn": (60.0, 250.0),
    "navigation": (150.0, None),
    "navigation_dynamic": (150.0, None),
}
"""Default ``(min_length, max_length)`` of the routes of each kind, in metres (None: no limit)."""

TRAFFIC_PER_KM = 4.0
"""Default traffic of ``navigation_dynamic``: vehicles per km of driving lane outside junctions."""

DECIMALS = 3
LENGTH_MARGIN = 0.5  # m kept clear of the length limits, so a re-planned route never lands just outside
GOAL_TRIES = 40  # navigation goals tried per start before moving on to the next start
TURNS = (RoadOption.LEFT, RoadOption.RIGHT)
LANE_CHANGES = (RoadOption.CHANGELANELEFT, RoadOption.CHANGELANERIGHT)


@dataclass(frozen=True)
class RouteProfile:
    """What a route does: its length, the option of each junction traversal, lane changes, corners."""

    length: float
    junctions: tuple[RoadOption, ...]
    lane_changes: int
    corners: int

    @property
    def turns(self) -> int:
        return sum(option in TURNS for option in self.junctions)


def route_profile(
    network: RoadNetwork, route: list[RouteWaypoint], corner_threshold: float = TURN_THRESHOLD
) -> RouteProfile:
    """Junction traversals (maximal runs of waypoints on junction lanes), lane changes and corners."""
    in_junction = [network.lanes[w.key].junction >= 0 for w in route]
    junctions: list[RoadOption] = []
    corners = 0
    i = 0
    while i < len(route):
        j = i
        while j + 1 < len(route) and in_junction[j + 1] == in_junction[i]:
            j += 1
        if in_junction[i]:
            junctions.append(RoadOption(route[i].road_option))
        else:
            yaws = np.array([w.yaw for w in route[i : j + 1]])
            if np.max(np.abs(wrap_angle(yaws - yaws[0]))) >= corner_threshold:
                corners += 1
        i = j + 1
    lane_changes = sum(1 for w in route if w.road_option in LANE_CHANGES)
    return RouteProfile(network.route_length(route), tuple(junctions), lane_changes, corners)


def matches(kind: str, profile: RouteProfile, min_length: float, max_length: float | None) -> bool:
    """Whether a route of this profile belongs in a suite of ``kind``."""
    if profile.length < min_length or (max_length is not None and profile.length > max_length):
        return False
    if kind == "straight":
        return profile.turns == 0 and profile.lane_changes == 0 and profile.corners == 0
    if kind == "one_turn":
        return profile.turns == 1 and profile.lane_changes == 0 and profile.corners == 0
    if kind in ("navigation", "navigation_dynamic"):
        return True
    raise ValueError(f"unknown suite kind {kind!r} (known: {', '.join(KINDS)})")


def default_traffic(network: RoadNetwork) -> int:
    """Traffic vehicles for ``navigation_dynamic``, scaled by the town's driving-lane length."""
    km = sum(lane.length for lane in network.driving_lanes() if lane.junction < 0) / 1000.0
    return max(1, round(TRAFFIC_PER_KM * km))


def _round(value: float) -> float:
    return round(float(value), DECIMALS) + 0.0  # + 0.0: no "-0.0" in the file


def _station(lane: Lane, x: float, y: float) -> float:
    """Arc length of the lane's centreline sample nearest to ``(x, y)``."""
    return float(lane.s[np.argmin(np.hypot(*(lane.centerline - (x, y)).T))])


def _successor_reach(
    network: RoadNetwork,
    start: LaneKey,
    s_start: float,
    stations: list[float],
    by_lane: dict[LaneKey, list[int]],
    lo: float,
    hi: float,
    slack: float = 5.0,
) -> np.ndarray:
    """Mask of the spawn points reachable from ``(start, s_start)`` along lane successors only (no lane
    change) within ``lo - slack``..``hi + slack`` metres. Every goal of a route without lane changes in
    ``lo``..``hi`` is among them, so this only saves planning routes that cannot match."""
    mask = np.zeros(len(stations), bool)
    best = {start: -s_start}  # driven distance at each lane's start
    heap = [(-s_start, start)]
    while heap:
        d, key = heapq.heappop(heap)
        if d > best[key]:
            continue
        lane = network.lanes[key]
        for i in by_lane.get(key, ()):
            if key == start and stations[i] < s_start:
                continue  # behind the start: only a loop reaches it, and a loop turns more than once
            if lo - slack <= d + stations[i] <= hi + slack:
                mask[i] = True
        for following in lane.successors:
            if following in network.lanes and network.lanes[following].is_driving and following != start:
                nd = d + lane.length
                if nd <= hi + slack and nd < best.get(following, math.inf):
                    best[following] = nd
                    heapq.heappush(heap, (nd, following))
    return mask


def _generate(
    network: RoadNetwork,
    kind: str,
    episodes: int,
    seed: int,
    min_length: float | None,
    max_length: float | None,
    traffic: int | None,
) -> tuple[dict[str, Any], list[RouteProfile]]:
    if kind not in KINDS:
        raise ValueError(f"unknown suite kind {kind!r} (known: {', '.join(KINDS)})")
    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}")
    lo, hi = LENGTHS[kind]
    lo = lo if min_length is None else float(min_length)
    hi = hi if max_length is None else float(max_length)
    if traffic is None:
        traffic = default_traffic(network) if kind == "navigation_dynamic" else 0
    rng = np.random.default_rng([int(seed), KINDS.index(kind)])

    spawns = network.spawn_points()
    # what the file will hold: x, y, yaw in degrees, rounded
    poses = [(_round(x), _round(y), _round(math.degrees(yaw))) for x, y, yaw, _ in spawns]
    xy = np.array([p[:2] for p in poses])
    distance = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    reach = distance >= lo / 2  # a sampling heuristic only: a goal this near makes a short or looping route
    if hi is not None:
        reach &= distance <= hi  # a route is never shorter than the straight line
    ahead = kind in ("straight", "one_turn") and hi is not None
    if ahead:  # goals these routes can reach at all: along successors (no lane change), not too far
        stations = [_station(network.lanes[key], x, y) for x, y, _, key in spawns]
        by_lane: dict = {}
        for i, (_, _, _, key) in enumerate(spawns):
            by_lane.setdefault(key, []).append(i)

    used: set[int] = set()  # goals so far (each start comes up once in the permutation)
    chosen: list[dict[str, Any]] = []
    profiles: list[RouteProfile] = []
    for a in rng.permutation(len(spawns)):
        if len(chosen) == episodes:
            break
        sx, sy, syaw = poses[a]
        candidates = reach[a].copy()
        if ahead:
            candidates &= _successor_reach(network, spawns[a][3], stations[a], stations, by_lane, lo, hi)
        goals = [int(b) for b in rng.permutation(np.flatnonzero(candidates)) if b != a and b not in used]
        for b in goals if ahead else goals[:GOAL_TRIES]:  # the ahead filter leaves few, all worth a try
            gx, gy, _ = poses[b]
            try:
                route = network.route((sx, sy, math.radians(syaw)), (gx, gy))
            except NoRouteError:
                continue
            profile = route_profile(network, route)
            if matches(kind, profile, lo + LENGTH_MARGIN, None if hi is None else hi - LENGTH_MARGIN):
                used.add(b)
                chosen.append(
                    {
                        "id": f"{kind}-{len(chosen):02d}",
                        "start": [sx, sy, syaw],
                        "goal": [gx, gy],
                        "traffic": int(traffic),
                        "seed": int(rng.integers(2**31 - 1)),
                    }
                )
                profiles.append(profile)
                break
    if len(chosen) < episodes:
        bounds = f"{lo:g}-{hi:g} m" if hi is not None else f">= {lo:g} m"
        raise ValueError(f"{network.name}: found only {len(chosen)} of {episodes} {kind} episodes ({bounds})")
    suite = {"name": f"{network.name}-{kind}", "map": network.name, "kind": kind, "episodes": chosen}
    return suite, profiles


def generate_suite(
    network: RoadNetwork,
    kind: str,
    episodes: int = 25,
    seed: int = 0,
    min_length: float | None = None,
    max_length: float | None = None,
    traffic: int | None = None,
) -> dict[str, Any]:
    """The YAML mapping of one suite: ``{name, map, kind, episodes: [{id, start, goal, traffic, seed}]}``.

    ``min_length``/``max_length`` default to :data:`LENGTHS` of the kind; ``traffic`` to 0, or to
    :func:`default_traffic` for ``navigation_dynamic``. Deterministic in all arguments; raises
    ``ValueError`` when the map has too few matching routes.
    """
    return _generate(network, kind, episodes, seed, min_length, max_length, traffic)[0]


def dump_suite(suite: dict[str, Any], header: str = "") -> str:
    """YAML text of a suite: keys in the order name, map, kind, episodes; short lists inline."""
    body = yaml.safe_dump(suite, sort_keys=False, default_flow_style=None, width=120)
    comment = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    return comment + body


def _header(network: RoadNetwork, kind: str, seed: int, profiles: list[RouteProfile]) -> str:
    lengths = np.array([p.length for p in profiles])
    turns = np.array([p.turns for p in profiles])
    # a shipped town by name; another map (CARLA's, read from ../shared) by the path of its file
    town = network.name if network.name in TOWNS else f"<path of {network.name}.xodr>"
    return (
        f"{network.name} {kind}: {len(profiles)} episodes in the style of the CoRL 2017 CARLA benchmark.\n"
        f"Generated by `python -m carla_rl_env.suites --town {town} --seed {seed}`; do not edit by hand\n"
        f"(tests/carla_rl_env/ check it equals fresh output). Map frame; start yaw in degrees.\n"
        f"Route length (m): min {lengths.min():.1f}, mean {lengths.mean():.1f}, max {lengths.max():.1f}; "
        f"junction turns per route: {turns.min()}-{turns.max()}."
    )


def render_suites(network: RoadNetwork, episodes: int = 25, seed: int = 0) -> dict[str, str]:
    """``{file name: YAML text}`` of the four suites of a town."""
    texts = {}
    for kind in KINDS:
        suite, profiles = _generate(network, kind, episodes, seed, None, None, None)
        texts[f"{kind}.yaml"] = dump_suite(suite, _header(network, kind, seed, profiles))
    return texts


def _load_town(town: str | os.PathLike[str] | RoadNetwork) -> RoadNetwork:
    if isinstance(town, RoadNetwork):
        return town
    return RoadNetwork.from_file(town_path(town))


def write_suites(
    town: str | os.PathLike[str] | RoadNetwork, out_dir: str | os.PathLike[str], episodes: int = 25, seed: int = 0
) -> list[Path]:
    """Write ``<out_dir>/<kind>.yaml`` for the four kinds; ``town`` is a shipped town name, an
    ``.xodr`` path or a loaded network. Returns the paths written."""
    network = _load_town(town)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in render_suites(network, episodes, seed).items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m carla_rl_env.suites", description=__doc__.split("\n\n")[0])
    parser.add_argument("--town", default=DEFAULT_TOWN, help="shipped town name or .xodr path (default %(default)s)")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default config/suites/<map name>)")
    parser.add_argument("--episodes", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", action="store_true", help="only compare with the files there; exit 1 if they differ")
    args = parser.parse_args(argv)
    network = _load_town(args.town)
    out = args.out if args.out is not None else CONFIG_DIR / "suites" / network.name
    if not args.check:
        for path in write_suites(network, out, args.episodes, args.seed):
            print(f"wrote {path}")
        return 0
    stale = [
        name
        for name, text in render_suites(network, args.episodes, args.seed).items()
        if not (out / name).is_file() or (out / name).read_text(encoding="utf-8") != text
    ]
    for name in stale:
        print(f"differs: {out / name}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
