"""Across hosts: simulator + env node on one "host", the trainer on another, joined by a veth pair.

The two hosts are network namespaces (``ip netns``) on this machine, each with its own loopback and one end
of a veth pair, so DDS traffic between them crosses a real (virtual) network link exactly as between two
machines. We show that (1) without the opt-in (localhost-only discovery, our default) the trainer finds
nothing on the other host, (2) with ``--network`` (``ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET``) it trains, and
(3) it trains exactly as it does with everything on one host (same seed -> same rewards, same weights).
Needs root (CAP_NET_ADMIN); skipped with the reason otherwise. The namespaces are removed even on failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from carla_rl_common.dds import ros_environment

pytestmark = pytest.mark.slow

HELPER = Path(__file__).resolve().parents[1] / "helpers" / "cross_host_agent.py"
STEPS = 256  # four PPO updates of 64 steps
LONG = {
    "env": {
        "episode": {
            "max_episode_steps": 100,
            "terminate_on_collision": False,
            "terminate_on_off_road": False,
            "max_route_deviation": 1.0e6,
            "stuck_seconds": 1.0e6,
            "min_average_speed": 0.001,
        }
    }
}


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


@pytest.fixture
def hosts():
    """Two namespaces "sim" (10.77.0.1) and "agent" (10.77.0.2) joined by a veth pair; removed afterwards."""
    tag = uuid.uuid4().hex[:6]
    names = {"sim": f"crl_sim_{tag}", "agent": f"crl_agent_{tag}"}
    try:
        _ip("netns", "add", names["sim"])
    except (subprocess.CalledProcessError, FileNotFoundError, PermissionError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        pytest.skip(f"cannot create network namespaces here (needs root and iproute2): {detail}")
    try:
        _ip("netns", "add", names["agent"])
        _ip("link", "add", f"vs{tag}", "type", "veth", "peer", "name", f"va{tag}")
        for role, dev, addr in (("sim", f"vs{tag}", "10.77.0.1/24"), ("agent", f"va{tag}", "10.77.0.2/24")):
            ns = names[role]
            _ip("link", "set", dev, "netns", ns)
            _ip("-n", ns, "addr", "add", addr, "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up", "multicast", "on")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", dev)  # DDS discovery is multicast
        yield names
    finally:
        for ns in names.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def _in(ns: str, *cmd: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *cmd]


@contextmanager
def sim_and_env(ns: str, env: dict, tmp: Path):
    """The simulator node and the env node (two processes, as `carla-rl drive` starts them) inside ``ns``."""
    config = tmp / "env.yaml"
    config.write_text(yaml.safe_dump(LONG))
    cmds = [
        [
            sys.executable,
            "-m",
            "carla_rl_sim.node",
            "--ros-args",
            "-p",
            "seed:=0",
            "-p",
            "synchronous_mode_wait_for_vehicle_control_command:=true",
        ],
        [sys.executable, "-m", "carla_rl_env.node", "--ros-args", "-p", "seed:=0", "-p", f"config:=[{config}]"],
    ]
    procs = [
        subprocess.Popen(_in(ns, *c), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for c in cmds
    ]
    try:
        yield procs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def agent(ns: str, env: dict, *args: str, timeout: float = 240) -> dict:
    proc = subprocess.run(
        _in(ns, sys.executable, str(HELPER), *args), env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_train_across_hosts_matches_one_host(hosts, tmp_path):
    domain = int(os.environ["ROS_DOMAIN_ID"])
    local, network = ros_environment(False, domain), ros_environment(True, domain)

    with sim_and_env(hosts["sim"], local, tmp_path):
        # 1. our default, localhost-only discovery: the agent host finds no env node on the sim host ...
        assert agent(hosts["agent"], local, "probe", "6") == {"found": False}
        # ... while an agent on the sim host does: the reference run, everything on one host
        same_host = agent(hosts["sim"], local, "train", str(STEPS), "7")

    # 2. with the opt-in (--network): discovery crosses the link and PPO trains over it
    with sim_and_env(hosts["sim"], network, tmp_path) as procs:
        across = agent(hosts["agent"], network, "train", str(STEPS), "7")
        assert all(p.poll() is None for p in procs), [p.stderr.read()[-2000:] for p in procs if p.poll() is not None]

    # 3. the same results as on one host

    assert len(across["rewards"]) == len(same_host["rewards"]) >= STEPS
    assert across["rewards"] == pytest.approx(same_host["rewards"], abs=1e-5)
    assert across["observations"] == pytest.approx(same_host["observations"], abs=1e-4)
    assert across["params"] == pytest.approx(same_host["params"], rel=1e-9)
    assert len(set(across["rewards"])) > 10  # the car moved: not a trivially equal constant run
