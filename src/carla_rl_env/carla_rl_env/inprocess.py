"""An in-process gymnasium.Env around the simulator core, with the env node's task code.

It steps :class:`carla_rl_sim.core.Simulator` directly (no ROS), and builds each :class:`Frame` with the
same value conversions the bridge messages apply (float32 speed and control, yaw through a quaternion),
so a seeded scenario and an action sequence give identical observations and rewards here and through the
ROS loop: the other vehicles' velocities come, as there, from differencing their boxes between ticks
(:class:`~carla_rl_env.frames.VehicleTracker`). Benchmarks compare the two to measure what the middleware costs.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium
import numpy as np

from carla_rl_common import codec
from carla_rl_env.episode import BRAKE, Settle, replaces_traffic
from carla_rl_env.frames import VehicleTracker
from carla_rl_env.scenarios import Scenario, ScenarioSource
from carla_rl_env.task import DrivingTask, Frame


def frame_from_simulator(sim, role: str, camera_ids: list[str], tracker: VehicleTracker | None = None) -> Frame:
    """The Frame the env node would assemble (:func:`carla_rl_env.frames.frame_from_messages`) from the bridge
    messages of the simulator's current frame: the values converted as the messages convert them.

    With a ``tracker`` (fed every tick, as the env node feeds its tracker every markers message) the frame
    carries the other vehicles' velocities."""
    ego = sim.egos[role]
    s = ego.state
    collisions = [(int(other), codec.impulse_norm(*(float(c) for c in impulse))) for other, impulse in ego.collisions]
    invasions = [int(m) for markings in ego.lane_invasions for m in markings]
    images = {}
    for cam in camera_ids:
        image, _, _ = sim.render(role, cam)
        images[cam] = image
    yaw = codec.yaw_as_sent(s.yaw)
    ax, ay, _ = ego.acceleration_map  # vehicle_status.acceleration.linear: map frame
    stamp_ns = int(round(sim.elapsed * 1e9))
    vehicles = sim.traffic.boxes()
    velocities = tracker.update(stamp_ns, sim.traffic.ids, vehicles) if tracker is not None else None
    return Frame(
        stamp_ns=stamp_ns,
        frame=sim.frame,
        x=float(s.x),
        y=float(s.y),
        yaw=yaw,
        speed=codec.as_float32(ego.speed),
        acceleration=codec.longitudinal_acceleration(ax, ay, yaw),
        control=codec.control_as_sent(ego.applied_control),
        collisions=collisions,
        lane_invasions=invasions,
        images=images,
        vehicles=vehicles,
        vehicle_velocities=velocities,
    )


class InProcessEnv(gymnasium.Env):
    """The env node's RL problem on an in-process simulator: same spaces, observations and rewards."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

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
        if not replaces_traffic(scenario, self.traffic_ids):
            return  # the simulator's own traffic (sim.traffic) stays, as with the env node
        for actor_id in self.traffic_ids:
            self.sim.destroy(actor_id)
        sx, sy, _ = scenario.start
        self.traffic_ids = self.sim.traffic.spawn(scenario.traffic, avoid=[(sx, sy, 12.0), *self.sim.ego_keepouts()])

    def _teleport_and_settle(self, start: tuple[float, float, float]) -> Frame:
        """As the env node's reset: teleport to the lane's z, stop, then brake until the car rested
        ``settle_frames`` frames."""
        settle = Settle(start, self.cfg["settle_frames"], self.sim.network)
        self._teleport(settle)
        while not settle.done:
            self.sim.apply_control(self.role, BRAKE)
            self.sim.tick()
            if settle.feed(frame_from_simulator(self.sim, self.role, self.camera_ids, self.tracker)):
                self._teleport(settle)
        return settle.frame

    def _teleport(self, settle: Settle) -> None:
        """As the env node's: set_transform to the settle's pose (it keeps the velocity), then a zero Twist on
        control/set_target_velocity (linear and angular: actor_control.py sets both)."""
        x, y, z, yaw = settle.pose
        self.sim.set_transform(self.role, x, y, yaw, z=z)
        self.sim.set_target_velocity(self.role, 0.0, 0.0, yaw_rate=0.0)

    def step(self, action):
        # the control crosses the bridge as float32 fields
        control = codec.control_as_sent(self.task.actions.to_control(action, self.task.prev.speed))
        self.sim.apply_control(self.role, control)
        self.sim.tick()
        frame = frame_from_simulator(self.sim, self.role, self.camera_ids, self.tracker)
        tr = self.task.step(frame)
        info = self._info(frame)
        info["reward_terms"] = tr.reward_terms
        info["termination_reason"] = tr.reason
        if tr.terminated or tr.truncated:  # the episode's totals, as the env node's EpisodeSummary has them
            info.update({name: getattr(self.task.stats, name) for name in codec.EPISODE_TOTALS})
        return tr.observation, tr.reward, tr.terminated, tr.truncated, info

    @staticmethod
    def _info(frame: Frame) -> dict[str, Any]:
        return {"ego_pose": np.array([frame.x, frame.y, frame.yaw]), "speed": frame.speed}
