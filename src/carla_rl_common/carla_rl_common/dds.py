"""DDS settings for the processes we start: a domain of their own, localhost-only discovery unless the user opts in.

Jazzy reads ``ROS_AUTOMATIC_DISCOVERY_RANGE`` (``LOCALHOST`` keeps discovery on this machine). The
deprecated ``ROS_LOCALHOST_ONLY`` would override it, so we remove it from the children's environment.
``--network`` switches to ``SUBNET`` discovery so envs and agents on several machines find each other.
(A Humble container, e.g. a real bridge's, needs ``ROS_LOCALHOST_ONLY=1`` set there instead.)

Localhost discovery still joins every process of the machine in the same ``ROS_DOMAIN_ID``, so two stacks
started side by side (two students on one box, a training beside an evaluation) would take each other's frames.
Each stack a ``carla-rl`` command starts therefore gets a DDS domain of its own (:func:`ros_environment` with
``isolate``) unless the user names one (``--domain-id``, or ``ROS_DOMAIN_ID`` set in the environment) or opts into
``--network`` (the inherited domain, so that other machines meet it). A domain is taken by an ``fcntl.flock`` on
``domain-<id>.lock`` in a per-user runtime directory (:func:`runtime_dir`), held by the launching process for the
stack's life and released by the kernel when it ends, however it ends; the file records the pid, the command
and the start time, which is how ``--join`` (:func:`find_stacks`) finds a running stack for a viewer or recorder.

Fast DDS reads :data:`FASTDDS_PROFILE` (a reliable writer's heartbeat every 50 ms instead of 3 s, so a sample
lost beside large images is repaired at once; see the file) unless the user names a profile file of their own.
Every process we start gets it through :func:`ros_environment`; a process that calls ``rclpy.init`` itself
calls :func:`use_default_profile` first.
"""

from __future__ import annotations

import argparse
import atexit
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

FASTDDS_PROFILE = Path(__file__).with_name("fastdds_profile.xml")
PROFILE_VARIABLES = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")  # Fast DDS 2.x, 3.x

# Fast DDS (the RTPS well-known ports) gives domain d the UDP ports 7400 + 250 d and up, participant i of it
# 7410 + 250 d + 2 i. Linux hands out ephemeral ports from 32768, so the domains up to 101 stay below them
# (with room for dozens of participants); 0 is every ROS install's default.
STACK_DOMAINS = range(1, 61)  # what a stack is given when the user names none
TEST_DOMAINS = range(61, 102)  # what tests/conftest.py gives each test run: never a stack's
RUNTIME_DIR_VARIABLE = "CARLA_RL_RUNTIME_DIR"  # overrides runtime_dir() (the tests use their own)
_PROBED_PARTICIPANTS = 4  # a domain whose first participants' unicast ports are bound is in use (by anyone)


class DomainError(ValueError):
    """No domain to take or to join; the message is one line for the user."""


def add_ros_options(p: argparse.ArgumentParser) -> None:
    """``--domain-id``, ``--join`` and ``--network``, the options every command that joins the ROS graph takes."""
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--domain-id",
        type=int,
        default=None,
        help="ROS_DOMAIN_ID for every process (default: a stack gets one of its own; other commands: inherited, "
        "else 0)",
    )
    which.add_argument(
        "--join", action="store_true", help="use the domain of the running carla-rl stack (the newest, if several)"
    )
    p.add_argument(
        "--network",
        action="store_true",
        help="let DDS discovery leave this machine, in the inherited domain (default: localhost only)",
    )


def ros_environment(
    network: bool = False,
    domain_id: int | None = None,
    base: Mapping[str, str] | None = None,
    *,
    isolate: bool = False,
    join: bool = False,
) -> dict[str, str]:
    """The environment for a child process (a copy of ``base``, os.environ by default).

    ``isolate`` (the commands that start a stack): without a named domain (``domain_id``, or ``ROS_DOMAIN_ID``
    in ``base``) and without ``network``, this process takes a free domain of :data:`STACK_DOMAINS` and holds it
    until it exits (every later call reuses it); the domain in use is printed once on stderr. ``join``: the
    domain of the newest running stack (:func:`join_domain`).
    """
    env = dict(os.environ if base is None else base)
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    env.pop("ROS_LOCALHOST_ONLY", None)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "SUBNET" if network else "LOCALHOST"
    if join:
        domain_id = join_domain()
    if domain_id is not None:
        if not 0 <= int(domain_id) <= 232:
            raise ValueError(f"ROS_DOMAIN_ID must be in 0..232, got {domain_id}")
        env["ROS_DOMAIN_ID"] = str(int(domain_id))
    if isolate:
        env["ROS_DOMAIN_ID"] = str(_stack_domain(env.get("ROS_DOMAIN_ID") or None, network))
    env.setdefault("PYTHONUNBUFFERED", "1")
    use_default_profile(env)
    return env


def use_default_profile(env: MutableMapping[str, str] | None = None) -> None:
    """Point Fast DDS at :data:`FASTDDS_PROFILE` in ``env`` (os.environ by default) unless a profile file is
    named there already or another RMW is chosen; must happen before ``rclpy.init`` to take effect."""
    env = os.environ if env is None else env
    if env.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp").startswith("rmw_fastrtps") and not any(
        env.get(v) for v in PROFILE_VARIABLES
    ):
        env["FASTRTPS_DEFAULT_PROFILES_FILE"] = str(FASTDDS_PROFILE)


def apply_to_this_process(network: bool = False, domain_id: int | None = None, join: bool = False) -> None:
    """Same settings for the current process; call before ``rclpy.init``."""
    os.environ.update(ros_environment(network, domain_id, join=join))


# --- domains of their own ----------------------------------------------------------------------------------
@dataclass
class DomainLease:
    """A domain this process holds: the open, locked ``domain-<id>.lock`` (closing it, or exiting, frees it)."""

    domain: int
    path: Path
    file: IO[str]

    def release(self) -> None:
        self.file.close()


_stack_lease: DomainLease | None = None  # the domain of the stack this process runs (held until it exits)


def _stack_domain(named: str | None, network: bool) -> int:
    """The domain of this process's stack: the one named (or inherited with ``network``), else one taken from
    :data:`STACK_DOMAINS`; printed once. A named domain is held too when free (so ``--join`` finds it), and a
    note says so when another carla-rl stack holds it."""
    global _stack_lease
    if _stack_lease is not None:
        return _stack_lease.domain
    directory = runtime_dir()
    if named is None and not network:
        _stack_lease = allocate_domain(STACK_DOMAINS, directory)
        domain = _stack_lease.domain
    else:
        domain = int(named or 0)
        _stack_lease = _lock(directory, domain)
        if _stack_lease is None:
            other = _read_record(directory / f"domain-{domain}.lock")
            print(
                f"carla-rl: ROS domain {domain} is also used by another carla-rl stack "
                f"(pid {other.get('pid', '?')}: {other.get('command', '?')}); the two will see each other's topics",
                file=sys.stderr,
            )
    print(f"carla-rl: ROS domain {domain} (join with --domain-id {domain})", file=sys.stderr, flush=True)
    return domain


def runtime_dir() -> Path:
    """Where the domain locks live: ``$CARLA_RL_RUNTIME_DIR``, else ``$XDG_RUNTIME_DIR/carla-rl``, else
    ``/tmp/carla-rl-<uid>``; created private (0700), and refused when someone else owns it."""
    if os.environ.get(RUNTIME_DIR_VARIABLE):
        path = Path(os.environ[RUNTIME_DIR_VARIABLE])
    elif os.environ.get("XDG_RUNTIME_DIR") and os.access(os.environ["XDG_RUNTIME_DIR"], os.W_OK):
        path = Path(os.environ["XDG_RUNTIME_DIR"]) / "carla-rl"
    else:
        path = Path("/tmp") / f"carla-rl-{os.getuid()}"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_uid != os.getuid():
        raise DomainError(f"{path}: owned by another user; set {RUNTIME_DIR_VARIABLE} to a directory of yours")
    return path


def allocate_domain(domains: range = STACK_DOMAINS, directory: Path | None = None) -> DomainLease:
    """Take the lowest domain of ``domains`` that no process holds and no DDS participant on this machine uses
    (its first participants' unicast ports are free: another user's or program's domain is skipped as well).
    Race-free between processes: the lock decides; a dead process's lock is free again."""
    directory = directory or runtime_dir()
    for domain in domains:
        lease = _lock(directory, domain)
        if lease is None:
            continue
        if _ports_free(domain):
            return lease
        lease.release()
    raise DomainError(
        f"no free ROS domain in {domains.start}..{domains.stop - 1} (see {directory}); name one with --domain-id"
    )


def _lock(directory: Path, domain: int) -> DomainLease | None:
    """Lock ``domain-<domain>.lock`` and record this process in it; None when another process holds it."""
    path = directory / f"domain-{domain}.lock"
    file = open(path, "a+", encoding="utf-8")  # held (locked) until released or this process ends
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        file.close()
        return None
    file.seek(0)
    file.truncate()
    record = {"domain": domain, "pid": os.getpid(), "command": " ".join(sys.argv), "started": time.time()}
    file.write(json.dumps(record) + "\n")
    file.flush()
    lease = DomainLease(domain, path, file)
    atexit.register(lease.release)  # closed, not left to the interpreter's teardown (a ResourceWarning)
    return lease


def _ports_free(domain: int) -> bool:
    for participant in range(_PROBED_PARTICIPANTS):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(("0.0.0.0", 7410 + 250 * domain + 2 * participant))
            except OSError:
                return False
    return True


def _read_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def find_stacks(directory: Path | None = None) -> list[dict[str, Any]]:
    """The running stacks (their lock records: domain, pid, command, started), newest first."""
    directory = directory or runtime_dir()
    running = []
    for path in directory.glob("domain-*.lock"):
        with open(path, encoding="utf-8") as file:
            try:
                fcntl.flock(file, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:  # held: a stack runs in it
                record = _read_record(path)
                if isinstance(record.get("domain"), int):
                    running.append(record)
    return sorted(running, key=lambda r: r.get("started", 0.0), reverse=True)


def join_domain(directory: Path | None = None) -> int:
    """The domain of the newest running stack (saying which, and that there are others); DomainError if none."""
    stacks = find_stacks(directory)
    if not stacks:
        raise DomainError("--join: no running carla-rl stack found on this machine; start one, or give --domain-id")
    newest = stacks[0]
    others = f"; also running: {', '.join(str(s['domain']) for s in stacks[1:])}" if len(stacks) > 1 else ""
    print(
        f"carla-rl: joining ROS domain {newest['domain']} of pid {newest.get('pid', '?')}: "
        f"{newest.get('command', '?')}{others}",
        file=sys.stderr,
        flush=True,
    )
    return int(newest["domain"])
