"""Which recorded frames make an episode, and which route it follows (planned from the recording's index).

* With recorded ``carla_rl/step`` messages, an episode is the frames its steps cover: the last step's frame
  and the ``EpisodeSummary.length`` frames up to it (steps fold frames the simulator ticked on its own), after
  the *reset frame* the env node started it on. Without the summary (a recording cut mid-episode), the frames
  from the first step's on.
* Its route is the ``waypoints`` Path the env published for it (lanes and road options re-planned between its
  ends), else one planned from the reset pose to the last recorded ``goal``. Paths or goals arriving during
  the episode re-plan it, as they do live.
* Without step messages (a bag of a bridge driven by something else), each Path (or, failing that, goal) starts
  an episode at the latest frame before it, which runs until the task ends it or the next one starts.
* Without a map or a route, an episode is reported from its recorded step messages alone, with a note why.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from functools import cached_property
from itertools import pairwise
from typing import NamedTuple

from carla_rl_msgs.msg import EpisodeSummary

from carla_rl_bags.recording import RecordingIndex, StepRecord
from carla_rl_common.opendrive import RoadNetwork
from carla_rl_common.opendrive.types import RoadOption, RouteWaypoint

ROUTE_MATCH_M = 0.05  # a re-planned route within this of every recorded waypoint is the recorded route


class Goal(NamedTuple):
    """A route still to plan: from the car's pose when it is needed to this recorded goal point."""

    x: float
    y: float


Poses = list[tuple[float, float, float]]  # a recorded waypoints Path


@dataclass
class EpisodePlan:
    """Which frames make an episode and which route it follows."""

    env_id: str
    episode: int
    reset_stamp: int | None  # None: the recorded steps alone are reported
    last_stamp: int | None  # None: until the task ends it (or the next episode starts)
    route: list[RouteWaypoint] | Goal | None
    route_source: str
    replans: list[tuple[int, Poses | Goal]] = field(default_factory=list)  # (receive_ns, new route)
    steps: list[StepRecord] = field(default_factory=list)
    summary: EpisodeSummary | None = None
    notes: list[str] = field(default_factory=list)

    @cached_property
    def step_stamps(self) -> frozenset[int]:
        return frozenset(s.stamp_ns for s in self.steps)

    def decides_at(self, stamp_ns: int) -> bool:
        """Whether the agent acted on this frame's observation: every frame, or, with recorded steps, the frames
        a step was published for (the env folds frames the simulator ticked without a new command)."""
        return not self.steps or stamp_ns in self.step_stamps


def route_from_path(network: RoadNetwork, poses: list[tuple[float, float, float]]) -> tuple[list[RouteWaypoint], str]:
    """The route a waypoints Path shows: its points, with lanes and road options re-planned between its ends."""
    if len(poses) < 2:
        raise ValueError("the Path has fewer than two poses")
    planned = network.route(poses[0], poses[-1][:2])
    if len(planned) == len(poses) and all(
        math.hypot(w.x - x, w.y - y) < ROUTE_MATCH_M for w, (x, y, _) in zip(planned, poses)
    ):
        return [RouteWaypoint(x, y, yaw, w.key, w.road_option) for w, (x, y, yaw) in zip(planned, poses)], "waypoints"
    located = [network.locate(x, y, yaw).key for x, y, yaw in poses]
    if any(k is None for k in located):
        raise ValueError("Path poses lie off the road network")
    return (
        [RouteWaypoint(x, y, yaw, k, RoadOption.LANEFOLLOW) for (x, y, yaw), k in zip(poses, located)],
        "waypoints (lanes located; road options unknown)",
    )


def plan_episodes(index: RecordingIndex, network: RoadNetwork | None) -> list[EpisodePlan]:
    """Episodes from the recorded steps, else from the recorded routes (see the module doc)."""
    if index.steps:
        return _plans_from_steps(index, network)
    return _plans_from_routes(index, network)


def _plans_from_steps(index: RecordingIndex, network: RoadNetwork | None) -> list[EpisodePlan]:
    stamps = index.frame_stamps
    recorded = set(stamps)
    plans, previous_end = [], -1
    for (env_id, episode), steps in sorted(index.steps.items(), key=lambda kv: kv[1][0].recv_ns):
        steps = sorted(steps, key=lambda s: s.step)
        plan = EpisodePlan(
            env_id,
            episode,
            None,
            steps[-1].stamp_ns,
            None,
            "none",
            steps=steps,
            summary=index.summaries.get((env_id, episode)),
        )
        plans.append(plan)
        window = (previous_end, steps[0].recv_ns)
        previous_end = steps[-1].recv_ns
        if network is None:
            plan.notes.append("no map (world_info) recorded: recorded steps only")
            continue
        last = bisect.bisect_left(stamps, steps[-1].stamp_ns)
        first = bisect.bisect_left(stamps, steps[0].stamp_ns)
        if last == len(stamps) or stamps[last] != steps[-1].stamp_ns or first == len(stamps):
            plan.notes.append("the frames of its steps are not all in the recording: recorded steps only")
            continue
        length = int(plan.summary.length) if plan.summary is not None else last - first + 1
        if plan.summary is None:
            plan.notes.append("no EpisodeSummary recorded: assumed no frame folded into its first step")
        reset = last - length
        if reset < 0:
            plan.notes.append("the episode started before the recording: recorded steps only")
            continue
        numbered = index.frames[last][2] == steps[-1].frame  # the assembler's frame numbers match the env's
        lost = _lost_frames(index, stamps[reset : last + 1], plan.step_stamps - recorded)
        if lost or (numbered and index.frames[last][2] - index.frames[reset][2] != length):
            plan.notes.append(f"frames of the episode are missing from the recording{lost}: recorded steps only")
            continue
        plan.reset_stamp = stamps[reset]
        _attach_route(plan, index, network, window, steps[-1].recv_ns)
    return plans


def _lost_frames(index: RecordingIndex, episode: list[int], absent: frozenset[int]) -> str:
    """Why ``episode`` (its frames' stamps, reset to last) is not the episode's every frame ('' if it is): steps'
    frames ``absent`` from the bag, or sim time jumping by more than one tick (a synchronous simulator advances
    exactly ``dt`` a frame; a recorder that fell behind the publishers' history loses whole frames)."""
    if absent:
        return f" ({len(absent)} frame(s) the live run stepped on)"
    if not index.synchronous:
        return ""
    tick = int(round(index.dt * 1e9))
    jumps = [(a, b) for a, b in pairwise(episode) if b - a > 1.5 * tick]
    if jumps:
        a, b = jumps[0]
        return f" (sim time jumps {a / 1e9:.3f} -> {b / 1e9:.3f} s)"
    return ""


def _attach_route(
    plan: EpisodePlan, index: RecordingIndex, network: RoadNetwork, window: tuple[int, int], end_recv: int
) -> None:
    """The route published for the episode (in ``window`` of receive times), and later re-plans."""
    paths = [(t, p) for t, _, p in index.paths if window[0] < t < window[1]]
    goals = [(t, g) for t, g in index.goals if t < window[1]]
    try:
        if paths:
            plan.route, plan.route_source = route_from_path(network, paths[-1][1])
        elif goals:
            plan.route, plan.route_source = Goal(*goals[-1][1]), "planned to the recorded goal"
    except ValueError as exc:
        plan.notes.append(f"the recorded route is unusable ({exc}): recorded steps only")
        plan.reset_stamp = None
        return
    if plan.route is None:
        plan.notes.append("no waypoints Path or goal recorded for it: recorded steps only")
        plan.reset_stamp = None
        return
    later: list[tuple[int, Poses | Goal]] = [(t, p) for t, _, p in index.paths if window[1] <= t < end_recv]
    later += [(t, Goal(*g)) for t, g in index.goals if window[1] <= t < end_recv]
    plan.replans = sorted(later, key=lambda x: x[0])


def _plans_from_routes(index: RecordingIndex, network: RoadNetwork | None) -> list[EpisodePlan]:
    """No step messages: each Path (else goal) starts an episode on the frame it was published for.

    That is the frame whose stamp the Path carries (the publisher's sim time, as the env node and the bridge's
    waypoint publisher stamp it), else the latest frame received before it.
    """
    if network is None or not index.frames:
        return []
    starts: list[tuple[int, int, Poses | Goal]] = list(index.paths) or [(t, -1, Goal(*g)) for t, g in index.goals]
    stamps, receive = index.frame_stamps, [f[1] for f in index.frames]
    plans = []
    for i, (recv, stamp, route) in enumerate(starts):
        k = bisect.bisect_left(stamps, stamp)
        if k == len(stamps) or stamps[k] != stamp:
            k = bisect.bisect_right(receive, recv) - 1
        if k < 0:
            continue
        plan = EpisodePlan("", i + 1, stamps[k], None, None, "none")
        try:
            if isinstance(route, Goal):
                plan.route, plan.route_source = route, "planned to the recorded goal"
            else:
                plan.route, plan.route_source = route_from_path(network, route)
        except ValueError as exc:
            plan.notes.append(f"the recorded route is unusable ({exc})")
            plan.reset_stamp = None
        plans.append(plan)
    plans = [p for p in plans if p.reset_stamp is not None] + [p for p in plans if p.reset_stamp is None]
    for plan, following in pairwise(plans):
        plan.last_stamp = _frame_before(stamps, following.reset_stamp)
    return plans


def _frame_before(stamps: list[int], stamp: int) -> int:
    return stamps[max(bisect.bisect_left(stamps, stamp) - 1, 0)]
