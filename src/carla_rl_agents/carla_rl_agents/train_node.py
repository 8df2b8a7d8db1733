"""The training node: trains the run config's algorithm on N env nodes over ROS 2 (the `train` stack).

``carla-rl train`` and ``carla-rl up train`` start it beside the simulator and env nodes. It acts only
through ROS 2 (RosVecEnv); checkpoints, TensorBoard logs and the learning curve go to ``run_dir``. Ctrl-C or
SIGTERM while it trains writes a final checkpoint and the curve and logs where (``Trainer.train``), exit 130;
an env that does not come back within ``recovery_timeout`` ends it (exit 3) with the ``--resume`` command.
"""

from __future__ import annotations

import sys
from typing import Any

from rclpy.node import Node
from rclpy.parameter import Parameter

from carla_rl_agents.node import run_node
from carla_rl_agents.settings import load_run_config
from carla_rl_agents.training import Trainer
from carla_rl_agents.vec_env import RosVecEnv
from carla_rl_common.config import ConfigError
from carla_rl_env.gym_env import EnvUnavailable


class TrainNode(Node):
    """Parameters: ``namespaces`` of the env nodes, ``run_config`` (YAML files), ``run_dir``, ``resume``,
    ``timeout`` (s to wait for a step) and ``recovery_timeout`` (s to wait for an env whose simulator or env node
    died or stalls, see ``RosVecEnv``)."""

    def __init__(self, **kwargs: Any):
        super().__init__("carla_rl_trainer", **kwargs)
        self.namespaces = self.declare_parameter("namespaces", [""]).value
        self.run_config = self.declare_parameter("run_config", Parameter.Type.STRING_ARRAY).value or []
        self.run_dir = self.declare_parameter("run_dir", "runs/latest").value
        self.resume = self.declare_parameter("resume", False).value
        self.timeout = self.declare_parameter("timeout", 60.0).value
        # how long a dead env is waited for: a simulator or env node restarted by `--restart` needs seconds
        self.recovery_timeout = self.declare_parameter("recovery_timeout", 300.0).value

    def train(self) -> int:
        env = RosVecEnv(self.namespaces, timeout=self.timeout, node=self)
        env.recovery_timeout = self.recovery_timeout
        say = self.get_logger().info
        if self.resume:
            trainer = Trainer.resume(self.run_dir, env, say=say)
            # the env nodes' scenario sources are not reachable over ROS: the episodes in progress are not replayed
            say(f"resuming {self.run_dir} from step {trainer.model.num_timesteps}; the envs start new episodes")
        else:
            # the stack decides how many envs there are (num_envs:=N); the run config records it
            config = load_run_config(self.run_config, {"train": {"num_envs": env.num_envs}})
            trainer = Trainer(config, env, self.run_dir, say=say)
        with trainer:
            try:
                model = trainer.train()
            except EnvUnavailable as exc:  # an env node or simulator that did not come back
                raise EnvUnavailable(f"{exc}; continue with: carla-rl train --resume {self.run_dir}") from None
        self.get_logger().info(f"trained {model.num_timesteps} steps; run in {self.run_dir}")
        return 0


def main(args: list[str] | None = None) -> int:
    usage_errors = (ConfigError, FileExistsError, FileNotFoundError, ValueError)  # CheckpointError is a ValueError
    return run_node(TrainNode, "train", args, usage_errors)


if __name__ == "__main__":
    sys.exit(main())
