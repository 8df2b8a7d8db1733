"""Launch files and stack descriptions, checked without launch_ros (which PyPI does not have): every node a
stack can produce names an executable our packages install (or a known external one), every file it refers
to exists, every launch argument is documented; and `carla-rl up` runs the embedded drive stack."""

from __future__ import annotations

import ast
import importlib.util
import itertools
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

from carla_rl_bringup.launcher import NodeSpec
from carla_rl_bringup.stacks import LAUNCH_ARGUMENTS, expand, load_stacks
from carla_rl_common.config import ConfigError
from carla_rl_common.objects import load_objects

REPO = Path(__file__).resolve().parents[1]
EXTERNAL = {"carla_ros_bridge", "carla_spawn_objects", "rviz2"}  # installed beside us with a real ROS / bridge


def console_scripts(package: str) -> set[str]:
    tree = ast.parse((REPO / "src" / package / "setup.py").read_text())
    scripts = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and " = " in node.value:
            scripts.add(node.value.split(" = ")[0].strip())
    return scripts


CHECKPOINT = REPO / "models" / "ppo_rltown01.ckpt"  # its config lies beside it
NEEDS = {"evaluate": {"checkpoint": str(CHECKPOINT), "suite": "straight"}, "replay": {"bag": "/nonexistent/bag"}}


def all_expansions():
    stacks = load_stacks()
    for stack, sim, viz, n, record in itertools.product(
        stacks["stacks"], stacks["simulators"], stacks["visualisers"], (1, 3), ("", "/tmp/bag")
    ):
        args = {"stack": stack, "sim": sim, "viz": viz, "num_envs": str(n), "record": record, **NEEDS.get(stack, {})}
        yield (stack, sim, viz, n, record), expand(stacks, args)


def test_every_node_names_an_installed_executable():
    for combo, nodes in all_expansions():
        for node in nodes:
            if node.package in EXTERNAL:
                continue
            assert node.executable in console_scripts(node.package), f"{combo}: {node.package}/{node.executable}"
            assert importlib.util.find_spec(node.module) is not None, f"{combo}: module {node.module}"


def test_per_env_nodes_get_namespaces_and_their_own_seeds_and_ports():
    nodes = expand(load_stacks(), {"stack": "drive", "sim": "carla", "num_envs": "3", "port": "2000", "seed": "5"})
    bridges = [n for n in nodes if n.package == "carla_ros_bridge"]
    assert [b.namespace for b in bridges] == ["env_0", "env_1", "env_2"]
    assert [b.parameters["port"] for b in bridges] == [2000, 2002, 2004]
    envs = [n for n in nodes if n.package == "carla_rl_env"]
    assert [e.parameters["seed"] for e in envs] == [5, 6, 7] and [e.parameters["env_index"] for e in envs] == [0, 1, 2]
    agent = next(n for n in nodes if n.main)
    assert agent.parameters["namespaces"] == ["env_0", "env_1", "env_2"]


def test_evaluate_stack_runs_the_suite_with_the_checkpoints_config():
    """The env nodes read the config saved in the checkpoint, then ``config``, then the suite (resolved to the
    town's file); before, a ``config`` replaced the checkpoint's."""
    from carla_rl_agents.checkpoints import read_meta

    extra = REPO / "config" / "demo.yaml"
    nodes = expand(load_stacks(), {"stack": "evaluate", "num_envs": "2", "config": str(extra), **NEEDS["evaluate"]})
    envs = [n for n in nodes if n.package == "carla_rl_env"]
    assert envs[0].parameters["config"] == envs[1].parameters["config"] and "suite" not in envs[0].parameters
    trained, given, suite = envs[0].parameters["config"]
    assert yaml.safe_load(Path(trained).read_text()) == read_meta(CHECKPOINT)["config"] and given == str(extra)
    assert yaml.safe_load(Path(suite).read_text()) == {
        "env": {"scenario": {"suite": str(REPO / "config" / "suites" / "RLTown01" / "straight.yaml")}}
    }
    evaluator = next(n for n in nodes if n.main)
    assert evaluator.executable == "eval_node" and evaluator.parameters["episodes"] == 25  # the committed suite
    with pytest.raises(ConfigError, match="checkpoint:=PATH and suite:=NAME"):
        expand(load_stacks(), {"stack": "evaluate", "suite": "straight"})
    with pytest.raises(ConfigError, match="no suite 'nowhere'"):
        expand(load_stacks(), {"stack": "evaluate", "checkpoint": str(CHECKPOINT), "suite": "nowhere"})


def test_replay_stack_starts_no_simulator_and_needs_a_bag():
    nodes = expand(load_stacks(), {"stack": "replay", "sim": "carla", "bag": "run.bag", "rate": "0"})
    assert [n.executable for n in nodes] == ["player"] and nodes[0].arguments == ["run.bag", "--rate", "0"]
    with pytest.raises(ConfigError, match="bag:=PATH"):
        expand(load_stacks(), {"stack": "replay"})


def test_record_starts_a_recorder_before_the_main_node_for_every_env():
    """Before the trainer (which starts the episodes), ready once it hears every env's status and steps; first in
    a stack without a main node of ours."""
    nodes = expand(load_stacks(), {"stack": "train", "num_envs": "2", "record": "/data/run.bag"})
    names = [n.executable for n in nodes]
    recorder = nodes[names.index("recorder")]
    assert nodes[names.index("recorder") + 1].main and not recorder.required
    assert {"sim_node", "env_node"} <= set(names[: names.index("recorder")])
    assert recorder.arguments == [
        "--output",
        "/data/run.bag",
        "--namespace",
        "env_0,env_1",
        "--wait-for",
        "carla/status",
        "carla_rl/step",
    ]
    replay = expand(load_stacks(), {"stack": "replay", "bag": "in.bag", "record": "/data/out.bag"})
    assert replay[0].executable == "recorder" and "--wait-for" not in replay[0].arguments
    assert all(n.executable != "recorder" for n in expand(load_stacks(), {"stack": "train"}))


def test_referenced_files_exist_and_validate():
    for _, nodes in all_expansions():
        for node in nodes:
            for value in (*node.arguments, *node.parameters.values()):
                if isinstance(value, str) and value.startswith(str(REPO)):
                    assert Path(value).is_file(), value
    load_objects(LAUNCH_ARGUMENTS["objects"][0])


def test_launch_file_declares_the_documented_arguments():
    source = (REPO / "launch" / "carla_rl.launch.py").read_text()
    tree = ast.parse(source)
    names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in names
    assert "LAUNCH_ARGUMENTS" in source and "DeclareLaunchArgument" in source
    readme = (REPO / "README.md").read_text()
    for name in LAUNCH_ARGUMENTS:
        assert f"`{name}`" in readme, f"launch argument {name} is not documented in the README"


def _run_launch_file(monkeypatch, values: dict[str, str], created: list | None = None) -> tuple[list, list[dict]]:
    """Run launch/carla_rl.launch.py against stand-ins for launch and launch_ros (not on PyPI): the declared
    arguments, and the kwargs of every launch_ros Node it creates for ``values`` (the rest at their defaults),
    appended to ``created`` as they are."""
    declared, created = [], [] if created is None else created

    class Declare:
        def __init__(self, name, default_value, description):
            declared.append((name, default_value, description))

    class Opaque:
        def __init__(self, function):
            self.function = function

    class Configuration:
        def __init__(self, name):
            self.name = name

        def perform(self, context):
            return context[self.name]

    stubs = {
        "launch": types.SimpleNamespace(LaunchDescription=list),
        "launch.actions": types.SimpleNamespace(DeclareLaunchArgument=Declare, OpaqueFunction=Opaque),
        "launch.substitutions": types.SimpleNamespace(LaunchConfiguration=Configuration),
        "launch_ros": types.SimpleNamespace(),
        "launch_ros.actions": types.SimpleNamespace(Node=lambda **kwargs: created.append(kwargs)),
    }
    for name, module in stubs.items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("carla_rl_launch", REPO / "launch" / "carla_rl.launch.py")
    launch_file = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launch_file)
    *_, opaque = launch_file.generate_launch_description()
    opaque.function({name: default for name, (default, _) in LAUNCH_ARGUMENTS.items()} | values)
    return declared, created


def test_launch_file_starts_the_stack_nodes_with_their_envs_clocks(monkeypatch):
    declared, created = _run_launch_file(monkeypatch, {"num_envs": "2"})
    assert declared == [(name, default, text) for name, (default, text) in LAUNCH_ARGUMENTS.items()]
    nodes = expand(load_stacks(), {"num_envs": "2"})
    assert [(k["package"], k["executable"], k["namespace"]) for k in created] == [
        (n.package, n.executable, n.namespace or None) for n in nodes
    ]
    env_1 = next(k for k in created if k["namespace"] == "env_1")
    assert env_1["remappings"] == [("/clock", "/env_1/clock")] and env_1["output"] == "screen"
    agent = next(k for k, n in zip(created, nodes) if n.main)  # in env_0's namespace, on its clock
    assert agent["remappings"] == [("/clock", "/env_0/clock")]
    assert agent["parameters"] == [next(n for n in nodes if n.main).parameters]
    _, single = _run_launch_file(monkeypatch, {})
    assert {k["namespace"] for k in single} == {None} and all(k["remappings"] == [] for k in single)
    _, carla = _run_launch_file(monkeypatch, {"num_envs": "2", "sim": "carla"})
    bridge = next(k for k in carla if k["executable"] == "bridge" and k["namespace"] == "env_1")
    assert bridge["remappings"][0] == ("/clock", "/env_1/clock")
    assert ("/carla/status", "/env_1/carla/status") in bridge["remappings"]  # the bridge's names are absolute


def test_launch_remaps_match_the_launchers():
    """ros2 launch and `carla-rl up` give a namespaced node the same remaps (its env's /clock, and on real CARLA
    the bridge's absolute names)."""
    for sim in ("embedded", "carla"):
        for node in expand(load_stacks(), {"num_envs": "3", "sim": sim}):
            spec = NodeSpec(node.name, node.module or "", node.namespace, remaps=node.remaps)
            command = spec.command(Path("params.yaml"))
            launcher = [
                command[i + 1] for i, arg in enumerate(command) if arg == "-r" and "__ns:=" not in command[i + 1]
            ]
            assert [f"{a}:={b}" for a, b in node.launch_ros_kwargs()["remappings"]] == launcher


def test_launch_file_checks_the_configs_before_any_node(monkeypatch, tmp_path):
    """ros2 launch checks what ``carla-rl up`` checks (expand's check): a bad value is one ConfigError, raised
    before a launch_ros Node is created; before, the env nodes started and each died on it."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("env:\n  reward:\n    terms:\n      speeding: 1.0\n")
    created: list[dict] = []
    with pytest.raises(ConfigError, match="env.reward.terms.speeding: unknown reward term") as error:
        _run_launch_file(monkeypatch, {"config": str(bad)}, created)
    assert str(bad) in str(error.value) and created == []
    _run_launch_file(monkeypatch, {}, created)
    assert created  # the same launch file with a good config creates its nodes


def test_bad_stack_names_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown sim .*known: carla, embedded"):
        expand(load_stacks(), {"sim": "gazebo"})
    with pytest.raises(ConfigError, match="num_envs"):
        expand(load_stacks(), {"num_envs": "0"})


@pytest.mark.slow
def test_carla_rl_up_drive_two_envs(tmp_path):
    short = tmp_path / "short.yaml"
    short.write_text("env:\n  episode:\n    max_episode_steps: 50\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "carla_rl_bringup.cli",
            "up",
            "drive",
            "--num-envs",
            "2",
            "--episodes",
            "2",
            "--config",
            str(short),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(records) >= 2


@pytest.mark.slow
def test_carla_rl_up_train_two_envs_then_replay_its_bag(tmp_path):
    """The train stack from launch arguments alone (2 envs, a tiny PPO budget) records a bag; the replay
    stack plays it back with no simulator."""
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text("train:\n  total_timesteps: 128\nalgo_kwargs:\n  n_steps: 32\n  batch_size: 32\n  n_epochs: 1\n")
    run_dir, bag = tmp_path / "run", tmp_path / "train.bag"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "carla_rl_bringup.cli",
            "up",
            "train",
            "--num-envs",
            "2",
            "--config",
            str(tiny),
            "--run-dir",
            str(run_dir),
            "--record",
            str(bag),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list((run_dir / "checkpoints").glob("*.ckpt")), "the train stack wrote no checkpoint"
    from carla_rl_bags import bag_info

    topics = {t["name"]: t["count"] for t in bag_info(bag)["topics"]}
    assert topics["/env_0/carla_rl/step"] > 0 and topics["/env_1/carla_rl/step"] > 0, topics
    proc = subprocess.run(
        [sys.executable, "-m", "carla_rl_bringup.cli", "up", "replay", "--bag", str(bag), "--rate", "0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
