"""Recorded runs (rosbag2, through carla_rl_bags): ``carla-rl record``, ``replay``, ``evaluate-bag``, ``bag info``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from carla_rl_bags.options import parse_remaps
from carla_rl_bringup.commands import EXIT_USAGE
from carla_rl_common.dds import ros_environment


def record(args: argparse.Namespace) -> int:
    import carla_rl_bags as bags

    os.environ.update(ros_environment(args.network, args.domain_id))
    return bags.record(
        args.output,
        args.topics,
        args.namespace,
        args.storage,
        None if args.compression == "none" else args.compression,
        args.max_bag_size,
        args.max_bag_duration,
        wait_for=args.wait_for,
    )


def replay(args: argparse.Namespace) -> int:
    import carla_rl_bags as bags

    try:
        remap = parse_remaps(args.remap)
    except ValueError as exc:
        print(f"carla-rl replay: {exc}", file=sys.stderr)
        return EXIT_USAGE
    os.environ.update(ros_environment(args.network, args.domain_id))
    return bags.play(
        args.bag, args.rate, args.loop, args.start_offset, args.include, args.exclude, remap, clock=not args.no_clock
    )


def evaluate_bag(args: argparse.Namespace) -> int:
    import carla_rl_bags as bags
    from carla_rl_agents.checkpoints import load_policy

    out = Path(args.out or f"{Path(args.bag).resolve()}_report")
    report = bags.evaluate_bag(
        args.bag,
        [str(Path(p).resolve()) for p in args.config],
        Path(args.checkpoint) if args.checkpoint else None,
        out,
        load_policy=lambda path, spaces: load_policy(str(path), spaces),
    )
    print(f"carla-rl evaluate-bag: report in {out}", file=sys.stderr)
    print(json.dumps(report.get("summary", report), default=str))
    return 0


def bag_info(args: argparse.Namespace) -> int:
    import carla_rl_bags as bags

    info = bags.bag_info(args.bag)
    print(json.dumps(info, default=str) if args.json else bags.format_info(info))
    return 0
