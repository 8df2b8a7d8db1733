"""A Stable-Baselines3 ``VecEnv`` over N env nodes over ROS 2, stepped together.

:class:`RosVecEnv` publishes all N controls, then waits for all N steps, so the simulators tick concurrently.
The ROS side (clients, resets with recovery, step collection) is :class:`carla_rl_env.gym_env.RosClients`,
which the gymnasium ``RosEnv`` shares; this module adds SB3's vector semantics (automatic resets, terminal
observations, ``TimeLimit.truncated``), so the env package needs no SB3.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from rclpy.node import Node
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from carla_rl_env.gym_env import RosClients


class RosVecEnv(RosClients, VecEnv):
    """A Stable-Baselines3 VecEnv over N env nodes (namespaces ``env_0`` ... by default), stepped together."""

    render_mode = None

    def __init__(self, namespaces: Sequence[str], timeout: float = 30.0, node: Node | str = "carla_rl_vec"):
        self._connect(namespaces, node, timeout)
        super().__init__(len(namespaces), self.clients[0].observation_space, self.clients[0].action_space)
        self._actions: np.ndarray | None = None
        self._seeds: list[int | None] = [None] * len(namespaces)

    def reset(self):
        results = self._reset_all(range(self.num_envs), self._seeds)
        self._seeds = [None] * self.num_envs
        self.reset_infos = [info for _, info in results]
        return self._stack([obs for obs, _ in results])

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        for client, action in zip(self.clients, self._actions):
            client.send_action(action)
        steps = self._wait_steps(range(self.num_envs))
        observations, rewards, dones, infos = [], [], [], []
        done_indices = []
        for i, (msg, obs) in enumerate(steps):
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
        if done_indices:  # SB3 semantics: reset finished envs at once, return their first observation
            for i, (obs, info) in zip(done_indices, self._reset_all(done_indices, [None] * len(done_indices))):
                observations[i] = obs
                self.reset_infos[i] = info
        return self._stack(observations), np.array(rewards, np.float32), np.array(dones), infos

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
