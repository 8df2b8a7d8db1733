"""The agent side of tests/integration/test_cross_host.py: find an env node over DDS and train PPO briefly.

    python cross_host_agent.py probe SECONDS      -> prints {"found": bool}
    python cross_host_agent.py train STEPS SEED   -> prints {"rewards": [...], "observations": [...], "params": float}

Run inside a network namespace with the DDS settings of the test (ROS_DOMAIN_ID, discovery range).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import rclpy


def probe(seconds: float) -> dict:
    from carla_rl_env.gym_env import EnvUnavailable, RosEnv

    try:
        env = RosEnv(timeout=seconds)
    except EnvUnavailable:
        return {"found": False}
    env.close()
    return {"found": True}


def train(steps: int, seed: int) -> dict:
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import VecEnv

    from carla_rl_agents.vec_env import RosVecEnv

    torch.set_num_threads(1)
    env: VecEnv = RosVecEnv([""], timeout=60)
    env.seed(seed)
    seen: dict[str, list] = {"rewards": [], "observations": []}

    class Record(BaseCallback):
        def _on_step(self) -> bool:
            seen["rewards"].append(float(self.locals["rewards"][0]))
            seen["observations"].append(float(np.sum(self.locals["new_obs"]["measurements"])))
            return True

    model = PPO("MultiInputPolicy", env, n_steps=64, batch_size=64, n_epochs=1, seed=seed, device="cpu", verbose=0)
    model.learn(total_timesteps=steps, callback=Record())
    params = float(sum(p.detach().double().sum() for p in model.policy.parameters()))
    env.close()
    return {**seen, "params": params}


def main() -> int:
    rclpy.init()
    try:
        result = probe(float(sys.argv[2])) if sys.argv[1] == "probe" else train(int(sys.argv[2]), int(sys.argv[3]))
    finally:
        rclpy.try_shutdown()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
