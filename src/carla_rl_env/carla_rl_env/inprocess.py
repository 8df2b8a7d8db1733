"""An in-process gymnasium.Env around the simulator core, with the env node's task code.

It steps :class:`carla_rl_sim.core.Simulator` directly (no ROS), and builds each :class:`Frame` with the
same value conversions the bridge messages apply (float32 speed and control, yaw through a quaternion),
so a seeded scenario and an action sequence give identical observations and rewards here and through the
ROS loop: the other vehicles' velocities come, as there, from differencing their boxes between ticks
(:class:`~carla_rl_env.frames.VehicleTracker`). Benchmarks compare the two to measure what the middleware costs.
"""
from __future__ import annotations

import math
from typing import Any

import gymnasium
import numpy as np

from carla_rl_common import bridge
from carla_rl_common.bridge import Control
from carla_rl_env.frames import VehicleTracker
from carla_rl_env.scenarios import Scenario, ScenarioSource
from carla_rl_env.task import DrivingTask, Frame


def frame_from_simulator(sim, role: str, camera_ids: list[str], tracker: VehicleTracker | None = None) -> Frame:
    """The Frame the env node would assemble from the bridge messages of the simulator's current frame.

    With a ``tracker`` (fed every tick, as the env node feeds its tracker every markers message) the frame
    carries the other vehicles' velocities."""
    ego = sim.egos[role]
    s = ego.state
    f32 = lambda v: float(np.float32(v))  # noqa: E731 - the message fields are float32
    yaw = bridge.quaternion_to_yaw(*bridge.yaw_to_quaternion(s.yaw))
    control = bridge.Control(*(f32(v) if isinstance(v, float) else v for v in (
        ego.applied_control.throttle, ego.applied_control.steer, ego.applied_control.brake)),
        hand_brake=ego.applied_control.hand_brake, reverse=ego.applied_control.reverse,
        gear=int(ego.applied_control.gear), manual_gear_shift=ego.applied_control.manual_gear_shift)
    collisions = [(int(other), math.sqrt(sum(float(c) ** 2 for c in impulse))) for other, impulse in ego.collisions]
    invasions = [int(m) for markings in ego.lane_invasions for m in markings]
    images = {}
    for cam in camera_ids:
        image, _, _ = sim.render(role, cam)
        images[cam] = image
    stamp_ns = int(round(sim.elapsed * 1e9))
    vehicles = sim.traffic.boxes()
    velocities = tracker.update(stamp_ns, sim.traffic.ids, vehicles) if tracker is not None else None
    return Frame(stamp_ns=stamp_ns, frame=sim.frame, x=float(s.x), y=float(s.y), yaw=yaw,
                 speed=f32(ego.speed), acceleration=float(s.ax), control=control, collisions=collisions,
                 lane_invasions=invasions, images=images, vehicles=vehicles, vehicle_velocities=velocities)


class InProcessEnv(gymnasium.Env):
    """The env node's RL problem on an in-process simulator: same spaces, observations and rewards."""

    metadata = {"render_modes": []}

    def __init__(self, config: dict[str, Any], sim, seed: int = 0, offset: int = 0, stride: int = 1):
        self.config = config
        self.cfg = config["env"]
        self.sim = sim
        self.role = self.cfg["role_name"]
        self.task = DrivingTask(self.cfg, sim.network, sim.dt, sim.egos[self.role].extent)
        self.scenarios = ScenarioSource(sim.network, self.cfg, seed, offset, stride)
        self.camera_ids = [c["id"] for c in self.cfg["observation"]["cameras"]]
        self.observation_space = self.task.observation_space
        self.action_space = self.task.action_space
        self.episode = 0
        self.traffic_ids: list[int] = []  # the vehicles this env spawned for its scenario
        # the other vehicles' velocities, only when measured (the nearby vehicles)
        self.tracker = VehicleTracker() if self.task.nearby else None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.scenarios.reseed(seed)
        options = options or {}
        scenario: Scenario = options.get("scenario") or self.scenarios.next()
        route = self.scenarios.route(scenario)
        self._respawn_traffic(scenario)
        frame = self._teleport_and_settle(scenario.start)
        self.episode += 1
        obs = self.task.reset(route, frame)
        return obs, self._info(frame)

    def _respawn_traffic(self, scenario: Scenario) -> None:
        """As the env node's reset: the scenario's traffic replaces the last episode's (a suite's
        ``navigation_dynamic`` episodes carry 20 vehicles each), spawned clear of the ego's start."""
        if scenario.traffic == 0 and not self.traffic_ids:
            return  # the simulator's own traffic (sim.traffic) stays, as with the env node
        for actor_id in self.traffic_ids:
            self.sim.destroy(actor_id)
        sx, sy, _ = scenario.start
        self.traffic_ids = self.sim.traffic.spawn(scenario.traffic, avoid=[(sx, sy, 12.0), *self.sim._ego_avoid()])

    def _teleport_and_settle(self, start: tuple[float, float, float]) -> Frame:
        """As the env node's reset: teleport, then brake until the car rested ``settle_frames`` frames."""
        self.sim.set_transform(self.role, *start)
        settled = 0
        for _ in range(self.cfg["settle_frames"] + 40):
            self.sim.apply_control(self.role, Control(brake=1.0))
            self.sim.tick()
            frame = frame_from_simulator(self.sim, self.role, self.camera_ids, self.tracker)
            near = math.hypot(frame.x - start[0], frame.y - start[1]) < 0.5
            settled = settled + 1 if near else 0
            if not near:
                self.sim.set_transform(self.role, *start)
            if settled >= self.cfg["settle_frames"]:
                break
        return frame

    def step(self, action):
        control = self.task.actions.to_control(action, self.task.prev.speed)
        # the control crosses the bridge as float32 fields
        control = Control(float(np.float32(control.throttle)), float(np.float32(control.steer)),
                          float(np.float32(control.brake)), control.hand_brake, control.reverse, control.gear,
                          control.manual_gear_shift)
        self.sim.apply_control(self.role, control)
        self.sim.tick()
        frame = frame_from_simulator(self.sim, self.role, self.camera_ids, self.tracker)
        tr = self.task.step(frame)
        info = self._info(frame)
        info["reward_terms"] = tr.reward_terms
        info["termination_reason"] = tr.reason
        if tr.terminated or tr.truncated:  # the episode's totals, as the env node's EpisodeSummary has them
            stats = self.task.stats
            info.update(route_completion=stats.route_completion, collisions=stats.collisions,
                        lane_invasions=stats.lane_invasions, distance=stats.distance)
        return tr.observation, tr.reward, tr.terminated, tr.truncated, info

    @staticmethod
    def _info(frame: Frame) -> dict[str, Any]:
        return {"ego_pose": np.array([frame.x, frame.y, frame.yaw]), "speed": frame.speed}
