"""The episode runtime that the env node (ROS, asynchronous) and the in-process env (synchronous) share.

Each piece is sans-IO: it is fed frames and says what to do, and each env does it its own way (the node
publishes on bridge topics and awaits frames, the in-process env calls the simulator and ticks it):

* a reset replaces the last episode's traffic with the scenario's (:func:`replaces_traffic`), teleports the
  ego to the start at the lane's height, stops it and brakes until it rested there (:class:`Settle`);
* one agent command makes one step: :class:`CommandMatcher` is the one rule for "this frame applied the agent's
  command", and :class:`StepFolder` folds the frames the simulator ticked without one into the next step
  (the env node, and the offline evaluator with the steps it recorded).
"""

from __future__ import annotations

import math
from typing import Any

from carla_rl_common import codec
from carla_rl_common.bridge import Control
from carla_rl_common.opendrive import RoadNetwork
from carla_rl_env.scenarios import Scenario
from carla_rl_env.task import EpisodeStats, Frame, Transition

BRAKE = Control(brake=1.0)  # what the ego gets while it settles
REST_RADIUS_M = 0.5  # a car this close to the start rests there
EXTRA_SETTLE_FRAMES = 40  # frames a settle may take beyond settle_frames before it gives up waiting
# Real CARLA blueprints (CARLA 0.9.13-0.9.15) the env spawns its scenarios' traffic with, in turn: the bridge
# spawns any blueprint of CARLA's library and fails on anything else (actor_factory.py).
TRAFFIC_BLUEPRINTS = ("vehicle.tesla.model3", "vehicle.audi.a2", "vehicle.toyota.prius", "vehicle.nissan.micra")


def replaces_traffic(scenario: Scenario, spawned: list[int]) -> bool:
    """Whether a reset destroys the vehicles ``spawned`` for the last episode and spawns the scenario's: when
    either has any (without both, the simulator's own traffic stays, as it does in CARLA)."""
    return bool(spawned) or scenario.traffic > 0


class Settle:
    """Teleport to ``start`` at the lane's height and stop the car, then brake until it rested there
    ``settle_frames`` frames in a row.

    The env teleports the ego to :attr:`pose` and sets its velocity to zero (CARLA's ``set_transform`` keeps the
    physics velocity: ros-bridge actor_control.py, ``control/set_target_velocity`` sets one), then while not
    :attr:`done`: brakes (:data:`BRAKE`), ticks (or waits for the next frame) and feeds the frame to
    :meth:`feed`, teleporting and stopping again when that says so. :attr:`frame` is the last frame fed: the
    episode's first. A car that never rests gives up after ``EXTRA_SETTLE_FRAMES`` more.
    """

    def __init__(self, start: tuple[float, float, float], settle_frames: int, network: RoadNetwork | None = None):
        """``start`` is ``(x, y, yaw)``; with the ``network`` the car is placed at its lane's z (towns have
        elevation: a car set at z=0 falls onto or sinks under the road), else at z=0."""
        self.start, self.settle_frames = start, settle_frames
        x, y, yaw = start
        self.z = network.elevation(x, y, yaw) if network is not None else 0.0
        self.rested = 0  # consecutive frames at the start
        self.frames = 0
        self.frame: Frame | None = None

    @property
    def pose(self) -> tuple[float, float, float, float]:
        """``(x, y, z, yaw)`` to teleport to (map frame)."""
        x, y, yaw = self.start
        return x, y, self.z, yaw

    @property
    def done(self) -> bool:
        """At least one frame came, and the car rested long enough (or never will)."""
        return self.frames > 0 and (
            self.rested >= self.settle_frames or self.frames >= self.settle_frames + EXTRA_SETTLE_FRAMES
        )

    def feed(self, frame: Frame) -> bool:
        """Take the next frame; True when the ego is off the start and must be teleported (and stopped) again."""
        self.frames, self.frame = self.frames + 1, frame
        near = math.hypot(frame.x - self.start[0], frame.y - self.start[1]) < REST_RADIUS_M
        self.rested = self.rested + 1 if near else 0
        return not near


class CommandMatcher:
    """The agent's last command since the last step, and whether a frame applied it.

    The bridge ticks on its own when no command arrives within 1 s, and a command still in flight from a reset
    can be applied one frame late; publishing those frames as steps would shift every later action by one
    frame. A frame applied the command when its applied control (vehicle_status.control) has the command's
    throttle, steer, brake and hand brake as the message carried them (:meth:`key`). Gear, reverse and
    manual_gear_shift are not compared: CARLA reports the gearbox's current gear there and ``reverse = gear < 0``
    (ros-bridge ego_vehicle.py copies ``actor.get_control()``), whatever the command said.
    """

    def __init__(self) -> None:
        self.command: Control | None = None

    @staticmethod
    def key(control: Control) -> tuple[float, float, float, bool]:
        """What of a control identifies the command: throttle, steer and brake as float32, and hand_brake."""
        sent = codec.control_as_sent(control)
        return sent.throttle, sent.steer, sent.brake, sent.hand_brake

    def expect(self, command: Control | None) -> None:
        """The agent sent ``command`` (None: forget it, a step was published or an episode starts)."""
        self.command = command

    def applied(self, frame: Frame) -> bool:
        return self.command is not None and self.key(frame.control) == self.key(self.command)


class StepFolder:
    """The last frame's transition until it becomes a step; a frame that does not adds its rewards to the next."""

    def __init__(self) -> None:
        self.carry: tuple[Transition, Frame] | None = None

    def add(self, transition: Transition, frame: Frame) -> bool:
        """Carry ``transition`` of ``frame``, with the rewards of a carried one folded in; True if one was."""
        folded = self.carry is not None
        if folded:
            before = self.carry[0]
            transition.reward += before.reward
            transition.reward_terms = {n: v + before.reward_terms[n] for n, v in transition.reward_terms.items()}
        self.carry = (transition, frame)
        return folded

    def take(self) -> tuple[Transition, Frame]:
        """The carried transition and its frame, as the step to publish."""
        carried, self.carry = self.carry, None
        return carried

    def clear(self) -> None:
        self.carry = None


def episode_record(stats: EpisodeStats, env_id: str, episode: int, scenario: Scenario) -> dict[str, Any]:
    """The episode record (:func:`carla_rl_common.codec.summary_record`'s keys) of a finished episode."""
    return {
        "env_id": env_id,
        "episode": int(episode),
        "scenario_id": scenario.id,
        "seed": int(scenario.seed),
        "length": int(stats.length),
        "return": float(stats.episode_return),
        "success": bool(stats.success),
        "route_completion": float(stats.route_completion),
        "collisions": int(stats.collisions),
        "lane_invasions": int(stats.lane_invasions),
        "distance": float(stats.distance),
        "mean_speed": float(stats.mean_speed),
        "termination_reason": stats.reason,
        "reward_terms": {n: float(v) for n, v in stats.term_sums.items()},
    }
