"""A Stable-Baselines3 ``VecEnv`` over N env nodes over ROS 2, stepped together.

:class:`RosVecEnv` publishes all N controls, then waits for all N steps, so the simulators tick concurrently.
The ROS side (clients, resets with recovery, step collection) is :class:`carla_rl_env.gym_env.RosClients`,
which the gymnasium ``RosEnv`` shares; this module adds SB3's vector semantics (automatic resets, terminal
observations, ``TimeLimit.truncated``), so the env package needs no SB3.

An env node that dies is waited for (``carla-rl train --restart N`` restarts it): when its step does not come
and its step publisher is gone or replaced (a restarted node: a new DDS endpoint), or no step came for
``timeout`` s, the episode in progress ends as truncated (``termination_reason`` ``env_node_lost``, SB3
bootstraps from its last observation), the other envs are paused, and the env is reset once a new node
serves it, within ``recovery_timeout`` s; else ``EnvUnavailable``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from rclpy.node import Node
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from carla_rl_common import bridge
from carla_rl_common.bridge import BridgeTopics
from carla_rl_env.gym_env import EnvUnavailable, RosClients, spin_for

#: the termination reason of an episode cut short because its env node died
ENV_NODE_LOST = "env_node_lost"


class RosVecEnv(RosClients, VecEnv):
    """A Stable-Baselines3 VecEnv over N env nodes (namespaces ``env_0`` ... by default), stepped together.

    Its waits may be cut by a signal (``interruptible``: the Trainer stops at once on Ctrl-C); an env node
    that dies mid-episode is recovered as the module docstring says.
    """

    render_mode = None
    interruptible = True
    #: seconds between checks for a dead or restarted env node while a step is awaited
    POLL_S = 1.0

    def __init__(self, namespaces: Sequence[str], timeout: float = 30.0, node: Node | str = "carla_rl_vec"):
        self._connect(namespaces, node, timeout)
        super().__init__(len(namespaces), self.clients[0].observation_space, self.clients[0].action_space)
        self._actions: np.ndarray | None = None
        self._seeds: list[int | None] = [None] * len(namespaces)
        self._step_topics = [bridge.namespaced(c.ns, BridgeTopics().step) for c in self.clients]
        self._publishers = [self._step_publishers(i) for i in range(self.num_envs)]
        self._last_obs: list[dict[str, np.ndarray] | None] = [None] * len(namespaces)

    def _step_publishers(self, index: int) -> set[tuple[int, ...]]:
        """The DDS endpoints that publish env ``index``'s steps: its env node's (a restarted node has a new one)."""
        infos = self.node.get_publishers_info_by_topic(self._step_topics[index])
        return {tuple(info.endpoint_gid) for info in infos}

    def reset(self):
        results = self._reset_all(range(self.num_envs), self._seeds)
        self._seeds = [None] * self.num_envs
        self.reset_infos = [info for _, info in results]
        self._last_obs = [obs for obs, _ in results]
        return self._stack([obs for obs, _ in results])

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        for client, action in zip(self.clients, self._actions):
            client.send_action(action)
        steps, lost = self._wait_steps_or_lost()
        observations, rewards, dones, infos = [], [], [], []
        done_indices = []
        for i in range(self.num_envs):
            if i in lost:  # the episode ends where the env node left it, as a time limit would
                obs = self._last_obs[i]
                info = {"TimeLimit.truncated": True, "terminal_observation": obs, "termination_reason": ENV_NODE_LOST}
                observations.append(obs)
                rewards.append(0.0)
                dones.append(True)
                infos.append(info)
                continue
            msg, obs = steps[i]
            info = self.clients[i].info(msg)
            done = bool(msg.terminated or msg.truncated)
            info["TimeLimit.truncated"] = bool(msg.truncated and not msg.terminated)
            if done:
                info["terminal_observation"] = obs
                done_indices.append(i)
                # the env node publishes the episode summary right after the final step
                client = self.clients[i]
                self._take_until(lambda c=client, e=msg.episode: e in c.summaries, "the episode summary")
                info.update(client.episode_totals(msg.episode))
            observations.append(obs)
            rewards.append(msg.reward)
            dones.append(done)
            infos.append(info)
        for i in lost:
            self._wait_for_env_node(i, lost[i])
        resets = sorted([*done_indices, *lost])
        if resets:  # SB3 semantics: reset finished envs at once, return their first observation
            for i, (obs, info) in zip(resets, self._reset_all(resets, [None] * len(resets))):
                observations[i] = obs
                self.reset_infos[i] = info
        for i in lost:
            self._publishers[i] = self._step_publishers(i)
            self.node.get_logger().warning(f"{self.clients[i].ns or 'env'}: the env node is back; training goes on")
        self._last_obs = list(observations)
        return self._stack(observations), np.array(rewards, np.float32), np.array(dones), infos

    def _wait_steps_or_lost(self) -> tuple[dict[int, tuple[Any, dict]], dict[int, bool]]:
        """Each env's next step, or the env in ``lost`` (True: its env node is gone or was restarted; False: no
        step for ``timeout`` s)."""
        results: dict[int, tuple[Any, dict]] = {}
        lost: dict[int, bool] = {}

        def collect() -> bool:
            for i, client in enumerate(self.clients):
                if i not in results and i not in lost:
                    got = client.take_step()
                    if got is not None:
                        results[i] = got
                        if not self._publishers[i]:  # discovery had not listed it yet: a step says it has now
                            self._publishers[i] = self._step_publishers(i)
            return len(results) + len(lost) == self.num_envs

        deadline = time.monotonic() + self.timeout
        while not self.direct.spin_until(collect, self.POLL_S):
            timed_out = time.monotonic() >= deadline
            for i in range(self.num_envs):
                if i not in results and i not in lost:
                    if self._publishers[i] and self._step_publishers(i) != self._publishers[i]:
                        lost[i] = True
                    elif timed_out:
                        lost[i] = False
            if lost:
                self.node.get_logger().warning(
                    "; ".join(
                        f"{self.clients[i].ns or 'env'}: "
                        + ("its env node stopped" if node_gone else f"no step for {self.timeout:.0f} s")
                        for i, node_gone in lost.items()
                    )
                    + f"; ending its episode as truncated and waiting up to {self.recovery_timeout:.0f} s for it"
                )
            if len(results) + len(lost) == self.num_envs:
                break
        return results, lost

    def _wait_for_env_node(self, index: int, node_gone: bool) -> None:
        """Until a new env node serves env ``index`` (a step publisher it did not have, its reset service, the
        simulator's and the node's subscriptions to the commands), the other envs paused; a node that is
        still there (no step for ``timeout`` s) is left to the reset's retries."""
        if not node_gone:
            return
        client = self.clients[index]
        deadline = time.monotonic() + self.recovery_timeout
        self._pause_others([index], True)
        try:
            while not (
                self._step_publishers(index) - self._publishers[index]
                and client.reset_client.service_is_ready()
                and client.pub_control.get_subscription_count() >= 2
            ):
                if time.monotonic() > deadline:
                    raise EnvUnavailable(
                        f"{client.ns or 'env'}: its env node did not come back within {self.recovery_timeout:.0f} s"
                    )
                spin_for(self.executor, 0.2)
            spin_for(self.executor, self.POLL_S)  # let DDS match the new node's reset service with our client
        finally:
            self._pause_others((), False)

    def _stack(self, observations: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        return {k: np.stack([o[k] for o in observations]) for k in self.observation_space.spaces}

    def seed(self, seed: int | None = None):
        self._seeds = [None if seed is None else seed + i for i in range(self.num_envs)]
        return self._seeds

    def get_attr(self, attr_name: str, indices=None):
        return [getattr(self, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *args, indices=None, **kwargs):
        return [getattr(self, method_name)(*args, **kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]
