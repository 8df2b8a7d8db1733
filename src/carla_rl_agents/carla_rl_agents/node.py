"""The agent node: drives N env nodes with a policy and reports every finished episode as one JSON line.

``carla-rl drive`` starts it beside the simulator and env nodes. It acts only through ROS 2: the reset and
spec services and the step topic of each env node, and ``vehicle_control_cmd`` towards the simulator.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import rclpy
from carla_rl_msgs.msg import EpisodeSummary
from rclpy.executors import ExternalShutdownException
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.parameter import Parameter

from carla_rl_agents.vec_env import RosVecEnv
from carla_rl_common import bridge, codec
from carla_rl_common.bridge import BridgeTopics
from carla_rl_common.dds import use_default_profile
from carla_rl_env.gym_env import EnvUnavailable, spin_until


class AgentError(ValueError):
    """The agent cannot drive these envs (an unknown agent, a checkpoint that does not fit): one line, exit 2."""


class AgentNode(Node):
    """Runs a policy on the env nodes in ``namespaces`` until ``episodes`` episodes have finished."""

    def __init__(self, **kwargs: Any):
        super().__init__("carla_rl_agent", **kwargs)
        self.namespaces = self.declare_parameter("namespaces", [""]).value
        self.agent = self.declare_parameter("agent", "random").value
        self.checkpoint = self.declare_parameter("checkpoint", "").value
        self.episodes = self.declare_parameter("episodes", 1).value
        self.seed = self.declare_parameter("seed", 0).value
        self.timeout = self.declare_parameter("timeout", 30.0).value
        self.summaries: list[dict[str, Any]] = []
        topic = BridgeTopics().episode
        for ns in self.namespaces:
            self.create_subscription(
                EpisodeSummary, bridge.namespaced(ns, topic), self._on_episode, bridge.qos_default(100)
            )

    def _on_episode(self, msg: EpisodeSummary) -> None:
        record = codec.summary_record(msg)
        self.summaries.append(record)
        print(json.dumps(record), flush=True)

    def make_policy(self, env: RosVecEnv) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
        if self.agent == "random":
            env.action_space.seed(int(self.seed))
            return lambda obs: np.array([env.action_space.sample() for _ in range(env.num_envs)])
        if self.agent == "checkpoint":
            from carla_rl_agents.checkpoints import CheckpointError, load_policy  # torch only when a network drives

            try:
                model = load_policy(self.checkpoint, env)
            except CheckpointError as exc:
                raise AgentError(str(exc)) from None
            return lambda obs: model.predict(obs, deterministic=True)[0]
        raise AgentError(f"unknown agent {self.agent!r} (random, checkpoint)")

    def drive(self) -> int:
        env = RosVecEnv(self.namespaces, timeout=self.timeout, node=self)
        policy = self.make_policy(env)
        env.seed(int(self.seed))
        obs = env.reset()
        steps, start = 0, time.perf_counter()
        while len(self.summaries) < self.episodes:
            obs, _, _, _ = env.step(policy(obs))
            steps += env.num_envs
        elapsed = time.perf_counter() - start
        self.get_logger().info(
            f"drove {steps} steps in {elapsed:.1f} s: {steps / elapsed:.0f} lockstep steps/s "
            f"over {env.num_envs} env(s), resets included"
        )
        # the summary of the last episode is published right after its final step
        spin_until(env.executor, lambda: len(self.summaries) >= self.episodes, self.timeout, "episode summaries")
        return 0


def run_node(
    node_class: type[Node], work: str, args: list[str] | None = None, usage_errors: tuple[type[Exception], ...] = ()
) -> int:
    """Create ``node_class`` (with sim time), run its method ``work`` and map failures to exit codes:
    2 for a usage error (bad config, run directory), 3 when the envs do not answer, 130 on Ctrl-C or SIGTERM.

    rclpy's signal handler shuts the context down under whatever runs (a publish, a wait, an import of torch):
    any error raised after that is the stop, not a fault, and ends the process quietly like Ctrl-C.
    """
    use_default_profile()
    rclpy.init(args=args)
    node: Node | None = None
    try:
        node = node_class(parameter_overrides=[Parameter("use_sim_time", value=True)])
        return getattr(node, work)()
    except (KeyboardInterrupt, ExternalShutdownException):
        return 130
    except Exception as exc:
        if not rclpy.ok():
            return 130
        logger = node.get_logger() if node is not None else get_logger(node_class.__name__)
        if isinstance(exc, usage_errors):  # a constructor's (a bad config) or the work's
            logger.error(str(exc))
            return 2
        if isinstance(exc, EnvUnavailable):
            logger.error(str(exc))
            return 3
        raise
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


def main(args: list[str] | None = None) -> int:
    return run_node(AgentNode, "drive", args, usage_errors=(AgentError,))


if __name__ == "__main__":
    sys.exit(main())
