"""The RL workflows: ``carla-rl drive``, ``train``, ``evaluate`` and ``demo``.

Each one checks its config here, before any process starts, then runs its stack of config/stacks.yaml over
ROS 2 (``--inprocess``: steps the simulator in this process instead).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

from carla_rl_bringup.commands import EXIT_USAGE
from carla_rl_bringup.commands.stack import run_stack
from carla_rl_common.dds import ros_environment
from carla_rl_common.paths import CONFIG_DIR, default_objects_file


def _env_config(args: argparse.Namespace) -> tuple[list[str], dict]:
    """Validate the env config files here, so a typo fails before any process starts."""
    from carla_rl_common.config import merge_plain
    from carla_rl_env.actions import ActionMapper
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
            from carla_rl_agents.checkpoints import check_checkpoint

            trained = Path(tmp) / f"{Path(args.checkpoint).name}.config.yaml"
            trained.write_text(yaml.safe_dump(check_checkpoint(args.checkpoint)["config"], sort_keys=False))
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


def _check_numbers(args: argparse.Namespace) -> None:
    """The numeric options of drive and evaluate in the ranges of the config keys they stand for (a ConfigError
    naming the option), also on the in-process paths, which build no launch arguments."""
    from carla_rl_agents.settings import RUN_BOUNDS
    from carla_rl_common.config import Range, check_range

    for option, bound in (("num_envs", RUN_BOUNDS["train"]["num_envs"]), ("seed", RUN_BOUNDS["train"]["seed"])):
        check_range("<command line>", f"--{option.replace('_', '-')}", getattr(args, option), bound)
    if getattr(args, "episodes", None) is not None:
        check_range("<command line>", "--episodes", args.episodes, Range(1, 10**6))


def _check_town(town: str) -> None:
    """Parse the town and check its sizes here (a fraction of a second), so a hostile or broken map is one line
    before any process starts rather than a simulator that fails (or builds for minutes) inside the stack."""
    from carla_rl_common.opendrive import OpenDriveError
    from carla_rl_common.opendrive.builder import check_document
    from carla_rl_common.opendrive.network import SAMPLE_SPACING
    from carla_rl_common.opendrive.parser import parse_opendrive
    from carla_rl_common.towns import town_path

    path = town_path(town)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise OpenDriveError(f"{path.name}:1: <OpenDRIVE>: not UTF-8 text ({error.reason})") from None
    check_document(parse_opendrive(text, path.name), SAMPLE_SPACING)


def _simulator_values(config: dict) -> dict:
    """The launch arguments that carry the run config's ``sim`` section to the stack's simulators, so a
    config gives the same simulation over ROS as in-process (``town`` and ``traffic`` as well). The town is
    checked first (:func:`_check_town`)."""
    sim = config["sim"]
    _check_town(sim["town"])
    return {
        "town": sim["town"],
        "traffic": sim["traffic"],
        "fixed_delta_seconds": sim["fixed_delta_seconds"],
        "sim_seed": sim["seed"],
    }


def drive(args: argparse.Namespace) -> int:
    if args.num_envs < 1 or args.episodes < 1:
        print("carla-rl drive: --num-envs and --episodes must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    _check_numbers(args)
    agent = "checkpoint" if args.checkpoint else args.agent
    if agent == "checkpoint" and not Path(args.checkpoint).is_file():
        print(f"carla-rl drive: checkpoint {args.checkpoint!r} not found", file=sys.stderr)
        return EXIT_USAGE
    _, config = _env_config(args)
    with tempfile.TemporaryDirectory(prefix="carla-rl-drive-") as tmp:
        # the merged config (with the command line's overrides) is what every env node reads
        merged = Path(tmp) / "env.yaml"
        merged.write_text(yaml.safe_dump(config, sort_keys=False))
        return run_stack(
            {
                "stack": "drive",
                "sim": "embedded",
                "num_envs": args.num_envs,
                **_simulator_values(config),
                "config": str(merged),
                "objects": config["env"]["objects_file"] or str(default_objects_file()),
                "agent": agent,
                "checkpoint": args.checkpoint,
                "episodes": args.episodes,
                "seed": args.seed,
                "viz": "none",
            },
            ros_environment(args.network, args.domain_id),
            record=args.record,
        )


def train(args: argparse.Namespace) -> int:
    from carla_rl_agents.settings import load_run_config
    from carla_rl_env.settings import check_sensors

    if args.resume:
        from carla_rl_agents.checkpoints import check_checkpoint, latest_checkpoint

        run_dir = Path(args.resume)
        saved = run_dir / "config.yaml"
        config = load_run_config([saved])  # validated as --config files are
        check_sensors(config, str(saved))
        checkpoint = latest_checkpoint(run_dir)
        if checkpoint is not None:
            check_checkpoint(checkpoint, expected_algo=config["algo"])
    else:
        overrides: dict = {"train": {}}
        if args.num_envs is not None:
            overrides["train"]["num_envs"] = args.num_envs
        if args.seed is not None:
            overrides["train"]["seed"] = args.seed
        paths = [
            str(CONFIG_DIR / "base.yaml"),
            str(CONFIG_DIR / f"{args.algo}.yaml"),
            *(str(Path(p).resolve()) for p in args.config),
        ]
        config = load_run_config(paths, overrides)
        check_sensors(config, ", ".join(paths))
        run_dir = Path(args.run_dir or f"runs/{args.algo}-{config['train']['seed']}")
    if args.inprocess:
        return _train_inprocess(config, run_dir, resume=bool(args.resume))
    run_dir.mkdir(parents=True, exist_ok=True)
    merged = run_dir / "requested_config.yaml"  # what the env nodes and the trainer read
    if not args.resume:
        merged.write_text(yaml.safe_dump(config, sort_keys=False))
    return run_stack(
        {
            "stack": "train",
            "sim": "embedded",
            "num_envs": config["train"]["num_envs"],
            **_simulator_values(config),
            "config": "" if args.resume else str(merged.resolve()),
            "algo": config["algo"],
            "run_dir": str(run_dir.resolve()),
            "resume": bool(args.resume),
            "objects": config["env"]["objects_file"] or str(default_objects_file()),
            "seed": config["train"]["seed"],
            "viz": "none",
        },
        ros_environment(args.network, args.domain_id),
        record=args.record,
        restarts=args.restart,
    )


def _train_inprocess(config: dict, run_dir: Path, resume: bool) -> int:
    from carla_rl_agents.shm_vec_env import make_vec_env
    from carla_rl_agents.training import Trainer
    from carla_rl_env.inprocess import InProcessEnv
    from carla_rl_sim.core import load_simulator

    def factory(cfg: dict):
        sim = cfg["sim"]
        seed = cfg["train"]["seed"]
        makers = [
            lambda i=i: InProcessEnv(
                cfg,
                load_simulator(
                    sim["town"],
                    cfg["env"]["objects_file"],
                    sim["fixed_delta_seconds"],
                    sim["traffic"],
                    seed + sim["seed"] + i,  # as the stack's simulators: seed + sim_seed + i
                ),
                seed=seed + i,
            )
            for i in range(cfg["train"]["num_envs"])
        ]
        return make_vec_env(makers, cfg["train"])  # train.num_workers > 0: the shared-memory vector env

    trainer = Trainer.resume(run_dir, factory) if resume else Trainer(config, factory, run_dir)
    with trainer:
        model = trainer.train()
    print(f"carla-rl train: {model.num_timesteps} steps; run in {run_dir}", file=sys.stderr)
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from stable_baselines3.common.vec_env import DummyVecEnv

    from carla_rl_agents.checkpoints import check_checkpoint, load_policy
    from carla_rl_agents.evaluation import evaluate as evaluate_policy
    from carla_rl_agents.evaluation import write_results
    from carla_rl_env.scenarios import load_suite, resolve_suite
    from carla_rl_viz.video import EvaluationVideos, recording, with_video

    _check_numbers(args)
    config = check_checkpoint(args.checkpoint)["config"]
    if args.town:
        config["sim"]["town"] = args.town
    suite = resolve_suite(args.suite, config["sim"]["town"]).resolve()
    config["env"]["scenario"]["suite"] = str(suite)
    episodes = len(load_suite(suite)[1])
    out = Path(args.out or Path(args.checkpoint).with_suffix("")) / f"{Path(config['sim']['town']).stem}-{suite.stem}"
    videos = EvaluationVideos(out, config["env"], args.num_envs) if args.video else None
    if args.inprocess:
        from carla_rl_env.inprocess import InProcessEnv
        from carla_rl_sim.core import load_simulator

        sim = config["sim"]
        env = DummyVecEnv(
            [
                lambda i=i: with_video(
                    videos,
                    InProcessEnv(
                        config,
                        load_simulator(
                            sim["town"],
                            config["env"]["objects_file"],
                            sim["fixed_delta_seconds"],
                            sim["traffic"],
                            args.seed + sim["seed"] + i,
                        ),
                        seed=args.seed + i,
                        offset=i,
                        stride=args.num_envs,
                    ),
                    i,
                )
                for i in range(args.num_envs)
            ]
        )
        result = evaluate_policy(load_policy(args.checkpoint, env), env, episodes)
        write_results(result["summary"], result["records"], out)
    else:  # the stack's evaluator writes the results into `out`
        with recording(videos, ros_environment(args.network, args.domain_id)):
            result = _evaluate_over_ros(args, config, suite, out)
    if videos is not None:
        print(f"carla-rl evaluate: {len(videos.close())} episode videos in {out}", file=sys.stderr)
    summary = {
        "checkpoint": args.checkpoint,
        "suite": suite.stem,
        "town": Path(config["sim"]["town"]).stem,
        "seed": args.seed,
        **result["summary"],
    }
    print(f"carla-rl evaluate: results in {out}", file=sys.stderr)
    print(json.dumps(summary) if args.json else (out / "results.md").read_text())
    return 0


def _evaluate_over_ros(args: argparse.Namespace, config: dict, suite: Path, out: Path) -> dict:
    """The evaluate stack (simulators, env nodes on the suite, the evaluator writing into ``out``) as
    processes, over ROS 2; returns what the evaluator wrote."""
    with tempfile.TemporaryDirectory(prefix="carla-rl-eval-") as tmp:
        merged = Path(tmp) / "run.yaml"  # the checkpoint's config, with --town
        merged.write_text(yaml.safe_dump(config, sort_keys=False))
        code = run_stack(
            {
                "stack": "evaluate",
                "sim": "embedded",
                "num_envs": args.num_envs,
                **_simulator_values(config),
                "config": str(merged),
                "suite": str(suite),
                "objects": config["env"]["objects_file"] or str(default_objects_file()),
                "seed": args.seed,
                "checkpoint": args.checkpoint,
                "out_dir": str(out.resolve()),
                "viz": "none",
            },
            ros_environment(args.network, args.domain_id),
            record=args.record,
        )
    if code != 0:
        raise ChildProcessError(f"the evaluate stack failed (exit code {code}); its log is above")
    data = json.loads((out / "results.json").read_text())
    return {"summary": data["summary"], "records": data["episodes"]}


def demo(args: argparse.Namespace) -> int:
    """Train PPO briefly with the shipped config on the embedded simulator, then drive the trained policy."""
    from carla_rl_agents.checkpoints import latest_checkpoint
    from carla_rl_bringup.cli import main  # the two runs are the user's own `carla-rl train` and `carla-rl drive`

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
    return main(
        ["drive", "--checkpoint", str(checkpoint), "--episodes", str(args.episodes), "--config", demo_config, *ros]
    )
