"""Evaluation of a driving policy: per-episode records, the benchmark summary, Markdown and JSON results.

Each episode's record comes from the env's step infos:

* ``return``, ``length``: the sum of the env's rewards (evaluate on an env without reward normalisation)
  and the number of steps.
* ``success``: the terminal step's ``termination_reason == "goal_reached"``.
* ``route_completion``, ``collisions``, ``lane_invasions``: episode totals in the terminal step's info, when
  the env reports them (the fields of the env node's EpisodeSummary). Without ``collisions`` an episode that
  ended with termination reason ``collision`` counts one collision; the others are then None.
* ``distance`` (m): the path length of ``info["ego_pose"]`` ``(x, y)``, from the episode's start pose (the
  reset info's ``ego_pose``, read from the innermost VecEnv's ``reset_infos``; else the first step's pose);
  None when the infos carry no pose.
* ``mean_speed`` (m/s): the mean of ``info["speed"]`` over the episode's steps; None without speeds.

The summary's rates per km divide the events of all episodes by their total distance (a mean of
per-episode rates would be dominated by short episodes); they and the other means skip episodes whose
value is None, and are None when no episode has one (or no distance was driven).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from tqdm import tqdm

GOAL_REACHED = "goal_reached"


class Predictor(Protocol):
    """A trained model or policy: SB3's ``BaseAlgorithm`` and ``BasePolicy`` both fit."""

    def predict(
        self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = False
    ) -> tuple[np.ndarray, Any]: ...


def _start_xy(venv: VecEnv, index: int) -> np.ndarray | None:
    """Position at env ``index``'s episode start, from the innermost VecEnv's reset info, if it has one."""
    while isinstance(venv, VecEnvWrapper):
        venv = venv.venv
    pose = venv.reset_infos[index].get("ego_pose") if index < len(venv.reset_infos) else None
    return None if pose is None else np.asarray(pose, dtype=float)[:2]


@dataclass
class _Episode:
    """Running sums of one episode in progress."""

    last_xy: np.ndarray | None
    ret: float = 0.0
    length: int = 0
    distance: float = 0.0
    has_pose: bool = False
    speeds: list[float] = field(default_factory=list)

    def add(self, reward: float, info: dict[str, Any]) -> None:
        self.ret += float(reward)
        self.length += 1
        if "ego_pose" in info:
            xy = np.asarray(info["ego_pose"], dtype=float)[:2]
            if self.last_xy is not None:
                self.distance += float(np.hypot(*(xy - self.last_xy)))
            self.last_xy, self.has_pose = xy, True
        if "speed" in info:
            self.speeds.append(float(info["speed"]))

    def record(self, env_index: int, info: dict[str, Any]) -> dict[str, Any]:
        reason = str(info.get("termination_reason", ""))
        collisions = info.get("collisions", int(reason == "collision"))
        lane_invasions = info.get("lane_invasions")
        route_completion = info.get("route_completion")
        return {
            "env": env_index,
            "return": self.ret,
            "length": self.length,
            "success": reason == GOAL_REACHED,
            "termination_reason": reason,
            "route_completion": None if route_completion is None else float(route_completion),
            "collisions": int(collisions),
            "lane_invasions": None if lane_invasions is None else int(lane_invasions),
            "distance": self.distance if self.has_pose else None,
            "mean_speed": float(np.mean(self.speeds)) if self.speeds else None,
        }


def evaluate(
    model: Predictor, env: VecEnv, episodes: int, deterministic: bool = True, progress: bool = False
) -> dict[str, Any]:
    """Run ``episodes`` episodes of ``model`` on ``env``; returns ``{"summary": ..., "records": [...]}``.

    With N envs, env ``i`` contributes the episodes ``i, i + N, ...`` of ``episodes`` (``ceil((episodes - i) / N)``
    of them): the suite's share it plays (the env nodes' and InProcessEnv's ``offset=i, stride=N``), so every
    suite episode is played once, and short episodes of a fast env do not crowd out long ones. Records are in
    order of completion.

    :param model: anything with SB3's ``predict`` (a model from ``checkpoints.load_policy``, a policy)
    :param env: the evaluation VecEnv (with the env's own rewards, not normalised ones)
    :param episodes: the number of episodes (>= 1)
    :param deterministic: the policy's mode instead of samples
    :param progress: a progress bar on stderr (episodes done / total, rate, ETA, successes so far); on a
        terminal it is redrawn in place, in a log it is one line per finished episode
    """
    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}")
    n_envs = env.num_envs
    targets = [(episodes - i + n_envs - 1) // n_envs for i in range(n_envs)]
    counts = [0] * n_envs
    records: list[dict[str, Any]] = []
    observations = env.reset()
    running = [_Episode(_start_xy(env, i)) for i in range(n_envs)]
    state, episode_starts = None, np.ones(n_envs, dtype=bool)
    tty = sys.stderr.isatty()  # a terminal keeps the final bar; a log has it as its last episode's line
    stream = sys.stderr if tty else _LogLines(sys.stderr)
    with tqdm(total=episodes, desc="evaluate", unit="episode", file=stream, leave=tty, disable=not progress) as bar:
        while counts != targets:
            actions, state = model.predict(
                observations, state=state, episode_start=episode_starts, deterministic=deterministic
            )
            observations, rewards, dones, infos = env.step(actions)
            for i in range(n_envs):
                if counts[i] == targets[i]:
                    continue
                running[i].add(rewards[i], infos[i])
                if dones[i]:
                    records.append(running[i].record(i, infos[i]))
                    counts[i] += 1
                    running[i] = _Episode(_start_xy(env, i))
                    bar.set_postfix_str(f"{sum(r['success'] for r in records)} succeeded", refresh=False)
                    bar.update(1)
            episode_starts = dones
    return {"summary": summarize(records), "records": records}


class _LogLines:
    """Where tqdm writes when stderr is a log or a pipe (the evaluator under ``carla-rl evaluate``): each redraw
    as one whole line, repeats and blank redraws dropped, so a log gets one line per finished episode."""

    def __init__(self, stream: Any):
        self.stream, self.last = stream, ""

    def write(self, text: str) -> None:
        line = text.strip("\r\n ")
        if line and line != self.last:
            self.stream.write(line + "\n")
            self.last = line

    def flush(self) -> None:
        self.stream.flush()


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def _per_km(records: list[dict[str, Any]], key: str) -> float | None:
    known = [r for r in records if r[key] is not None and r["distance"] is not None]
    km = sum(r["distance"] for r in known) / 1000.0
    return sum(r[key] for r in known) / km if km > 0 else None


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The benchmark summary of episode records (see the module docstring)."""
    speeds = [(r["mean_speed"], r["length"]) for r in records if r["mean_speed"] is not None]
    steps = sum(length for _, length in speeds)
    distances = [r["distance"] for r in records if r["distance"] is not None]
    return {
        "episodes": len(records),
        "success_rate": _mean([float(r["success"]) for r in records]),
        "route_completion": _mean([r["route_completion"] for r in records]),
        "collisions_per_km": _per_km(records, "collisions"),
        "lane_invasions_per_km": _per_km(records, "lane_invasions"),
        "mean_speed": sum(s * n for s, n in speeds) / steps if steps else None,
        "mean_return": _mean([r["return"] for r in records]),
        "mean_length": _mean([float(r["length"]) for r in records]),
        "distance_km": sum(distances) / 1000.0 if distances else None,
    }


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


SUMMARY_LABELS = {
    "episodes": "episodes",
    "success_rate": "success rate",
    "route_completion": "route completion",
    "collisions_per_km": "collisions per km",
    "lane_invasions_per_km": "lane invasions per km",
    "mean_speed": "mean speed (m/s)",
    "mean_return": "mean return",
    "mean_length": "mean length (steps)",
    "distance_km": "distance (km)",
}
RECORD_COLUMNS = {
    "env": "env",
    "return": "return",
    "length": "length",
    "success": "success",
    "termination_reason": "termination",
    "route_completion": "route completion",
    "collisions": "collisions",
    "lane_invasions": "lane invasions",
    "distance": "distance (m)",
    "mean_speed": "mean speed (m/s)",
}


def write_results(summary: dict[str, Any], records: list[dict[str, Any]], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``results.json`` (summary and episodes) and ``results.md`` (both as tables) into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "results.json", out_dir / "results.md"
    json_path.write_text(json.dumps({"summary": summary, "episodes": records}, indent=2) + "\n")
    summary_rows = [[SUMMARY_LABELS.get(key, key), value] for key, value in summary.items()]
    episode_rows = [[i, *(r.get(key) for key in RECORD_COLUMNS)] for i, r in enumerate(records)]
    md_path.write_text(
        "# Evaluation\n\n"
        + _table(["metric", "value"], summary_rows)
        + "\n## Episodes\n\n"
        + _table(["#", *RECORD_COLUMNS.values()], episode_rows)
    )
    return json_path, md_path
