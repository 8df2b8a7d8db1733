"""Every command of the README's command blocks, run verbatim on the embedded simulator (issue 23).

A README line must never break again, so the test reads the ``bash`` blocks of README.md and runs each
command as written, in README order (the bag commands read the bag the drive before them recorded), in a
scratch workspace: the repository's files linked in, ``runs/`` and other outputs its own, ``../shared``
beside it as in CI. ``PLAN`` says how each command runs here; a command in the README without a plan (or a
plan without its command) fails ``test_every_readme_command_has_a_plan``, so a new README line is never
skipped silently. Commands that run until stopped (a simulator, a viewer, ``up train``) are started, checked
to be serving (a port that answers, a log line, a bag that grows), then stopped with SIGINT as a user's
Ctrl-C. What cannot run on this machine (no Docker engine, no system ROS 2 with launch_ros, no GPU, no SSH
host) says why; those parts have their own tests (tests/docker, tests/test_launch.py).

Every command must exit 0 (a served one: stop cleanly on SIGINT) and print no traceback and no warning (but
the lockstep's deadline warnings, see ``DEADLINE``).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
OUTPUTS = {"runs", "build", "log", "install"}  # the workspace's own: never the user's
NOISE = re.compile(r"Traceback \(most recent call last\)|\bWARN(ING)?\b|UserWarning|DeprecationWarning")
# The lockstep's deadline warnings: an agent that missed the bridge's 1 s wait for its command. They report a
# real fault, which a machine loaded by other work causes too, so here they are tolerated (a quiet run on an
# unloaded path is tests/test_quiet_runs.py's); every other warning fails.
DEADLINE = re.compile(r"no vehicle_control_cmd .*within 1 s|'uncommanded_frame'|'relayed_command'")


@dataclass(frozen=True)
class Run:
    """Runs to its end within ``timeout`` seconds."""

    timeout: float = 300.0


@dataclass(frozen=True)
class Serve:
    """Runs until stopped: ``ready(workspace, output so far)`` must hold within ``timeout`` seconds, then the
    command is stopped with SIGINT and must end within ``grace`` seconds without a traceback."""

    ready: Callable[[Path, str], bool]
    timeout: float = 120.0
    grace: float = 30.0


@dataclass(frozen=True)
class NotHere:
    """Cannot run on this machine; ``why`` says what it needs and where it is tested instead."""

    why: str


def _http_ok(url: str) -> Callable[[Path, str], bool]:
    def ready(_: Path, __: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    return ready


def _port_open(port: int) -> Callable[[Path, str], bool]:
    def ready(_: Path, __: str) -> bool:
        with socket.socket() as s:
            s.settimeout(1.0)
            return s.connect_ex(("127.0.0.1", port)) == 0

    return ready


def _logged(text: str) -> Callable[[Path, str], bool]:
    return lambda _, output: text in output


def _bag_grew(path: str, size: int) -> Callable[[Path, str], bool]:
    def ready(workspace: Path, _: str) -> bool:
        return sum(f.stat().st_size for f in (workspace / path).glob("*.mcap")) >= size

    return ready


NO_DOCKER = NotHere("no Docker engine here (tests/docker checks the compose file, Dockerfiles and .env.example)")
NO_LAUNCH_ROS = NotHere(
    "needs a system ROS 2 with launch_ros (not in .venv; tests/test_launch.py expands the launch file's stacks)"
)
GPU_RUN = NotHere("a training run of minutes on the 16-core GPU machine (benchmarks/gpu_learning.sh)")

PLAN: dict[str, Run | Serve | NotHere] = {
    "make demo": Run(timeout=420),
    "make test": NotHere("the test suite itself, of which this test is a part"),
    ".venv/bin/carla-rl drive --checkpoint models/ppo_rltown01.ckpt --episodes 3 --suite one_turn": Run(),
    ".venv/bin/carla-rl train --algo ppo --num-envs 2 --run-dir runs/ppo --total-steps 4096": Run(),
    ".venv/bin/carla-rl train --algo ppo --resume runs/ppo": Run(),
    ".venv/bin/carla-rl evaluate --checkpoint models/ppo_rltown01.ckpt --suite navigation --episodes 5 --seed 1 "
    "--json": Run(),
    ".venv/bin/carla-rl drive --agent random --episodes 3": Run(),
    ".venv/bin/carla-rl drive --agent random --num-envs 2 --episodes 4": Run(),
    ".venv/bin/carla-rl sim --map RLTown01 --objects config/objects.json "
    "--synchronous-mode-wait-for-vehicle-control-command true": Serve(_logged("embedded simulator: map RLTown01")),
    ".venv/bin/carla-rl map export ../shared/data/maps/carla/Town01.xodr --format geojson -o town01.geojson": Run(),
    ".venv/bin/carla-rl bench --quick --json": Run(),
    ".venv/bin/carla-rl up drive --viz web --episodes 20": Serve(_http_ok("http://127.0.0.1:8080/")),
    ".venv/bin/carla-rl viz foxglove --num-envs 2": Serve(_port_open(8765)),
    "ros2 launch launch/carla_rl.launch.py stack:=drive viz:=rviz": NO_LAUNCH_ROS,
    ".venv/bin/carla-rl evaluate --checkpoint models/ppo_rltown01.ckpt --suite one_turn --inprocess --video": Run(),
    ".venv/bin/carla-rl drive --checkpoint models/ppo_rltown01.ckpt --episodes 2 --record runs/bags/drive1": Run(),
    ".venv/bin/carla-rl bag info runs/bags/drive1": Run(),
    ".venv/bin/carla-rl bag repair runs/bags/drive1": Run(),
    ".venv/bin/carla-rl replay runs/bags/drive1 --rate 0": Run(),
    ".venv/bin/carla-rl evaluate-bag runs/bags/drive1 --checkpoint models/ppo_rltown01.ckpt": Run(),
    "ros2 launch launch/carla_rl.launch.py stack:=drive sim:=carla host:=127.0.0.1 port:=2000 town:=Town01 "
    "viz:=rviz": NotHere("needs a CARLA server, its ROS bridge and launch_ros (none can run here)"),
    "ros2 launch launch/carla_rl.launch.py stack:=evaluate checkpoint:=models/ppo_rltown01.ckpt "
    "suite:=navigation": NO_LAUNCH_ROS,
    ".venv/bin/carla-rl up drive --num-envs 2 --episodes 2": Run(),
    ".venv/bin/carla-rl up train --num-envs 2 --record runs/train.bag": Serve(_bag_grew("runs/train.bag", 2_000_000)),
    ".venv/bin/carla-rl up replay --bag runs/train.bag --rate 2": Run(),
    'cp docker/.env.example docker/.env && sed -i "s/^USER_ID=.*/USER_ID=$(id -u)/; '
    's/^GROUP_ID=.*/GROUP_ID=$(id -g)/" docker/.env': NotHere(
        "writes docker/.env for the compose commands after it, which need a Docker engine"
    ),
    "docker-compose -f docker/docker-compose.yml --env-file docker/.env up -d carla": NO_DOCKER,
    "docker-compose -f docker/docker-compose.yml --env-file docker/.env up client carlaviz viewer": NO_DOCKER,
    "docker-compose -f docker/docker-compose.yml --env-file docker/.env --profile cpu up embedded": NO_DOCKER,
    "ssh -J user@access-node -L 8080:127.0.0.1:8080 user@gpu-server": NotHere("an example for the user's own hosts"),
    "python benchmarks/learning.py curve --algo ppo --suite navigation --config benchmarks/configs/ppo_navigation.yaml "
    "--minutes 4.5 --num-envs 10 --torch-threads 2 --out stage1": GPU_RUN,
    "python benchmarks/learning.py navigation --minutes 6 --num-envs 16 --torch-threads 2 --eval-workers 8 "
    "--eval-envs 2 --config benchmarks/configs/no_traffic.yaml --init-from stage1/run/snapshots/<last>.ckpt": GPU_RUN,
}


def readme_commands(text: str) -> list[str]:
    """The commands of the ``bash`` blocks of ``text``: comments dropped, continued lines joined, one space
    between words (as ``PLAN`` spells them)."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = _strip_comment(line).strip()
            if line:
                commands.append(" ".join(line.split()))
    return commands


def _strip_comment(line: str) -> str:
    """``line`` without a trailing shell comment (a ``#`` outside quotes that starts a word)."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def test_every_readme_command_has_a_plan() -> None:
    assert readme_commands(README.read_text()) == list(PLAN)


def test_comment_and_continuation_handling() -> None:
    text = "```bash\nfoo a  b   # says 'x'\nbar \"c # d\" \\\n    e\n# only a comment\n```\n"
    assert readme_commands(text) == ["foo a b", 'bar "c # d" e']


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<tmp>/repo`` with every top-level entry of the repository linked in except the outputs, and
    ``<tmp>/shared`` linked to the real ``../shared`` (CARLA's maps)."""
    root = tmp_path_factory.mktemp("readme")
    ws = root / "repo"
    ws.mkdir()
    for entry in REPO.iterdir():
        if entry.name not in OUTPUTS and entry.name != ".git":
            (ws / entry.name).symlink_to(entry)
    if (REPO.parent / "shared").exists():
        (root / "shared").symlink_to(REPO.parent / "shared")
    return ws


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTEST_CURRENT_TEST", None)
    env.pop("PYTHONWARNINGS", None)  # the warnings a user sees: Python's default filters
    return env


def _check_output(command: str, output: str) -> None:
    noisy = [line for line in output.splitlines() if NOISE.search(line) and not DEADLINE.search(line)]
    assert not noisy, f"{command!r} printed:\n" + "\n".join(noisy[:20]) + f"\n--- output tail ---\n{output[-3000:]}"


RUNNABLE = [c for c, plan in PLAN.items() if not isinstance(plan, NotHere)]


@pytest.mark.parametrize("command", RUNNABLE)
def test_readme_command(command: str, workspace: Path) -> None:
    plan = PLAN[command]
    argv = ["bash", "-c", command] if re.search(r"[;&|$]", command) else shlex.split(command)
    log = workspace / "runs" / "readme-logs" / f"{RUNNABLE.index(command):02d}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w+") as out:
        proc = subprocess.Popen(
            argv, cwd=workspace, env=_environment(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            if isinstance(plan, Run):
                code = proc.wait(timeout=plan.timeout)
            else:
                deadline = time.monotonic() + plan.timeout
                while not plan.ready(workspace, log.read_text(errors="replace")):
                    assert proc.poll() is None, f"{command!r} ended before serving:\n{log.read_text()[-3000:]}"
                    assert time.monotonic() < deadline, f"{command!r} not serving after {plan.timeout} s"
                    time.sleep(0.5)
                proc.send_signal(signal.SIGINT)
                code = proc.wait(timeout=plan.grace)
                code = 0 if code in (0, 130, -signal.SIGINT) else code
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail(f"{command!r} did not end in time:\n{log.read_text()[-3000:]}")
        output = log.read_text(errors="replace")
    assert code == 0, f"{command!r} exited {code}:\n{output[-3000:]}"
    _check_output(command, output)
