"""Every way a command ends, without a traceback: Ctrl-C and SIGTERM of each command (also while its nodes still
import torch), a required node dying, a town that does not exist, a browser that goes away. Each path ends with
one line saying why, and a sensible exit code. Real processes and signals."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "carla_rl_bringup.cli"]
CHECKPOINT = str(REPO / "models" / "ppo_rltown01.ckpt")


class Command:
    """A `carla-rl` command in its own session, its stdout and stderr read together, line by line."""

    def __init__(self, *args: str, cwd: Path = REPO):
        self.proc = subprocess.Popen(
            [*CLI, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=cwd,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self._reader.start()

    def wait_for(self, text: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self.proc.poll() is None, f"ended before {text!r}:\n{self.output}"
            assert time.monotonic() < deadline, f"no {text!r} within {timeout:.0f} s:\n{self.output}"
            time.sleep(0.05)

    def finish(self, timeout: float = 60.0) -> tuple[int, str]:
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self._reader.join(10)
        return code, self.output

    @property
    def output(self) -> str:
        return "".join(self.lines)


def _ends_cleanly(output: str, reason: str) -> None:
    assert "Traceback" not in output, output[-6000:]
    last = output.strip().splitlines()[-1]
    assert reason in last, output[-3000:]


def _child(root: int, needle: str) -> int | None:
    """The pid of a child of ``root`` whose command line holds ``needle``."""
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            args = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if needle in args and ppid == root:
            return int(entry)
    return None


STACK_STOPS = {
    # (arguments, a line to wait for, then seconds, the signal): while the agent drives, or while the nodes still
    # import (torch takes seconds: the agent node is stopped mid-import)
    "drive-sigint-driving": (["drive", "--episodes", "50"], '"episode": 1,', 1.0, signal.SIGINT),
    "drive-sigint-starting": (
        ["drive", "--checkpoint", CHECKPOINT, "--episodes", "5"],
        "ROS domain",
        0.2,
        signal.SIGINT,
    ),
    "drive-sigint-importing": (
        ["drive", "--checkpoint", CHECKPOINT, "--episodes", "5"],
        "ROS domain",
        0.5,
        signal.SIGINT,
    ),
    "drive-sigterm-importing": (
        ["drive", "--checkpoint", CHECKPOINT, "--episodes", "5"],
        "ROS domain",
        1.5,
        signal.SIGTERM,
    ),
    "up-sigterm": (["up", "drive", "--episodes", "50"], "embedded simulator: map", 2.0, signal.SIGTERM),
    "train-sigint": (["train", "--algo", "ppo", "--num-envs", "1"], "embedded simulator: map", 3.0, signal.SIGINT),
}


@pytest.mark.parametrize("case", list(STACK_STOPS))
def test_a_stack_stopped_by_a_signal_ends_with_one_line(case, tmp_path):
    args, ready, delay, sig = STACK_STOPS[case]
    if args[0] == "train":
        args = [*args, "--run-dir", str(tmp_path / "run")]
    command = Command(*args)
    command.wait_for(ready)
    time.sleep(delay)
    command.proc.send_signal(sig)
    code, output = command.finish()
    _ends_cleanly(output, f"carla-rl: stopped by {sig.name}; the stack's nodes are stopped")
    assert code == 128 + sig


def test_a_required_node_that_dies_stops_the_stack_with_its_name():
    command = Command("drive", "--episodes", "50")
    command.wait_for("[sim]")
    time.sleep(2.0)
    sim = _child(command.proc.pid, "carla_rl_sim.node")
    assert sim is not None
    os.kill(sim, signal.SIGKILL)
    code, output = command.finish()
    _ends_cleanly(output, "required node 'sim' exited with code -9; stopping the stack")
    assert code == 70


def test_an_unknown_town_is_one_line_from_the_simulator():
    command = Command("up", "drive", "--town", "Town99", "--episodes", "1")
    code, output = command.finish(120)
    assert "[sim] carla_rl_sim: unknown town 'Town99'" in output, output
    _ends_cleanly(output, "required node 'sim' exited with code 2; stopping the stack")
    assert code == 70


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_the_simulator_stopped_by_a_signal(sig):
    command = Command("sim")
    command.wait_for("embedded simulator: map")
    time.sleep(1.0)  # in its loop, ticking
    command.proc.send_signal(sig)
    code, output = command.finish()
    _ends_cleanly(output, f"carla-rl sim: stopped by {sig.name}")
    assert code == 0


def test_the_recorder_stopped_by_ctrl_c_closes_its_bag(tmp_path):
    command = Command("record", "-o", str(tmp_path / "bag"))
    command.wait_for("recorder ready", timeout=60)
    command.proc.send_signal(signal.SIGINT)
    code, output = command.finish()
    assert "Traceback" not in output and code == 0, output
    assert f"closed {tmp_path / 'bag'}: 0 messages" in output.strip().splitlines()[-1], output
    assert (tmp_path / "bag" / "metadata.yaml").is_file()


def _reset_connection(port: int, request: bytes) -> None:
    """Send ``request`` and close at once with a TCP reset (SO_LINGER 0): the server's answer hits a dead peer."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.sendall(request)


def test_the_web_view_outlives_browsers_that_go_away_and_stops_with_one_line():
    command = Command("viz", "web", "--port", "0")
    command.wait_for("carla-rl viz web: http://127.0.0.1:")
    url = next(line for line in command.lines if "carla-rl viz web: http" in line)
    port = int(url.split("http://127.0.0.1:", 1)[1].split("/", 1)[0])
    for path in (
        "/",
        "/static/app.js",
        "/static/index.html",
        "/api/envs",
        "/api/stream?env=env_0",
        "/api/camera?env=env_0",
    ) * 4:
        _reset_connection(port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    time.sleep(1.0)
    command.proc.send_signal(signal.SIGINT)
    code, output = command.finish()
    _ends_cleanly(output, "carla-rl viz web: stopped by SIGINT")
    assert code == 0


def test_an_evaluation_stopped_by_ctrl_c_stops_its_stack_without_a_traceback(tmp_path):
    command = Command("evaluate", "--checkpoint", CHECKPOINT, "--suite", "straight", "--out", str(tmp_path))
    command.wait_for("embedded simulator: map")
    time.sleep(3.0)
    command.proc.send_signal(signal.SIGINT)
    code, output = command.finish()
    assert "Traceback" not in output and code != 0, output[-6000:]
    assert "carla-rl: stopped by SIGINT; the stack's nodes are stopped" in output, output[-3000:]
