"""Agent faults: the trainer killed (SIGKILL) during training and in the middle of a checkpoint write.

``carla-rl train --resume RUN`` continues from the newest complete checkpoint (``latest_checkpoint``: its meta
validates and every member's CRC matches); a half-written checkpoint is a hidden temporary file that is never
listed, and the next checkpoint write deletes it. These runs use ``--inprocess`` (the same Trainer and
checkpoints as over ROS 2) to stay a few seconds long.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from carla_rl_agents.checkpoints import STATE_NAME, latest_checkpoint, list_checkpoints, read_meta

pytestmark = pytest.mark.slow

TOTAL = 768  # 6 rollouts of 128 steps
# the child below is `carla-rl` with zipfile's writestr patched to die (SIGKILL) half-way through the
# STATE_NAME member of checkpoint number KILL_AT: a real kill in the middle of a real write
KILL_DURING_WRITE = f"""
import os, signal, sys, zipfile
orig, seen = zipfile.ZipFile.writestr, [0]
def writestr(self, name, data, *args, **kwargs):
    if name == {STATE_NAME!r}:
        seen[0] += 1
        if seen[0] == int(os.environ["KILL_AT"]):
            self.fp.write(data[: len(data) // 2]); self.fp.flush(); os.fsync(self.fp.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
    return orig(self, name, data, *args, **kwargs)
zipfile.ZipFile.writestr = writestr
from carla_rl_bringup.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
def small_run(tmp_path) -> tuple[Path, list[str]]:
    config = tmp_path / "small.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "algo_kwargs": {"n_steps": 128, "batch_size": 128, "n_epochs": 1},
                "train": {"total_timesteps": TOTAL, "checkpoint_every": 1, "keep_checkpoints": 3},
                "env": {"episode": {"max_episode_steps": 100}},
            }
        )
    )
    run = tmp_path / "run"
    return run, ["train", "--inprocess", "--algo", "ppo", "--config", str(config), "--run-dir", str(run)]


def _cli(*args: str, code: str | None = None, env: dict | None = None) -> subprocess.Popen:
    command = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "carla_rl_bringup.cli", *args]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
    )


def _resume(run: Path) -> tuple[int, str]:
    proc = _cli("train", "--inprocess", "--resume", str(run))
    _, err = proc.communicate(timeout=240)
    return proc.returncode, err


def _steps(path: Path) -> int:
    return read_meta(path)["num_timesteps"]


def test_trainer_killed_during_training_resumes_from_the_last_complete_checkpoint(small_run):
    run, args = small_run
    proc = _cli(*args)
    deadline = time.monotonic() + 240
    while len(list_checkpoints(run)) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    last = latest_checkpoint(run)
    assert last is not None and 0 < _steps(last) < TOTAL, "the run finished before it could be killed"
    at_kill = _steps(last)
    start = time.monotonic()
    code, err = _resume(run)
    assert code == 0, err[-3000:]
    # the resumed session started at the checkpoint's step count and trained up to the budget
    assert (run / "tb" / f"progress_resumed_at_{at_kill}.csv").is_file()
    assert _steps(latest_checkpoint(run)) == TOTAL
    print(f"\nkilled at {at_kill} steps; resume to {TOTAL} took {time.monotonic() - start:.1f} s")


def test_trainer_killed_mid_checkpoint_write_never_picks_the_half_written_file(small_run):
    run, args = small_run
    proc = _cli(*args, code=KILL_DURING_WRITE, env={"KILL_AT": "3"})
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == -signal.SIGKILL, err[-3000:]
    partial = list((run / "checkpoints").glob(".step_*.tmp"))
    assert len(partial) == 1 and partial[0].stat().st_size > 0  # the torn write, under a hidden name
    complete = list_checkpoints(run)
    assert len(complete) == 2 and latest_checkpoint(run) == complete[-1]
    # a damaged file under a checkpoint name (a bad disk, a copy cut short) is skipped as well: CRC check
    damaged = complete[-1].with_name(f"step_{_steps(complete[-1]) + 128:010d}.ckpt")
    shutil.copy(complete[-1], damaged)
    with zipfile.ZipFile(damaged) as archive:
        info = archive.getinfo(STATE_NAME)
    data = bytearray(damaged.read_bytes())
    data[info.header_offset + 200] ^= 0xFF  # a byte inside the member's data (ZIP_STORED)
    damaged.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="fails its CRC check"):
        assert latest_checkpoint(run) == complete[-1]
    damaged.unlink()
    at_kill = _steps(complete[-1])
    code, err = _resume(run)
    assert code == 0, err[-3000:]
    assert (run / "tb" / f"progress_resumed_at_{at_kill}.csv").is_file()
    assert _steps(latest_checkpoint(run)) == TOTAL
    assert not partial[0].exists()  # the next checkpoint write cleaned up the dead writer's temporary file
