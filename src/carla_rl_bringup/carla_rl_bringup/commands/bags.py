"""Recorded runs (rosbag2, through carla_rl_bags): ``carla-rl record``, ``replay``, ``evaluate-bag``, ``bag info``,
``bag repair``.

A damaged bag is read as far as it can be and what was recovered is reported (replayed, scored), but the
command then exits with :data:`EXIT_DAMAGED`, so a script does not take a partial result for a whole one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from carla_rl_bags.options import parse_remaps
from carla_rl_bringup.commands import EXIT_USAGE
from carla_rl_common.dds import ros_environment

EXIT_DAMAGED = 1  # the bag is damaged: what was recovered was reported, the problems printed


def record(args: argparse.Namespace) -> int:
    import carla_rl_bags as bags

    os.environ.update(ros_environment(args.network, args.domain_id, join=args.join))
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
    os.environ.update(ros_environment(args.network, args.domain_id, join=args.join))
    return bags.play(
        args.bag, args.rate, args.loop, args.start_offset, args.include, args.exclude, remap, clock=not args.no_clock
    )


def evaluate_bag(args: argparse.Namespace) -> int:
    """Score a bag with the env a checkpoint was trained on (its saved config) unless ``--config`` names one;
    the report (per-step rewards included) goes to files, a line per episode and a JSON summary to stdout."""
    import carla_rl_bags as bags
    from carla_rl_agents.checkpoints import check_checkpoint, load_policy
    from carla_rl_bags.report import episode_line

    saved = None
    if args.checkpoint:
        meta = check_checkpoint(args.checkpoint)  # a damaged or hostile file: one line, before the bag is read
        if not args.config:
            saved = (f"{args.checkpoint} (its config)", meta["config"])
    out = Path(args.out or f"{Path(args.bag).resolve()}_report")
    report = bags.evaluate_bag(
        args.bag,
        [str(Path(p).resolve()) for p in args.config],
        Path(args.checkpoint) if args.checkpoint else None,
        out,
        load_policy=lambda path, spaces: load_policy(str(path), spaces),
        saved_config=saved,
        progress=True,
    )
    for episode in report["episodes"]:
        print(episode_line(episode))
    print(f"carla-rl evaluate-bag: report in {out} (report.md, report.json, plots)", file=sys.stderr)
    print(json.dumps(report["summary"]))
    return _damaged("evaluate-bag", report["problems"])


def bag(args: argparse.Namespace) -> int:
    """``carla-rl bag info|repair``."""
    return {"info": bag_info, "repair": bag_repair}[args.bag_command](args)


def bag_info(args: argparse.Namespace) -> int:
    import carla_rl_bags as bags

    info = bags.bag_info(args.bag, progress=True)
    print(json.dumps(info, default=str) if args.json else bags.format_info(info))
    return _damaged("bag info", info["problems"], quiet=True)


def bag_repair(args: argparse.Namespace) -> int:
    import carla_rl_bags as bags

    result = bags.repair_bag(args.bag, progress=True)
    for problem in result["problems"]:
        print(f"carla-rl bag repair: found: {problem}", file=sys.stderr)
    files = ", ".join(f"{Path(f['path']).name} ({f['messages']})" for f in result["files"])
    print(f"carla-rl bag repair: {result['path']}: {result['messages']} messages in {files}; index and metadata.yaml")
    after = bags.bag_info(args.bag)["problems"]  # what a repair cannot mend (lost messages stay lost)
    return _damaged("bag repair", after)


def _damaged(command: str, problems: list[str], quiet: bool = False) -> int:
    """:data:`EXIT_DAMAGED` (problems printed to stderr unless the report already shows them) or 0."""
    if not problems:
        return 0
    if not quiet:
        for problem in problems:
            print(f"carla-rl {command}: {problem}", file=sys.stderr)
    print(f"carla-rl {command}: the bag is damaged ({len(problems)} problem(s)); exit {EXIT_DAMAGED}", file=sys.stderr)
    return EXIT_DAMAGED
