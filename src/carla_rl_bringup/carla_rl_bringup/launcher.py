"""Start the stack's nodes as OS processes, forward signals, prefix their logs, stop them together.

The ``carla-rl`` subcommands use this where ``ros2 launch`` is not installed. Every command is an argument
list (never a shell string) and node parameters travel in a YAML parameters file, so user-supplied names
and paths are never interpreted by a shell or the ROS argument parser.

No child outlives the launcher. A stop escalates SIGINT, SIGTERM, SIGKILL; when the launcher itself dies
(even by SIGKILL) every child gets SIGTERM from the kernel (``PR_SET_PDEATHSIG``), and a small reaper
process, which learns each child's process group through a pipe, sees the pipe close and SIGKILLs the groups
still alive ``KILL_GRACE_S`` later: a simulator stuck in one long numpy call cannot act on its SIGTERM.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from carla_rl_common.bridge import namespace_remaps

# Loaded here, in the parent: the child only calls prctl between fork and exec (no import, no dlopen there,
# which could deadlock on a lock another thread of this process held at fork time).
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
_PR_SET_PDEATHSIG = 1
if _LIBC is not None:
    _LIBC.signal.argtypes, _LIBC.signal.restype = [ctypes.c_int, ctypes.c_void_p], ctypes.c_void_p
_SIG_IGN = 1  # <signal.h>: (void (*)(int)) 1
KILL_GRACE_S = 3.0  # after the launcher died: SIGTERM, then this long, then SIGKILL


# The reaper's program: stdlib only, run with ``python -I -S`` so that it starts in milliseconds (a full
# interpreter start would compete with the nodes' own starts). It reads ``+PGID`` / ``-PGID`` lines (a child
# started / reaped); at end of file (the launcher exited or died) it SIGTERMs the groups still listed, waits
# the grace period and SIGKILLs the rest.
_REAPER = """
import os, signal, sys, time

def send(pgid, sig):
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False

signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C of the terminal is the launcher's to handle
grace, groups = float(sys.argv[1]), set()
for line in sys.stdin:
    if line[:1] in "+-" and line[1:].strip().isdigit():
        (groups.add if line[0] == "+" else groups.discard)(int(line[1:]))
groups = {pgid for pgid in groups if send(pgid, signal.SIGTERM)}
deadline = time.monotonic() + grace
while groups and time.monotonic() < deadline:
    time.sleep(0.05)
    groups = {pgid for pgid in groups if send(pgid, 0)}
for pgid in groups:
    send(pgid, signal.SIGKILL)
"""


# How a node process starts: its module run as ``python -m`` would, but a Ctrl-C (or the stack's stop) that
# comes while the interpreter starts or the module still imports (torch takes seconds) ends it quietly with
# 130 instead of a traceback, whatever the interrupted import made of the KeyboardInterrupt (numpy turns one
# into an ImportError). The child starts with SIGINT ignored (see _die_with_parent: the interpreter's own
# start-up cannot be interrupted cleanly); this takes it back first. Once running, the node's own main handles
# the signals (carla_rl_common.nodes, carla_rl_agents.node). A SIGINT that came during the ignored moment is
# answered by the stop's SIGTERM a few seconds later.
_RUN_MODULE = """
import signal, sys
interrupted = []
def interrupt(signum, frame):
    interrupted.append(signum)
    raise KeyboardInterrupt
signal.signal(signal.SIGINT, interrupt)
import runpy
module = sys.argv.pop(1)
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
except (Exception, KeyboardInterrupt) as exc:
    if not (interrupted or isinstance(exc, KeyboardInterrupt)):
        raise
    sys.exit(130)
"""


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the starting thread dies, even by SIGKILL (Linux), so a
    killed ``carla-rl`` leaves no simulator or env node behind (they run in their own sessions); SIGINT
    ignored until the node's interpreter is up (:data:`_RUN_MODULE`)."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        _LIBC.signal(signal.SIGINT, _SIG_IGN)  # until _RUN_MODULE installs Python's handler


@dataclass
class NodeSpec:
    """One node process: its Python module, ROS namespace and parameters."""

    name: str  # log prefix
    module: str  # e.g. carla_rl_sim.node
    namespace: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    required: bool = True  # the group stops when a required node exits
    stdout_passthrough: bool = False  # the agent's JSON lines go to our stdout unprefixed
    log_level: str = ""  # e.g. "debug"; default: ROS's (info)
    arguments: list[str] = field(default_factory=list)  # the module's own options, before --ros-args
    ready_text: str = ""  # a log line containing this says the node is ready (see ProcessGroup.wait_ready)
    remaps: list[tuple[str, str]] = field(default_factory=list)  # (from, to) name remaps beyond the env's /clock

    def command(self, params_file: Path) -> list[str]:
        args = [sys.executable, "-c", _RUN_MODULE, self.module, *self.arguments]
        args += ["--ros-args", "--params-file", str(params_file)]
        if self.log_level:
            args += ["--log-level", self.log_level]
        if self.namespace:
            args += ["-r", f"__ns:=/{self.namespace.strip('/')}"]
            args += namespace_remaps(self.namespace)[1:]  # already inside --ros-args
        for source, target in self.remaps:
            args += ["-r", f"{source}:={target}"]
        return args


class ProcessGroup:
    """Runs NodeSpecs; ``wait_for`` one of them, then ``stop`` the rest (SIGINT, then SIGTERM, then SIGKILL)."""

    def __init__(self, env: dict[str, str], log: TextIO = sys.stderr, restarts: int = 0):
        """:param restarts: how often ``wait_for`` restarts each required node that dies (0: stop the stack at
        once); a simulator or env node that crashed comes back with the same parameters, and the agent
        (which waits for its env, see ``gym_env``) carries on."""
        self.env = env
        self.log = log
        self.max_restarts = max(int(restarts), 0)
        self.restarts: dict[str, int] = {}
        self.procs: dict[str, subprocess.Popen] = {}
        self.specs: dict[str, NodeSpec] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="carla-rl-")
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._ready: dict[str, threading.Event] = {}
        self._reaper = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _REAPER, str(KILL_GRACE_S)],
            stdin=subprocess.PIPE,
            text=True,
            bufsize=1,
            start_new_session=True,
        )

    def _tell_reaper(self, line: str) -> None:
        try:
            self._reaper.stdin.write(line + "\n")
            self._reaper.stdin.flush()
        except (BrokenPipeError, ValueError):  # the reaper is gone (or closed): the stop below still escalates
            pass

    def start(self, spec: NodeSpec) -> subprocess.Popen:
        params_file = Path(self._tmp.name) / f"{spec.name}.yaml"
        params_file.write_text(yaml.safe_dump({"/**": {"ros__parameters": spec.parameters}}))
        proc = subprocess.Popen(
            spec.command(params_file),
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            start_new_session=True,
            # the signal fires when the starting *thread* ends: main thread only
            preexec_fn=_die_with_parent if threading.current_thread() is threading.main_thread() else None,
        )
        self.procs[spec.name], self.specs[spec.name] = proc, spec
        self._tell_reaper(f"+{proc.pid}")  # its own session: process group id = pid
        self._ready[spec.name] = threading.Event()
        self._pump(proc.stdout, spec.name, passthrough=spec.stdout_passthrough)
        self._pump(proc.stderr, spec.name, passthrough=False)
        return proc

    def wait_ready(self, name: str, timeout: float) -> bool:
        """Wait until node ``name`` logs its ``ready_text`` (False on timeout or when it exits first)."""
        deadline = time.monotonic() + timeout
        while not self._ready[name].wait(0.1):
            if self.procs[name].poll() is not None or time.monotonic() > deadline:
                return False
        return True

    def _pump(self, stream, name: str, passthrough: bool) -> None:
        def run() -> None:
            for line in stream:
                ready_text = self.specs[name].ready_text
                if ready_text and ready_text in line:
                    self._ready[name].set()
                with self._lock:
                    if passthrough:
                        sys.stdout.write(line)
                        sys.stdout.flush()
                    else:
                        self.log.write(f"[{name}] {line}")
                        self.log.flush()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self._threads.append(thread)

    def wait_for(self, name: str, timeout: float | None = None) -> int:
        """Wait for node ``name`` to exit; returns its code. A required node dying first stops the wait."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            code = self.procs[name].poll()
            if code is not None:
                return code
            if not self.supervise(exclude=name):
                return 70
            if deadline is not None and time.monotonic() > deadline:
                self.log.write(f"[carla-rl] '{name}' did not finish within {timeout:.0f} s; stopping the stack\n")
                return 124
            time.sleep(0.05)

    def supervise(self, exclude: str = "") -> bool:
        """Restart required nodes (other than ``exclude``) that exited, within the restart limit; False when
        one exited and may not be restarted (the caller then stops the stack)."""
        for other, proc in list(self.procs.items()):
            if other == exclude or not self.specs[other].required or proc.poll() is None:
                continue
            done = self.restarts.get(other, 0)
            if done >= self.max_restarts:
                limit = f" (restarted {done} times, the limit)" if self.max_restarts else ""
                self.log.write(
                    f"[carla-rl] required node '{other}' exited with code {proc.returncode}{limit}; "
                    f"stopping the stack\n"
                )
                self.log.flush()
                return False
            self.restarts[other] = done + 1
            self.log.write(
                f"[carla-rl] required node '{other}' exited with code {proc.returncode}; "
                f"restarting it ({done + 1} of {self.max_restarts})\n"
            )
            self.log.flush()
            self.start(self.specs[other])
        return True

    def stop(self, grace: float = 5.0) -> None:
        """SIGINT every child's process group, then SIGTERM after ``grace`` s, then SIGKILL; end the reaper."""
        for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 2.0), (signal.SIGKILL, 1.0)):
            alive = [p for p in self.procs.values() if p.poll() is None]
            if not alive:
                break
            for p in alive:
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and any(p.poll() is None for p in alive):
                time.sleep(0.05)
        for p in self.procs.values():
            if p.poll() is not None:
                self._tell_reaper(f"-{p.pid}")
        if self._reaper.stdin is not None and not self._reaper.stdin.closed:
            self._reaper.stdin.close()
        self._reaper.wait(timeout=KILL_GRACE_S * 2 + 2)
        for t in self._threads:
            t.join(timeout=1.0)
        self._tmp.cleanup()

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
