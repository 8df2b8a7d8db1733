"""``carla-rl viz ...``: the viewers that need no ROS desktop (Foxglove WebSocket, browser view)."""
from __future__ import annotations

import argparse
from typing import Callable


def add_parser(sub: argparse._SubParsersAction, add_ros_options: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register ``carla-rl viz`` and its subcommands on the top-level parser."""
    viz = sub.add_parser("viz", help="live views of a running stack (Foxglove, browser)")
    viz.add_subparsers(dest="viz_command", required=True, metavar="VIZ_COMMAND")


def run(args: argparse.Namespace) -> int:
    raise SystemExit(f"carla-rl viz: unknown viewer {args.viz_command!r}")
