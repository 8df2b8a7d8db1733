"""``carla-rl viz ...``: the viewers that need no ROS desktop (Foxglove WebSocket, browser view)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable

from carla_rl_common import bridge

DEFAULT_WEB_PORT = 8080
DEFAULT_FOXGLOVE_PORT = 8765  # the Foxglove app's default for a WebSocket connection


def add_parser(sub: argparse._SubParsersAction, add_ros_options: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register ``carla-rl viz`` and its subcommands on the top-level parser."""
    viz = sub.add_parser("viz", help="live views of a running stack (Foxglove, browser)")
    viewers = viz.add_subparsers(dest="viz_command", required=True, metavar="VIZ_COMMAND")
    web = viewers.add_parser("web", help="serve a live browser view of the running envs (http://127.0.0.1:8080/)")
    _add_common(web, DEFAULT_WEB_PORT)
    web.add_argument(
        "--max-rate",
        type=float,
        default=30.0,
        help="updates per second sent to each browser (latest wins; 0: no limit; with the "
        "embedded simulator's previews at most its preview_hz, default 20)",
    )
    add_ros_options(web)
    fox = viewers.add_parser(
        "foxglove",
        help="stream the running envs to the Foxglove app over its WebSocket "
        "protocol (layout: config/foxglove_layout.json)",
    )
    _add_common(fox, DEFAULT_FOXGLOVE_PORT)
    fox.add_argument(
        "--max-rate",
        type=float,
        default=30.0,
        help="scene/camera/reward updates per second per env (latest wins; 0: no limit; with "
        "the embedded simulator's previews at most its preview_hz, default 20)",
    )
    fox.add_argument(
        "--allow-origin",
        action="append",
        default=None,
        metavar="ORIGIN",
        help="a web page origin allowed to connect (repeatable; '*' allows any). Default: the Foxglove app "
        "(https://app.foxglove.dev); native clients (no Origin) are always allowed, and every connection must "
        "name this machine's address as its Host",
    )
    add_ros_options(fox)


def _add_common(p: argparse.ArgumentParser, port: int) -> None:
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)",
    )
    p.add_argument("--port", type=int, default=port, help=f"port (default {port}; 0: any free port)")
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--num-envs",
        type=int,
        default=None,
        help="show envs env_0..env_<N-1> (as drive/train --num-envs N); default 1: the root namespace",
    )
    group.add_argument(
        "--namespaces",
        default=None,
        help="comma-separated env namespaces to show (e.g. env_0,env_3; '' is the root namespace)",
    )
    p.add_argument("--role-name", default=bridge.DEFAULT_ROLE_NAME, help="ego vehicle role name")
    p.add_argument(
        "--camera", default="rgb_front", help="camera sensor id shown when the steps carry no image ('' for none)"
    )


def namespaces_from_args(args: argparse.Namespace) -> list[str]:
    """The env namespaces to watch, as ``drive``/``train`` name them (one env: the root namespace)."""
    if args.namespaces is not None:
        names = [n.strip().strip("/") for n in args.namespaces.split(",")]
        if len(set(names)) != len(names):
            raise ValueError(f"--namespaces: {args.namespaces!r} names an env twice")
        return names
    count = 1 if args.num_envs is None else args.num_envs
    if count < 1:
        raise ValueError(f"--num-envs must be at least 1, got {count}")
    return [""] if count == 1 else [bridge.env_namespace(i) for i in range(count)]


def run(args: argparse.Namespace) -> int:
    from carla_rl_common.dds import apply_to_this_process

    try:
        namespaces = namespaces_from_args(args)
        if not 0 <= args.port <= 65535:
            raise ValueError(f"--port must be in 0..65535, got {args.port}")
    except ValueError as exc:
        print(f"carla-rl viz {args.viz_command}: {exc}", file=sys.stderr)
        return 2
    apply_to_this_process(args.network, args.domain_id, join=args.join)
    if args.viz_command == "web":
        return _run_web(args, namespaces)
    if args.viz_command == "foxglove":
        return _run_foxglove(args, namespaces)
    raise SystemExit(f"carla-rl viz: unknown viewer {args.viz_command!r}")


def _wait_for_signal(prog: str) -> None:
    """Block until Ctrl-C or SIGTERM (a process runner stopping us); say which one came."""
    stop, came = threading.Event(), []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _: (came.append(signal.Signals(signum).name), stop.set()))
    stop.wait()
    print(f"{prog}: stopped by {came[0]}", file=sys.stderr, flush=True)


def _run_web(args: argparse.Namespace, namespaces: list[str]) -> int:
    from carla_rl_viz.live import LiveThread
    from carla_rl_viz.web.server import ViewServer

    live = LiveThread(namespaces, args.role_name, args.camera)
    try:
        try:
            server = ViewServer(live.node, args.host, args.port, args.max_rate)
        except OSError as exc:
            print(f"carla-rl viz web: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
            return 1
        thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
        thread.start()
        print(f"carla-rl viz web: {server.url} (envs: {', '.join(live.node.envs)})", flush=True)
        _wait_for_signal("carla-rl viz web")
        server.shutdown()
        server.server_close()
        return 0
    finally:
        live.close()


def _run_foxglove(args: argparse.Namespace, namespaces: list[str]) -> int:
    from carla_rl_viz.foxglove_stream import FOXGLOVE_ORIGINS, FoxgloveStream
    from carla_rl_viz.live import LiveThread

    live = LiveThread(namespaces, args.role_name, args.camera)
    try:
        try:
            stream = FoxgloveStream(
                live.node, args.host, args.port, args.max_rate, args.allow_origin or FOXGLOVE_ORIGINS
            )
        except (OSError, RuntimeError) as exc:
            print(f"carla-rl viz foxglove: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
            return 1
        print(
            f"carla-rl viz foxglove: ws://{args.host}:{stream.port} (envs: {', '.join(live.node.envs)}; "
            f"layout: config/foxglove_layout.json)",
            flush=True,
        )
        _wait_for_signal("carla-rl viz foxglove")
        stream.stop()
        return 0
    finally:
        live.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m carla_rl_viz.cli web|foxglove [options] [--ros-args ...]``: a viewer as a stack node
    (``viz:=web`` / ``viz:=foxglove``); the same options as ``carla-rl viz``."""
    from rclpy.utilities import remove_ros_args

    from carla_rl_common.dds import add_ros_options

    parser = argparse.ArgumentParser(prog="python -m carla_rl_viz.cli")
    add_parser(parser.add_subparsers(dest="command", required=True), add_ros_options)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(["viz", *remove_ros_args(["viz", *argv])[1:]])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
