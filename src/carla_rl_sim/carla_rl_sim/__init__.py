"""carla_rl_sim."""
