"""Runs on one machine never mix: each `carla-rl` stack takes a DDS domain of its own (an flock per domain id,
carla_rl_common.dds), and viewers or recorders find it with --join. Real processes throughout."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from carla_rl_common.dds import STACK_DOMAINS, TEST_DOMAINS, DomainError, allocate_domain, find_stacks, join_domain

REPO = Path(__file__).resolve().parents[1]
DOMAIN_LINE = re.compile(r"^carla-rl: ROS domain (\d+) \(join with --domain-id \1\)$", re.M)

# a process that takes a domain of range(first, last) under DIR, prints it and holds it until stdin closes
HOLDER = """
import sys
from pathlib import Path
from carla_rl_common.dds import allocate_domain
lease = allocate_domain(range(int(sys.argv[2]), int(sys.argv[3])), Path(sys.argv[1]))
print(lease.domain, flush=True)
sys.stdin.read()
"""


def _holder(directory: Path, first: int, last: int) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(directory), str(first), str(last)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    return proc, int(proc.stdout.readline())


def _free_range(directory: Path, size: int) -> range:
    """``size`` consecutive domains of the stacks' range that nothing on this machine uses right now (other
    runs may hold some)."""
    for start in range(STACK_DOMAINS.stop - size, STACK_DOMAINS.start - 1, -1):
        leases = []
        try:
            for domain in range(start, start + size):
                leases.append(allocate_domain(range(domain, domain + 1), directory))
            return range(start, start + size)
        except DomainError:
            continue
        finally:
            for lease in leases:
                lease.release()
    pytest.skip(f"no {size} free domains on this machine")


def test_the_stack_and_test_ranges_are_disjoint_and_below_the_ephemeral_ports():
    assert set(STACK_DOMAINS).isdisjoint(TEST_DOMAINS) and 0 not in STACK_DOMAINS
    assert 7410 + 250 * max(TEST_DOMAINS) + 2 * 50 < 32768  # participant 50 of the highest domain
    assert int(os.environ["ROS_DOMAIN_ID"]) in TEST_DOMAINS or "CARLA_RL_TEST_DOMAIN_ID" in os.environ


def test_two_processes_get_different_domains_and_a_dead_ones_is_free_again(tmp_path):
    span = _free_range(tmp_path, 2)
    first, a = _holder(tmp_path, span.start, span.stop)
    second, b = _holder(tmp_path, span.start, span.stop)
    try:
        assert a != b and {a, b} == set(span)
        with pytest.raises(DomainError, match=r"no free ROS domain in \d+\.\.\d+"):
            allocate_domain(span, tmp_path)  # both held, here as well as in other processes
        os.kill(first.pid, signal.SIGKILL)  # its lock file stays; the kernel released the lock
        first.wait(10)
        assert (tmp_path / f"domain-{a}.lock").exists()
        lease = allocate_domain(span, tmp_path)
        assert lease.domain == a
        lease.release()
    finally:
        for proc in (first, second):
            proc.kill()
            proc.wait(10)


def test_join_finds_the_newest_running_stack(tmp_path, capsys):
    with pytest.raises(DomainError, match="no running carla-rl stack"):
        join_domain(tmp_path)
    span = _free_range(tmp_path, 2)
    older, a = _holder(tmp_path, span.start, span.stop)
    time.sleep(0.05)  # distinct start times
    newer, b = _holder(tmp_path, span.start, span.stop)
    try:
        assert [s["domain"] for s in find_stacks(tmp_path)] == [b, a]
        assert join_domain(tmp_path) == b
        said = capsys.readouterr().err
        assert f"joining ROS domain {b} of pid {newer.pid}" in said and f"also running: {a}" in said
    finally:
        for proc in (older, newer):
            proc.kill()
            proc.wait(10)
    assert find_stacks(tmp_path) == []  # both dead: their files stay, nobody holds them


def test_a_viewer_joins_the_stack_and_says_so_or_says_there_is_none(tmp_path):
    env = {**os.environ, "CARLA_RL_RUNTIME_DIR": str(tmp_path)}
    env.pop("ROS_DOMAIN_ID")
    cli = [sys.executable, "-m", "carla_rl_bringup.cli"]
    none = subprocess.run(
        [*cli, "record", "--join", "-o", str(tmp_path / "bag")], env=env, capture_output=True, text=True
    )
    assert none.returncode == 1 and none.stderr.strip().splitlines() == [
        "carla-rl record: --join: no running carla-rl stack found on this machine; start one, or give --domain-id"
    ], none.stderr
    span = _free_range(tmp_path, 1)
    holder, domain = _holder(tmp_path, span.start, span.stop)
    try:
        viewer = subprocess.Popen(
            [*cli, "viz", "web", "--join", "--port", "0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        time.sleep(8)  # joined, started, serving
        viewer.send_signal(signal.SIGINT)
        out, err = (t.decode() for t in viewer.communicate(timeout=30))
    finally:
        holder.kill()
        holder.wait(10)
    assert viewer.returncode == 0 and "Traceback" not in err, err
    assert f"carla-rl: joining ROS domain {domain} of pid {holder.pid}" in err
    assert "carla-rl viz web: http://127.0.0.1:" in out
    assert err.strip().splitlines()[-1] == "carla-rl viz web: stopped by SIGINT"


def _drive(args: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("ROS_DOMAIN_ID")  # as a user runs it: nothing named
    return subprocess.run(
        [sys.executable, "-m", "carla_rl_bringup.cli", "drive", "--episodes", "1", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
    )


def test_two_drives_at_once_get_their_own_domains_and_both_drive_correctly():
    """The issue's case: two `carla-rl drive` started together with ROS_DOMAIN_ID unset. Before, both ran in
    domain 0 and one env node adopted the other's simulator ("a new simulator; forgetting the old one")."""
    runs = [["--checkpoint", "models/ppo_rltown01.ckpt"]] * 2  # the same drive twice: lockstep is deterministic
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(_drive, runs))
    domains, episodes = [], []
    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]
        found = DOMAIN_LINE.findall(result.stderr)
        assert len(found) == 1, result.stderr[-3000:]  # printed once
        domains.append(int(found[0]))
        assert "new simulator" not in result.stderr and "two simulators" not in result.stderr, result.stderr[-3000:]
        records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        assert len(records) == 1 and records[0]["env_id"] == "env_0" and records[0]["episode"] == 1, result.stdout
        episodes.append(records[0])
    assert domains[0] != domains[1] and all(d in STACK_DOMAINS for d in domains)
    # neither saw the other's frames: each is the episode the other drove (float noise of the policy's matmuls
    # aside), and it succeeds
    exact = ("scenario_id", "seed", "length", "success", "collisions", "lane_invasions", "termination_reason")
    assert [{k: e[k] for k in exact} for e in episodes] == [{k: episodes[0][k] for k in exact}] * 2, episodes
    assert episodes[1]["return"] == pytest.approx(episodes[0]["return"], rel=1e-5) and episodes[0]["success"]


def test_an_env_node_beside_two_live_simulators_says_so_instead_of_adopting_the_second():
    """Two simulators in one domain (what runs on domain 0 used to be): the env node follows the first, and
    when the second one's statuses count from 0 beside the first's, it logs one ERROR naming both publishers."""
    env = dict(os.environ)  # this test run's domain, for all three
    cli = [sys.executable, "-m", "carla_rl_bringup.cli"]
    procs = [subprocess.Popen([*cli, "sim"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        node = subprocess.Popen(
            [sys.executable, "-m", "carla_rl_env.node"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        procs.append(node)
        time.sleep(12)  # the env node follows the first simulator's frames
        procs.append(subprocess.Popen([*cli, "sim"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(12)
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    log = node.stdout.read().decode()
    errors = [line for line in log.splitlines() if "two simulators publish" in line]
    assert len(errors) == 1 and "[ERROR]" in errors[0], log[-3000:]
    assert errors[0].count("/carla_ros_bridge (gid ") == 2, errors[0]
    assert "a new simulator; forgetting the old one" not in log, log[-3000:]
