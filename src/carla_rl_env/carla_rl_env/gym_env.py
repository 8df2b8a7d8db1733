"""gymnasium adapters that drive env nodes over ROS 2.

:class:`EnvClient` is the ROS side of one env node (reset service, spec service, step topic, control
topic). :class:`RosClients` sets up a node, an executor and the clients of N env nodes and resets and steps
them together; :class:`RosEnv` is a ``gymnasium.Env`` over one client (the Stable-Baselines3 ``VecEnv`` over N,
``RosVecEnv``, is in ``carla_rl_agents.vec_env``: this package does not depend on SB3).

The adapters map actions to ``CarlaEgoVehicleControl`` with the env's own action config (read from the
spec service), so an agent needs to know nothing about the env but its namespace.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import rclpy
import yaml
from carla_msgs.msg import CarlaControl, CarlaEgoVehicleControl
from carla_rl_msgs.msg import EpisodeSummary, Step
from carla_rl_msgs.srv import GetSpec, Reset
from gymnasium import Env, spaces
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from carla_rl_common import bridge, codec
from carla_rl_common.bridge import BridgeTopics
from carla_rl_common.dds import use_default_profile
from carla_rl_common.direct import DirectSubscriptions
from carla_rl_common.spaces import space_from_json
from carla_rl_env.actions import ActionMapper


class EnvUnavailable(RuntimeError):
    """The env node (or the simulator behind it) did not answer in time."""


class EnvClient:
    """Talks to the env node in ``namespace`` through ``node`` (which the caller spins)."""

    def __init__(
        self,
        node: Node,
        namespace: str = "",
        role_name: str = bridge.DEFAULT_ROLE_NAME,
        direct: DirectSubscriptions | None = None,
    ):
        """``direct``: where the step and episode topics are taken (the caller's, shared by its clients)."""
        self.node = node
        self.direct = direct or DirectSubscriptions(node.context)
        self.ns = namespace.strip("/")
        t = BridgeTopics(role_name)
        qos = bridge.qos_default()
        self.reset_client = node.create_client(Reset, self._name(t.reset))
        self.spec_client = node.create_client(GetSpec, self._name(t.spec))
        self.pub_control = node.create_publisher(CarlaEgoVehicleControl, self._name(t.vehicle_control_cmd), qos)
        self.pub_carla_control = node.create_publisher(CarlaControl, self._name(t.control), qos)
        self.direct.create_subscription(node, Step, self._name(t.step), self._on_step, qos)
        self.direct.create_subscription(node, EpisodeSummary, self._name(t.episode), self._on_episode, qos)
        self.summaries: dict[int, EpisodeSummary] = {}
        self.steps: list[Step] = []
        self.episode = -1
        self.step_index = 0
        self.observation_space: spaces.Dict | None = None
        self.action_space: spaces.Space | None = None
        self.config: dict[str, Any] = {}
        self.actions: ActionMapper | None = None
        self.last_speed = 0.0
        self.last_stamp = bridge.ns_to_stamp(0)
        self.dropped = 0

    def _name(self, topic: str) -> str:
        return bridge.namespaced(self.ns, topic)

    def _on_episode(self, msg: EpisodeSummary) -> None:
        self.summaries[int(msg.episode)] = msg

    def episode_totals(self, episode: int) -> dict[str, Any]:
        """Route completion, collisions, lane invasions and distance of a finished episode (its summary)."""
        msg = self.summaries.pop(episode, None)
        if msg is None:
            return {}
        record = codec.summary_record(msg)
        return {name: record[name] for name in codec.EPISODE_TOTALS}

    def _on_step(self, msg: Step) -> None:
        if msg.episode == self.episode and msg.step > self.step_index:
            self.steps.append(msg)

    # --- requests (return futures; the caller spins) -----------------------------------------------------
    def request_spec(self):
        return self.spec_client.call_async(GetSpec.Request())

    def apply_spec(self, response: GetSpec.Response) -> None:
        self.observation_space = space_from_json(response.observation_space)
        self.action_space = space_from_json(response.action_space)
        self.config = yaml.safe_load(response.config) or {}
        self.actions = ActionMapper(self.config["env"]["action"], source="spec service")

    def request_reset(self, seed: int | None = None, scenario_id: str = ""):
        self.steps.clear()
        self.episode = -1  # ignore steps until the new episode's first observation arrived
        return self.reset_client.call_async(
            Reset.Request(seed=-1 if seed is None else int(seed), scenario_id=scenario_id)
        )

    def accept_reset(self, response: Reset.Response) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if not response.success:
            raise EnvUnavailable(f"{self.ns or 'env'}: reset failed: {response.message}")
        first = response.observation
        self.episode, self.step_index = first.episode, 0
        self.steps = [m for m in self.steps if m.episode == self.episode and m.step > 0]
        obs = self.observation(first)
        if obs is None:
            raise EnvUnavailable(f"{self.ns or 'env'}: malformed first observation")
        self.last_speed, self.last_stamp = first.speed, first.header.stamp
        return obs, self.info(first)

    def send_action(self, action: Any) -> bridge.Control:
        control = self.actions.to_control(action, self.last_speed)
        msg = bridge.control_to_msg(control, CarlaEgoVehicleControl())
        msg.header.stamp = self.last_stamp  # the sim time of the observation this command answers
        self.pub_control.publish(msg)
        return control

    def pause(self, paused: bool) -> None:
        """PAUSE or PLAY the simulator (e.g. while a policy update runs longer than the bridge's 1 s wait)."""
        self.pub_carla_control.publish(CarlaControl(command=CarlaControl.PAUSE if paused else CarlaControl.PLAY))

    def take_step(self) -> tuple[Step, dict[str, np.ndarray]] | None:
        """The next valid step message, if one arrived (malformed ones are logged and dropped)."""
        while self.steps:
            msg = self.steps.pop(0)
            obs = self.observation(msg)
            if obs is None:
                continue
            self.step_index = msg.step
            self.last_speed, self.last_stamp = msg.speed, msg.header.stamp
            return msg, obs
        return None

    # --- message -> gymnasium ----------------------------------------------------------------------------
    def observation(self, msg: Step) -> dict[str, np.ndarray] | None:
        """The observation dict of a step message, or None (logged) when it does not fit the space."""
        try:
            out = codec.step_observation(msg)
            for key, space in self.observation_space.spaces.items():
                if key not in out or out[key].shape != space.shape:
                    got = out[key].shape if key in out else "nothing"
                    raise ValueError(f"{key}: expected shape {space.shape}, got {got}")
        except ValueError as exc:
            self.dropped += 1
            self.node.get_logger().warning(
                f"dropped step {msg.step} of {self.ns or 'env'}: {exc}", throttle_duration_sec=5.0
            )
            return None
        return out

    @staticmethod
    def info(msg: Step) -> dict[str, Any]:
        x, y, yaw = bridge.pose_to_xyyaw(msg.ego_pose)
        # no frame or episode counters: gymnasium's checker wants equal infos for equal seeds
        return {
            "ego_pose": np.array([x, y, yaw]),
            "speed": float(msg.speed),
            "reward_terms": dict(zip(msg.reward_term_names, msg.reward_terms)),
            "termination_reason": msg.termination_reason,
            "control": bridge.msg_to_control(msg.control),
        }


def spin_until(executor: SingleThreadedExecutor, done, timeout: float, what: str) -> None:
    """Spin ``executor`` until ``done()`` or raise EnvUnavailable after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not done():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise EnvUnavailable(f"timed out after {timeout:.1f} s waiting for {what}")
        executor.spin_once(timeout_sec=min(remaining, 0.1))


def spin_for(executor: SingleThreadedExecutor, seconds: float) -> None:
    """Serve callbacks for ``seconds`` (a wait that keeps DDS discovery and the subscriptions going)."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        executor.spin_once(timeout_sec=min(remaining, 0.1))


class RosClients:
    """A node, an executor and the clients of N env nodes, reset and stepped together: what the adapters
    (:class:`RosEnv`, ``carla_rl_agents.vec_env.RosVecEnv``) are made of."""

    #: seconds a failed reset is retried before EnvUnavailable (a restarted simulator takes a few seconds)
    recovery_timeout: float = 300.0
    RETRY_PERIOD_S = 1.0
    _recovering = False

    def _connect(self, namespaces: Sequence[str], node: Node | str, timeout: float) -> None:
        self._owns_rclpy = False
        if isinstance(node, str):
            if not rclpy.ok():
                use_default_profile()
                rclpy.init()
                self._owns_rclpy = True
            node = rclpy.create_node(node)
        self.node = node
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.direct = DirectSubscriptions(self.node.context)  # the step loop takes Steps without the executor
        self.clients = [EnvClient(self.node, ns, direct=self.direct) for ns in namespaces]
        self.timeout = timeout
        for c in self.clients:
            spin_until(self.executor, c.spec_client.service_is_ready, timeout, f"the env node in '{c.ns or '/'}'")
        futures = [c.request_spec() for c in self.clients]
        spin_until(self.executor, lambda: all(f.done() for f in futures), timeout, "the spec service")
        for c, f in zip(self.clients, futures):
            c.apply_spec(f.result())
        # a command published before DDS matched the simulator's subscription would be lost: wait for the
        # env node and the simulator (or bridge) to subscribe
        for c in self.clients:
            spin_until(
                self.executor,
                lambda c=c: c.pub_control.get_subscription_count() >= 2,
                timeout,
                f"the simulator to subscribe to {c.pub_control.topic_name}",
            )
        first = self.clients[0]
        for c in self.clients[1:]:
            if c.observation_space != first.observation_space or c.action_space != first.action_space:
                raise EnvUnavailable(f"env '{c.ns}' has other spaces than '{first.ns}'")

    def _reset_all(self, indices: Sequence[int], seeds: Sequence[int | None]) -> list[tuple[dict, dict]]:
        """Reset the envs ``indices``. An env whose reset fails (its simulator died or stalls: no frames) is
        retried every ``RETRY_PERIOD_S`` until it answers or ``recovery_timeout`` s passed, while the other
        envs are paused: training waits for a restarted simulator (``carla-rl up --restart``) and goes on."""
        pending, results = dict(zip(indices, seeds)), {}
        deadline, started = time.monotonic() + self.recovery_timeout, time.monotonic()
        while True:
            futures = {i: self.clients[i].request_reset(seed) for i, seed in pending.items()}
            answered = lambda futures=futures: all(f.done() for f in futures.values())  # noqa: E731
            try:
                spin_until(self.executor, answered, self.timeout, "the reset service")
            except EnvUnavailable:
                pass  # a reset that never answered counts as failed below
            failures = []
            for i, future in futures.items():
                response = future.result() if future.done() else None
                if response is not None and response.success:
                    results[i] = self.clients[i].accept_reset(response)
                    del pending[i]
                else:
                    if not future.done():
                        self.clients[i].reset_client.remove_pending_request(future)
                    failures.append(
                        f"{self.clients[i].ns or 'env'}: " + (response.message if response is not None else "no answer")
                    )
            if not pending:
                break
            if time.monotonic() > deadline:
                self._pause_others(pending, False)
                raise EnvUnavailable(f"reset failed for {self.recovery_timeout:.0f} s ({'; '.join(failures)})")
            if not self._recovering:
                self.node.get_logger().warning(
                    f"reset failed ({'; '.join(failures)}); waiting up to "
                    f"{self.recovery_timeout:.0f} s for the simulator to come back"
                )
                self._recovering = True
                self._pause_others(pending, True)
            spin_for(self.executor, self.RETRY_PERIOD_S)
        if self._recovering:
            self.node.get_logger().warning(f"envs answered again after {time.monotonic() - started:.1f} s")
            self._recovering = False
            self._pause_others((), False)
        return [results[i] for i in indices]

    def _pause_others(self, failing, paused: bool) -> None:
        """PAUSE (or PLAY) every env but the ``failing`` ones, so that they do not run on while we wait."""
        for i, client in enumerate(self.clients):
            if i not in failing:
                client.pause(paused)
        self.executor.spin_once(timeout_sec=0.0)

    def _wait_steps(self, indices: Sequence[int]) -> list[tuple[Step, dict]]:
        results: dict[int, tuple[Step, dict]] = {}

        def collect() -> bool:
            for i in indices:
                if i not in results:
                    got = self.clients[i].take_step()
                    if got is not None:
                        results[i] = got
            return len(results) == len(indices)

        self._take_until(collect, "step messages")
        return [results[i] for i in indices]

    def _take_until(self, done, what: str) -> None:
        """As :func:`spin_until`, taking the step and episode topics directly (no executor on the step path)."""
        if not self.direct.spin_until(done, self.timeout):
            raise EnvUnavailable(f"timed out after {self.timeout:.1f} s waiting for {what}")

    def pause(self, paused: bool) -> None:
        for c in self.clients:
            c.pause(paused)
        self.executor.spin_once(timeout_sec=0.0)

    def close(self) -> None:
        if getattr(self, "node", None) is not None:
            self.executor.remove_node(self.node)
            self.direct.destroy()
            self.node.destroy_node()
            self.node = None
            if self._owns_rclpy:
                rclpy.try_shutdown()


class RosEnv(RosClients, Env):
    """A gymnasium.Env over one env node; ``namespace`` selects it when several run side by side."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, namespace: str = "", timeout: float = 30.0, node: Node | str = "carla_rl_gym"):
        self._connect([namespace], node, timeout)
        self.client = self.clients[0]
        self.observation_space = self.client.observation_space
        self.action_space = self.client.action_space

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        return self._reset_all([0], [seed])[0]

    def step(self, action):
        self.client.send_action(action)
        msg, obs = self._wait_steps([0])[0]
        return obs, float(msg.reward), bool(msg.terminated), bool(msg.truncated), self.client.info(msg)
