"""Stack descriptions (config/stacks.yaml) expanded into the nodes to start, for `ros2 launch` and `carla-rl up`.

Both the launch file and our runner call :func:`expand`, so a stack means the same processes, parameters
and namespaces whichever starts it.
"""

from __future__ import annotations

import atexit
import copy
import functools
import hashlib
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from carla_rl_agents.settings import RUN_BOUNDS
from carla_rl_common import bridge
from carla_rl_common.bridge import bridge_names, env_namespace, namespace_remaps, namespaced
from carla_rl_common.config import ConfigError, Range, check_range, load_yaml, short
from carla_rl_common.objects import load_objects
from carla_rl_common.paths import CONFIG_DIR, REPO_ROOT
from carla_rl_env.settings import SIM_BOUNDS

STACKS_FILE = CONFIG_DIR / "stacks.yaml"
EVALUATED = ("drive", "evaluate")  # the stacks whose env nodes a checkpoint drives: they get its saved config

# name -> (default, description): the launch file declares exactly these, the README documents them.
LAUNCH_ARGUMENTS: dict[str, tuple[str, str]] = {
    "stack": ("drive", "which stack of config/stacks.yaml to start: drive, train, evaluate or replay"),
    "sim": ("embedded", "embedded (our simulator) or carla (CARLA server + carla_ros_bridge)"),
    "num_envs": ("1", "simulator + env node pairs, in namespaces env_<i> when more than one"),
    "town": ("RLTown01", "a shipped town, a .xodr path, or a CARLA town name with sim:=carla"),
    "config": ("", "config YAML files, comma-separated, after config/base.yaml and config/<algo>.yaml"),
    "algo": ("ppo", "the algorithm file of the train stack: a2c, acktr, ppo or her (config/<algo>.yaml)"),
    "run_dir": ("runs/latest", "where the train stack writes checkpoints, logs and the learning curve"),
    "resume": ("false", "true: continue run_dir from its newest complete checkpoint"),
    "objects": (str(CONFIG_DIR / "objects.json"), "carla_spawn_objects file of the ego vehicle and its sensors"),
    "fixed_delta_seconds": (
        "0.05",
        "simulation step (s) of every simulator: sim.fixed_delta_seconds of the run config",
    ),
    "sim_seed": ("0", "added to each simulator's seed (sim.seed of the run config): env i's gets seed + sim_seed + i"),
    "traffic": ("0", "traffic vehicles per env: the embedded simulator's own, or CARLA's Traffic Manager (sim:=carla)"),
    "host": ("127.0.0.1", "CARLA server host (sim:=carla)"),
    "port": ("2000", "CARLA server port of env 0; env i uses port + 2 i (sim:=carla)"),
    "tm_port": ("8000", "Traffic Manager port of env 0; env i uses tm_port + i (sim:=carla)"),
    "agent": ("random", "random, or checkpoint (with checkpoint:=PATH)"),
    "checkpoint": ("", "a trained model: for agent:=checkpoint, and the one the evaluate stack scores"),
    "episodes": ("2", "episodes the drive stack runs before it ends (evaluate runs its whole suite)"),
    "suite": (
        "",
        "scenario suite of the env nodes: straight, one_turn, navigation, navigation_dynamic or a "
        "suite file (needed by the evaluate stack)",
    ),
    "out_dir": ("runs/evaluation", "where the evaluate stack writes results.md and results.json"),
    "bag": ("", "the rosbag2 bag the replay stack plays"),
    "rate": ("1.0", "replay speed factor; 0 = as fast as possible"),
    "record": ("", "a bag directory: record the stack's topics (every env) there while it runs"),
    "seed": ("0", "seed of env 0 (env i gets seed + i)"),
    "viz": (
        "none",
        "none, rviz (config/carla_rl.rviz), foxglove (ws://127.0.0.1:8765) or web (http://127.0.0.1:8080/)",
    ),
}

_REF = re.compile(r"\$\{([a-z_]+)\}")


@dataclass
class StackNode:
    """One process of a stack, fully resolved."""

    name: str
    package: str
    executable: str
    module: str | None  # what `carla-rl up` runs with python -m; None: only ros2 launch can start it
    namespace: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    arguments: list[str] = field(default_factory=list)
    required: bool = True
    main: bool = False
    ready_text: str = ""  # the later nodes start once this one logged it (the recorder: it hears the stack)
    remaps: list[tuple[str, str]] = field(default_factory=list)  # beyond the env's /clock: see bridge_remaps

    def launch_ros_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``launch_ros.actions.Node`` that start this node as ``carla-rl up`` does.

        The launch file calls only this (launch_ros is not on PyPI, so the rest is tested here): the same
        namespace, parameters and arguments, and in a namespace the env's own ``/clock`` (the launcher's remap)
        and the node's :attr:`remaps`.
        """
        rules = namespace_remaps(self.namespace)[1:]  # ["-r", "from:=to", ...] after --ros-args
        return {
            "package": self.package,
            "executable": self.executable,
            "name": self.name,
            "namespace": self.namespace or None,
            "parameters": [self.parameters],
            "arguments": self.arguments,
            "output": "screen",
            "remappings": [tuple(rule.split(":=", 1)) for rule in rules[1::2]] + self.remaps,
        }


def load_stacks(path: Path = STACKS_FILE) -> dict[str, Any]:
    data = load_yaml(path)
    for key in ("simulators", "stacks", "visualisers", "recorder"):
        if not isinstance(data.get(key), dict) or not data[key]:
            raise ConfigError(str(path), key, "expected a non-empty mapping")
    return data


def expand(
    stacks: dict[str, Any], args: dict[str, str], source: str = str(STACKS_FILE), *, check: bool = False
) -> list[StackNode]:
    """The nodes of ``args['stack']`` on ``args['sim']`` with ``args['viz']`` for ``args['num_envs']`` envs.

    With a ``checkpoint``, the env nodes of the drive and evaluate stacks read its saved config first (the env
    it was trained on: its observation), then the ``config`` files; a ``suite`` is resolved to the town's suite
    file here. ``check``: the configs every node will read and the checkpoint are checked first, as
    ``carla-rl up`` checks them (:func:`carla_rl_bringup.commands.rl.check_stack_config`), so a bad value is
    one error before any node starts; the commands that checked their own config already leave it off.
    """
    args = {name: str(args.get(name, default)) for name, (default, _) in LAUNCH_ARGUMENTS.items()}
    for key, table in (("stack", "stacks"), ("sim", "simulators"), ("viz", "visualisers")):
        if args[key] not in stacks[table]:
            raise ConfigError(
                source, f"{table}.{args[key]}", f"unknown {key} (known: {', '.join(sorted(stacks[table]))})"
            )
    numbers = _launch_numbers(args)
    num_envs, seed, port, tm_port = numbers["num_envs"], numbers["seed"], numbers["port"], numbers["tm_port"]
    sim_seed = numbers["sim_seed"]
    namespaces = [""] if num_envs == 1 else [env_namespace(i) for i in range(num_envs)]
    extra = [c for c in args["config"].split(",") if c]
    if args["stack"] == "drive" and args["agent"] == "checkpoint" and not args["checkpoint"]:
        raise ConfigError("<launch arguments>", "checkpoint", "agent:=checkpoint needs checkpoint:=PATH")
    suite = _suite_file(args)
    if args["stack"] == "evaluate" and not (args["checkpoint"] and suite):
        raise ConfigError(
            "<launch arguments>", "checkpoint/suite", "the evaluate stack needs checkpoint:=PATH and suite:=NAME"
        )
    # the suite as `carla-rl drive --suite` gives it, in the env config (checked against the world the env
    # node is given, where its `suite` parameter would be checked against its config's town)
    last = [_scratch_yaml("suite", {"env": {"scenario": {"suite": suite}}})] if suite else []
    # a trained policy needs the env (observations) it was trained on: its saved config, then the given files
    trained = [_checkpoint_config(args["checkpoint"])] if args["checkpoint"] and args["stack"] in EVALUATED else []
    env_config = [*trained, *extra, *last]
    resume = args["resume"].lower() in ("1", "true", "yes")
    run_config = (  # a resumed run keeps its own config
        [str(Path(args["run_dir"]) / "config.yaml")]
        if resume
        else [str(CONFIG_DIR / "base.yaml"), str(CONFIG_DIR / f"{args['algo']}.yaml"), *extra, *last]
    )
    values: dict[str, Any] = {
        **args,
        "num_envs": num_envs,
        "seed": seed,
        "sim_seed": sim_seed,
        "fixed_delta_seconds": numbers["fixed_delta_seconds"],
        "port": port,
        "tm_port": tm_port,
        "namespaces": namespaces,
        "namespaces_csv": ",".join(namespaces),
        "episodes": numbers["episodes"],
        "traffic": numbers["traffic"],
        "config_list": env_config,
        "run_config_list": run_config,
        "resume": resume,
    }
    if args["stack"] == "evaluate":  # the whole suite
        from carla_rl_env.scenarios import load_suite

        values["episodes"] = len(load_suite(suite)[1])
    if args["stack"] == "replay" and not args["bag"]:
        raise ConfigError("<launch arguments>", "bag", "the replay stack needs bag:=PATH")
    if check:
        _check(args, env_config)
    offline = args["stack"] in stacks.get("offline_stacks", [])
    descriptions = ([] if offline else stacks["simulators"][args["sim"]]) + stacks["stacks"][args["stack"]]
    if args["record"]:
        recorder = dict(stacks["recorder"])
        main = next((i for i, d in enumerate(descriptions) if d.get("main")), None)
        if offline or main is None:  # nothing of ours starts episodes: first, so it misses nothing
            descriptions.insert(0, recorder)
        else:  # just before the main node (which starts the episodes), ready once it hears the per-tick topics
            recorder["arguments"] = [*recorder.get("arguments", []), "--wait-for", *recorder.get("wait_for", [])]
            descriptions.insert(main, recorder)
    descriptions += stacks["visualisers"][args["viz"]]
    nodes: list[StackNode] = []
    for i, item in enumerate(descriptions):
        where = f"{source}: node {item.get('name', i)}"
        for index in range(num_envs) if item.get("per_env") else [None]:
            local = dict(values)
            if index is not None:
                local.update(
                    index=index,
                    seed_i=seed + index,
                    sim_seed_i=seed + sim_seed + index,
                    port_i=port + 2 * index,
                    tm_port_i=tm_port + index,
                )
            namespace = namespaces[index] if index is not None else namespaces[0]
            nodes.append(
                StackNode(
                    name=item["name"],
                    package=item["package"],
                    executable=item["executable"],
                    module=item.get("module"),
                    namespace=namespace,
                    parameters=_substitute(copy.deepcopy(item.get("parameters", {})), local, where),
                    arguments=_arguments(item.get("arguments", []), local, where),
                    required=bool(item.get("required", True)),
                    main=bool(item.get("main", False)),
                    ready_text=str(item.get("ready_text", "")),
                    remaps=bridge_remaps(namespace, args["objects"]) if item.get("bridge_remaps") else [],
                )
            )
    return nodes


_PORT = Range(1, 65535)
# the numeric launch arguments: their type and range (as the run config's keys they carry)
LAUNCH_NUMBERS: dict[str, tuple[type, Range]] = {
    "num_envs": (int, RUN_BOUNDS["train"]["num_envs"]),
    "seed": (int, RUN_BOUNDS["train"]["seed"]),
    "sim_seed": (int, SIM_BOUNDS["seed"]),
    "fixed_delta_seconds": (float, SIM_BOUNDS["fixed_delta_seconds"]),
    "traffic": (int, SIM_BOUNDS["traffic"]),
    "episodes": (int, Range(1, 10**6)),
    "port": (int, _PORT),
    "tm_port": (int, _PORT),
}


def _launch_numbers(args: dict[str, str]) -> dict[str, Any]:
    """The numeric launch arguments parsed and range-checked: a ConfigError naming the argument otherwise."""
    out: dict[str, Any] = {}
    for name, (kind, bound) in LAUNCH_NUMBERS.items():
        try:
            out[name] = kind(args[name])
        except ValueError:
            raise ConfigError(
                "<launch arguments>",
                name,
                f"expected {'an int' if kind is int else 'a number'}, got {short(args[name])}",
            ) from None
        check_range("<launch arguments>", name, out[name], bound)
    return out


def bridge_remaps(namespace: str, objects_file: str) -> list[tuple[str, str]]:
    """Remap rules that move every absolute name of a CARLA ROS bridge into ``namespace``.

    The bridge names its topics and services ``/carla/...`` (and ``/tf``), which a node namespace does not
    move, so N bridges on one ROS graph would share them. Each env's bridge and carla_spawn_objects get
    ``/carla/x:=/<namespace>/carla/x`` for every name :func:`carla_rl_common.bridge.bridge_names` lists for the
    vehicles and sensors of ``objects_file``: where our env node (relative names, in ``namespace``) looks.
    None in the root namespace (one env: the bridge's own names).
    """
    if not namespace:
        return []
    objects = load_objects(objects_file)
    if not objects.vehicles:
        raise ConfigError(objects_file, "objects", "spawns no vehicle: the env node needs an ego vehicle")
    world = [(s.type, s.id) for s in objects.sensors]
    names = {n for v in objects.vehicles for n in bridge_names(v.id, [(s.type, s.id) for s in v.sensors], world)}
    return [(name, namespaced(namespace, name[1:])) for name in sorted(names) if name.startswith("/")]


def _suite_file(args: dict[str, str]) -> str:
    """The ``suite`` launch argument as a file: a kind name (``one_turn``) of the town's committed suites, or a
    suite file, checked against the town's roads; "" for none (the env config's ``env.scenario``)."""
    from carla_rl_env.scenarios import resolve_suite  # maps: only when a suite is given

    if not args["suite"]:
        return ""
    try:
        return str(resolve_suite(args["suite"], args["town"]).resolve())
    except FileNotFoundError as exc:
        raise ConfigError("<launch arguments>", "suite", str(exc)) from None


def _checkpoint_config(checkpoint: str) -> str:
    """The run config saved in ``checkpoint`` (validated as it is read) as a file: the env nodes read files."""
    from carla_rl_agents.checkpoints import read_meta

    return _scratch_yaml(Path(checkpoint).stem, read_meta(checkpoint)["config"])


def _scratch_yaml(name: str, data: dict[str, Any]) -> str:
    """``data`` as a YAML file for the nodes, named after ``name`` and its content, in a private directory of
    this process (the stack's launcher: the nodes read it while it runs) that is removed when it exits."""
    text = yaml.safe_dump(data, sort_keys=False)
    path = _scratch_dir() / f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}.yaml"
    if not path.is_file():
        path.write_text(text)
    return str(path)


@functools.cache
def _scratch_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="carla-rl-stack-"))  # private (0700)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _check(args: dict[str, str], env_config: list[str]) -> None:
    """What ``carla-rl up`` checks, on the config files the env nodes will read; then a checkpoint's weights and
    spaces against the env those files give (what the agent node would otherwise find after the stack started)."""
    from carla_rl_bringup.commands.rl import check_stack_config  # the command's own check (lazy: rl imports us)

    check_stack_config({**args, "config": ",".join(env_config)})
    if args["checkpoint"] and args["stack"] in EVALUATED:
        from types import SimpleNamespace

        from carla_rl_agents.checkpoints import load_policy
        from carla_rl_env.settings import load_env_config
        from carla_rl_env.task import DrivingTask

        config = load_env_config(env_config)
        if args["objects"]:
            config["env"]["objects_file"] = str(Path(args["objects"]).resolve())
        task = DrivingTask(config["env"], None, bridge.DEFAULT_FIXED_DELTA_SECONDS, source=", ".join(env_config))
        spaces = SimpleNamespace(observation_space=task.observation_space, action_space=task.action_space)
        load_policy(args["checkpoint"], spaces, device="cpu")  # a CheckpointError naming the mismatch


def _arguments(items: list[str], values: dict[str, Any], where: str) -> list[str]:
    """A node's command-line arguments: ${name} substituted (a list value splices), config/ paths absolute."""
    out: list[str] = []
    for item in items:
        value = _substitute(item, values, where)
        for arg in value if isinstance(value, list) else [value]:
            arg = str(arg)
            out.append(str(REPO_ROOT / arg) if arg.startswith("config/") else arg)
    return out


def _substitute(value: Any, values: dict[str, Any], where: str) -> Any:
    """Replace ${name}: a whole-string reference keeps the value's type (lists, ints), else it is formatted."""
    if isinstance(value, dict):
        return {k: _substitute(v, values, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, values, where) for v in value]
    if not isinstance(value, str):
        return value
    whole = _REF.fullmatch(value)
    if whole:
        return _lookup(whole.group(1), values, where)
    return _REF.sub(lambda m: str(_lookup(m.group(1), values, where)), value)


def _lookup(name: str, values: dict[str, Any], where: str) -> Any:
    if name not in values:
        raise ConfigError(where, f"${{{name}}}", f"unknown reference (known: {', '.join(sorted(values))})")
    return values[name]
