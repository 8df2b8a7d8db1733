"""Training over ROS, in real processes on real DDS (issues 22, 23, 24).

`carla-rl train --restart 1` survives an env node killed with SIGKILL mid-training: the launcher restarts the
node, the trainer sees its step publisher go and come back, ends the broken episode as truncated
(``env_node_lost``), resets the env on the new node and trains to the end. Ctrl-C of a training writes the
final checkpoint and the curve and names both, with no traceback."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from carla_rl_agents.checkpoints import list_checkpoints, read_meta
from carla_rl_agents.training import read_episodes
from carla_rl_agents.vec_env import ENV_NODE_LOST

CARLA_RL = Path(sys.executable).with_name("carla-rl")
TOTAL = 1024


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (the launcher's nodes run in sessions of their own, still its children)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def env_node_of(pid: int) -> int | None:
    for child in descendants(pid):
        try:
            if b"carla_rl_env.node" in Path(f"/proc/{child}/cmdline").read_bytes():
                return child
        except OSError:
            continue
    return None


def start_training(tmp_path: Path, total: int, *options: str) -> tuple[subprocess.Popen, Path]:
    """``carla-rl train`` of a small PPO over ROS, returned once its first checkpoint is written."""
    config = tmp_path / "small.yaml"
    config.write_text("algo_kwargs: {n_steps: 64, batch_size: 64, n_epochs: 1}\npolicy: {net_arch: [32]}\n")
    run_dir = tmp_path / "run"
    command = [str(CARLA_RL), "train", "--algo", "ppo", "--config", str(config), "--total-steps", str(total)]
    command += ["--checkpoint-every", "128", "--run-dir", str(run_dir), *options]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while not list_checkpoints(run_dir) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    return process, run_dir


def test_a_killed_env_node_is_restarted_and_training_completes(tmp_path):
    process, run_dir = start_training(tmp_path, TOTAL, "--restart", "1")
    try:
        victim = env_node_of(process.pid)
        assert victim is not None and process.poll() is None
        os.kill(victim, signal.SIGKILL)
        out, _ = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.communicate(timeout=30)
    assert process.returncode == 0, out
    assert "exited with code -9; restarting it (1 of 1)" in out
    assert "its env node stopped; ending its episode as truncated" in out and "the env node is back" in out
    assert "Traceback" not in out, out
    assert read_meta(list_checkpoints(run_dir)[-1])["num_timesteps"] == TOTAL
    assert ENV_NODE_LOST in {e["termination_reason"] for e in read_episodes(run_dir / "episodes.jsonl")}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_a_training_over_ros_stopped_by_a_signal_names_the_final_checkpoint_and_the_curve(tmp_path, signum):
    process, run_dir = start_training(tmp_path, 100_000)
    try:
        time.sleep(1.0)  # mid-rollout
        process.send_signal(signum)
        out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 128 + signum, out
    assert "Traceback" not in out, out
    newest = list_checkpoints(run_dir)[-1]
    assert f"checkpoint at step {read_meta(newest)['num_timesteps']}: {newest}" in out
    assert f"learning curve: {run_dir / 'learning_curve.png'}" in out and (run_dir / "learning_curve.png").is_file()
