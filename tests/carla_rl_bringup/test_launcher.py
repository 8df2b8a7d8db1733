"""The process runner behind `carla-rl up|drive|train`: what happens to its nodes when it dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

PARENT = textwrap.dedent("""
    import os, sys, time
    from carla_rl_bringup.launcher import NodeSpec, ProcessGroup
    group = ProcessGroup(dict(os.environ))
    proc = group.start(NodeSpec("sim", "carla_rl_sim.node", parameters={"traffic": 0}))
    print(proc.pid, flush=True)
    time.sleep(600)
""")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead too
        return stat.read().split()[2] != "Z"


def test_nodes_die_with_a_killed_runner():
    """SIGKILL of the runner (no chance to clean up) still ends its nodes: they run in their own sessions,
    so without the parent-death signal they would be orphaned and keep a simulator running."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        assert alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 20
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(child), f"node {child} outlived its killed runner"
    finally:
        parent.kill()
