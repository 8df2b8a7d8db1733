"""carla_rl_common."""
