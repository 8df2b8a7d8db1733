"""``carla-rl``: one command for the whole stack (``carla-rl --help``, ``carla-rl SUBCOMMAND --help``).

This module is the argument parser and the dispatch; what each subcommand does lives in
:mod:`carla_rl_bringup.commands` (rl: drive, train, evaluate, demo; stack: up; simulator: sim, map, bench;
bags: record, replay, evaluate-bag, bag), and ``viz`` in :mod:`carla_rl_viz.cli`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Sequence

from carla_rl_bags.options import add_record_arguments, add_replay_arguments
from carla_rl_bringup.commands import EXIT_USAGE, bags, rl, simulator, stack
from carla_rl_bringup.stacks import LAUNCH_ARGUMENTS
from carla_rl_common import bridge
from carla_rl_common.config import ConfigError
from carla_rl_common.dds import add_ros_options
from carla_rl_viz import cli as viz_cli


def _add_sim_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--town",
        "--map",
        dest="town",
        default=None,
        help="shipped town name (RLTown01, RLTown02) or any .xodr file; default from config",
    )
    p.add_argument("--objects", default="", help="carla_spawn_objects JSON (default: config/objects.json)")
    p.add_argument("--traffic", type=int, default=None, help="traffic vehicles per simulator")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carla-rl", description=__doc__.split(":", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    drive = sub.add_parser("drive", help="drive N envs with a policy over ROS 2 and print one JSON line per episode")
    drive.add_argument(
        "--agent",
        default="random",
        choices=["random", "checkpoint"],
        help="random actions, or the policy of --checkpoint",
    )
    drive.add_argument("--checkpoint", default="", help="a trained model (implies --agent checkpoint)")
    drive.add_argument("--episodes", type=int, default=2, help="episodes to drive (over all envs) before stopping")
    drive.add_argument("--num-envs", type=int, default=1, help="simulator + env node pairs (namespaces env_i)")
    drive.add_argument("--config", action="append", default=[], help="env config YAML (repeatable; later wins)")
    drive.add_argument(
        "--suite",
        default="",
        help="a suite of the town (straight, one_turn, navigation, navigation_dynamic) or a suite YAML file",
    )
    drive.add_argument("--seed", type=int, default=0, help="seed of env 0 (env i gets seed + i)")
    drive.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for an env to answer")
    drive.add_argument("--record", default="", metavar="DIR", help="record the run as a rosbag2 bag (MCAP) in DIR")
    _add_sim_options(drive)
    add_ros_options(drive)

    train = sub.add_parser("train", help="train an agent (config/base.yaml + config/<algo>.yaml) over ROS 2")
    train.add_argument(
        "--algo",
        default=None,
        choices=["a2c", "acktr", "ppo", "her"],
        help="the algorithm file config/<algo>.yaml (default: ppo; with --resume: the run's must be this one)",
    )
    train.add_argument("--config", action="append", default=[], help="more config YAML, after base and algo")
    train.add_argument("--num-envs", type=int, default=None, help="envs to train on (default: train.num_envs)")
    train.add_argument("--run-dir", default="", help="run directory (default: runs/<algo>-<seed>)")
    train.add_argument(
        "--resume",
        default="",
        metavar="RUN_DIR",
        help="continue a run from its newest complete checkpoint (checked before anything starts)",
    )
    train.add_argument(
        "--total-steps",
        type=int,
        default=None,
        metavar="N",
        help="env steps to train, over all envs (overrides train.total_timesteps: 1,000,000 in config/base.yaml)",
    )
    train.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="N",
        help="env steps between checkpoints, rounded up to whole rollouts (overrides train.checkpoint_every)",
    )
    train.add_argument("--seed", type=int, default=None, help="default: train.seed")
    train.add_argument("--record", default="", metavar="DIR", help="record the run as a rosbag2 bag in DIR")
    train.add_argument(
        "--inprocess",
        action="store_true",
        help="step the simulator in this process (no ROS): the fast path for large budgets",
    )
    train.add_argument(
        "--restart",
        type=int,
        default=0,
        metavar="N",
        help="restart a simulator or env node that dies, up to N times each; training waits for it",
    )
    add_ros_options(train)

    ev = sub.add_parser("evaluate", help="evaluate a checkpoint on a suite; writes results.md and results.json")
    ev.add_argument("--checkpoint", required=True, help="the trained model; its saved config gives the env")
    ev.add_argument("--suite", required=True, help="straight, one_turn, navigation, navigation_dynamic, or a file")
    ev.add_argument("--town", default=None, help="evaluate on another town than the one trained on")
    ev.add_argument("--seed", type=int, default=0, help="reshuffles traffic (the simulators' random streams)")
    ev.add_argument("--num-envs", type=int, default=1, help="envs that share the suite's episodes")
    ev.add_argument(
        "--episodes", type=int, default=None, help="only the suite's first N episodes (default: all of them)"
    )
    ev.add_argument(
        "--out", default="", help="results directory (default: runs/evaluate/<checkpoint name>); <town>-<suite>/ in it"
    )
    ev.add_argument("--inprocess", action="store_true", help="step the simulator in this process (no ROS)")
    ev.add_argument("--json", action="store_true", help="print the summary as one JSON object on the last line")
    ev.add_argument(
        "--video",
        action="store_true",
        help="write one MP4 per episode beside the results: camera and BEV side by side, overlays",
    )
    ev.add_argument("--record", default="", metavar="DIR", help="record the evaluation as a rosbag2 bag in DIR")
    add_ros_options(ev)

    demo = sub.add_parser("demo", help="train PPO briefly on the embedded simulator, then drive it (make demo)")
    demo.add_argument("--episodes", type=int, default=3, help="episodes to drive after training")
    demo.add_argument("--run-dir", default="runs/demo", help="the demo's training run (replaced when it is complete)")
    add_ros_options(demo)

    sim = sub.add_parser("sim", help="run the embedded simulator node (the CARLA bridge's topics and parameters)")
    _add_sim_options(sim)
    _add_bool(sim, "--synchronous-mode", True, "tick when told (the bridge's synchronous mode)")
    _add_bool(
        sim,
        "--synchronous-mode-wait-for-vehicle-control-command",
        False,
        "in synchronous mode, wait up to 1 s for a command from every ego before each tick",
    )
    sim.add_argument(
        "--fixed-delta-seconds",
        type=float,
        default=bridge.DEFAULT_FIXED_DELTA_SECONDS,
        help="simulated seconds per tick (default: %(default)s)",
    )
    sim.add_argument(
        "--ego-vehicle-role-name",
        nargs="+",
        default=list(bridge.EGO_ROLE_NAMES),
        help="role names that an objects-file vehicle may take to be an ego (the bridge's parameter)",
    )
    sim.add_argument("--seed", type=int, default=0, help="seed of the traffic and spawn randomness")
    sim.add_argument("--traffic-lights", action="store_true", help="lights at junctions (publishes their topics)")
    sim.add_argument("--namespace", default="", help="ROS namespace of the simulator's topics (e.g. env_1)")
    add_ros_options(sim)

    up = sub.add_parser("up", help="start a stack of config/stacks.yaml (what launch/carla_rl.launch.py starts)")
    up.add_argument("stack", help="drive (train joins with the agents)")
    for name, (default, text) in LAUNCH_ARGUMENTS.items():
        if name != "stack":
            up.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None, help=f"{text} (default: {default})")
    up.add_argument(
        "--restart",
        type=int,
        default=0,
        metavar="N",
        help="restart a required node that dies, up to N times each (default 0: stop the stack)",
    )
    add_ros_options(up)

    bench = sub.add_parser("bench", help="measure the simulator and the ROS lockstep loop (make bench)")
    bench.add_argument("--quick", action="store_true", help="a smoke run in under a minute")
    bench.add_argument("--json", action="store_true", help="print one JSON object with every figure")

    rec = sub.add_parser("record", help="record topics of a running stack into a rosbag2 bag")
    add_record_arguments(rec)
    add_ros_options(rec)

    rep = sub.add_parser("replay", help="republish a bag with its timing and /clock (like ros2 bag play --clock)")
    add_replay_arguments(rep)
    add_ros_options(rep)

    evb = sub.add_parser("evaluate-bag", help="score a recorded run offline (and a policy against it)")
    evb.add_argument("bag", help="the bag directory (or one .mcap file)")
    evb.add_argument(
        "--checkpoint", default="", help="a trained model: its actions are compared with the recorded ones"
    )
    evb.add_argument(
        "--config",
        action="append",
        default=[],
        help="env config YAML (repeatable; default: the checkpoint's saved config, else the defaults)",
    )
    evb.add_argument("--out", default="", help="report directory (default: <bag>_report)")

    bag = sub.add_parser("bag", help="inspect bags")
    bag_sub = bag.add_subparsers(dest="bag_command", required=True, metavar="BAG_COMMAND")
    info = bag_sub.add_parser("info", help="topics, types, counts, duration, frequency, gaps")
    info.add_argument("bag", help="the bag directory (or one .mcap / .db3 file)")
    info.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    repair = bag_sub.add_parser(
        "repair", help="rebuild the index and metadata.yaml of an MCAP bag (a killed recorder's; like ros2 bag reindex)"
    )
    repair.add_argument("bag", help="the bag directory (or one .mcap file)")

    viz_cli.add_parser(sub, add_ros_options)

    map_cmd = sub.add_parser("map", help="inspect OpenDRIVE maps")
    map_sub = map_cmd.add_subparsers(dest="map_command", required=True, metavar="MAP_COMMAND")
    export = map_sub.add_parser("export", help="write every driving lane's centreline (GeoJSON)")
    export.add_argument("xodr", help="a .xodr file or a shipped town name")
    export.add_argument("--format", default="geojson", choices=["geojson"], help="output format (GeoJSON only)")
    export.add_argument("-o", "--output", default="-", help="output file (default: stdout)")
    return parser


def _add_bool(parser: argparse.ArgumentParser, flag: str, default: bool, text: str) -> None:
    """A bridge-style bool option as people type it: ``--flag``, ``--flag true|false`` and ``--no-flag``."""
    dest = flag[2:].replace("-", "_")
    parser.add_argument(
        flag, dest=dest, nargs="?", const=True, type=_bool, metavar="BOOL", help=f"{text} (default: {default})"
    )
    parser.add_argument(f"--no-{flag[2:]}", dest=dest, action="store_false", help=f"the same as {flag} false")
    parser.set_defaults(**{dest: default})


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "drive": rl.drive,
    "train": rl.train,
    "evaluate": rl.evaluate,
    "demo": rl.demo,
    "up": stack.up,  # its configs are checked as the stack expands (stacks.expand(check=True))
    "sim": simulator.sim,
    "map": simulator.map_export,
    "bench": simulator.bench,
    "record": bags.record,
    "replay": bags.replay,
    "evaluate-bag": bags.evaluate_bag,
    "bag": bags.bag,
    "viz": viz_cli.run,
}


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is (a stack's launcher installs its own handler while it runs)."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"carla-rl {args.command}: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, ValueError) as exc:  # BagError and CheckpointError are ValueErrors
        print(f"carla-rl {args.command}: {exc}", file=sys.stderr)
        return 1
    except rl.StackStopped as exc:
        return exc.code
    except KeyboardInterrupt as exc:  # before a stack started, or an in-process run (which named its checkpoint)
        name = "SIGTERM" if isinstance(exc, Terminated) or getattr(exc, "signal_name", "") == "SIGTERM" else "SIGINT"
        print(f"carla-rl {args.command}: stopped by {name}", file=sys.stderr)
        return 143 if name == "SIGTERM" else 130


if __name__ == "__main__":
    sys.exit(main())
