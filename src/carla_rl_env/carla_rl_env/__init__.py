"""carla_rl_env."""
