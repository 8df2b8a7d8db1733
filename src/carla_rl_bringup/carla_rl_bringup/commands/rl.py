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

EVALUATE_DIR = Path("runs/evaluate")  # evaluate's results: runs/evaluate/<checkpoint>/<town>-<suite> (runs/ is ignored)


def check_env(config: dict, source: str) -> None:
    """What the env node checks when it starts, checked here on the merged config so that a bad value is one
    ConfigError line before any process starts: the reward terms and weights, the action settings, the
    observation (built as the env node builds its spaces) and the objects file's sensors it needs. ``up``
    calls it through :func:`check_stack_config`."""
    from carla_rl_common import bridge
    from carla_rl_env.settings import check_sensors
    from carla_rl_env.task import DrivingTask

    DrivingTask(config["env"], None, bridge.DEFAULT_FIXED_DELTA_SECONDS, source=source)  # spaces only: no map
    check_sensors(config, source)


def check_stack_config(values: dict) -> None:
    """The configs that a stack of config/stacks.yaml gives its nodes (``carla-rl up``'s options, as launch
    arguments), checked with :func:`check_env` before any process starts: the train stack's
    base + algo + ``config`` files (a resumed run's saved config, once it has a checkpoint to resume from), the
    drive stack's ``config`` files, the evaluate stack's ``config`` files or else its checkpoint's config."""
    from carla_rl_agents.settings import load_run_config
    from carla_rl_bringup.stacks import LAUNCH_ARGUMENTS
    from carla_rl_env.settings import load_env_config

    args = {name: str(values.get(name) or default) for name, (default, _) in LAUNCH_ARGUMENTS.items()}
    files = [str(Path(p).resolve()) for p in args["config"].split(",") if p]
    if args["stack"] == "train":
        if args["resume"].lower() in ("1", "true", "yes"):
            _resumable(Path(args["run_dir"]))
            return
        files = [str(CONFIG_DIR / "base.yaml"), str(CONFIG_DIR / f"{args['algo']}.yaml"), *files]
        config = load_run_config(files)
    elif args["stack"] == "evaluate" and not files and args["checkpoint"]:
        from carla_rl_agents.checkpoints import check_checkpoint

        saved = check_checkpoint(args["checkpoint"])["config"]
        config = load_env_config([], {k: saved[k] for k in ("env", "sim")})
        files = [f"{args['checkpoint']} (its config)"]
    elif args["stack"] in ("drive", "evaluate"):
        config = load_env_config(files)
    else:  # replay: no env node
        return
    if args["objects"]:
        config["env"]["objects_file"] = str(Path(args["objects"]).resolve())
    check_env(config, ", ".join(files) or "<defaults>")


class StackStopped(KeyboardInterrupt):
    """A stack stopped by Ctrl-C or SIGTERM: its launcher printed why; the command ends with its exit code."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


def _env_config(args: argparse.Namespace) -> tuple[list[str], dict]:
    """Validate the env config files here, so a typo fails before any process starts."""
    from carla_rl_common.config import merge_plain
    from carla_rl_env.scenarios import resolve_suite
    from carla_rl_env.settings import load_env_config

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
    if args.objects:
        config["env"]["objects_file"] = str(Path(args.objects).resolve())
    check_env(config, ", ".join(paths) or "<defaults>")
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
            ros_environment(args.network, args.domain_id, isolate=True, join=args.join),
            record=args.record,
        )


def train(args: argparse.Namespace) -> int:
    if args.resume:
        if args.total_steps is not None or args.checkpoint_every is not None:
            print(
                "carla-rl train: --total-steps and --checkpoint-every set up a new run; "
                f"a resumed run keeps its own config ({Path(args.resume) / 'config.yaml'})",
                file=sys.stderr,
            )
            return EXIT_USAGE
        run_dir = Path(args.resume)
        config = _resumable(run_dir, args.algo)
    else:
        args.algo = args.algo or "ppo"
        config = _new_run_config(args)
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
        ros_environment(args.network, args.domain_id, isolate=True, join=args.join),
        record=args.record,
        restarts=args.restart,
    )


def _new_run_config(args: argparse.Namespace) -> dict:
    """config/base.yaml, config/<algo>.yaml, the --config files and the command line's overrides, checked as
    the env nodes and the trainer will check them."""
    from carla_rl_agents.settings import RUN_BOUNDS, load_run_config
    from carla_rl_common.config import Range, check_range

    overrides: dict = {"train": {}}
    if args.num_envs is not None:
        overrides["train"]["num_envs"] = args.num_envs
    if args.seed is not None:
        overrides["train"]["seed"] = args.seed
    if args.total_steps is not None:
        check_range(
            "<command line>", "--total-steps", args.total_steps, Range(1, RUN_BOUNDS["train"]["total_timesteps"].high)
        )
        overrides["train"]["total_timesteps"] = args.total_steps
    paths = [
        str(CONFIG_DIR / "base.yaml"),
        str(CONFIG_DIR / f"{args.algo}.yaml"),
        *(str(Path(p).resolve()) for p in args.config),
    ]
    config = load_run_config(paths, overrides)
    check_env(config, ", ".join(paths))
    if args.checkpoint_every is not None:
        check_range("<command line>", "--checkpoint-every", args.checkpoint_every, Range(1, 10**12))
        rollout = _rollout_steps(config)
        updates = -(-args.checkpoint_every // rollout)  # checkpoints fall on rollout boundaries: round up
        config["train"]["checkpoint_every"] = updates
        print(
            f"carla-rl train: a checkpoint every {updates} update(s) = {updates * rollout} steps "
            f"(rollouts of {rollout} steps)",
            file=sys.stderr,
        )
    return config


def _rollout_steps(config: dict) -> int:
    """Env steps between two policy updates, over all envs: ``n_steps`` per env (the algorithm's default where
    the config sets none), or an off-policy algorithm's ``train_freq`` steps."""
    import inspect

    from carla_rl_agents.models import ALGORITHM_CLASSES
    from carla_rl_common.config import ConfigError

    params = inspect.signature(ALGORITHM_CLASSES[config["algo"]].__init__).parameters
    name = "n_steps" if "n_steps" in params else "train_freq"
    per_env = config["algo_kwargs"].get(name, params[name].default if name in params else 1)
    if isinstance(per_env, (tuple, list)):  # SB3's (n, "step") or (n, "episode")
        if per_env[1] != "step":
            raise ConfigError("<command line>", "--checkpoint-every", f"needs train_freq in steps, got {per_env}")
        per_env = per_env[0]
    return int(per_env) * int(config["train"]["num_envs"])


def _resumable(run_dir: Path, algo: str | None = None) -> dict:
    """The saved config of ``run_dir``, checked, and the run's newest complete checkpoint, checked too: both
    before any process starts (``algo``: the run must be of this algorithm). Says which step the run
    continues from."""
    from carla_rl_agents.checkpoints import (
        CHECKPOINT_DIR,
        SUFFIX,
        check_checkpoint,
        latest_checkpoint,
        list_checkpoints,
        read_run_config,
    )

    saved = run_dir / "config.yaml"
    config = read_run_config(run_dir, expected_algo=algo)  # validated as --config files are
    check_env(config, str(saved))
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        found = len(list_checkpoints(run_dir))
        raise FileNotFoundError(
            f"{run_dir}: no complete checkpoint to resume from (looked for {run_dir / CHECKPOINT_DIR}/step_*{SUFFIX}"
            + (f": {found} found, none complete)" if found else ": none)")
        )
    step = check_checkpoint(checkpoint, expected_algo=config["algo"])["num_timesteps"]
    total = config["train"]["total_timesteps"]
    print(f"carla-rl train: resuming {run_dir} from step {step} of {total} ({checkpoint.name})", file=sys.stderr)
    return config


def _train_inprocess(config: dict, run_dir: Path, resume: bool) -> int:
    from carla_rl_agents.training import Trainer
    from carla_rl_bringup.inprocess import training_vec_env

    trainer = Trainer.resume(run_dir, training_vec_env) if resume else Trainer(config, training_vec_env, run_dir)
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
    check_env(config, f"{args.checkpoint} (its config)")
    suite = resolve_suite(args.suite, config["sim"]["town"]).resolve()
    town = Path(config["sim"]["town"]).stem
    out = Path(args.out or EVALUATE_DIR / Path(args.checkpoint).stem) / f"{town}-{suite.stem}"
    if args.episodes is not None:  # the suite's first N episodes, kept beside the results they produced
        data = yaml.safe_load(suite.read_text())
        data["episodes"] = data["episodes"][: args.episodes]
        out.mkdir(parents=True, exist_ok=True)
        suite = out / suite.name
        suite.write_text(yaml.safe_dump(data, sort_keys=False))
    config["env"]["scenario"]["suite"] = str(suite)
    episodes = len(load_suite(suite)[1])
    videos = EvaluationVideos(out, config["env"], args.num_envs) if args.video else None
    if args.inprocess:
        from carla_rl_bringup.inprocess import inprocess_env_fns

        makers = inprocess_env_fns(config, args.num_envs, args.seed, split=True)
        env = DummyVecEnv([lambda i=i, make=make: with_video(videos, make(), i) for i, make in enumerate(makers)])
        result = evaluate_policy(load_policy(args.checkpoint, env), env, episodes, progress=True)
        write_results(result["summary"], result["records"], out)
    else:  # the stack's evaluator writes the results into `out`
        with recording(videos, ros_environment(args.network, args.domain_id, isolate=True, join=args.join)):
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
            ros_environment(args.network, args.domain_id, isolate=True, join=args.join),
            record=args.record,
        )
    if code in (130, 143):  # stopped by the user: the launcher said so
        raise StackStopped(code)
    if code != 0:
        raise ChildProcessError(f"the evaluate stack failed (exit code {code}); its log is above")
    data = json.loads((out / "results.json").read_text())
    return {"summary": data["summary"], "records": data["episodes"]}


def demo(args: argparse.Namespace) -> int:
    """``make demo``: the stack end to end in about a minute on 2 cores, through the user's own commands.

    1. ``carla-rl train``: PPO for a couple of thousand steps over ROS 2 (``config/demo.yaml``): the progress
       bar, TensorBoard logs and a learning curve (far too few steps to learn to drive);
    2. ``carla-rl evaluate --video``: the shipped pretrained model drives ``--episodes`` short episodes of the
       ``one_turn`` suite over ROS 2 (simulator, env node and agent as processes), each recorded as an H.264 MP4
       and scored in ``results.md``;
    3. where to look: the learning curve, the TensorBoard command, the MP4, the browser view's command.
    """
    import os
    import time

    from carla_rl_agents.checkpoints import latest_checkpoint
    from carla_rl_bringup.cli import main  # each step is the user's own command
    from carla_rl_common.paths import REPO_ROOT
    from carla_rl_env.scenarios import resolve_suite

    if args.episodes < 1:
        print("carla-rl demo: --episodes must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    started = time.monotonic()
    pretrained = REPO_ROOT / "models" / "ppo_rltown01.ckpt"
    run_dir = Path(args.run_dir)
    if latest_checkpoint(run_dir) is not None:  # a finished demo run: start afresh, it is a minute of work
        shutil.rmtree(run_dir)
    ros = ["--domain-id", str(args.domain_id)] if args.domain_id is not None else []
    ros += ["--join"] if args.join else []
    ros += ["--network"] if args.network else []
    print(f"carla-rl demo: 1/2 training PPO briefly in {run_dir}, over ROS 2", file=sys.stderr)
    train = ["train", "--algo", "ppo", "--config", str(CONFIG_DIR / "demo.yaml"), "--run-dir", str(run_dir)]
    code = main([*train, "--total-steps", "2048", *ros])  # 4 rollouts: a curve, in 20 s at 100 steps/s
    if code != 0 or latest_checkpoint(run_dir) is None:
        return code or 1

    # the shortest routes of one_turn first (164, 178 and 265 steps: a junction turn each, 8-13 s of driving)
    shortest = ("one_turn-07", "one_turn-10", "one_turn-11")
    suite = yaml.safe_load(resolve_suite("one_turn", "RLTown01").read_text())
    suite["episodes"] = sorted(
        suite["episodes"], key=lambda e: shortest.index(e["id"]) if e["id"] in shortest else len(shortest)
    )[: args.episodes]
    suite_file = run_dir / "one_turn_demo.yaml"
    suite_file.write_text(yaml.safe_dump(suite, sort_keys=False))
    print(
        f"carla-rl demo: 2/2 the pretrained model {pretrained.name} drives {len(suite['episodes'])} one_turn "
        "episode(s) over ROS 2, recorded as videos",
        file=sys.stderr,
    )
    out = run_dir / "pretrained"
    code = main(
        ["evaluate", "--checkpoint", str(pretrained), "--suite", str(suite_file), "--video", "--out", str(out)] + ros
    )
    if code != 0:
        return code
    results = out / f"RLTown01-{suite_file.stem}"
    videos = sorted(results.glob("env_*_episode_*.mp4"))

    def here(path: Path) -> str:  # as the user would type it, from where they ran the demo
        return os.path.relpath(path)

    rows = [
        ("learning curve (1/2)", here(run_dir / "learning_curve.png")),
        ("TensorBoard", f"{here(Path(sys.executable).parent / 'tensorboard')} --logdir {here(run_dir / 'tb')}"),
        ("a pretrained episode (2/2)", here(videos[0]) if videos else f"none recorded (see {here(results)})"),
        ("its scores", here(results / "results.md")),
        (
            "the browser view, live",
            f"{here(Path(sys.executable).parent / 'carla-rl')} up drive --agent checkpoint --checkpoint "
            f"{here(pretrained)} --config {here(pretrained.with_suffix('.config.yaml'))} --viz web --episodes 20"
            "  (then open http://127.0.0.1:8080/)",
        ),
    ]
    print(f"\ncarla-rl demo: done in {time.monotonic() - started:.0f} s. Where to look:")
    for label, where in rows:
        print(f"  {label:<28}{where}")
    return 0
