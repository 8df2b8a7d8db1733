"""The evaluation node: runs a checkpoint on the env nodes' suite and writes the results table (the `evaluate` stack).

``carla-rl evaluate`` and ``ros2 launch launch/carla_rl.launch.py stack:=evaluate`` start it beside the
simulators and env nodes, which run the suite (the env nodes' ``suite`` parameter). It acts only through
ROS 2 (RosVecEnv) and writes ``results.json`` and ``results.md`` into ``out_dir`` (and logs the summary).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rclpy.node import Node

from carla_rl_agents.checkpoints import CheckpointError, load_policy
from carla_rl_agents.evaluation import evaluate, write_results
from carla_rl_agents.node import run_node
from carla_rl_agents.vec_env import RosVecEnv
from carla_rl_common.config import ConfigError


class EvalNode(Node):
    """Parameters: ``namespaces`` of the env nodes, ``checkpoint``, ``episodes``, ``out_dir``, ``timeout``."""

    def __init__(self, **kwargs: Any):
        super().__init__("carla_rl_evaluator", **kwargs)
        self.namespaces = self.declare_parameter("namespaces", [""]).value
        self.checkpoint = self.declare_parameter("checkpoint", "").value
        self.episodes = self.declare_parameter("episodes", 25).value
        self.out_dir = self.declare_parameter("out_dir", "runs/evaluation").value
        self.timeout = self.declare_parameter("timeout", 60.0).value

    def run(self) -> int:
        if not self.checkpoint:
            raise ConfigError("<parameters>", "checkpoint", "the evaluate stack needs checkpoint:=PATH")
        env = RosVecEnv(self.namespaces, timeout=self.timeout, node=self)
        result = evaluate(load_policy(self.checkpoint, env), env, int(self.episodes), progress=True)
        json_path, _ = write_results(result["summary"], result["records"], Path(self.out_dir))
        self.get_logger().info(f"results in {json_path.parent}: {json.dumps(result['summary'])}")
        return 0


def main(args: list[str] | None = None) -> int:
    return run_node(EvalNode, "run", args, (ConfigError, CheckpointError, FileNotFoundError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
