"""Bring-up of carla-rl stacks: the `carla-rl` CLI, config/stacks.yaml, the process launcher."""
