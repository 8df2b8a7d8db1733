"""Progress bars of the bag tools: on a terminal, ``bag info`` and ``bag repair`` draw a tqdm bar on stderr and
clear it when done; in a pipe or a log they print exactly what they printed before (no bar, nothing on stdout)."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from carla_msgs.msg import CarlaStatus
from rclpy.serialization import serialize_message

from carla_rl_bags.recorder import SplitWriter

T0 = 1_700_000_000_000_000_000


def status_bag(path: Path, n: int) -> Path:
    writer = SplitWriter(path)
    handle = writer.add_topic("/carla/status", "carla_msgs/msg/CarlaStatus", [])
    for i in range(n):
        writer.write(handle, T0 + i * 50_000_000, serialize_message(CarlaStatus(frame=i, fixed_delta_seconds=0.05)))
    writer.close()
    return path


def run_on_a_terminal(*args: str) -> tuple[int, str, str]:
    """The command with stderr on a pseudo-terminal (stdout a pipe): exit code, stdout, what the terminal got."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal's size: 100 columns
    proc = subprocess.Popen(
        [sys.executable, "-m", "carla_rl_bringup.cli", *args], stdout=subprocess.PIPE, stderr=follower, text=True
    )
    os.close(follower)
    terminal = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            proc.kill()
            pytest.fail(f"no output for 60 s: {terminal[-2000:]!r}")
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the follower side closed: the process is done
            break
        if not chunk:
            break
        terminal += chunk
    os.close(leader)
    stdout = proc.stdout.read()
    return proc.wait(timeout=60), stdout, terminal.decode(errors="replace")


@pytest.mark.parametrize(("command", "bar"), [(["bag", "info"], "checking run"), (["bag", "repair"], "rewriting")])
def test_a_terminal_gets_a_bar_a_pipe_does_not(tmp_path, command, bar):
    bag = status_bag(tmp_path / "run", 20000)
    code, stdout, terminal = run_on_a_terminal(*command, str(bag))
    assert code == 0, terminal[-3000:]
    assert bar in terminal and "msg" in terminal and "\r" in terminal, terminal[-3000:]
    assert bar not in stdout
    assert "warn" not in terminal.lower() and "Traceback" not in terminal
    piped = subprocess.run(
        [sys.executable, "-m", "carla_rl_bringup.cli", *command, str(bag)], capture_output=True, text=True, timeout=120
    )
    assert piped.returncode == 0 and bar not in piped.stderr + piped.stdout and "\r" not in piped.stderr
