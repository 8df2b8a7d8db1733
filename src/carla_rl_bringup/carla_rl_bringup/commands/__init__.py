"""What each ``carla-rl`` subcommand does, one module per concern; :mod:`carla_rl_bringup.cli` parses and dispatches.

Every subcommand is a function ``(args: argparse.Namespace) -> int`` (the process's exit code). Heavy imports
(rclpy nodes, torch, the simulator) happen inside them, so ``carla-rl --help`` stays fast.
"""

EXIT_USAGE = 2  # what argparse exits with: a bad argument or config, found before anything started
