"""What the carla-rl command checks before it starts anything: every config a stack's nodes will check (reward
terms, observation and action settings), a run to resume, the numbers of the train options; and that every
option of every subcommand has a help text.

Each bad input must end the CLI process with one line on stderr naming the file and the key (exit 2 for a
config error, 1 for a missing checkpoint), no traceback, and no node started: a started stack would log
with a ``[node]`` prefix and take far longer than these checks.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import pytest
import yaml

from carla_rl_agents.settings import load_run_config
from carla_rl_bringup.cli import build_parser

BAD_CONFIGS = {
    "reward term": ("env:\n  reward:\n    terms:\n      speeding: 1.0\n", "env.reward.terms.speeding"),
    "action setting": ("env:\n  action:\n    type: joystick\n", "env.action.type"),
    "observation setting": ("env:\n  observation:\n    measurements: false\n    goal: false\n", "env.observation"),
    "camera of no sensor": (
        "env:\n  observation:\n    cameras: [{id: rear, width: 64, height: 64}]\n",
        "env.observation.cameras[0].id",
    ),
}
CHECKPOINT = "models/ppo_rltown01.ckpt"


def carla_rl(*args: str, cwd=None, timeout: float = 90) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "carla_rl_bringup.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd
    )
    return proc, time.monotonic() - start


def assert_one_line(proc: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, proc.stderr[-3000:]
    assert len(lines) == 1 and "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.mark.parametrize("kind", sorted(BAD_CONFIGS))
def test_train_checks_the_env_config_before_the_stack_starts(tmp_path, kind):
    text, key = BAD_CONFIGS[kind]
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    proc, _ = carla_rl("train", "--config", str(bad), "--run-dir", str(tmp_path / "run"))
    assert_one_line(proc, 2, "config error", str(bad), key)
    assert not (tmp_path / "run").exists()  # nothing was started or written


@pytest.mark.parametrize(
    ("stack", "kind"),
    [("drive", "reward term"), ("train", "action setting"), ("evaluate", "observation setting")],
)
def test_up_checks_the_configs_of_its_stack(tmp_path, stack, kind):
    text, key = BAD_CONFIGS[kind]
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    extra = ["--checkpoint", CHECKPOINT, "--suite", "straight"] if stack == "evaluate" else []
    proc, _ = carla_rl("up", stack, "--config", str(bad), *extra)
    assert_one_line(proc, 2, "carla-rl up: config error", str(bad), key)


def test_evaluate_and_up_check_the_checkpoint_first(tmp_path, repo):
    torn = tmp_path / "torn.ckpt"
    torn.write_bytes((repo / CHECKPOINT).read_bytes()[:4096])
    for args in (
        ["evaluate", "--checkpoint", str(torn), "--suite", "straight"],
        ["up", "evaluate", "--checkpoint", str(torn), "--suite", "straight"],
    ):
        proc, _ = carla_rl(*args)
        assert_one_line(proc, 1, str(torn), "corrupt checkpoint")


def test_resume_without_a_checkpoint_says_what_it_looked_for_before_starting_anything(tmp_path, repo):
    """A run stopped before its first checkpoint: its config.yaml is written, its checkpoint is not."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / ".step_0000000512.ckpt.tmp").write_bytes(b"torn")  # a write that never completed
    config = load_run_config([repo / "config" / "base.yaml", repo / "config" / "ppo.yaml"])
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    for args in (["train", "--resume", str(run)], ["up", "train", "--resume", "true", "--run-dir", str(run)]):
        proc, seconds = carla_rl(*args)
        line = assert_one_line(proc, 1, "no complete checkpoint to resume from", str(run / "checkpoints" / "step_*"))
        assert line.startswith("carla-rl ") and seconds < 30, (line, seconds)


def test_train_options_are_range_checked(tmp_path):
    proc, _ = carla_rl("train", "--total-steps", "0", "--run-dir", str(tmp_path / "run"))
    assert_one_line(proc, 2, "--total-steps", "out of range")
    proc, _ = carla_rl("train", "--checkpoint-every", "-5", "--run-dir", str(tmp_path / "run"))
    assert_one_line(proc, 2, "--checkpoint-every", "out of range")
    proc, _ = carla_rl("train", "--resume", str(tmp_path), "--total-steps", "100")
    assert_one_line(proc, 2, "a resumed run keeps its own config")


def test_train_total_steps_checkpoint_every_and_resume_say_where_they_are(tmp_path):
    """The short try of the issue: a budget in steps, a checkpoint every 256 steps (one PPO rollout of 256
    steps on one env), then --resume names the step it continues from."""
    run = tmp_path / "run"
    proc, _ = carla_rl(
        "train", "--inprocess", "--total-steps", "512", "--checkpoint-every", "200", "--run-dir", str(run), timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "a checkpoint every 1 update(s) = 256 steps (rollouts of 256 steps)" in proc.stderr
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_0000000256.ckpt", "step_0000000512.ckpt"]
    proc, _ = carla_rl("train", "--inprocess", "--resume", str(run), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"carla-rl train: resuming {run} from step 512 of 512 (step_0000000512.ckpt)" in proc.stderr


def _options_without_help(parser: argparse.ArgumentParser, path: str) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                missing += _options_without_help(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction) and not action.help:
            missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_every_option_of_every_subcommand_has_help():
    assert _options_without_help(build_parser(), "carla-rl") == []


def test_the_walk_finds_an_option_without_help():
    parser = build_parser()
    parser._subparsers._group_actions[0].choices["drive"].add_argument("--undocumented")
    assert _options_without_help(parser, "carla-rl") == ["carla-rl drive --undocumented"]
