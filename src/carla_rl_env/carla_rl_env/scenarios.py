"""Scenarios (start, goal, traffic, seed) and where they come from: a suite file or random routes."""

from __future__ import annotations

import math
import reprlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from carla_rl_common.config import ConfigError, load_yaml
from carla_rl_common.opendrive import NoRouteError, RoadNetwork
from carla_rl_common.opendrive.types import RouteWaypoint
from carla_rl_common.towns import UnknownTownError, town_path


@dataclass(frozen=True)
class Scenario:
    id: str
    start: tuple[float, float, float]  # x, y, yaw in the map frame
    goal: tuple[float, float]
    traffic: int = 0
    seed: int = 0


SUITES_DIR = Path(__file__).resolve().parents[3] / "config" / "suites"


NEAR_LANE_M = 2.5
"""Farthest a suite's start or goal may lie from a driving lane's centreline (half a wide lane, plus margin)."""
MIN_ROUTE_M = 1.0
"""Nearest a goal may lie to its start: a route needs at least two waypoints."""


def find_suite(name_or_path: str, town: str) -> Path:
    """A suite file: a path, or a kind name (``one_turn``) looked up in config/suites/<town>/."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise FileNotFoundError(f"suite file not found: {path}")
        return path
    candidate = SUITES_DIR / Path(town).stem / f"{name_or_path}.yaml"
    if not candidate.is_file():
        known = sorted(p.stem for p in (SUITES_DIR / Path(town).stem).glob("*.yaml"))
        raise FileNotFoundError(
            f"no suite {name_or_path!r} for town {Path(town).stem} "
            f"(known: {', '.join(known) or 'none'}; or give a suite .yaml path)"
            + ("" if known else f"; {suite_command(town)}")
        )
    return candidate


def suite_command(town: str) -> str:
    """How to generate the committed suites of ``town`` where it has none: the command of :mod:`.suites`,
    writing into the directory :func:`find_suite` looks in (about 1.5 s for one of CARLA's towns)."""
    out = _shown(SUITES_DIR / Path(town).stem)
    if Path(town).suffix.lower() != ".xodr":  # a name only a real CARLA knows: its map file is needed here
        return f"generate them from its map with: python -m carla_rl_env.suites --town <{town}.xodr> --out {out}"
    return f"generate them with: python -m carla_rl_env.suites --town {town} --out {out}"  # the town as given


def _shown(path: Path) -> str:
    """``path`` relative to the working directory where it lies below it (a command to paste), else absolute."""
    path = path.resolve()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def resolve_suite(name_or_path: str, town: str) -> Path:
    """:func:`find_suite`, then the file checked against the town's road network (:func:`load_suite`) when the
    town is one this machine has (a shipped name or an .xodr path), so a bad suite fails before any process
    starts; a town only a real CARLA knows gets the checks that need no map here and the rest in the env node."""
    path = find_suite(name_or_path, town)
    try:
        xodr = town_path(town)
    except UnknownTownError:
        load_suite(path)
    else:
        load_suite(path, RoadNetwork.from_file(xodr))
    return path


def load_suite(path: str | Path, network: RoadNetwork | None = None) -> tuple[str, list[Scenario]]:
    """A suite YAML: ``{map: NAME, episodes: [{id, start: [x, y, yaw_deg], goal: [x, y], traffic, seed}]}``.

    Every number must be finite, ids unique, traffic >= 0 and the goal at least :data:`MIN_ROUTE_M` from the
    start. With ``network``, also: start and goal within :data:`NEAR_LANE_M` of a driving lane and a route
    between them. A :class:`ConfigError` names the file, the episode (index and id) and the field.
    """
    data = load_yaml(path)
    source = str(path)
    for key in data:
        if key not in ("name", "map", "kind", "episodes"):
            raise ConfigError(source, key, "unknown key (known keys here: episodes, kind, map, name)")
    episodes = data.get("episodes")
    if not isinstance(episodes, list) or not episodes:
        raise ConfigError(source, "episodes", "expected a non-empty list")
    scenarios = [_scenario(ep, i, source) for i, ep in enumerate(episodes)]
    seen: dict[str, int] = {}
    for i, scenario in enumerate(scenarios):
        if scenario.id in seen:
            raise ConfigError(source, f"episodes[{i}].id", f"{scenario.id!r} is also episodes[{seen[scenario.id]}]")
        seen[scenario.id] = i
        if network is not None:
            _check_on_map(scenario, f"episodes[{i}] (id {scenario.id!r})", network, source)
    return str(data.get("map", "")), scenarios


def _scenario(ep: Any, i: int, source: str) -> Scenario:
    where = f"episodes[{i}]"
    if not isinstance(ep, dict):
        raise ConfigError(source, where, f"expected a mapping with start and goal, got {type(ep).__name__}")
    where = f"{where} (id {reprlib.repr(ep['id'])})" if "id" in ep else where
    x, y, yaw_deg = _numbers(ep, "start", 3, "[x, y, yaw_deg]", where, source)
    gx, gy = _numbers(ep, "goal", 2, "[x, y]", where, source)
    traffic, seed = ep.get("traffic", 0), ep.get("seed", i)
    for name, value in (("traffic", traffic), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(source, f"{where}.{name}", f"expected an integer >= 0, got {reprlib.repr(value)}")
    if math.hypot(gx - x, gy - y) < MIN_ROUTE_M:
        raise ConfigError(
            source, f"{where}.goal", f"{[gx, gy]} is within {MIN_ROUTE_M:g} m of the start: no route to drive"
        )
    return Scenario(str(ep.get("id", f"{i}")), (x, y, math.radians(yaw_deg)), (gx, gy), traffic, seed)


def _numbers(ep: dict, name: str, count: int, form: str, where: str, source: str) -> list[float]:
    values = ep.get(name)
    try:
        if not isinstance(values, list) or len(values) != count or any(isinstance(v, bool) for v in values):
            raise ValueError
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ConfigError(source, f"{where}.{name}", f"expected {form} (numbers), got {reprlib.repr(values)}") from None
    if not all(math.isfinite(v) for v in numbers):
        raise ConfigError(source, f"{where}.{name}", f"expected finite numbers, got {values}")
    return numbers


def _check_on_map(scenario: Scenario, where: str, network: RoadNetwork, source: str) -> None:
    """Start and goal near a driving lane of ``network``, and a route between them."""
    for name, (x, y, yaw) in (("start", scenario.start), ("goal", (*scenario.goal, 0.0))):
        location = network.locate(x, y, yaw)
        if location.key is None or location.distance > NEAR_LANE_M:
            far = "no driving lane within 50 m" if location.key is None else f"{location.distance:.1f} m from a lane"
            raise ConfigError(
                source,
                f"{where}.{name}",
                f"({x:g}, {y:g}) is not on a driving lane of {network.name} ({far}; at most {NEAR_LANE_M:g} m)",
            )
    try:
        route = network.route(scenario.start, scenario.goal)
    except NoRouteError as exc:
        raise ConfigError(source, f"{where}.goal", f"no route from the start on {network.name}: {exc}") from None
    if len(route) < 2:
        raise ConfigError(source, f"{where}.goal", f"the route from the start on {network.name} is empty")


class ScenarioSource:
    """Next scenario: the suite's episodes in order (cycling), or a random route of configured length."""

    def __init__(self, network, config: dict[str, Any], seed: int = 0, offset: int = 0, stride: int = 1):
        self.network = network
        self.cfg = config["scenario"]
        self.rng = np.random.default_rng(seed)
        # env i of N takes suite episodes i, i + N, ...: N envs together run the suite once, not N times
        self.offset, self.stride = offset, max(stride, 1)
        self.index = 0
        self.suite: list[Scenario] = []
        if self.cfg["suite"]:
            _, self.suite = load_suite(find_suite(self.cfg["suite"], network.name), network)
        self._spawns = network.spawn_points()

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.index = 0

    def by_id(self, scenario_id: str) -> Scenario:
        for s in self.suite:
            if s.id == scenario_id:
                return s
        raise KeyError(f"no scenario {scenario_id!r} in the suite (have {len(self.suite)})")

    def next(self) -> Scenario:
        if self.suite:
            scenario = self.suite[(self.offset + self.index * self.stride) % len(self.suite)]
            self.index += 1
            return scenario
        return self.random()

    def random(self, tries: int = 50) -> Scenario:
        lo, hi = self.cfg["route_length_min"], self.cfg["route_length_max"]
        best: tuple[float, Scenario] | None = None
        for _ in range(tries):
            a, b = self.rng.choice(len(self._spawns), 2, replace=False)
            sx, sy, syaw, _ = self._spawns[a]
            gx, gy, _, _ = self._spawns[b]
            try:
                length = self.network.route_distance((sx, sy, syaw), (gx, gy))
            except ValueError:
                continue
            scenario = Scenario(
                f"random-{self.index}",
                (sx, sy, syaw),
                (gx, gy),
                int(self.cfg["traffic"]),
                int(self.rng.integers(2**31)),
            )
            if lo <= length <= hi:
                self.index += 1
                return scenario
            gap = max(lo - length, length - hi)
            if best is None or gap < best[0]:
                best = (gap, scenario)
        if best is None:
            raise RuntimeError("no route found between random spawn points")
        self.index += 1
        return best[1]

    def route(self, scenario: Scenario) -> list[RouteWaypoint]:
        return self.network.route(scenario.start, scenario.goal)
