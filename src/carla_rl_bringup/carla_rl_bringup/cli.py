"""``carla-rl``: one command for the whole stack (``carla-rl --help``, ``carla-rl SUBCOMMAND --help``)."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import yaml

from carla_rl_bags.options import add_record_arguments, add_replay_arguments, parse_remaps
from carla_rl_bringup.stacks import LAUNCH_ARGUMENTS, expand, load_stacks
from carla_rl_common import bridge
from carla_rl_common.config import ConfigError
from carla_rl_common.dds import add_ros_options, ros_environment
from carla_rl_common.paths import CONFIG_DIR, default_objects_file

EXIT_USAGE = 2


def _add_sim_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--town", "--map", dest="town", default=None,
                   help="shipped town name (RLTown01, RLTown02) or any .xodr file; default from config")
    p.add_argument("--objects", default="", help="carla_spawn_objects JSON (default: config/objects.json)")
    p.add_argument("--traffic", type=int, default=None, help="traffic vehicles per simulator")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carla-rl", description=__doc__.split(":", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    drive = sub.add_parser("drive", help="drive N envs with a policy over ROS 2 and print one JSON line per episode")
    drive.add_argument("--agent", default="random", choices=["random", "checkpoint"],
                       help="random actions, or the policy of --checkpoint")
    drive.add_argument("--checkpoint", default="", help="a trained model (implies --agent checkpoint)")
    drive.add_argument("--episodes", type=int, default=2)
    drive.add_argument("--num-envs", type=int, default=1, help="simulator + env node pairs (namespaces env_i)")
    drive.add_argument("--config", action="append", default=[], help="env config YAML (repeatable; later wins)")
    drive.add_argument("--suite", default="", help="a suite of the town (straight, one_turn, navigation, "
                       "navigation_dynamic) or a suite YAML file")
    drive.add_argument("--seed", type=int, default=0)
    drive.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for an env to answer")
    drive.add_argument("--record", default="", metavar="DIR", help="record the run as a rosbag2 bag (MCAP) in DIR")
    _add_sim_options(drive)
    add_ros_options(drive)

    train = sub.add_parser("train", help="train an agent (config/base.yaml + config/<algo>.yaml) over ROS 2")
    train.add_argument("--algo", default="ppo", choices=["a2c", "acktr", "ppo", "her"],
                       help="the algorithm file config/<algo>.yaml (the config decides everything about the model)")
    train.add_argument("--config", action="append", default=[], help="more config YAML, after base and algo")
    train.add_argument("--num-envs", type=int, default=None, help="envs to train on (default: train.num_envs)")
    train.add_argument("--run-dir", default="", help="run directory (default: runs/<algo>-<seed>)")
    train.add_argument("--resume", default="", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    train.add_argument("--seed", type=int, default=None, help="default: train.seed")
    train.add_argument("--record", default="", metavar="DIR", help="record the run as a rosbag2 bag in DIR")
    train.add_argument("--inprocess", action="store_true",
                       help="step the simulator in this process (no ROS): the fast path for large budgets")
    train.add_argument("--restart", type=int, default=0, metavar="N",
                       help="restart a simulator or env node that dies, up to N times each; training waits for it")
    add_ros_options(train)

    ev = sub.add_parser("evaluate", help="evaluate a checkpoint on a suite; writes results.md and results.json")
    ev.add_argument("--checkpoint", required=True)
    ev.add_argument("--suite", required=True, help="straight, one_turn, navigation, navigation_dynamic, or a file")
    ev.add_argument("--town", default=None, help="evaluate on another town than the one trained on")
    ev.add_argument("--seed", type=int, default=0, help="reshuffles traffic (the simulators' random streams)")
    ev.add_argument("--num-envs", type=int, default=1)
    ev.add_argument("--out", default="", help="results directory (default: beside the checkpoint)")
    ev.add_argument("--inprocess", action="store_true", help="step the simulator in this process (no ROS)")
    ev.add_argument("--json", action="store_true", help="print the summary as one JSON object on the last line")
    ev.add_argument("--video", action="store_true",
                    help="write one MP4 per episode beside the results: camera and BEV side by side, overlays")
    ev.add_argument("--record", default="", metavar="DIR", help="record the evaluation as a rosbag2 bag in DIR")
    add_ros_options(ev)

    demo = sub.add_parser("demo", help="train PPO briefly on the embedded simulator, then drive it (make demo)")
    demo.add_argument("--episodes", type=int, default=3)
    demo.add_argument("--run-dir", default="runs/demo")
    add_ros_options(demo)

    sim = sub.add_parser("sim", help="run the embedded simulator node (the CARLA bridge's topics and parameters)")
    _add_sim_options(sim)
    sim.add_argument("--synchronous-mode", type=_bool, default=True, metavar="BOOL")
    sim.add_argument("--synchronous-mode-wait-for-vehicle-control-command", type=_bool, default=False, metavar="BOOL")
    sim.add_argument("--fixed-delta-seconds", type=float, default=bridge.DEFAULT_FIXED_DELTA_SECONDS)
    sim.add_argument("--ego-vehicle-role-name", nargs="+", default=list(bridge.EGO_ROLE_NAMES))
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--traffic-lights", action="store_true", help="lights at junctions (publishes their topics)")
    sim.add_argument("--namespace", default="")
    add_ros_options(sim)

    up = sub.add_parser("up", help="start a stack of config/stacks.yaml (what launch/carla_rl.launch.py starts)")
    up.add_argument("stack", help="drive (train joins with the agents)")
    for name, (default, text) in LAUNCH_ARGUMENTS.items():
        if name != "stack":
            up.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None, help=f"{text} (default: {default})")
    up.add_argument("--restart", type=int, default=0, metavar="N",
                    help="restart a required node that dies, up to N times each (default 0: stop the stack)")
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
    evb.add_argument("bag")
    evb.add_argument("--checkpoint", default="")
    evb.add_argument("--config", action="append", default=[], help="env config YAML (default: the defaults)")
    evb.add_argument("--out", default="", help="report directory (default: <bag>_report)")

    bag = sub.add_parser("bag", help="inspect bags")
    bag_sub = bag.add_subparsers(dest="bag_command", required=True, metavar="BAG_COMMAND")
    info = bag_sub.add_parser("info", help="topics, types, counts, duration, frequency, gaps")
    info.add_argument("bag")
    info.add_argument("--json", action="store_true")

    from carla_rl_viz import cli as viz_cli
    viz_cli.add_parser(sub, add_ros_options)

    map_cmd = sub.add_parser("map", help="inspect OpenDRIVE maps")
    map_sub = map_cmd.add_subparsers(dest="map_command", required=True, metavar="MAP_COMMAND")
    export = map_sub.add_parser("export", help="write every driving lane's centreline (GeoJSON)")
    export.add_argument("xodr", help="a .xodr file or a shipped town name")
    export.add_argument("--format", default="geojson", choices=["geojson"])
    export.add_argument("-o", "--output", default="-", help="output file (default: stdout)")
    return parser


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _env_config(args: argparse.Namespace) -> tuple[list[str], dict]:
    """Validate the env config files here, so a typo fails before any process starts."""
    from carla_rl_env.actions import ActionMapper
    from carla_rl_common.config import merge_plain
    from carla_rl_env.rewards import Reward
    from carla_rl_env.scenarios import resolve_suite
    from carla_rl_env.settings import check_sensors, load_env_config

    overrides: dict = {}
    if args.town is not None:
        overrides.setdefault("sim", {})["town"] = args.town
    if args.traffic is not None:
        overrides.setdefault("sim", {})["traffic"] = args.traffic
    paths = [str(Path(p).resolve()) for p in args.config]
    with tempfile.TemporaryDirectory(prefix="carla-rl-config-") as tmp:
        if getattr(args, "checkpoint", ""):  # a trained policy needs the env (observations) it was trained on
            from carla_rl_agents.checkpoints import read_meta

            trained = Path(tmp) / f"{Path(args.checkpoint).name}.config.yaml"
            trained.write_text(yaml.safe_dump(read_meta(args.checkpoint)["config"], sort_keys=False))
            paths.insert(0, str(trained))
        config = load_env_config(paths, overrides)
        if getattr(args, "suite", ""):  # a kind name of the town's committed suites, or a suite file
            suite = resolve_suite(args.suite, config["sim"]["town"]).resolve()
            config = load_env_config(paths, merge_plain(overrides, {"env": {"scenario": {"suite": str(suite)}}}))
    source = ", ".join(paths) or "<defaults>"
    Reward(config["env"]["reward"]["terms"], source)  # names and weights
    ActionMapper(config["env"]["action"], source)
    if args.objects:
        config["env"]["objects_file"] = str(Path(args.objects).resolve())
    check_sensors(config, source)
    return paths, config


def cmd_drive(args: argparse.Namespace) -> int:
    if args.num_envs < 1 or args.episodes < 1:
        print("carla-rl drive: --num-envs and --episodes must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    agent = "checkpoint" if args.checkpoint else args.agent
    if agent == "checkpoint" and not Path(args.checkpoint).is_file():
        print(f"carla-rl drive: checkpoint {args.checkpoint!r} not found", file=sys.stderr)
        return EXIT_USAGE
    _, config = _env_config(args)
    with tempfile.TemporaryDirectory(prefix="carla-rl-drive-") as tmp:
        # the merged config (with the command line's overrides) is what every env node reads
        merged = Path(tmp) / "env.yaml"
        merged.write_text(yaml.safe_dump(config, sort_keys=False))
        return run_stack({"stack": "drive", "sim": "embedded", "num_envs": args.num_envs,
                          "town": config["sim"]["town"], "config": str(merged),
                          "objects": config["env"]["objects_file"] or str(default_objects_file()),
                          "traffic": config["sim"]["traffic"], "agent": agent, "checkpoint": args.checkpoint,
                          "episodes": args.episodes, "seed": args.seed, "viz": "none"},
                         ros_environment(args.network, args.domain_id), record=args.record)


def cmd_train(args: argparse.Namespace) -> int:
    from carla_rl_agents.settings import load_run_config
    from carla_rl_env.settings import check_sensors

    if args.resume:
        config = yaml.safe_load((Path(args.resume) / "config.yaml").read_text())
        run_dir = Path(args.resume)
    else:
        overrides: dict = {"train": {}}
        if args.num_envs is not None:
            overrides["train"]["num_envs"] = args.num_envs
        if args.seed is not None:
            overrides["train"]["seed"] = args.seed
        paths = [str(CONFIG_DIR / "base.yaml"), str(CONFIG_DIR / f"{args.algo}.yaml"),
                 *(str(Path(p).resolve()) for p in args.config)]
        config = load_run_config(paths, overrides)
        check_sensors(config, ", ".join(paths))
        run_dir = Path(args.run_dir or f"runs/{args.algo}-{config['train']['seed']}")
    if args.inprocess:
        return _train_inprocess(config, run_dir, resume=bool(args.resume))
    run_dir.mkdir(parents=True, exist_ok=True)
    merged = run_dir / "requested_config.yaml"  # what the env nodes and the trainer read
    if not args.resume:
        merged.write_text(yaml.safe_dump(config, sort_keys=False))
    return run_stack({"stack": "train", "sim": "embedded", "num_envs": config["train"]["num_envs"],
                      "town": config["sim"]["town"], "config": "" if args.resume else str(merged.resolve()),
                      "algo": config["algo"], "run_dir": str(run_dir.resolve()), "resume": bool(args.resume),
                      "objects": config["env"]["objects_file"] or str(default_objects_file()),
                      "traffic": config["sim"]["traffic"], "seed": config["train"]["seed"], "viz": "none"},
                     ros_environment(args.network, args.domain_id), record=args.record, restarts=args.restart)


def _train_inprocess(config: dict, run_dir: Path, resume: bool) -> int:
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    from carla_rl_agents.training import Trainer
    from carla_rl_env.inprocess import InProcessEnv
    from carla_rl_sim.core import load_simulator

    def factory(cfg: dict):
        sim = cfg["sim"]
        makers = [lambda i=i: InProcessEnv(cfg, load_simulator(sim["town"], cfg["env"]["objects_file"],
                                                                sim["fixed_delta_seconds"], sim["traffic"],
                                                                cfg["train"]["seed"] + i), seed=cfg["train"]["seed"] + i)
                  for i in range(cfg["train"]["num_envs"])]
        return SubprocVecEnv(makers) if len(makers) > 1 else DummyVecEnv(makers)

    trainer = Trainer.resume(run_dir, factory) if resume else Trainer(config, factory, run_dir)
    with trainer:
        model = trainer.train()
    print(f"carla-rl train: {model.num_timesteps} steps; run in {run_dir}", file=sys.stderr)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from stable_baselines3.common.vec_env import DummyVecEnv

    from carla_rl_agents.checkpoints import load_policy, read_meta
    from carla_rl_agents.evaluation import evaluate, write_results
    from carla_rl_env.scenarios import load_suite, resolve_suite

    config = read_meta(args.checkpoint)["config"]
    if args.town:
        config["sim"]["town"] = args.town
    suite = resolve_suite(args.suite, config["sim"]["town"]).resolve()
    config["env"]["scenario"]["suite"] = str(suite)
    episodes = len(load_suite(suite)[1])
    out = Path(args.out or Path(args.checkpoint).with_suffix("")) / f"{Path(config['sim']['town']).stem}-{suite.stem}"
    from carla_rl_viz.video import EvaluationVideos, recording, with_video

    videos = EvaluationVideos(out, config["env"], args.num_envs) if args.video else None
    if args.inprocess:
        from carla_rl_env.inprocess import InProcessEnv
        from carla_rl_sim.core import load_simulator

        sim = config["sim"]
        env = DummyVecEnv([lambda i=i: with_video(videos, InProcessEnv(config, load_simulator(
            sim["town"], config["env"]["objects_file"], sim["fixed_delta_seconds"], sim["traffic"], args.seed + i),
            seed=args.seed + i, offset=i, stride=args.num_envs), i) for i in range(args.num_envs)])
        result = evaluate(load_policy(args.checkpoint, env), env, episodes)
        write_results(result["summary"], result["records"], out)
    else:  # the stack's evaluator writes the results into `out`
        with recording(videos, ros_environment(args.network, args.domain_id)):
            result = _evaluate_over_ros(args, config, suite, out)
    if videos is not None:
        print(f"carla-rl evaluate: {len(videos.close())} episode videos in {out}", file=sys.stderr)
    summary = {"checkpoint": args.checkpoint, "suite": suite.stem, "town": Path(config["sim"]["town"]).stem,
               "seed": args.seed, **result["summary"]}
    print(f"carla-rl evaluate: results in {out}", file=sys.stderr)
    print(json.dumps(summary) if args.json else (out / "results.md").read_text())
    return 0


def _evaluate_over_ros(args: argparse.Namespace, config: dict, suite: Path, out: Path) -> dict:
    """The evaluate stack (simulators, env nodes on the suite, the evaluator writing into ``out``) as
    processes, over ROS 2; returns what the evaluator wrote."""
    with tempfile.TemporaryDirectory(prefix="carla-rl-eval-") as tmp:
        merged = Path(tmp) / "run.yaml"  # the checkpoint's config, with --town
        merged.write_text(yaml.safe_dump(config, sort_keys=False))
        code = run_stack({"stack": "evaluate", "sim": "embedded", "num_envs": args.num_envs,
                          "town": config["sim"]["town"], "config": str(merged), "suite": str(suite),
                          "objects": config["env"]["objects_file"] or str(default_objects_file()),
                          "traffic": config["sim"]["traffic"], "seed": args.seed, "checkpoint": args.checkpoint,
                          "out_dir": str(out.resolve()), "viz": "none"},
                         ros_environment(args.network, args.domain_id), record=args.record)
    if code != 0:
        raise ChildProcessError(f"the evaluate stack failed (exit code {code}); its log is above")
    data = json.loads((out / "results.json").read_text())
    return {"summary": data["summary"], "records": data["episodes"]}


def cmd_up(args: argparse.Namespace) -> int:
    values = {name: getattr(args, name) for name in LAUNCH_ARGUMENTS if getattr(args, name, None) is not None}
    return run_stack(values, ros_environment(args.network, args.domain_id), restarts=args.restart)


def run_stack(values: dict, env: dict[str, str], record: str = "", restarts: int = 0) -> int:
    """Start a stack of config/stacks.yaml as processes; returns the exit code of its main node.

    ``record``: a bag directory; a recorder process then writes the stack's topics (of every env) to it.
    ``restarts``: how often each required node that dies is restarted (ProcessGroup's restart policy).
    """
    from carla_rl_bringup.launcher import NodeSpec, ProcessGroup

    nodes = expand(load_stacks(), {**{k: str(v) for k, v in values.items()},
                                    **({"record": str(Path(record).resolve())} if record else {})})
    unstartable = sorted({n.package for n in nodes if n.module is None})
    if unstartable:
        print(f"carla-rl up: {', '.join(unstartable)} can only be started by ros2 launch "
              f"(launch/carla_rl.launch.py)", file=sys.stderr)
        return EXIT_USAGE
    with ProcessGroup(env, restarts=restarts) as group:
        main = None
        for node in nodes:
            label = f"{node.name}@{node.namespace}" if node.namespace else node.name
            group.start(NodeSpec(label, node.module, node.namespace, node.parameters, required=node.required,
                                 stdout_passthrough=node.main, arguments=node.arguments,
                                 ready_text=node.ready_text))
            if node.ready_text and not group.wait_ready(label, timeout=60):
                print(f"carla-rl: {label} did not report ready within 60 s; starting the rest anyway",
                      file=sys.stderr)
            main = label if node.main else main
        return group.wait_for(main)


def cmd_sim(args: argparse.Namespace) -> int:
    from carla_rl_sim import node as sim_node
    from carla_rl_sim.towns import DEFAULT_TOWN

    os.environ.update(ros_environment(args.network, args.domain_id))
    params = {"town": args.town or DEFAULT_TOWN, "objects_file": args.objects, "traffic": args.traffic or 0,
              "seed": args.seed, "synchronous_mode": args.synchronous_mode,
              "synchronous_mode_wait_for_vehicle_control_command": args.synchronous_mode_wait_for_vehicle_control_command,
              "fixed_delta_seconds": args.fixed_delta_seconds, "ego_vehicle_role_name": args.ego_vehicle_role_name,
              "traffic_lights": args.traffic_lights}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump({"/**": {"ros__parameters": params}}, f)
    ros_args = ["carla-rl-sim", "--ros-args", "--params-file", f.name]
    if args.namespace:
        ros_args += ["-r", f"__ns:=/{args.namespace.strip('/')}", *bridge.namespace_remaps(args.namespace)[1:]]
    try:
        return sim_node.main(ros_args)
    finally:
        os.unlink(f.name)


def cmd_map(args: argparse.Namespace) -> int:
    from carla_rl_common.opendrive import RoadNetwork
    from carla_rl_sim.towns import town_path

    network = RoadNetwork.from_file(town_path(args.xodr))
    text = json.dumps(network.to_geojson())
    if args.output == "-":
        sys.stdout.write(text + "\n")
    else:
        Path(args.output).write_text(text + "\n")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Train PPO briefly with the shipped config on the embedded simulator, then drive the trained policy."""
    from carla_rl_agents.checkpoints import latest_checkpoint

    demo_config = str(CONFIG_DIR / "demo.yaml")
    run_dir = Path(args.run_dir)
    if latest_checkpoint(run_dir) is not None:  # a finished demo run: start afresh, it is minutes of work
        shutil.rmtree(run_dir)
    ros = ["--domain-id", str(args.domain_id)] if args.domain_id is not None else []
    ros += ["--network"] if args.network else []
    print(f"carla-rl demo: training PPO in {run_dir} ...", file=sys.stderr)
    code = main(["train", "--algo", "ppo", "--config", demo_config, "--run-dir", str(run_dir), *ros])
    checkpoint = latest_checkpoint(run_dir)
    if code != 0 or checkpoint is None:
        return code or 1
    print(f"carla-rl demo: driving {checkpoint} for {args.episodes} episodes", file=sys.stderr)
    return main(["drive", "--checkpoint", str(checkpoint), "--episodes", str(args.episodes),
                 "--config", demo_config, *ros])


def cmd_bench(args: argparse.Namespace) -> int:
    from carla_rl_bringup import bench_loop, bench_sim

    os.environ.update(ros_environment())
    steps, repeats, seconds = (300, 1, 0.6) if args.quick else (2000, 3, 3.0)
    result = {"machine": bench_loop.machine(), "quick": args.quick,
              "simulator": bench_sim.measure(seconds=seconds),
              "loop": bench_loop.measure(steps, camera=0, repeats=repeats),
              "loop_84x84": bench_loop.measure(steps, camera=84, repeats=repeats)}
    if not args.quick:  # scaling with the number of envs (each a simulator + env node pair)
        result["scaling"] = {n: bench_loop.measure(steps // 2, camera=0, repeats=1, num_envs=n)["ros_steps_per_s"]
                             for n in (1, 2, 4)}
    # the loop figures users' scripts read, at the top level
    for key in ("ros_steps_per_s", "inprocess_steps_per_s", "ratio"):
        result[key] = result["loop_84x84"][key]
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"machine: {result['machine']['cpus']} CPUs, Python {result['machine']['python']}")
    print(f"{'figure':<44}{'value':>12}")
    for name, value in result["simulator"].items():
        if isinstance(value, float):
            print(f"{'simulator: ' + name:<44}{value:>12.1f}")
    for section in ("loop", "loop_84x84"):
        for name in ("ros_steps_per_s", "inprocess_steps_per_s", "ratio", "latency_p50_ms", "latency_p99_ms"):
            print(f"{section + ': ' + name:<44}{result[section][name]:>12.3f}")
    for n, rate in result.get("scaling", {}).items():
        print(f"{f'scaling: {n} env(s), transitions/s':<44}{rate:>12.1f}")
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    import carla_rl_bags as bags

    os.environ.update(ros_environment(args.network, args.domain_id))
    return bags.record(args.output, args.topics, args.namespace, args.storage,
                       None if args.compression == "none" else args.compression, args.max_bag_size,
                       args.max_bag_duration, wait_for=args.wait_for)


def cmd_replay(args: argparse.Namespace) -> int:
    import carla_rl_bags as bags

    try:
        remap = parse_remaps(args.remap)
    except ValueError as exc:
        print(f"carla-rl replay: {exc}", file=sys.stderr)
        return EXIT_USAGE
    os.environ.update(ros_environment(args.network, args.domain_id))
    return bags.play(args.bag, args.rate, args.loop, args.start_offset, args.include, args.exclude, remap,
                     clock=not args.no_clock)


def cmd_evaluate_bag(args: argparse.Namespace) -> int:
    import carla_rl_bags as bags

    out = Path(args.out or f"{Path(args.bag).resolve()}_report")
    report = bags.evaluate_bag(args.bag, [str(Path(p).resolve()) for p in args.config],
                               Path(args.checkpoint) if args.checkpoint else None, out)
    print(f"carla-rl evaluate-bag: report in {out}", file=sys.stderr)
    print(json.dumps(report.get("summary", report), default=str))
    return 0


def cmd_bag(args: argparse.Namespace) -> int:
    import carla_rl_bags as bags

    info = bags.bag_info(args.bag)
    print(json.dumps(info, default=str) if args.json else bags.format_info(info))
    return 0


def cmd_viz(args: argparse.Namespace) -> int:
    from carla_rl_viz import cli as viz_cli
    return viz_cli.run(args)


COMMANDS = {"record": cmd_record, "replay": cmd_replay, "evaluate-bag": cmd_evaluate_bag, "bag": cmd_bag,
            "evaluate": cmd_evaluate, "train": cmd_train, "up": cmd_up, "bench": cmd_bench, "demo": cmd_demo, "drive": cmd_drive, "sim": cmd_sim, "map": cmd_map,
            "viz": cmd_viz}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"carla-rl {args.command}: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, ValueError) as exc:  # BagError and CheckpointError are ValueErrors
        print(f"carla-rl {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
