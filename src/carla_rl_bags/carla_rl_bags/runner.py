"""The second pass over a bag: the recorded frames through a DrivingTask per planned episode.

:class:`EpisodeRunner` is fed the frames (:func:`carla_rl_bags.recording.bridge_events`) in receive order and
rebuilds each planned episode (:mod:`.episodes`) as the env node ran it live: a task reset on the episode's
reset frame, re-plans where a Path or goal arrived, and one step per frame the agent acted on, the frames the
simulator ticked on its own folded into the next step (:class:`carla_rl_env.episode.StepFolder`, as the env
node folds them).

With a policy (anything with ``predict(obs, deterministic=True) -> (action, state)``), its action on every
rebuilt observation the agent acted on (a batch of one, as the agent node calls it) is compared with the
recorded one, the control applied in the next such frame, in :class:`ActionLog`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from gymnasium import spaces

from carla_rl_bags.episodes import EpisodePlan, Goal, Poses, route_from_path
from carla_rl_common.bridge import Control
from carla_rl_common.opendrive import RoadNetwork
from carla_rl_common.opendrive.types import RouteWaypoint
from carla_rl_env.actions import ActionMapper
from carla_rl_env.episode import StepFolder
from carla_rl_env.task import DrivingTask, Frame

AGREEMENT_TOLERANCE = 0.1  # continuous actions agree when every component is within this


class Policy(Protocol):
    def predict(self, observation: Any, deterministic: bool = True) -> tuple[Any, Any]: ...


@dataclass
class OfflineSpaces:
    """What ``load_policy(path, env)`` gets for ``env``: the spaces of the configured task, one env."""

    observation_space: spaces.Space
    action_space: spaces.Space
    num_envs: int = 1


@dataclass
class ActionLog:
    """Policy actions against recorded ones, per episode: as controls (errors) and actions (agreement)."""

    mapper: ActionMapper
    episodes: list[int] = field(default_factory=list)  # id() of the EpisodePlan of each sample
    policy: list[Control] = field(default_factory=list)
    recorded: list[Control] = field(default_factory=list)
    agree: list[bool] = field(default_factory=list)

    def add(self, plan: EpisodePlan, action: Any, speed: float, applied: Control) -> None:
        """One observation: the policy's ``action`` (at ``speed``) against the control ``applied`` next."""
        recorded_action = self.mapper.from_control(applied)
        self.episodes.append(id(plan))
        self.policy.append(self.mapper.to_control(action, speed))
        self.recorded.append(applied)
        if self.mapper.kind == "discrete":
            self.agree.append(int(np.asarray(action).reshape(())) == recorded_action)
        else:
            clipped = np.clip(np.asarray(action, np.float64).reshape(-1), self.mapper.space.low, self.mapper.space.high)
            self.agree.append(bool(np.max(np.abs(clipped - recorded_action)) <= AGREEMENT_TOLERANCE))

    def errors(self, plan: EpisodePlan | None = None) -> dict[str, np.ndarray]:
        """Policy minus recorded steer, throttle and brake (of one episode's samples, or all)."""
        keep = [plan is None or e == id(plan) for e in self.episodes]
        return {
            k: np.array([getattr(p, k) - getattr(r, k) for p, r, w in zip(self.policy, self.recorded, keep) if w])
            for k in ("steer", "throttle", "brake")
        }

    def summary(self, plan: EpisodePlan | None = None) -> dict[str, Any]:
        agree = [a for a, e in zip(self.agree, self.episodes) if plan is None or e == id(plan)]
        return {
            "samples": len(agree),
            "agreement_rate": float(np.mean(agree)) if agree else 0.0,
            "agreement_tolerance": AGREEMENT_TOLERANCE if self.mapper.kind != "discrete" else 0,
            **{f"{k}_mae": float(np.mean(np.abs(v))) if len(v) else 0.0 for k, v in self.errors(plan).items()},
        }


class EpisodeRunner:
    """Feeds the second pass's frames to a DrivingTask per planned episode (see the module doc)."""

    def __init__(
        self,
        cfg: dict[str, Any],
        network: RoadNetwork,
        dt: float,
        plans: list[EpisodePlan],
        policy: Policy | None,
        actions: ActionLog | None,
        source: str,
    ):
        self.cfg, self.network, self.dt, self.source = cfg, network, dt, source
        self.by_reset = {p.reset_stamp: p for p in plans if p.reset_stamp is not None}
        self.policy, self.actions = policy, actions
        self.plan: EpisodePlan | None = None
        self.task: DrivingTask | None = None
        self.results: dict[int, dict[str, Any]] = {}  # id(plan) -> result
        self.pending: tuple[Any, float] | None = None  # the policy's action on the last observation, and speed
        self.folder = StepFolder()  # frames the agent did not act on, until the next step

    def frame(self, recv: int, frame: Frame) -> None:
        plan = self.by_reset.get(frame.stamp_ns)
        if plan is not None:
            self._start(plan, frame)
        elif self.plan is not None:
            self._advance(recv, frame)

    def _start(self, plan: EpisodePlan, frame: Frame) -> None:
        self.plan, self.pending = None, None
        self.folder.clear()
        try:
            route = self._route(plan.route, frame)
        except ValueError as exc:
            plan.notes.append(f"no route from the reset pose ({exc}): recorded steps only")
            return
        self.plan = plan
        self.task = DrivingTask(self.cfg, self.network, self.dt, source=self.source)
        observation = self.task.reset(route, frame)
        self.results[id(plan)] = {"rewards": [], "ended": False, "stats": self.task.stats}
        self._observe(observation, frame)

    def _route(self, route: list[RouteWaypoint] | Goal | Poses, frame: Frame) -> list[RouteWaypoint]:
        """A route to follow from ``frame`` on: a goal is planned from its pose, a Path's poses matched."""
        if isinstance(route, Goal):
            return self.network.route((frame.x, frame.y, frame.yaw), (route.x, route.y))
        if route and not isinstance(route[0], RouteWaypoint):
            return route_from_path(self.network, route)[0]
        return route

    def _advance(self, recv: int, frame: Frame) -> None:
        plan, result = self.plan, self.results[id(self.plan)]
        while plan.replans and plan.replans[0][0] < recv:  # a Path or goal that arrived before this frame
            try:
                self.task.replan(self._route(plan.replans.pop(0)[1], self.task.prev), self.task.prev)
            except ValueError as exc:
                plan.notes.append(f"a re-plan was unusable ({exc})")
        decides = plan.decides_at(frame.stamp_ns)
        if decides and self.pending is not None and self.actions is not None:
            self.actions.add(plan, self.pending[0], self.pending[1], frame.control)
            self.pending = None
        tr = self.task.step(frame)
        self.folder.add(tr, frame)
        ended = tr.terminated or tr.truncated
        if decides or ended or frame.stamp_ns == plan.last_stamp:  # a step, with its folded frames' rewards
            result["rewards"].append(self.folder.take()[0].reward)
        if ended:
            result["ended"] = True
        elif decides:
            self._observe(tr.observation, frame)
        if result["ended"] or frame.stamp_ns == plan.last_stamp:
            self.plan = None

    def _observe(self, observation: dict[str, np.ndarray], frame: Frame) -> None:
        if self.policy is not None:
            batch = {k: v[None] for k, v in observation.items()}
            action, _ = self.policy.predict(batch, deterministic=True)
            self.pending = (np.asarray(action)[0], frame.speed)
