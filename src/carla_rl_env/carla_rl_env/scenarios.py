"""Scenarios (start, goal, traffic, seed) and where they come from: a suite file or random routes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from carla_rl_common.config import ConfigError, load_yaml
from carla_rl_common.opendrive.types import RouteWaypoint


@dataclass(frozen=True)
class Scenario:
    id: str
    start: tuple[float, float, float]  # x, y, yaw in the map frame
    goal: tuple[float, float]
    traffic: int = 0
    seed: int = 0


SUITES_DIR = Path(__file__).resolve().parents[3] / "config" / "suites"


def resolve_suite(name_or_path: str, town: str) -> Path:
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
        )
    return candidate


def load_suite(path: str | Path) -> tuple[str, list[Scenario]]:
    """A suite YAML: ``{map: NAME, episodes: [{id, start: [x, y, yaw_deg], goal: [x, y], traffic, seed}]}``."""
    data = load_yaml(path)
    source = str(path)
    for key in data:
        if key not in ("name", "map", "kind", "episodes"):
            raise ConfigError(source, key, "unknown key (known keys here: episodes, kind, map, name)")
    episodes = data.get("episodes")
    if not isinstance(episodes, list) or not episodes:
        raise ConfigError(source, "episodes", "expected a non-empty list")
    scenarios = []
    for i, ep in enumerate(episodes):
        try:
            x, y, yaw_deg = (float(v) for v in ep["start"])
            gx, gy = (float(v) for v in ep["goal"])
            scenarios.append(
                Scenario(
                    str(ep.get("id", f"{i}")),
                    (x, y, math.radians(yaw_deg)),
                    (gx, gy),
                    int(ep.get("traffic", 0)),
                    int(ep.get("seed", i)),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(source, f"episodes[{i}]", f"needs start [x, y, yaw_deg] and goal [x, y]: {exc}") from exc
    return str(data.get("map", "")), scenarios


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
            _, self.suite = load_suite(resolve_suite(self.cfg["suite"], network.name))
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
