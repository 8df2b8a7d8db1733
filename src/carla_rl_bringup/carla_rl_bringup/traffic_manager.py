"""CARLA's Traffic Manager for one env of the ``sim:=carla`` stack: traffic that drives on a real server.

The bridge spawns what it is asked to but drives nothing but the ego: other vehicles move only under CARLA's
Traffic Manager (TM), which runs inside a ``carla`` client process. This is that process for one env. It
connects to the env's server, spawns ``--vehicles`` cars of the server's own ``vehicle.*`` blueprints at map
spawn points at least ``--min-distance`` m from the ego vehicle, hands them to the TM on ``--tm-port``
(``set_autopilot(True, tm_port)``) and destroys them when it is stopped. The embedded simulator drives its
own (IDM) traffic and needs none of this.

Synchronous worlds: a synchronous TM computes a step only when the client *in its own process* calls
``world.tick()`` (LibCarla ``client/detail/Simulator.cpp``: ``SynchronizeFrame`` calls
``TrafficManager::Tick``; ``trafficmanager/TrafficManagerLocal.cpp``: ``Run`` waits for ``SynchronousTick``).
Here the bridge, another process, ticks the world, so a synchronous TM would never step. The TM therefore
runs asynchronously, which in a synchronous world handles each new frame exactly once (``Run`` skips a frame
it has seen) while the bridge waits for the agent's command; the node logs that choice.

Only this module imports ``carla`` (the 0.9.15 wheels stop at Python 3.10): without the module, or without a
server answering at host:port within ``--timeout`` s, it exits with a message and :data:`EXIT_UNAVAILABLE`
within seconds, never hangs.

    python -m carla_rl_bringup.traffic_manager --host 127.0.0.1 --port 2000 --tm-port 8000 --vehicles 20
"""

from __future__ import annotations

import argparse
import importlib
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from carla_rl_common.bridge import EGO_ROLE_NAMES

EXIT_UNAVAILABLE = 69  # sysexits EX_UNAVAILABLE: no carla client module, or no server at host:port
TRAFFIC_ROLE_NAME = "autopilot"  # role_name of our traffic: not one of the bridge's ego role names
LIVENESS_PERIOD_S = 5.0  # how often a running node asks the server whether it is still there


class TrafficError(RuntimeError):
    """A problem that ends the node with a message: ``code`` is its exit status."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m carla_rl_bringup.traffic_manager", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="CARLA server host")
    p.add_argument("--port", type=_port, default=2000, help="CARLA server RPC port (it also uses port + 1)")
    p.add_argument("--tm-port", type=_port, default=8000, help="Traffic Manager port (one per env on a host)")
    p.add_argument("--vehicles", type=_non_negative(int), default=10, help="traffic vehicles (0: exit at once)")
    p.add_argument("--seed", type=int, default=0, help="picks blueprints and spawn points; seeds the TM")
    p.add_argument("--timeout", type=_positive, default=10.0, help="seconds the server has to answer a call")
    p.add_argument("--min-distance", type=_non_negative(float), default=25.0, help="m from an ego to a spawn point")
    p.add_argument("--ego-wait", type=_non_negative(float), default=60.0, help="s to wait for the ego vehicle")
    p.add_argument(
        "--ego-role-names", nargs="+", default=list(EGO_ROLE_NAMES), help="role names of ego vehicles (the bridge's)"
    )
    return p


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Options without the ROS arguments ``ros2 launch`` and ``carla-rl up`` append (``--ros-args ...``)."""
    from rclpy.utilities import remove_ros_args

    parser = build_parser()
    args = parser.parse_args(remove_ros_args(["traffic_manager", *argv])[1:])
    if args.tm_port in (args.port, args.port + 1):
        parser.error(f"--tm-port {args.tm_port} collides with the server's ports {args.port} and {args.port + 1}")
    return args


def import_carla() -> ModuleType:
    try:
        return importlib.import_module("carla")
    except ImportError as exc:
        raise TrafficError(
            f"the CARLA Python client is not installed ({exc}): pip install carla==<the server's version> "
            "(0.9.15 in docker/, whose wheels need Python <= 3.10)",
            EXIT_UNAVAILABLE,
        ) from None


def connect(carla: ModuleType, host: str, port: int, timeout: float) -> Any:
    """A ``carla.Client`` whose server answered, with ``timeout`` on every call; :class:`TrafficError` if none."""
    client = carla.Client(host, port)
    client.set_timeout(timeout)  # before the first call: its default would wait longer for a missing server
    try:
        client.get_world()
        return client
    except RuntimeError as exc:  # carla's time-out ("time-out of ...ms while waiting for the simulator")
        message = f"no CARLA server answered at {host}:{port} within {timeout:g} s: {exc}"
        raise TrafficError(message, EXIT_UNAVAILABLE) from None


def vehicle_blueprints(world: Any) -> list[Any]:
    """The server's four-wheeled ``vehicle.*`` blueprints (bikes weave through traffic), sorted by id."""
    found = [
        bp
        for bp in world.get_blueprint_library().filter("vehicle.*")
        if not bp.has_attribute("number_of_wheels") or int(bp.get_attribute("number_of_wheels")) == 4
    ]
    if not found:
        raise TrafficError("the server's blueprint library has no four-wheeled vehicle.* blueprint")
    return sorted(found, key=lambda bp: bp.id)


def wait_for_ego(
    client: Any, role_names: Sequence[str], wait_s: float, stop: threading.Event, now: Callable[[], float]
) -> tuple[Any, list[Any]]:
    """The world once an ego vehicle is in it (carla_spawn_objects spawns it after the bridge has loaded the
    town, which starts a new world), and where the egos are; after ``wait_s`` s or ``stop``, with none."""
    deadline = now() + wait_s
    while True:
        world = client.get_world()
        egos = [
            actor.get_location()
            for actor in world.get_actors().filter("vehicle.*")
            if actor.attributes.get("role_name") in role_names
        ]
        if egos or now() >= deadline or stop.wait(0.5):
            return world, egos


def spawn_traffic(
    world: Any, count: int, tm_port: int, blueprints: Sequence[Any], egos: Sequence[Any], min_distance: float, rng
) -> list[Any]:
    """Up to ``count`` vehicles at shuffled spawn points ``min_distance`` m or more from every ego, on autopilot
    under the TM at ``tm_port``; an occupied spawn point (``try_spawn_actor`` gives None) is skipped."""
    points = [
        p for p in world.get_map().get_spawn_points() if all(p.location.distance(e) >= min_distance for e in egos)
    ]
    rng.shuffle(points)
    actors: list[Any] = []
    for point in points:
        if len(actors) == count:
            break
        blueprint = rng.choice(blueprints)
        if blueprint.has_attribute("role_name"):
            blueprint.set_attribute("role_name", TRAFFIC_ROLE_NAME)
        actor = world.try_spawn_actor(blueprint, point)
        if actor is not None:
            actor.set_autopilot(True, tm_port)
            actors.append(actor)
    return actors


def run(
    args: argparse.Namespace,
    carla: ModuleType,
    stop: threading.Event,
    log: Callable[[str], None],
    now: Callable[[], float] = time.monotonic,
) -> int:
    """Spawn the traffic, keep it until ``stop`` is set, then destroy it; returns 0. :class:`TrafficError`
    when the server does not answer or goes away (a call that fails raises carla's RuntimeError)."""
    client = connect(carla, args.host, args.port, args.timeout)
    try:
        world, egos = wait_for_ego(client, args.ego_role_names, args.ego_wait, stop, now)
        if stop.is_set():  # stopped while waiting: nothing spawned
            return 0
        if not egos:
            log(f"no ego vehicle ({', '.join(args.ego_role_names)}) after {args.ego_wait:g} s: spawning anywhere")
        tm = client.get_trafficmanager(args.tm_port)
        tm.set_synchronous_mode(False)  # see the module docstring: the bridge, not this process, ticks the world
        tm.set_random_device_seed(args.seed)
        if world.get_settings().synchronous_mode:
            log("the world is synchronous (the bridge ticks it): the Traffic Manager follows its frames")
        blueprints = vehicle_blueprints(world)
        rng = random.Random(args.seed)
        actors = spawn_traffic(world, args.vehicles, tm.get_port(), blueprints, egos, args.min_distance, rng)
        if len(actors) < args.vehicles:
            log(f"spawned {len(actors)} of {args.vehicles} vehicles: no more free spawn points")
        log(f"traffic ready: {len(actors)} vehicles under the Traffic Manager on port {tm.get_port()}")
        while not stop.wait(LIVENESS_PERIOD_S):
            client.get_server_version()  # a call with the timeout: raises once the server is gone
        destroyed = sum(1 for actor in actors if actor.destroy())
    except RuntimeError as exc:
        raise TrafficError(f"the CARLA server at {args.host}:{args.port} failed: {exc}", EXIT_UNAVAILABLE) from None
    log(f"destroyed {destroyed} of {len(actors)} traffic vehicles")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.vehicles == 0:
        _log("no traffic asked for (--vehicles 0): nothing to do")
        return 0
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        return run(args, import_carla(), stop, _log)
    except TrafficError as exc:
        _log(f"error: {exc}")
        return exc.code


def _log(text: str) -> None:
    print(f"[traffic_manager] {text}", file=sys.stderr, flush=True)


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1..65535, got {value}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _non_negative(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its "invalid int value" message
    return parse


if __name__ == "__main__":
    sys.exit(main())
