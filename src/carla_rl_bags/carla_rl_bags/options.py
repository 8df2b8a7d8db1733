"""The command-line options of recording and replay, defined once for ``carla-rl record|replay`` and for the
recorder and player processes that the stacks start (``python -m carla_rl_bags.recorder|player``).

Light on purpose: building the ``carla-rl`` parser must not import rclpy or rosbags.
"""

from __future__ import annotations

import argparse


def add_record_arguments(p: argparse.ArgumentParser, output_required: bool = True) -> None:
    p.add_argument(
        "-o", "--output", required=output_required, default="", help="bag directory to create (must not exist)"
    )
    p.add_argument("--topics", nargs="+", default=[], help="topic names or fnmatch patterns (default: the stack's)")
    p.add_argument("--namespace", default="", help="env namespace(s) the topics live in (env_0, or env_0,env_1)")
    p.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"], help="rosbag2 storage (default: mcap)")
    p.add_argument("--compression", default="none", choices=["none", "zstd"], help="zstd: compress MCAP chunks")
    p.add_argument("--max-bag-size", type=int, default=0, help="bytes per storage file (0: no splitting)")
    p.add_argument("--max-bag-duration", type=float, default=0.0, help="seconds per storage file (0: no splitting)")
    p.add_argument(
        "--wait-for",
        nargs="+",
        default=[],
        metavar="TOPIC",
        help="report ready only once these topics have a matched publisher (at most 30 s)",
    )


def add_replay_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bag", help="the bag directory (or one .mcap / .db3 file)")
    p.add_argument("--rate", type=float, default=1.0, help="speed factor; 0 = as fast as possible")
    p.add_argument("--loop", action="store_true", help="start again from the beginning at the end")
    p.add_argument("--start-offset", type=float, default=0.0, help="seconds into the bag")
    p.add_argument("--include", nargs="+", default=None, help="topic names or fnmatch patterns to replay")
    p.add_argument("--exclude", nargs="+", default=None, help="topic names or fnmatch patterns to leave out")
    p.add_argument("--remap", nargs="+", default=[], metavar="FROM:=TO", help="publish a recorded topic elsewhere")
    p.add_argument("--no-clock", action="store_true", help="do not publish /clock")


def parse_remaps(items: list[str]) -> dict[str, str]:
    """``["FROM:=TO", ...]`` -> ``{FROM: TO}``; raises ValueError naming a malformed item."""
    remap = {}
    for item in items:
        if ":=" not in item:
            raise ValueError(f"--remap takes FROM:=TO, got {item!r}")
        src, dst = item.split(":=", 1)
        remap[src] = dst
    return remap
