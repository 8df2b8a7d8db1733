"""The simulator node and the env node composed in one process, spun by one executor.

    python -m carla_rl_bringup.composed --ros-args --params-file params.yaml [-r __ns:=/env_0]

The lockstep loop's slowest stage is the hop from simulator to env node: per tick several messages are
serialised, sent, woken up for and taken one by one by rclpy's executor (benchmarks/RESULTS.md). Composed,
the env node gets the simulator's per-tick messages by direct call, in publication order, as the very same
Python objects (camera images included: no copy); everything else stays on DDS. The agent's command, the
env node's reset traffic (set_transform, brake commands, spawn services) and the Step topic, and every
subscriber outside this process (rviz, a bag recorder, a viewer) still see the bridge's topics, since the
simulator publishes each one that has a DDS subscriber. The env node code is the same that runs against a
real CARLA bridge; only its subscriptions to the simulator's topics are replaced.

Both nodes read the same parameters file (the launcher writes them under ``/**``); ``seed`` is shared.
"""

from __future__ import annotations

import sys

from rclpy.parameter import Parameter

from carla_rl_common.config import ConfigError
from carla_rl_common.nodes import spin_nodes
from carla_rl_env.node import EnvNode
from carla_rl_sim.core import SimulatorError
from carla_rl_sim.node import SimulatorNode


def main(args: list[str] | None = None) -> int:
    def make_nodes() -> list:
        env = EnvNode(local_inputs=True, parameter_overrides=[Parameter("use_sim_time", value=True)])
        sim = SimulatorNode(direct=env.direct)  # one hot path: the env node's command first, then the sim's
        sim.attach(env.local_inputs)
        # the env node first: of one ready batch, its copy of the agent's command is served before the
        # simulator ticks on its own, so the frame finds the command already there
        return [env, sim]

    return spin_nodes(
        "carla_rl_bringup.composed",
        make_nodes,
        (SimulatorError, ConfigError, ValueError, OSError),
        args,
        run=lambda executor, nodes: nodes[1].run(executor),
    )


if __name__ == "__main__":
    sys.exit(main())
