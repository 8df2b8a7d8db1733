"""``sim:=carla`` with N envs: every name an env node uses is one its own bridge provides, and no two bridges
provide the same name.

The bridge's names are absolute (ros-bridge master e9063d9: carla_ros_bridge/src/carla_ros_bridge/bridge.py,
pseudo_actor.py ``get_topic_prefix`` = ``/carla/<prefix>``; only ``clock`` is relative), so each env's bridge
and carla_spawn_objects get remaps from the expanded stack. No bridge runs here (it needs a CARLA server):
what one provides is the contract's list (``carla_rl_common.bridge.bridge_names``) resolved by rcl itself,
in a node started with that bridge's command line. What an env node uses is read off a real ``EnvNode``
built with the command line ``carla-rl up`` gives it: its subscriptions, publishers, clients and services.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from carla_rl_bringup.launcher import NodeSpec
from carla_rl_bringup.stacks import LAUNCH_ARGUMENTS, StackNode, expand, load_stacks
from carla_rl_common.bridge import BridgeTopics, bridge_names, namespaced
from carla_rl_common.objects import load_objects

rclpy = pytest.importorskip("rclpy")
OBJECTS = Path(LAUNCH_ARGUMENTS["objects"][0])


def _ros_args(node: StackNode, tmp_path: Path) -> list[str]:
    """The ``--ros-args ...`` part of the command ``carla-rl up`` starts ``node`` with."""
    params = tmp_path / f"{node.name}-{node.namespace}.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": node.parameters}}))
    command = NodeSpec(node.name, node.module or "", node.namespace, node.parameters, remaps=node.remaps).command(
        params
    )
    return command[command.index("--ros-args") :]


def _provided(bridge: StackNode, objects_file: str, context, tmp_path: Path) -> set[str]:
    """Every name ``bridge`` provides, as rcl resolves it under the bridge's namespace and remaps."""
    from rclpy.node import Node

    objects = load_objects(objects_file)
    world = [(s.type, s.id) for s in objects.sensors]
    names = {n for v in objects.vehicles for n in bridge_names(v.id, [(s.type, s.id) for s in v.sensors], world)}
    t = BridgeTopics()
    services = {f"/{t.spawn_object}", f"/{t.destroy_object}", f"/{t.get_blueprints}"}
    node = Node("carla_ros_bridge", context=context, cli_args=_ros_args(bridge, tmp_path))
    try:
        return {node.resolve_service_name(n) if n in services else node.resolve_topic_name(n) for n in names}
    finally:
        node.destroy_node()


def _spawner_uses(spawner: StackNode, context, tmp_path: Path) -> set[str]:
    """carla_spawn_objects's names (carla_spawn_objects/src/carla_spawn_objects/carla_spawn_objects.py: the spawn
    and destroy clients, and /carla/actor_list with spawn_sensors_only), resolved under its command line."""
    from rclpy.node import Node

    t = BridgeTopics()
    node = Node("carla_spawn_objects", context=context, cli_args=_ros_args(spawner, tmp_path))
    try:
        return {node.resolve_service_name(f"/{n}") for n in (t.spawn_object, t.destroy_object)} | {
            node.resolve_topic_name(f"/{t.actor_list}")
        }
    finally:
        node.destroy_node()


def _env_node_uses(env: StackNode, context, tmp_path: Path) -> set[str]:
    """The names a real env node uses in its env's bridge space: not ROS's own (rosout, parameter events and
    services), not the env node's own ``carla_rl/*`` interface, not carla_waypoint_publisher's route topics."""
    from carla_rl_env.node import EnvNode

    node = EnvNode(context=context, cli_args=_ros_args(env, tmp_path))
    try:
        used = {s.topic_name for s in node.subscriptions} | {p.topic_name for p in node.publishers}
        used |= {c.service_name for c in node.clients} | {s.service_name for s in node.services}
        t = node.topics
        elsewhere = {namespaced(env.namespace, n) for n in (t.step, t.episode, t.reset, t.spec, t.waypoints, t.goal)}
        own = f"{node.get_fully_qualified_name()}/"
        return {n for n in used - elsewhere - {"/rosout", "/parameter_events"} if not n.startswith(own)}
    finally:
        node.destroy_node()


def _case(tmp_path: Path, needs_vehicles: bool) -> tuple[str, str]:
    """An objects file (the shipped one; with the markers pseudo sensor when the config needs other vehicles)
    and an env config that observes its first camera and names that objects file."""
    data = json.loads(OBJECTS.read_text())
    if needs_vehicles and not any(o["type"] == "sensor.pseudo.markers" for o in data["objects"]):
        data["objects"].append({"type": "sensor.pseudo.markers", "id": "markers"})
    objects = tmp_path / "objects.json"
    objects.write_text(json.dumps(data))
    vehicle = load_objects(objects).vehicles[0]
    camera = next(s.id for s in vehicle.sensors if s.type == "sensor.camera.rgb")
    env = {
        "role_name": vehicle.id,
        "objects_file": str(objects),
        "observation": {"cameras": [{"id": camera, "width": 84, "height": 84}], "lead_vehicle": needs_vehicles},
    }
    config = tmp_path / "env.yaml"
    config.write_text(yaml.safe_dump({"env": env}))
    return str(objects), str(config)


@pytest.mark.parametrize("needs_vehicles", [False, True], ids=["ego-only", "other-vehicles"])
def test_two_envs_on_real_carla_each_env_node_hears_only_its_own_bridge(tmp_path, needs_vehicles):
    objects, config = _case(tmp_path, needs_vehicles)
    nodes = expand(
        load_stacks(), {"stack": "drive", "sim": "carla", "num_envs": "2", "objects": objects, "config": config}
    )
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        provided = {}
        for i, ns in enumerate(("env_0", "env_1")):
            mine = {n.package: n for n in nodes if n.namespace == ns}
            provided[ns] = _provided(mine["carla_ros_bridge"], objects, context, tmp_path)
            env_uses = _env_node_uses(mine["carla_rl_env"], context, tmp_path)
            t = BridgeTopics(load_objects(objects).vehicles[0].id)
            expected = {namespaced(ns, n) for n in (t.clock, t.status, t.world_info, t.vehicle_status, t.odometry)}
            assert expected <= env_uses, "the env node's names were not all read"
            assert (namespaced(ns, t.markers) in env_uses) == needs_vehicles
            assert env_uses <= provided[ns], f"{ns}: the env node uses names its bridge lacks"
            assert _spawner_uses(mine["carla_spawn_objects"], context, tmp_path) <= provided[ns]
            assert mine["carla_ros_bridge"].parameters["port"] == 2000 + 2 * i  # one CARLA server per env
            assert all(name.startswith(f"/{ns}/") for name in provided[ns])
        assert not provided["env_0"] & provided["env_1"], "two bridges provide the same name"
    finally:
        rclpy.try_shutdown(context=context)


def test_one_env_keeps_the_bridges_own_names():
    """A single env runs in the root namespace: the bridge's names as they are, no remaps."""
    nodes = expand(load_stacks(), {"stack": "drive", "sim": "carla"})
    assert all(n.remaps == [] and n.namespace == "" for n in nodes)


def test_bridge_and_spawner_remaps_cover_every_absolute_bridge_name():
    nodes = expand(load_stacks(), {"stack": "train", "sim": "carla", "num_envs": "3"})
    objects = load_objects(OBJECTS)
    vehicle = objects.vehicles[0]
    names = bridge_names(
        vehicle.id, [(s.type, s.id) for s in vehicle.sensors], [(s.type, s.id) for s in objects.sensors]
    )
    absolute = [n for n in names if n.startswith("/")]
    for node in nodes:
        if node.package in ("carla_ros_bridge", "carla_spawn_objects"):
            assert dict(node.remaps) == {n: f"/{node.namespace}{n}" for n in absolute}
        else:  # our nodes use the contract's relative names: their namespace moves them
            assert node.remaps == []


def test_traffic_manager_per_env_ports_and_seeds():
    nodes = expand(load_stacks(), {"sim": "carla", "num_envs": "2", "traffic": "7", "tm_port": "8100", "seed": "3"})
    tms = [n for n in nodes if n.executable == "traffic_manager"]
    assert [n.namespace for n in tms] == ["env_0", "env_1"] and not any(n.required for n in tms)
    assert [n.arguments for n in tms] == [
        ["--host", "127.0.0.1", "--port", str(2000 + 2 * i), "--tm-port", str(8100 + i), "--vehicles", "7",
         "--seed", str(3 + i)]
        for i in range(2)
    ]  # fmt: skip
    embedded = expand(load_stacks(), {"sim": "embedded", "num_envs": "2", "traffic": "7"})
    assert not any(n.executable == "traffic_manager" for n in embedded)  # our simulator drives its own traffic
