"""RL algorithms not in Stable-Baselines3, one per module, SB3 style: ACKTR (with its K-FAC optimizer)
and on-policy hindsight experience replay on top of PPO."""

from carla_rl_agents.algos.acktr import ACKTR
from carla_rl_agents.algos.her_onpolicy import OnPolicyHER
from carla_rl_agents.algos.kfac import KFACOptimizer

__all__ = ["ACKTR", "KFACOptimizer", "OnPolicyHER"]
