"""The workspace's layering and its package.xml files, read from the code (``ast``, no import is executed).

Layers, lowest first: the interface packages (carla_msgs, carla_rl_msgs, tf2_msgs) <- carla_rl_common <-
{carla_rl_sim, carla_rl_env} <- {carla_rl_agents, carla_rl_bags, carla_rl_viz} <- carla_rl_bringup. A package
imports only from lower layers: never from a higher one, never from a peer of its own layer (the env node runs
against real CARLA without the embedded simulator; the simulator knows nothing of RL). Every import counts,
at module level or inside a function (our lazy imports are dependencies all the same).

Each package.xml declares every ROS or workspace package its code imports (``ros2 run`` / rosdep install what
is declared, not what is imported), and no carla_rl_* package it never imports. Pure PyPI libraries (numpy,
torch, ...) are requirements.txt's, not package.xml's.
"""

from __future__ import annotations

import ast
import os
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"

LAYERS: dict[str, int] = {
    "carla_msgs": 0,
    "carla_rl_msgs": 0,
    "tf2_msgs": 0,
    "carla_rl_common": 1,
    "carla_rl_sim": 2,
    "carla_rl_env": 2,
    "carla_rl_agents": 3,
    "carla_rl_bags": 3,
    "carla_rl_viz": 3,
    "carla_rl_bringup": 4,
}
LAYER_NAMES = ["interfaces", "common", "sim/env", "agents/bags/viz", "bringup"]

# ROS packages imported by some ROS code but not installed from PyPI here (a real ROS install has them)
ROS_ELSEWHERE = {"launch", "launch_ros", "tf2_ros", "rosbag2_py", "cv_bridge", "ros2cli", "rosidl_runtime_py"}
ROS_SUFFIXES = ("_msgs", "_srvs", "_interfaces")
DEPEND_TAGS = ("depend", "exec_depend")  # what a package needs at run time (package.xml format 3)


@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    module: str  # the absolute module name, e.g. carla_rl_sim.render

    @property
    def top(self) -> str:
        return self.module.split(".")[0]

    def __str__(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}: imports {self.module}"


def python_packages() -> list[str]:
    """The ament_python packages of src/ (a setup.py beside package.xml), by name."""
    return sorted(p.parent.name for p in SRC.glob("*/setup.py") if (p.parent / "package.xml").is_file())


def imports_of(path: Path) -> list[Import]:
    """Every absolute import in ``path``, module-level or nested, plus ``import_module("literal")`` calls."""
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [Import(path, node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(Import(path, node.lineno, node.module))
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append(Import(path, node.lineno, node.args[0].value))
    return found


@cache
def package_imports(package: str) -> tuple[Import, ...]:
    """The imports of the package's own Python modules (setup.py is the build's, not the package's)."""
    files = sorted((SRC / package / package).rglob("*.py"))
    return tuple(i for f in files for i in imports_of(f))


def declared(package: str) -> set[str]:
    """package.xml's run-time dependencies (<depend> and <exec_depend>)."""
    root = ET.parse(SRC / package / "package.xml").getroot()
    return {e.text.strip() for tag in DEPEND_TAGS for e in root.iter(tag) if e.text}


@cache
def ros_packages() -> frozenset[str]:
    """Names that are ROS packages: ours (src/*/package.xml), every ament-indexed one of this environment
    (the venv prefix and AMENT_PREFIX_PATH), and ROS_ELSEWHERE."""
    names = {p.parent.name for p in SRC.glob("*/package.xml")} | ROS_ELSEWHERE
    for prefix in {sys.prefix, *filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep))}:
        index = Path(prefix) / "share" / "ament_index" / "resource_index" / "packages"
        if index.is_dir():
            names |= {p.name for p in index.iterdir()}
    return frozenset(names)


def is_ros_package(module: str) -> bool:
    return module in ros_packages() or module.endswith(ROS_SUFFIXES)


def layer_rule(package: str, target: str) -> str:
    """Why ``package`` may not import ``target`` ('' when it may)."""
    if target == package or target not in LAYERS or LAYERS[target] < LAYERS[package]:
        return ""
    if LAYERS[target] == LAYERS[package]:
        return f"{package} and {target} are peers (layer {LAYER_NAMES[LAYERS[package]]}) and never import each other"
    return (
        f"{package} (layer {LAYER_NAMES[LAYERS[package]]}) must not import the higher layer {target} "
        f"({LAYER_NAMES[LAYERS[target]]})"
    )


def test_every_package_has_a_layer():
    assert sorted(p.parent.name for p in SRC.glob("*/package.xml")) == sorted(LAYERS)


@pytest.mark.parametrize("package", python_packages())
def test_imports_respect_the_layers(package):
    wrong = [f"{i}: {rule}" for i in package_imports(package) if (rule := layer_rule(package, i.top))]
    assert not wrong, f"{package} imports across the layering:\n  " + "\n  ".join(wrong)


@pytest.mark.parametrize("package", python_packages())
def test_package_xml_declares_what_the_code_imports(package):
    deps = declared(package)  # an import across the layers is test_imports_respect_the_layers's, not a missing dep
    missing = [
        f"{i}: add <exec_depend>{i.top}</exec_depend>"
        for i in package_imports(package)
        if i.top != package and is_ros_package(i.top) and i.top not in deps and not layer_rule(package, i.top)
    ]
    assert not missing, f"src/{package}/package.xml lacks packages its code imports:\n  " + "\n  ".join(missing)


@pytest.mark.parametrize("package", python_packages())
def test_package_xml_declares_no_unused_workspace_package(package):
    used = {i.top for i in package_imports(package)}
    stale = sorted(d for d in declared(package) if d in LAYERS and d != package and d not in used)
    assert not stale, (
        f"src/{package}/package.xml declares {', '.join(stale)}, which its code never imports: remove the <exec_depend>"
    )


@pytest.mark.parametrize("package", sorted(set(LAYERS) - set(python_packages())))
def test_interface_packages_declare_the_packages_of_their_field_types(package):
    fields = [
        (f, n, line.split()[0])
        for f in sorted((SRC / package).glob("*/*.[ms][sr][gv]"))
        for n, line in enumerate(f.read_text().splitlines(), 1)
        if line.split("#")[0].strip()
    ]
    missing = [
        f"{f.relative_to(REPO)}:{n}: {t}"
        for f, n, t in fields
        if "/" in t and t.split("/")[0] not in {package, *declared(package)}
    ]
    assert not missing, f"src/{package}/package.xml lacks <depend> on the packages of:\n  " + "\n  ".join(missing)


def test_the_checks_see_every_kind_of_import(tmp_path):
    """Module-level, nested (lazy), from-imports and import_module literals all count; relative ones stay inside."""
    source = tmp_path / "mod.py"
    source.write_text(
        "import rclpy.node\nfrom . import sibling\n\ndef f():\n    from carla_rl_sim.core import X\n"
        "    importlib.import_module('carla_rl_env.task')\n"
    )
    assert [(i.line, i.module) for i in imports_of(source)] == [
        (1, "rclpy.node"),
        (5, "carla_rl_sim.core"),
        (6, "carla_rl_env.task"),
    ]
    assert layer_rule("carla_rl_env", "carla_rl_sim") and layer_rule("carla_rl_common", "carla_rl_env")
    assert not layer_rule("carla_rl_bringup", "carla_rl_agents") and not layer_rule("carla_rl_sim", "carla_msgs")
    assert is_ros_package("rclpy") and is_ros_package("visualization_msgs") and not is_ros_package("numpy")
