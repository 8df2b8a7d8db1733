"""`carla-rl up` (and ros2 launch, both through carla_rl_bringup.stacks.expand) with a checkpoint and a suite:
the env nodes get the env the checkpoint was trained on and the suite's episodes, checked before any node."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from carla_rl_agents.checkpoints import CheckpointError, read_meta
from carla_rl_bringup.stacks import expand, load_stacks
from carla_rl_common import bridge
from carla_rl_common.config import ConfigError
from carla_rl_common.spaces import space_from_dict
from carla_rl_env.settings import load_env_config
from carla_rl_env.task import DrivingTask

REPO = Path(__file__).resolve().parents[2]
CHECKPOINT = REPO / "models" / "ppo_rltown01.ckpt"
SUITES = REPO / "config" / "suites"
DRIVE = {"stack": "drive", "agent": "checkpoint", "checkpoint": str(CHECKPOINT)}


def env_nodes(args: dict[str, str], **kwargs) -> list:
    return [n for n in expand(load_stacks(), args, **kwargs) if n.package == "carla_rl_env"]


def observation_space(config_files: list[str]):
    config = load_env_config(config_files)
    return DrivingTask(config["env"], None, bridge.DEFAULT_FIXED_DELTA_SECONDS).observation_space


def test_drive_env_nodes_read_the_checkpoints_config_then_the_given_files(tmp_path):
    """Before: config/base.yaml's defaults, a 16-value measurement vector against the checkpoint's 27 (the
    agent node then died with a CheckpointError traceback)."""
    given = tmp_path / "short.yaml"
    given.write_text("env:\n  episode:\n    max_episode_steps: 50\n")
    trained, files = read_meta(CHECKPOINT), env_nodes({**DRIVE, "config": str(given), "num_envs": "2"})
    assert [n.parameters["config"] for n in files] == [files[0].parameters["config"]] * 2
    saved, after = files[0].parameters["config"]
    assert yaml.safe_load(Path(saved).read_text()) == trained["config"] and after == str(given)
    space = observation_space([saved, after])
    assert space["measurements"].shape == (27,) and space == space_from_dict(trained["observation_space"])
    assert load_env_config([saved, after])["env"]["episode"]["max_episode_steps"] == 50  # the given file wins
    assert env_nodes({"stack": "drive", "config": str(given)})[0].parameters["config"] == [str(given)]


def test_agent_checkpoint_needs_a_checkpoint():
    with pytest.raises(ConfigError, match="agent:=checkpoint needs checkpoint:=PATH"):
        expand(load_stacks(), {"stack": "drive", "agent": "checkpoint"})


def test_the_suite_reaches_the_env_nodes_as_the_towns_file():
    """Before: the drive stack gave its env nodes no suite at all (random routes, ``random-0``)."""
    for town in ("RLTown01", "RLTown02"):
        *_, last = env_nodes({"stack": "drive", "suite": "one_turn", "town": town})[0].parameters["config"]
        assert yaml.safe_load(Path(last).read_text()) == {
            "env": {"scenario": {"suite": str(SUITES / town / "one_turn.yaml")}}
        }
    trainer = next(n for n in expand(load_stacks(), {"stack": "train", "suite": "straight"}) if n.main)
    last = trainer.parameters["run_config"][-1]
    assert yaml.safe_load(Path(last).read_text())["env"]["scenario"]["suite"] == str(
        SUITES / "RLTown01" / "straight.yaml"
    )
    with pytest.raises(ConfigError, match="no suite 'nowhere' for town RLTown01") as error:
        expand(load_stacks(), {"stack": "drive", "suite": "nowhere"})
    assert error.value.key == "suite"


def test_check_refuses_a_bad_config_and_a_damaged_checkpoint_before_any_node(tmp_path):
    """expand(check=True), what ``carla-rl up`` and the launch file call: the configs the env nodes will read
    (the checkpoint's, then the given ones) and the checkpoint's weights; without it only its meta is read."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("env:\n  sensor_timeout: .nan\n")
    assert env_nodes({**DRIVE, "config": str(bad)})  # not read without the check
    with pytest.raises(ConfigError, match=r"env.sensor_timeout: must be a finite number") as error:
        expand(load_stacks(), {**DRIVE, "config": str(bad)}, check=True)
    assert error.value.source == str(bad)
    damaged = tmp_path / "damaged.ckpt"
    with zipfile.ZipFile(CHECKPOINT) as good, zipfile.ZipFile(damaged, "w") as out:
        out.writestr("meta.json", good.read("meta.json"))
        out.writestr("state.pt", b"not a torch file")
    args = {**DRIVE, "checkpoint": str(damaged)}
    assert env_nodes(args)  # the meta alone is sound
    with pytest.raises(CheckpointError, match="damaged.ckpt"):
        expand(load_stacks(), args, check=True)
    other = tmp_path / "no_lead.yaml"  # a valid config, but not the observation the policy was trained on
    other.write_text("env:\n  observation:\n    lead_vehicle: false\n")
    with pytest.raises(CheckpointError, match="the checkpoint's observation space .* does not match the env's"):
        expand(load_stacks(), {**DRIVE, "config": str(other)}, check=True)
    assert env_nodes({**DRIVE, "suite": "one_turn"}, check=True)


def test_the_written_configs_go_when_the_launcher_exits():
    code = (
        "from carla_rl_bringup.stacks import expand, load_stacks\n"
        f"nodes = expand(load_stacks(), {DRIVE!r} | {{'suite': 'straight'}})\n"
        "print(*next(n for n in nodes if n.package == 'carla_rl_env').parameters['config'], sep='\\n')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    written = [Path(line) for line in proc.stdout.splitlines()]
    assert len(written) == 2 and written[0].name.startswith("ppo_rltown01-") and written[1].name.startswith("suite-")
    assert not any(path.exists() or path.parent.exists() for path in written), written


@pytest.mark.slow
def test_up_drive_with_the_checkpoint_on_a_suite(tmp_path):
    """The issue's command (without the browser view): the pretrained policy drives the suite's first episodes,
    as separate processes over DDS, without a traceback."""
    short = tmp_path / "short.yaml"
    short.write_text("env:\n  episode:\n    max_episode_steps: 40\n")
    proc = subprocess.run(
        [sys.executable, "-m", "carla_rl_bringup.cli", "up", "drive", "--agent", "checkpoint", "--checkpoint"]
        + [str(CHECKPOINT), "--suite", "one_turn", "--episodes", "2", "--config", str(short)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    suite = yaml.safe_load((SUITES / "RLTown01" / "one_turn.yaml").read_text())
    assert [r["scenario_id"] for r in records[:2]] == [e["id"] for e in suite["episodes"][:2]], records
