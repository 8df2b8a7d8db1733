"""Stacks of config/stacks.yaml as processes: ``carla-rl up``, and the runner behind drive, train and evaluate."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from carla_rl_bringup.commands import EXIT_USAGE
from carla_rl_bringup.stacks import LAUNCH_ARGUMENTS, expand, load_stacks
from carla_rl_common.dds import ros_environment


def up(args: argparse.Namespace) -> int:
    values = {name: getattr(args, name) for name in LAUNCH_ARGUMENTS if getattr(args, name, None) is not None}
    expand(load_stacks(), {k: str(v) for k, v in values.items()}, check=True)  # before a domain is even taken
    env = ros_environment(args.network, args.domain_id, isolate=True, join=args.join)
    return run_stack(values, env, restarts=args.restart)


class StackStopped(Exception):
    """A stop signal (SIGTERM) reached the launcher: the stack is stopped as for Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop_signal(signum: int, frame) -> None:
    raise StackStopped(signum)


def run_stack(values: dict, env: dict[str, str], record: str = "", restarts: int = 0, check: bool = False) -> int:
    """Start a stack of config/stacks.yaml as processes; returns the exit code of its main node.

    ``record``: a bag directory; a recorder process then writes the stack's topics (of every env) to it.
    ``restarts``: how often each required node that dies is restarted (ProcessGroup's restart policy).
    ``check``: check the configs the nodes read (and a checkpoint) first (:func:`expand`); drive, train and
    evaluate checked theirs already.
    """
    from carla_rl_bringup.launcher import ProcessGroup

    nodes = expand(
        load_stacks(),
        {**{k: str(v) for k, v in values.items()}, **({"record": str(Path(record).resolve())} if record else {})},
        check=check,
    )
    unstartable = sorted({n.package for n in nodes if n.module is None})
    if unstartable:
        print(
            f"carla-rl up: {', '.join(unstartable)} can only be started by ros2 launch (launch/carla_rl.launch.py)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    # SIGTERM (a process manager, `kill`) stops the stack as Ctrl-C does; by default it would end this process
    # at once, its nodes' logs unread and without a word
    previous = signal.signal(signal.SIGTERM, _stop_signal)
    try:
        with ProcessGroup(env, restarts=restarts) as group:
            return _start_and_wait(group, nodes)
    except KeyboardInterrupt:
        signum = signal.SIGINT
    except StackStopped as stop:
        signum = stop.signum
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"carla-rl: stopped by {signal.Signals(signum).name}; the stack's nodes are stopped", file=sys.stderr)
    return 128 + signum


def _start_and_wait(group, nodes) -> int:
    """Start ``nodes`` in order (waiting for each one's ready line), then wait for the main one; its exit code."""
    from carla_rl_bringup.launcher import NodeSpec

    main = None
    for node in nodes:
        label = f"{node.name}@{node.namespace}" if node.namespace else node.name
        group.start(
            NodeSpec(
                label,
                node.module,
                node.namespace,
                node.parameters,
                required=node.required,
                stdout_passthrough=node.main,
                arguments=node.arguments,
                ready_text=node.ready_text,
                remaps=node.remaps,
            )
        )
        if node.ready_text and not group.wait_ready(label, timeout=60):
            print(f"carla-rl: {label} did not report ready within 60 s; starting the rest anyway", file=sys.stderr)
        main = label if node.main else main
    return group.wait_for(main)
