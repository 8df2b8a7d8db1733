"""carla_rl_bringup.traffic_manager: its options, its clear error without the ``carla`` module or a server, and
its logic against a stand-in for the ``carla`` client.

The stand-in exists because no CARLA server can run here (and the 0.9.15 client does not install on this
Python). It follows the upstream Python API (CARLA 0.9.15 PythonAPI, docs/python_api.md): ``carla.Client(host,
port)``, ``set_timeout``, ``get_world``, ``get_trafficmanager(port)``, ``get_server_version``;
``world.get_settings().synchronous_mode``, ``get_blueprint_library().filter('vehicle.*')``,
``get_map().get_spawn_points()``, ``try_spawn_actor`` (None when the point is occupied), ``get_actors().filter``;
``ActorBlueprint.id/has_attribute/get_attribute/set_attribute``; ``Location.distance``; ``Actor.attributes,
get_location, set_autopilot(True, tm_port), destroy``; ``TrafficManager.get_port, set_synchronous_mode,
set_random_device_seed``.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import math
import subprocess
import sys
import threading
import time
import types

import pytest

from carla_rl_bringup import traffic_manager as tm_node

TIMEOUT_TEXT = "time-out of 2000ms while waiting for the simulator, make sure the simulator is ready and connected"


# --- the stand-in carla client -----------------------------------------------------------------------------
class Location:
    def __init__(self, x: float = 0.0, y: float = 0.0, z: float = 0.0):
        self.x, self.y, self.z = x, y, z

    def distance(self, other: Location) -> float:
        return math.dist((self.x, self.y, self.z), (other.x, other.y, other.z))


class Transform:
    def __init__(self, location: Location):
        self.location = location


class ActorAttribute:
    def __init__(self, value: str):
        self.value = value

    def __int__(self) -> int:
        return int(self.value)


class ActorBlueprint:
    def __init__(self, blueprint_id: str, wheels: int | None = None):
        self.id = blueprint_id
        self.attributes = {"role_name": ""} | ({"number_of_wheels": str(wheels)} if wheels else {})

    def has_attribute(self, name: str) -> bool:
        return name in self.attributes

    def get_attribute(self, name: str) -> ActorAttribute:
        return ActorAttribute(self.attributes[name])

    def set_attribute(self, name: str, value: str) -> None:
        self.attributes[name] = value


class Filterable(list):
    """BlueprintLibrary / ActorList: ``filter`` matches a blueprint's id or an actor's type_id."""

    def filter(self, wildcard: str) -> Filterable:
        return Filterable(x for x in self if fnmatch.fnmatchcase(getattr(x, "type_id", None) or x.id, wildcard))


class Actor:
    def __init__(self, world: World, actor_id: int, blueprint: ActorBlueprint, transform: Transform):
        self.world, self.id, self.type_id = world, actor_id, blueprint.id
        self.attributes = dict(blueprint.attributes)
        self.transform = transform
        self.autopilot: tuple[bool, int] | None = None

    def get_location(self) -> Location:
        return self.transform.location

    def set_autopilot(self, enabled: bool, tm_port: int) -> None:
        self.autopilot = (enabled, tm_port)

    def destroy(self) -> bool:
        return self.world.actors.pop(self.id, None) is not None


class World:
    def __init__(self, spawn_points: list[Location], synchronous: bool = True, blueprints=None):
        self.settings = types.SimpleNamespace(synchronous_mode=synchronous, fixed_delta_seconds=0.05)
        self.blueprints = Filterable(
            blueprints
            if blueprints is not None
            else [
                ActorBlueprint("vehicle.tesla.model3", 4),
                ActorBlueprint("vehicle.audi.tt", 4),
                ActorBlueprint("vehicle.bh.crossbike", 2),
                ActorBlueprint("walker.pedestrian.0001"),
            ]
        )
        self.spawn_points = [Transform(p) for p in spawn_points]
        self.actors: dict[int, Actor] = {}
        self.next_id = 100

    def get_settings(self):
        return self.settings

    def get_blueprint_library(self) -> Filterable:
        return self.blueprints

    def get_map(self):
        return types.SimpleNamespace(get_spawn_points=lambda: list(self.spawn_points))

    def get_actors(self) -> Filterable:
        return Filterable(self.actors.values())

    def try_spawn_actor(self, blueprint: ActorBlueprint, transform: Transform) -> Actor | None:
        if any(a.transform.location.distance(transform.location) < 2.0 for a in self.actors.values()):
            return None  # occupied
        self.next_id += 1
        self.actors[self.next_id] = Actor(self, self.next_id, blueprint, transform)
        return self.actors[self.next_id]

    def add_ego(self, role_name: str, location: Location) -> Actor:
        blueprint = ActorBlueprint("vehicle.lincoln.mkz_2020", 4)
        blueprint.set_attribute("role_name", role_name)
        return self.try_spawn_actor(blueprint, Transform(location))


class TrafficManager:
    def __init__(self, port: int):
        self.port, self.calls = port, []

    def get_port(self) -> int:
        return self.port

    def set_synchronous_mode(self, mode: bool) -> None:
        self.calls.append(("set_synchronous_mode", mode))

    def set_random_device_seed(self, seed: int) -> None:
        self.calls.append(("set_random_device_seed", seed))


def stand_in_carla(world: World | None) -> types.SimpleNamespace:
    """A ``carla`` module whose Client reaches ``world`` (None: no server answers)."""
    module = types.SimpleNamespace(clients=[])

    class Client:
        def __init__(self, host: str, port: int, worker_threads: int = 0):
            self.host, self.port, self.timeout, self.calls = host, port, None, []
            self.tm: TrafficManager | None = None
            self.server_alive = True
            module.clients.append(self)

        def set_timeout(self, seconds: float) -> None:
            self.calls.append("set_timeout")
            self.timeout = seconds

        def get_world(self) -> World:
            self.calls.append("get_world")
            if world is None:
                raise RuntimeError(f"{TIMEOUT_TEXT} to {self.host}:{self.port}")
            return world

        def get_trafficmanager(self, client_connection: int = 8000) -> TrafficManager:
            self.tm = TrafficManager(client_connection)
            return self.tm

        def get_server_version(self) -> str:
            if not self.server_alive:
                raise RuntimeError(f"{TIMEOUT_TEXT} to {self.host}:{self.port}")
            return "0.9.15"

    module.Client = Client
    return module


# --- tests ---------------------------------------------------------------------------------------------------
def test_options_without_the_ros_arguments_launchers_append(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("/**:\n  ros__parameters: {}\n")
    args = tm_node.parse_args(
        ["--port", "2002", "--tm-port", "8001", "--vehicles", "7", "--ros-args", "-r", "__ns:=/env_1",
         "--params-file", str(params)]
    )  # fmt: skip
    assert (args.host, args.port, args.tm_port, args.vehicles, args.seed) == ("127.0.0.1", 2002, 8001, 7, 0)
    assert args.timeout > 0 and "ego_vehicle" in args.ego_role_names


@pytest.mark.parametrize(
    "bad",
    [["--vehicles", "-1"], ["--port", "70000"], ["--timeout", "0"], ["--port", "8000", "--tm-port", "8001"]],
)
def test_bad_options_are_usage_errors(bad, capsys):
    with pytest.raises(SystemExit) as exc:
        tm_node.parse_args(bad)
    assert exc.value.code == 2 and "error:" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("carla") is not None, reason="the carla client is installed here")
def test_without_the_carla_module_it_exits_with_a_message_at_once():
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "carla_rl_bringup.traffic_manager", "--vehicles", "3", "--ros-args", "-r", "__ns:=/e"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == tm_node.EXIT_UNAVAILABLE and time.monotonic() - started < 30
    assert "CARLA Python client is not installed" in proc.stderr and "pip install carla==" in proc.stderr
    idle = subprocess.run(
        [sys.executable, "-m", "carla_rl_bringup.traffic_manager", "--vehicles", "0"], capture_output=True, text=True
    )
    assert idle.returncode == 0 and "nothing to do" in idle.stderr  # traffic:=0 needs no client


def test_an_unreachable_server_is_a_clear_error_after_the_timeout(monkeypatch, capsys):
    carla = stand_in_carla(None)
    monkeypatch.setitem(sys.modules, "carla", carla)
    monkeypatch.setattr(tm_node.signal, "signal", lambda *_: None)  # main's handlers would outlive the test
    assert tm_node.main(["--port", "2004", "--vehicles", "3", "--timeout", "2"]) == tm_node.EXIT_UNAVAILABLE
    err = capsys.readouterr().err
    assert "no CARLA server answered at 127.0.0.1:2004 within 2 s" in err and "time-out of 2000ms" in err
    client = carla.clients[0]
    assert client.calls == ["set_timeout", "get_world"] and client.timeout == 2.0  # never a call without a timeout


def _run(world: World, argv: list[str], carla=None) -> tuple[int, list[str], dict[int, Actor], types.SimpleNamespace]:
    """Run the node until it reports ready, then stop it; returns its code, log, the actors alive at ready."""
    carla = carla or stand_in_carla(world)
    stop, lines, alive = threading.Event(), [], {}

    def log(text: str) -> None:
        lines.append(text)
        if text.startswith("traffic ready"):
            alive.update(world.actors)
            stop.set()

    code = tm_node.run(tm_node.parse_args(argv), carla, stop, log)
    return code, lines, alive, carla


def test_spawns_real_blueprints_away_from_the_ego_under_the_traffic_manager_then_destroys_them():
    near = [Location(5.0 * i, 0.0) for i in range(1, 5)]  # within 25 m of the ego at the origin
    far = [Location(100.0 + 20.0 * i, 50.0) for i in range(6)]
    world = World(near + far + [far[0]], synchronous=True)  # far[0] twice: the second try finds it occupied
    ego = world.add_ego("ego_vehicle", Location(0.0, 0.0))
    code, log, alive, carla = _run(world, ["--vehicles", "5", "--tm-port", "8003", "--seed", "4"])
    traffic = [a for a in alive.values() if a is not ego]
    assert code == 0 and len(traffic) == 5
    for actor in traffic:
        assert actor.type_id in ("vehicle.tesla.model3", "vehicle.audi.tt")  # four-wheeled vehicle.* only
        assert actor.get_location().distance(ego.get_location()) >= 25.0
        assert actor.autopilot == (True, 8003) and actor.attributes["role_name"] == tm_node.TRAFFIC_ROLE_NAME
    # A synchronous TM steps only when its own process ticks the world (LibCarla client/detail/Simulator.cpp,
    # trafficmanager/TrafficManagerLocal.cpp); the bridge ticks, so the TM runs asynchronously.
    assert carla.clients[0].tm.calls == [("set_synchronous_mode", False), ("set_random_device_seed", 4)]
    assert any("the world is synchronous" in line for line in log)
    assert list(world.actors.values()) == [ego], "the traffic is destroyed on stop, the ego is left alone"
    assert log[-1] == "destroyed 5 of 5 traffic vehicles"
    again = World(near + far + [far[0]])
    again.add_ego("ego_vehicle", Location(0.0, 0.0))
    _, _, alive_again, _ = _run(again, ["--vehicles", "5", "--tm-port", "8003", "--seed", "4"])
    assert [(a.type_id, a.get_location().x) for a in alive_again.values()] == [
        (a.type_id, a.get_location().x) for a in alive.values()
    ], "the seed picks the same blueprints and spawn points"


def test_fewer_free_spawn_points_than_vehicles_and_no_ego():
    world = World([Location(0.0, 0.0), Location(50.0, 0.0)])
    code, log, alive, _ = _run(world, ["--vehicles", "4", "--ego-wait", "0"])
    assert code == 0 and len(alive) == 2
    assert any(line.startswith("no ego vehicle") for line in log)
    assert any(line.startswith("spawned 2 of 4 vehicles") for line in log)
    stopped, idle = threading.Event(), World([Location(50.0, 0.0)])
    stopped.set()  # stopped while it waits for the ego: it spawns nothing
    assert tm_node.run(tm_node.parse_args(["--vehicles", "1"]), stand_in_carla(idle), stopped, lambda _: None) == 0
    assert not idle.actors


def test_a_server_without_vehicle_blueprints_or_one_that_goes_away_ends_the_node(monkeypatch):
    world = World([Location(100.0, 0.0)], blueprints=[ActorBlueprint("walker.pedestrian.0001")])
    with pytest.raises(tm_node.TrafficError, match="no four-wheeled vehicle"):
        _run(world, ["--vehicles", "1", "--ego-wait", "0"])
    world = World([Location(100.0, 0.0)])
    carla = stand_in_carla(world)
    monkeypatch.setattr(tm_node, "LIVENESS_PERIOD_S", 0.01)
    stop = threading.Event()

    def log(text: str) -> None:
        if text.startswith("traffic ready"):
            carla.clients[0].server_alive = False

    with pytest.raises(tm_node.TrafficError, match="CARLA server at 127.0.0.1:2000 failed") as exc:
        tm_node.run(tm_node.parse_args(["--vehicles", "1", "--ego-wait", "0"]), carla, stop, log)
    assert exc.value.code == tm_node.EXIT_UNAVAILABLE
