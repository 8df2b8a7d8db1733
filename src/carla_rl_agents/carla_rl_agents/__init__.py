"""carla_rl_agents."""
